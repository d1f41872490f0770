"""Binary cross-entropy as a metric: validation, prediction formats, reductions.

The arithmetic lives in the Cython kernel ``skbce._bce.bce_pass``; this module
turns whatever a user or a scikit-learn estimator hands over into the arrays
that kernel expects -- C-contiguous ``(n_samples, n_labels)`` arrays of one
floating dtype with validated values -- and turns the kernel's weighted sums
back into the requested reduction.
"""

import os
from numbers import Integral, Real

import numpy as np
from scipy import sparse
from sklearn.utils import check_array
from sklearn.utils._array_api import _is_numpy_namespace, get_namespace
from sklearn.utils._param_validation import Interval, Options, StrOptions, validate_params
from sklearn.utils.validation import _check_sample_weight

try:
    from skbce._kernels import bce_pass, max_threads
    from skbce._validation import count_outside
except ModuleNotFoundError as exc:
    if not (exc.name or "").startswith("skbce."):
        raise
    # Not built: most likely `import skbce` from the root of a clone.
    _root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    _where = "the source tree" if os.path.exists(os.path.join(_root, "pyproject.toml")) else "a broken install"
    raise ImportError(
        f"skbce's compiled kernels ({exc.name}) are missing: this skbce, in "
        f"{_root}, is {_where}, not an installed build. Install it (pip install . ; "
        "to develop: pip install --no-build-isolation -e .) and run Python from "
        "outside that directory (tests: .venv/bin/pytest, which imports the "
        "installed package)."
    ) from exc

from skbce._dispatch import is_dask_collection

__all__ = ["binary_cross_entropy", "bce_gradient", "bce_loss_and_gradient"]

# Below this many entries a parallel region costs more than it saves.
_MIN_ENTRIES_PER_THREAD = 20_000

# Targets read to guess whether all targets are 0 or 1 (the one-log pass).
_SOFT_GUESS_ENTRIES = 256

_PARAMETER_CONSTRAINTS = {
    "y_true": ["array-like", "sparse matrix"],
    "y_pred": ["array-like", list],
    "from_logits": ["boolean"],
    "sample_weight": ["array-like", None],
    "label_weight": [Interval(Real, 0, None, closed="left"), "array-like", None],
    "pos_weight": [Interval(Real, 0, None, closed="left"), "array-like", None],
    "label_smoothing": [Interval(Real, 0, 1, closed="both")],
    "eps": [Interval(Real, 0, 0.5, closed="left"), None],
    "reduction": [StrOptions({"mean", "sum", "none"})],
    "axis": [Options(Integral, {0, 1, -1}), None],
}


def _n_threads(n_entries):
    return int(max(1, min(max_threads(), n_entries // _MIN_ENTRIES_PER_THREAD)))


def _as_value_array(values, name):
    """A numeric ndarray of ndim 1 or 2 with at least one entry."""
    if sparse.issparse(values):
        raise ValueError(f"{name} must be a dense array; got a sparse matrix.")
    if type(values) is np.ndarray and values.dtype.kind in "biuf" and values.dtype.isnative:
        # check_array would hand such an array back unchanged; its generic
        # checks cost about 30 us a call, twice per loss: on a small batch,
        # more than the kernel.
        return _checked_shape(values, name)
    try:
        array = check_array(
            values,
            ensure_2d=False,
            allow_nd=True,
            dtype="numeric",
            ensure_all_finite=False,
            ensure_min_samples=0,
            ensure_min_features=0,
            input_name=name,
        )
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a numeric array: {exc}") from exc
    return _checked_shape(array, name)


def _checked_shape(array, name):
    """``array`` if it holds real numbers in one or two dimensions, else a ValueError."""
    if array.dtype.kind not in "biuf":
        raise ValueError(f"{name} must hold real numbers; got dtype {array.dtype}.")
    if array.ndim not in (1, 2):
        raise ValueError(
            f"{name} must be 1-D (n_samples,) or 2-D (n_samples, n_labels); "
            f"got shape {array.shape}."
        )
    if array.size == 0:
        raise ValueError(f"{name} is empty (shape {array.shape}).")
    return array


def _predictions_from_list(y_pred):
    """Stack ``MultiOutputClassifier.predict_proba``'s list of (n, 2) arrays."""
    columns = []
    for j, proba in enumerate(y_pred):
        proba = _as_value_array(proba, f"y_pred[{j}]")
        if proba.ndim != 2 or proba.shape[1] != 2:
            raise ValueError(
                f"y_pred[{j}] has shape {proba.shape}; a list of predictions must "
                "hold one (n_samples, 2) array per label. For estimators whose "
                "predict_proba returns fewer columns (a label seen with one class "
                "only), use skbce.bce_scorer, which reads the estimator's classes_."
            )
        columns.append(proba[:, 1])
    lengths = {len(c) for c in columns}
    if len(lengths) != 1:
        raise ValueError(
            f"The arrays in y_pred have different numbers of samples: {sorted(lengths)}."
        )
    return np.stack(columns, axis=1)


def _is_list_of_2d(y_pred):
    return (
        isinstance(y_pred, (list, tuple))
        and len(y_pred) > 0
        and all(hasattr(a, "shape") and len(a.shape) == 2 for a in y_pred)
    )


def _compute_dtype(y_true, y_pred):
    # float32 in, float32 math; anything else (including a float64 target)
    # computes in float64.
    if y_pred.dtype == np.float32 and y_true.dtype != np.float64:
        return np.float32
    return np.float64


def _integer_targets(y_true):
    """Integer or bool targets as the kernel reads them, without a float copy.

    int8, uint8 and int64 as they are, bool as a uint8 view; other integer
    types as int64 (which keeps a value outside [0, 1] outside, except a
    uint64 above 2**63, which wraps to a negative: invalid all the same).
    """
    if y_true.dtype == np.bool_:
        return np.ascontiguousarray(y_true).view(np.uint8)
    if y_true.dtype in (np.int8, np.uint8, np.int64):
        return np.ascontiguousarray(y_true)
    return np.ascontiguousarray(y_true, dtype=np.int64)


def _check_range(array, name, low, high, what):
    """Raise a ValueError if an entry is outside [low, high] or NaN."""
    flat = array.reshape(-1)
    if count_outside(flat, low, high, _n_threads(flat.size)):
        _raise_first_outside(array, name, low, high, what)


def _raise_first_outside(array, name, low, high, what):
    flat = array.reshape(-1)
    bad = np.flatnonzero(~((flat >= low) & (flat <= high)))[0]
    index = np.unravel_index(bad, array.shape)
    index = int(index[0]) if len(index) == 1 else tuple(int(i) for i in index)
    raise ValueError(f"{name} must {what}; found {flat[bad].item()!r} at index {index}.")


def _check_label_vector(values, n_labels, name, dtype):
    """A per-label weight: a number or one non-negative finite value per label."""
    vector = np.asarray(values, dtype=np.float64)
    if vector.ndim == 0:
        vector = np.full(n_labels, float(vector))
    if vector.shape != (n_labels,):
        raise ValueError(
            f"{name} must be a number or an array of shape ({n_labels},), one per "
            f"label; got shape {vector.shape}."
        )
    if not np.all(np.isfinite(vector)) or np.any(vector < 0):
        raise ValueError(f"{name} must be finite and non-negative; got {vector}.")
    return np.ascontiguousarray(vector, dtype=dtype)


class _Problem:
    """Validated inputs in the layout the kernel expects.

    ``y`` and ``prediction`` are C-contiguous (n_samples, n_labels) arrays of
    one floating dtype; weight vectors are of that dtype, empty when absent.
    ``pred_shape`` and ``pred_format`` describe ``y_pred`` as given, so that a
    gradient can be returned in the same layout.
    """

    def __init__(
        self,
        y_true,
        y_pred,
        *,
        from_logits,
        sample_weight,
        label_weight,
        pos_weight,
        label_smoothing,
        eps,
        part=False,
    ):
        # ``part``: a block of rows of a larger problem whose weights were checked.
        y_true = _as_value_array(y_true, "y_true")
        if _is_list_of_2d(y_pred):
            if from_logits:
                raise ValueError(
                    "y_pred as a list of per-label probability arrays cannot be "
                    "used with from_logits=True; pass an (n_samples, n_labels) "
                    "array of logits."
                )
            self.pred_format, self.n_list = "list", len(y_pred)
            y_pred = _predictions_from_list(y_pred)
        else:
            y_pred = _as_value_array(y_pred, "y_pred")
            self.pred_format = "array"
        self.pred_shape = y_pred.shape

        if (
            y_true.ndim == 1
            and y_pred.ndim == 2
            and y_pred.shape[1] == 2
            and self.pred_format == "array"
            and not from_logits
        ):
            # predict_proba of a binary classifier: column 1 is the positive class.
            self.pred_format = "two_columns"
            y_pred = y_pred[:, 1]
        if y_true.shape != y_pred.shape:
            raise ValueError(
                f"y_true and y_pred have inconsistent shapes: y_true {y_true.shape}, "
                f"y_pred {self.pred_shape}."
            )
        self.target_shape = y_true.shape

        dtype = _compute_dtype(y_true, y_pred)
        self.dtype = dtype
        # The values of y and prediction are validated by the kernel pass
        # itself (see ``run`` and the design notes in skbce/_bce.pyx), not
        # here: a separate pass over each array would cost as much as the loss.
        self.y_true = y_true  # as given, for error messages
        if y_true.dtype.kind in "biu" and not label_smoothing > 0:
            y = _integer_targets(y_true).reshape(y_true.shape[0], -1)
        else:
            y = np.ascontiguousarray(y_true, dtype=dtype).reshape(y_true.shape[0], -1)
        prediction = np.ascontiguousarray(y_pred, dtype=dtype).reshape(y.shape)
        if label_smoothing > 0:
            # Smoothing can move an invalid target into [0, 1], so these
            # targets are checked before, in a pass of their own (smoothing
            # costs a pass anyway).
            _check_range(y.reshape(y_true.shape), "y_true", 0.0, 1.0, "lie in [0, 1]")
            # Keras convention: pull every target towards 1/2.
            y = y * dtype(1 - label_smoothing) + dtype(label_smoothing / 2)
            self.hard_targets = False
        elif y_true.dtype.kind in "biu":
            # Integer targets in [0, 1] are 0 or 1; the kernel still checks
            # that they are in [0, 1].
            self.hard_targets = True
        else:
            # Unknown until the kernel has read every target: guess from the
            # first few, so that soft targets usually take the two-log pass
            # at once, and hard ones the one-log pass (``run`` re-runs it if
            # the guess was wrong).
            head = y.reshape(-1)[:_SOFT_GUESS_ENTRIES]
            self.hard_targets = not np.any((head > 0) & (head < 1))
        self.y, self.prediction = y, prediction
        n_samples, n_labels = y.shape

        if sample_weight is None:
            self.sample_weight = np.empty(0, dtype=dtype)
            self.sample_weight_sum = float(n_samples)
        elif part:
            # A block of rows of a larger problem: its weights were checked
            # as a whole, and may all be zero here.
            self.sample_weight = np.ascontiguousarray(sample_weight, dtype=dtype)
            self.sample_weight_sum = float(np.sum(self.sample_weight, dtype=np.float64))
        else:
            try:
                sw = _check_sample_weight(
                    sample_weight, y, dtype=dtype, ensure_non_negative=True
                )
            except ValueError as exc:
                if "sample_weight" in str(exc):
                    raise
                raise ValueError(f"Invalid sample_weight: {exc}") from exc
            self.sample_weight = np.ascontiguousarray(sw)
            self.sample_weight_sum = float(np.sum(sw, dtype=np.float64))
            if self.sample_weight_sum <= 0:
                raise ValueError("sample_weight must not be all zero.")

        if label_weight is None:
            self.label_weight = np.empty(0, dtype=dtype)
            self.label_weight_sum = float(n_labels)
        else:
            self.label_weight = _check_label_vector(
                label_weight, n_labels, "label_weight", dtype
            )
            self.label_weight_sum = float(np.sum(self.label_weight, dtype=np.float64))
            if self.label_weight_sum <= 0:
                raise ValueError("label_weight must not be all zero.")

        self.pos_weight_scalar = 1.0
        self.pos_weight = np.empty(0, dtype=dtype)
        if pos_weight is not None:
            if np.ndim(pos_weight) == 0:
                self.pos_weight_scalar = float(pos_weight)
            else:
                self.pos_weight = _check_label_vector(
                    pos_weight, n_labels, "pos_weight", dtype
                )

        self.from_logits = from_logits
        self.eps = float(np.finfo(dtype).eps) if eps is None else float(eps)

    def run(self, *, want_elementwise, want_gradient, grad_scale, drop):
        """One checked kernel pass; ``drop`` names a weight that cancels in the mean.

        The pass validates ``y`` and ``prediction`` as it reads them; on
        invalid values it raises the ValueError of ``_raise_invalid``. With
        ``hard_targets`` guessed true and a soft target found, the pass runs
        once more on the two-log path.
        """
        empty = np.empty(0, dtype=self.dtype)
        shape = self.y.shape
        loss_out = np.empty(shape if want_elementwise else (0, 0), dtype=self.dtype)
        grad_out = np.empty(shape if want_gradient else (0, 0), dtype=self.dtype)
        found = np.zeros(2, dtype=np.intp)
        arguments = (
            self.y,
            self.prediction,
            empty if drop == "sample_weight" else self.sample_weight,
            empty if drop == "label_weight" else self.label_weight,
            self.pos_weight,
            self.pos_weight_scalar,
            self.from_logits,
            self.eps,
            loss_out,
            grad_out,
            grad_scale,
            _n_threads(self.y.size),
        )
        total = bce_pass(*arguments, self.hard_targets, found)
        if found[0]:
            self._raise_invalid()
        if found[1] and self.hard_targets and not self.from_logits:
            # Speculation failed: a target lies strictly inside (0, 1). Checked
            # again although the values are known valid, so that a result
            # always comes from the same (checked) loop, rounding included.
            self.hard_targets = False
            total = bce_pass(*arguments, False, found)
        return total, loss_out, grad_out

    def _raise_invalid(self):
        """The kernel found an invalid value: report the first one.

        Indices are those of the targets' shape, (i,) for 1-D targets.
        """
        y = np.asarray(self.y_true, dtype=np.float64)
        prediction = self.prediction.reshape(self.target_shape)
        _check_range(y, "y_true", 0.0, 1.0, "lie in [0, 1]")
        if self.from_logits:
            big = float(np.finfo(self.dtype).max)
            _check_range(prediction, "y_pred", -big, big, "be finite logits")
        else:
            _check_range(prediction, "y_pred", 0.0, 1.0, "be probabilities in [0, 1]")
        # Unreachable: the kernel's bit tests and these comparisons accept
        # exactly the same values.
        raise RuntimeError("skbce: the loss kernel reported an invalid value not found again.")

    def gradient_like_pred(self, grad):
        """Lay out a (n_samples, n_labels) gradient the way y_pred came in."""
        if self.pred_format == "array":
            return grad.reshape(self.pred_shape)
        if self.pred_format == "two_columns":
            full = np.zeros(self.pred_shape, dtype=grad.dtype)
            full[:, 1] = grad[:, 0]
            return full
        return [
            np.column_stack([np.zeros_like(grad[:, j]), grad[:, j]])
            for j in range(self.n_list)
        ]


def _scale_and_drop(reduction, axis, sample_weight_sum, label_weight_sum):
    """Scale of the gradient and the weight that cancels out of a mean.

    The mean over labels of one sample does not depend on that sample's
    weight, and the mean over samples of one label not on that label's weight.
    """
    if reduction != "mean":
        return None, 1.0
    if axis is None:
        return None, 1.0 / (sample_weight_sum * label_weight_sum)
    if axis == 1:
        return "sample_weight", 1.0 / label_weight_sum
    return "label_weight", 1.0 / sample_weight_sum


def _evaluate(y_true, y_pred, want_loss, want_gradient, *, reduction, axis, **options):
    if is_dask_collection(y_true, y_pred, options["sample_weight"]):
        from skbce._dask import evaluate  # lazy, blockwise

        return evaluate(y_true, y_pred, want_loss, want_gradient, reduction=reduction,
                        axis=axis, **options)
    # With sklearn.set_config(array_api_dispatch=True), predictions of another
    # namespace (torch, array-api-strict...) are computed in it, the other
    # inputs moved there (as log_loss does); without, they are converted to
    # NumPy below, as scikit-learn's metrics convert them.
    xp, is_array_api = get_namespace(y_pred, remove_types=(str, list, tuple))
    if is_array_api and not _is_numpy_namespace(xp):
        from skbce._array_api import evaluate

        return evaluate(xp, y_true, y_pred, want_loss, want_gradient, reduction=reduction,
                        axis=axis, **options)
    if reduction == "none" and axis is not None:
        raise ValueError("axis can only be used with reduction='mean' or 'sum'.")
    axis = None if axis is None else axis % 2
    if sparse.issparse(y_true):
        return _evaluate_sparse_targets(y_true, y_pred, want_loss, want_gradient,
                                        reduction=reduction, axis=axis, **options)
    problem = _Problem(y_true, y_pred, **options)
    one_label = len(problem.target_shape) == 1
    drop, scale = _scale_and_drop(reduction, axis, problem.sample_weight_sum,
                                  problem.label_weight_sum)

    elementwise = want_loss and (reduction == "none" or axis is not None)
    total, loss_out, grad_out = problem.run(
        want_elementwise=elementwise,
        want_gradient=want_gradient,
        grad_scale=scale,
        drop=drop,
    )

    loss = None
    if want_loss:
        if reduction == "none":
            loss = loss_out.reshape(problem.target_shape)
        elif axis is None:
            loss = float(total * scale)
        else:
            reduced = loss_out.sum(axis=axis, dtype=np.float64) * scale
            loss = reduced.astype(problem.dtype, copy=False)
            if one_label and axis == 1:
                loss = loss.reshape(-1)
    gradient = problem.gradient_like_pred(grad_out) if want_gradient else None
    return loss, gradient


def _check_sparse_targets(y_true):
    """The stored values of a canonical CSR ``y_true`` lie in [0, 1]: else a ValueError."""
    data = y_true.data
    bad = ~((data >= 0) & (data <= 1))
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        row = int(np.searchsorted(y_true.indptr, first, side="right")) - 1
        raise ValueError(
            f"y_true must lie in [0, 1]; found {data[first].item()!r} at index "
            f"({row}, {int(y_true.indices[first])})."
        )


# Entries of the dense block of rows that a sparse y_true is read in.
_SPARSE_BLOCK_ENTRIES = 2**20


def _evaluate_sparse_targets(y_true, y_pred, want_loss, want_gradient, *, reduction, axis,
                             **options):
    """:func:`_evaluate` of a scipy.sparse ``y_true``, in blocks of rows.

    Each block of ``_SPARSE_BLOCK_ENTRIES`` entries is densified and
    evaluated by the kernel as a dense ``y_true`` is, with the scale of the
    whole problem; the blocks' weighted sums (float64) are added up. So no
    ``(n_samples, n_labels)`` copy of the targets is made, and the result is
    the dense one up to the order of the float64 additions.
    """
    y_true = sparse.csr_matrix(y_true)  # any format; CSR's arrays are shared, not copied
    if y_true.dtype.kind not in "biuf":
        raise ValueError(f"y_true must hold real numbers; got dtype {y_true.dtype}.")
    if not y_true.has_canonical_format:
        y_true = y_true.copy()
        y_true.sum_duplicates()  # a repeated entry's value is the sum, as toarray gives
    _check_sparse_targets(y_true)
    if y_true.shape[0] * y_true.shape[1] == 0:
        raise ValueError(f"y_true is empty (shape {y_true.shape}).")
    y_pred_format = "array"
    if _is_list_of_2d(y_pred):
        if options["from_logits"]:
            raise ValueError(
                "y_pred as a list of per-label probability arrays cannot be used with "
                "from_logits=True; pass an (n_samples, n_labels) array of logits."
            )
        y_pred_format, n_list = "list", len(y_pred)
        y_pred = _predictions_from_list(y_pred)
    else:
        y_pred = _as_value_array(y_pred, "y_pred")
    if y_pred.shape != y_true.shape:
        raise ValueError(
            f"y_true and y_pred have inconsistent shapes: y_true {y_true.shape}, "
            f"y_pred {y_pred.shape}."
        )
    n_samples, n_labels = y_true.shape
    sample_weight = options.pop("sample_weight")
    label_weight = options["label_weight"]
    dtype = _compute_dtype(y_true, y_pred)
    if sample_weight is None:
        sample_weight_sum = float(n_samples)
    else:
        sample_weight = _check_sample_weight(sample_weight, y_pred, dtype=dtype,
                                             ensure_non_negative=True)
        sample_weight_sum = float(np.sum(sample_weight, dtype=np.float64))
        if sample_weight_sum <= 0:
            raise ValueError("sample_weight must not be all zero.")
    label_weight_sum = float(n_labels)
    if label_weight is not None:
        label_weight_sum = float(np.sum(_check_label_vector(
            label_weight, n_labels, "label_weight", np.float64)))
        if label_weight_sum <= 0:
            raise ValueError("label_weight must not be all zero.")
    drop, scale = _scale_and_drop(reduction, axis, sample_weight_sum, label_weight_sum)
    elementwise = want_loss and (reduction == "none" or axis is not None)

    total = 0.0
    per_label = np.zeros(n_labels) if elementwise and axis == 0 else None
    loss_full = (np.empty((n_samples, n_labels) if reduction == "none" else n_samples, dtype)
                 if elementwise and axis != 0 else None)
    gradient = np.empty((n_samples, n_labels), dtype) if want_gradient else None
    step = max(1, _SPARSE_BLOCK_ENTRIES // n_labels)
    for start in range(0, n_samples, step):
        rows = slice(start, min(start + step, n_samples))
        part = _Problem(
            y_true[rows].toarray(), y_pred[rows], part=True,
            sample_weight=None if sample_weight is None else sample_weight[rows], **options)
        try:
            block_total, loss_out, grad_out = part.run(
                want_elementwise=elementwise, want_gradient=want_gradient, grad_scale=scale,
                drop=drop)
        except ValueError:
            # Report the first invalid value with its index in the whole input.
            _check_range(y_pred, "y_pred", *(
                (-float(np.finfo(dtype).max), float(np.finfo(dtype).max), "be finite logits")
                if options["from_logits"] else (0.0, 1.0, "be probabilities in [0, 1]")))
            raise
        total += block_total
        if per_label is not None:
            per_label += loss_out.sum(axis=0, dtype=np.float64)
        elif loss_full is not None:
            loss_full[rows] = (loss_out if reduction == "none"
                               else loss_out.sum(axis=1, dtype=np.float64) * scale)
        if want_gradient:
            gradient[rows] = grad_out

    loss = None
    if want_loss:
        if reduction == "none" or axis == 1:
            loss = loss_full
        elif axis is None:
            loss = float(total * scale)
        else:
            loss = (per_label * scale).astype(dtype, copy=False)
    if want_gradient and y_pred_format == "list":
        gradient = [np.column_stack([np.zeros_like(gradient[:, j]), gradient[:, j]])
                    for j in range(n_list)]
    return loss, gradient


_DOC_PARAMETERS = """
    Parameters
    ----------
    y_true : {array-like, sparse matrix} of shape (n_samples,) or (n_samples, n_labels)
        Targets in [0, 1]: 0/1 labels (bool, int or float) or soft targets.
        A scipy.sparse matrix or array (any format) is read in blocks of rows,
        never densified as a whole.

    y_pred : array-like or list of arrays
        Predicted probabilities (or logits with ``from_logits=True``) of the
        same shape as ``y_true``. Also accepted: an (n_samples, 2) array for
        1-D ``y_true`` (column 1 is the positive class, as in
        ``predict_proba``), and a list of ``n_labels`` arrays of shape
        (n_samples, 2), as ``MultiOutputClassifier.predict_proba`` returns.

    from_logits : bool, default=False
        Whether ``y_pred`` holds logits (log-odds) rather than probabilities.
        The logit path is exact and finite for any finite logit.

    sample_weight : array-like of shape (n_samples,), default=None
        Non-negative weight of each sample.

    label_weight : float or array-like of shape (n_labels,), default=None
        Non-negative weight of each label. The weight of entry ``(i, j)`` is
        ``sample_weight[i] * label_weight[j]``.

    pos_weight : float or array-like of shape (n_labels,), default=None
        Weight of the positive term, ``-(pos_weight * y * log(p) + (1 - y) *
        log(1 - p))``, as in PyTorch's ``BCEWithLogitsLoss``. None means 1.

    label_smoothing : float in [0, 1], default=0.0
        Replace targets ``y`` by ``y * (1 - label_smoothing) +
        label_smoothing / 2`` (the Keras convention).

    eps : float, default=None
        Probabilities are clipped to ``[eps, 1 - eps]``. None means
        ``np.finfo(dtype).eps``, scikit-learn's convention. Ignored for logits.

    reduction : {"mean", "sum", "none"}, default="mean"
        ``"mean"`` is ``sum(w * l) / sum(w)``, ``"sum"`` is ``sum(w * l)``,
        ``"none"`` returns the weighted elementwise losses ``w * l``.

    axis : {None, 0, 1}, default=None
        With ``"mean"`` or ``"sum"``: None reduces over everything, ``1``
        gives one value per sample (Keras' convention), ``0`` one value per
        label.
"""


@validate_params(_PARAMETER_CONSTRAINTS, prefer_skip_nested_validation=True)
def binary_cross_entropy(
    y_true,
    y_pred,
    *,
    from_logits=False,
    sample_weight=None,
    label_weight=None,
    pos_weight=None,
    label_smoothing=0.0,
    eps=None,
    reduction="mean",
    axis=None,
):
    """Binary cross-entropy (log loss) of binary or multi-label predictions.

    For targets ``y`` in [0, 1] and predicted probabilities ``p`` the loss of
    one entry is ``-(y * log(p) + (1 - y) * log(1 - p))`` (natural log); the
    default reduction is the mean over all entries, i.e. over samples *and*
    labels. Every label is scored as its own binary variable, and soft
    targets are welcome; :func:`sklearn.metrics.log_loss`, given a
    multi-label indicator matrix, sums only the ``y * log(p)`` terms of each
    row (and warns that the rows do not sum to one).
    {parameters}
    Returns
    -------
    loss : float or ndarray
        A float for ``reduction="mean"`` or ``"sum"`` without ``axis``; an
        array of shape (n_labels,) for ``axis=0``, (n_samples,) for ``axis=1``
        and the shape of ``y_true`` for ``reduction="none"``.

    See Also
    --------
    bce_gradient : The gradient of this loss with respect to ``y_pred``.
    bce_loss_and_gradient : Loss and gradient from one pass over the data.
    sklearn.metrics.log_loss : The multiclass log loss.

    Examples
    --------
    >>> from skbce import binary_cross_entropy
    >>> round(binary_cross_entropy([1, 0, 1], [0.8, 0.3, 0.9]), 5)
    0.22839
    >>> binary_cross_entropy([1, 0, 1], [0.8, 0.3, 0.9], reduction="none").round(5)
    array([0.22314, 0.35667, 0.10536])
    >>> Y = [[1, 0, 1], [0, 1, 1]]
    >>> P = [[0.8, 0.3, 0.9], [0.2, 0.6, 0.7]]
    >>> round(binary_cross_entropy(Y, P), 4)
    0.296
    >>> binary_cross_entropy(Y, P, axis=0).round(4)
    array([0.2231, 0.4338, 0.231 ])
    """
    loss, _ = _evaluate(
        y_true,
        y_pred,
        True,
        False,
        reduction=reduction,
        axis=axis,
        from_logits=from_logits,
        sample_weight=sample_weight,
        label_weight=label_weight,
        pos_weight=pos_weight,
        label_smoothing=label_smoothing,
        eps=eps,
    )
    return loss


@validate_params(_PARAMETER_CONSTRAINTS, prefer_skip_nested_validation=True)
def bce_gradient(
    y_true,
    y_pred,
    *,
    from_logits=False,
    sample_weight=None,
    label_weight=None,
    pos_weight=None,
    label_smoothing=0.0,
    eps=None,
    reduction="mean",
    axis=None,
):
    """Gradient of :func:`binary_cross_entropy` with respect to ``y_pred``.

    The derivative of the loss with the same options (and the same
    ``reduction``) with respect to every entry of ``y_pred`` -- the
    probabilities, or the logits when ``from_logits=True`` (then it is
    ``w * (sigmoid(z) - y)`` for ``pos_weight=1``, before reduction scaling).
    With ``axis``, each entry is differentiated within its own reduced value.
    Probabilities are differentiated at their clipped value.
    {parameters}
    Returns
    -------
    gradient : ndarray or list of ndarray
        Same shape (or list layout) as ``y_pred``; for an (n_samples, 2)
        ``y_pred`` column 0 is zero, as the loss reads only column 1.

    See Also
    --------
    binary_cross_entropy : The loss itself.
    bce_loss_and_gradient : Loss and gradient from one pass over the data.

    Examples
    --------
    >>> from skbce import bce_gradient
    >>> bce_gradient([1.0, 0.0], [0.0, 2.0], from_logits=True, reduction="sum").round(4)
    array([-0.5   ,  0.8808])
    """
    _, gradient = _evaluate(
        y_true,
        y_pred,
        False,
        True,
        reduction=reduction,
        axis=axis,
        from_logits=from_logits,
        sample_weight=sample_weight,
        label_weight=label_weight,
        pos_weight=pos_weight,
        label_smoothing=label_smoothing,
        eps=eps,
    )
    return gradient


@validate_params(_PARAMETER_CONSTRAINTS, prefer_skip_nested_validation=True)
def bce_loss_and_gradient(
    y_true,
    y_pred,
    *,
    from_logits=False,
    sample_weight=None,
    label_weight=None,
    pos_weight=None,
    label_smoothing=0.0,
    eps=None,
    reduction="mean",
    axis=None,
):
    """Loss and gradient of binary cross-entropy from a single pass.

    Equal to ``(binary_cross_entropy(...), bce_gradient(...))`` with the same
    arguments, at the cost of one read of the data.
    {parameters}
    Returns
    -------
    loss : float or ndarray
        As returned by :func:`binary_cross_entropy`.
    gradient : ndarray or list of ndarray
        As returned by :func:`bce_gradient`.

    See Also
    --------
    binary_cross_entropy : The loss alone.
    bce_gradient : The gradient alone.

    Examples
    --------
    >>> from skbce import bce_loss_and_gradient
    >>> loss, grad = bce_loss_and_gradient([1, 0], [0.5, 0.5], reduction="sum")
    >>> round(loss, 4), grad
    (1.3863, array([-2.,  2.]))
    """
    return _evaluate(
        y_true,
        y_pred,
        True,
        True,
        reduction=reduction,
        axis=axis,
        from_logits=from_logits,
        sample_weight=sample_weight,
        label_weight=label_weight,
        pos_weight=pos_weight,
        label_smoothing=label_smoothing,
        eps=eps,
    )


for _function in (binary_cross_entropy, bce_gradient, bce_loss_and_gradient):
    _function.__doc__ = _function.__doc__.replace("{parameters}", _DOC_PARAMETERS)
del _function
