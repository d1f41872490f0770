"""Targets of MultiLabelLogistic: validation, encoding as (n_samples, n_labels), label sums.

A sparse 2-D target (scipy.sparse matrix or array, any format) stays sparse:
it is encoded as a CSC matrix (the solvers read blocks of labels, CSC's
columns) whose non-zeros are validated and stored as ``uint8`` (hard
labels) or floats (soft ones). No ``(n_samples, n_labels)`` array is made.
"""

import numpy as np
from scipy import sparse
from sklearn.utils.multiclass import type_of_target

from skbce._dispatch import is_dask_collection

__all__ = ["encode_targets"]


def encode_targets(estimator, y, classes, dtype, first):
    """Targets as an (n_samples, n_labels) float array in [0, 1].

    Sets ``estimator``'s ``classes_``, ``_one_d`` and ``_y_dtype`` when
    ``first``; otherwise checks ``y`` against them.
    """
    if sparse.issparse(y):
        if y.ndim == 2 and y.shape[1] != 1:
            return _encode_sparse(estimator, y, classes, dtype, first)
        y = y.toarray()  # one column: a 1-D target, n values
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        # A column vector (y.reshape(-1, 1), df[["target"]]) is one binary
        # target, as for OneVsRestClassifier: classes_ then holds its two
        # classes. Label indices ([0]) would read, to anything that looks
        # at classes_ (scorers), as "only class 0 was seen in training".
        y = y[:, 0]
    if y.ndim == 1:
        y_type = type_of_target(y, input_name="y", raise_unknown=True)
        if y_type == "continuous":
            values = y.astype(np.float64)
            try:
                _check_unit_interval(values)
            except ValueError as exc:
                raise ValueError(f"{exc} (Unknown label type: continuous.)") from None
            labels = np.array([0, 1])
            Y = values
        elif y_type == "binary":
            if first:
                labels = np.unique(y) if classes is None else np.unique(classes)
            else:
                labels = estimator.classes_
                if not np.all(np.isin(np.unique(y), labels)):
                    raise ValueError(
                        f"y holds labels {np.setdiff1d(np.unique(y), labels)} "
                        f"not in classes_ {labels}."
                    )
            if len(labels) > 2:
                raise ValueError(
                    "Only binary classification is supported for 1-D targets; "
                    f"classes has {len(labels)} values. Pass a 2-D indicator "
                    "matrix for multi-label targets."
                )
            if len(labels) < 2:
                raise ValueError(
                    "MultiLabelLogistic needs samples of at least 2 classes in a "
                    f"1-D target, but the data contains only one class: "
                    f"{labels[0]!r}. Pass classes= to partial_fit, or a 2-D "
                    "target of two or more labels to fit a label that is constant."
                )
            Y = (y == labels[1]).astype(np.float64)
        elif y_type in ("multiclass",):
            raise ValueError(
                "Only binary classification is supported. The type of the target "
                f"is {y_type}: 1-D targets must have two classes (or be "
                "probabilities in [0, 1]); for multi-label targets pass a 2-D "
                "0/1 indicator matrix."
            )
        else:
            raise ValueError(f"Unknown label type: {y_type!r} for a 1-D target.")
        Y = Y.reshape(-1, 1)
        one_d = True
    elif y.ndim == 2:
        if y.dtype.kind not in "biuf":
            try:
                y = y.astype(np.float64)
            except (TypeError, ValueError):
                raise ValueError(
                    "y must hold numbers in [0, 1] (a multi-label indicator matrix or "
                    f"probabilities); got dtype {y.dtype} (Unknown label type)."
                ) from None
        # Integer labels are checked as they are: no float copy.
        Y = y if y.dtype.kind in "biu" else y.astype(np.float64)
        try:
            _check_unit_interval(Y)
        except ValueError as exc:
            y_type = type_of_target(y, input_name="y")
            raise ValueError(f"{exc} (Unknown label type: {y_type}.)") from None
        labels = np.arange(Y.shape[1])
        one_d = False
        if classes is not None and first and len(np.asarray(classes)) != Y.shape[1]:
            raise ValueError(
                f"classes has {len(np.asarray(classes))} entries but y has "
                f"{Y.shape[1]} labels; for a 2-D target classes holds the label "
                "indices."
            )
    else:
        raise ValueError(f"y must be 1-D or 2-D; got shape {y.shape}.")
    _remember_or_check(estimator, first, labels, one_d, y.dtype if not one_d else None,
                       None, y.shape)
    # Hard targets are stored as uint8 (a float copy of a large label
    # matrix would dominate the memory of a fit); the solvers convert
    # blocks of labels to the floating dtype as they go.
    if Y.dtype.kind in "biu" or np.all((Y == 0) | (Y == 1)):
        return np.ascontiguousarray(Y, dtype=np.uint8)
    return np.ascontiguousarray(Y, dtype=dtype)


def _remember_or_check(estimator, first, labels, one_d, y_dtype, y_sparse, shape):
    """Store what the targets were (``first``), or check ``y`` against it."""
    if first:
        estimator.classes_ = labels
        estimator._one_d = one_d
        estimator._y_dtype = y_dtype
        # "matrix", "array" (scipy.sparse's two kinds) or None: what predict returns.
        estimator._y_sparse = y_sparse
    elif one_d != estimator._one_d or (not one_d and shape[1] != len(estimator.classes_)):
        raise ValueError(
            f"y has shape {shape}, but the model was fitted on "
            + ("1-D targets." if estimator._one_d else
               f"{len(estimator.classes_)} labels.")
        )


def _encode_sparse(estimator, y, classes, dtype, first):
    """A sparse 2-D target as a CSC matrix, checked through its stored values only."""
    kind = "matrix" if isinstance(y, sparse.spmatrix) else "array"
    Y = sparse.csc_matrix(y)  # a copy of the non-zeros at most; csc_matrix for old scipy's API
    if Y.dtype.kind not in "biuf":
        raise ValueError(
            "Unknown label type: a 2-D target must hold numbers in [0, 1] (a multi-label "
            f"indicator matrix or probabilities); got dtype {Y.dtype}."
        )
    Y.sum_duplicates()  # COO may repeat an entry: its value is the sum
    values = Y.data if Y.dtype.kind in "biu" else Y.data.astype(np.float64)
    try:
        _check_unit_interval(values)
    except ValueError as exc:
        raise ValueError(f"Unknown label type: sparse targets. {exc}") from None
    if classes is not None and first and len(np.asarray(classes)) != Y.shape[1]:
        raise ValueError(
            f"classes has {len(np.asarray(classes))} entries but y has {Y.shape[1]} "
            "labels; for a 2-D target classes holds the label indices."
        )
    _remember_or_check(estimator, first, np.arange(Y.shape[1]), False, y.dtype, kind, Y.shape)
    hard = Y.dtype.kind in "biu" or bool(np.all((values == 0) | (values == 1)))
    Y = Y.astype(np.uint8 if hard else dtype)
    Y.eliminate_zeros()
    return Y


def _weighted_column_sums(Y, sample_weight):
    """``sample_weight @ Y`` in float64, without a float copy of all of ``Y``."""
    if sparse.issparse(Y):
        if sample_weight is None:
            return np.asarray(Y.sum(axis=0, dtype=np.float64)).ravel()
        return np.asarray(Y.T @ np.asarray(sample_weight, dtype=np.float64)).ravel()
    if is_dask_collection(Y):
        from skbce._dask import weighted_column_sums

        return weighted_column_sums(Y, sample_weight)
    total = np.zeros(Y.shape[1])
    chunk = max(1, 2**16 // max(1, Y.shape[1]))  # rows per float block: 512 KiB
    for start in range(0, Y.shape[0], chunk):
        block = Y[start:start + chunk].astype(np.float64)
        if sample_weight is None:
            total += block.sum(axis=0)
        else:
            total += np.asarray(sample_weight[start:start + chunk], dtype=np.float64) @ block
    return total


def _nullable_label_dtype(y):
    """The NumPy dtype of a pandas target of nullable integers or booleans.

    None for anything else, including a target whose columns are all NumPy
    dtypes (validate_data keeps those).
    """
    if hasattr(y, "columns"):  # a DataFrame
        dtypes = list(y.dtypes)
    else:
        dtypes = [getattr(y, "dtype", None)]
    numpy_dtypes = []
    for dtype in dtypes:
        numpy_dtype = dtype if isinstance(dtype, np.dtype) else getattr(dtype, "numpy_dtype", None)
        if numpy_dtype is None or numpy_dtype.kind not in "biu":
            return None
        numpy_dtypes.append(numpy_dtype)
    if all(isinstance(dtype, np.dtype) for dtype in dtypes):
        return None
    return np.result_type(*numpy_dtypes)


def _check_unit_interval(values):
    if values.dtype.kind in "biu":
        if values.size == 0 or (values.min() >= 0 and values.max() <= 1):
            return
    elif not np.all(np.isfinite(values)):
        raise ValueError("Targets must be finite.")
    bad = (values < 0) | (values > 1)
    if np.any(bad):
        index = np.unravel_index(np.flatnonzero(bad)[0], values.shape)
        raise ValueError(
            f"y must hold 0/1 labels or probabilities in [0, 1] (soft targets); found "
            f"{values[index].item()!r} at index {tuple(int(i) for i in index)}. Continuous "
            "targets outside [0, 1] are regression targets."
        )
