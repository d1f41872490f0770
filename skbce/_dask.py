"""skbce on dask arrays: the loss, predictions and training data, block by block.

Design: every computation here is the in-memory one applied to blocks of
whole rows, so there is one implementation of the arithmetic. A row's loss,
gradient and prediction depend on that row alone; only the reductions over
rows -- a sum, a mean and its denominator, the sum of the sample weights --
combine blocks, and they do so by adding per-block sums. Inputs are first
rechunked to blocks of whole rows that line up across arrays, as dask-ml
does; unknown chunk sizes (from a dask dataframe) cannot be lined up and are
an error.
"""

import dask
import dask.array as da
import numpy as np
from scipy import sparse

__all__ = ["as_row_blocks", "evaluate", "predict_blockwise"]


def as_row_blocks(array, name, row_chunks=None):
    """``array`` as a dask array of whole rows, with ``row_chunks`` if given.

    A numpy array or sparse matrix is wrapped (then ``row_chunks`` is
    needed); a dask array chunked along its columns is rechunked to one
    chunk of columns.
    """
    if not isinstance(array, da.Array):
        if dask.is_dask_collection(array):
            raise ValueError(
                f"{name} must be a dask array; got a {type(array).__name__}. Convert a dask "
                "dataframe with .to_dask_array(lengths=True)."
            )
        if not hasattr(array, "shape"):
            array = np.asarray(array)
        if sparse.issparse(array):
            # Blocks of rows of a CSR matrix stay CSR (not numpy object arrays).
            array = sparse.csr_matrix(array)
        array = da.from_array(array, chunks=(row_chunks,) + (-1,) * (array.ndim - 1),
                              asarray=not sparse.issparse(array))
    if array.ndim == 0 or any(np.isnan(size) for size in array.chunks[0]):
        raise ValueError(
            f"{name} has unknown chunk sizes along its rows (shape {array.shape}): its blocks "
            "cannot be matched with those of the other arrays. Call "
            f"{name}.compute_chunk_sizes() first, or convert a dask dataframe with "
            ".to_dask_array(lengths=True)."
        )
    if array.ndim > 1 and array.numblocks[1:] != (1,) * (array.ndim - 1):
        array = array.rechunk({axis: -1 for axis in range(1, array.ndim)})
    if row_chunks is None and 0 in array.chunks[0] and array.shape[0] > 0:
        # Empty blocks hold nothing, and some of dask's reductions fail on them.
        array = array.rechunk({0: tuple(size for size in array.chunks[0] if size)})
    if row_chunks is not None and array.chunks[0] != tuple(row_chunks):
        if array.shape[0] != sum(row_chunks):
            raise ValueError(
                f"{name} has {array.shape[0]} rows; expected {sum(row_chunks)}."
            )
        array = array.rechunk({0: row_chunks})
    return array


def _row_blocks(array):
    """The delayed blocks of a dask array of whole rows, in order."""
    return list(array.to_delayed().ravel())


# -- the loss -----------------------------------------------------------------


def evaluate(y_true, y_pred, want_loss, want_gradient, *, reduction, axis, **options):
    """:func:`skbce.metrics._evaluate` on dask arrays: lazy results.

    Each block of rows is evaluated in memory; an elementwise or per-sample
    result is the concatenation of the blocks', a per-label or total one the
    sum of the blocks' sums, scaled by the global denominator of a mean.
    """
    from skbce.metrics import _compute_dtype

    if reduction == "none" and axis is not None:
        raise ValueError("axis can only be used with reduction='mean' or 'sum'.")
    if isinstance(y_pred, (list, tuple)):
        raise ValueError(
            "y_pred as a list of per-label arrays is not supported with dask arrays; pass "
            "one (n_samples, n_labels) array."
        )
    sample_weight = options.pop("sample_weight")
    reference = next(a for a in (y_pred, y_true, sample_weight) if dask.is_dask_collection(a))
    reference = as_row_blocks(reference, "y_pred" if reference is y_pred else "y_true")
    rows = reference.chunks[0]
    y_true = as_row_blocks(y_true, "y_true", rows)
    y_pred = as_row_blocks(y_pred, "y_pred", rows)
    if sample_weight is not None:
        sample_weight = as_row_blocks(sample_weight, "sample_weight", rows)
        if sample_weight.ndim != 1:
            raise ValueError(
                f"sample_weight must be 1-D (n_samples,); got shape {sample_weight.shape}."
            )
    if y_true.ndim not in (1, 2) or y_pred.ndim not in (1, 2):
        raise ValueError(
            "y_true and y_pred must be 1-D or 2-D; got shapes "
            f"{y_true.shape} and {y_pred.shape}."
        )
    two_columns = (y_true.ndim == 1 and y_pred.ndim == 2 and y_pred.shape[1] == 2
                   and not options["from_logits"])
    if not two_columns and y_true.shape != y_pred.shape:
        raise ValueError(
            f"y_true and y_pred have inconsistent shapes: y_true {y_true.shape}, "
            f"y_pred {y_pred.shape}."
        )
    dtype = np.dtype(_compute_dtype(y_true, y_pred[:, 1] if two_columns else y_pred))
    n_labels = 1 if y_true.ndim == 1 else y_true.shape[1]
    axis = None if axis is None else axis % 2

    # What each block computes, and the global factor applied to it.
    block_reduction, block_axis, scale = reduction, axis, None
    block_options = dict(options)
    if reduction == "mean" and axis != 1:
        # Sums per block; the mean's denominator is global.
        block_reduction = "sum"
        weight_total = _weight_total(sample_weight, y_true.shape[0])
        if axis == 0:
            # The mean over samples of one label does not depend on its weight.
            block_options["label_weight"] = None
            scale = 1.0 / weight_total
        else:
            scale = 1.0 / (weight_total * _label_weight_total(options["label_weight"], n_labels))
    per_block = (not want_loss or reduction == "none" or block_axis == 1)

    blocks = [
        dask.delayed(_evaluate_block, nout=2, pure=True)(
            yt, yp, sw, want_loss, want_gradient, block_reduction, block_axis, block_options,
            dtype)
        for yt, yp, sw in zip(_row_blocks(y_true), _row_blocks(y_pred),
                              _row_blocks(sample_weight) if sample_weight is not None
                              else [None] * len(rows))
    ]
    loss = gradient = None
    if want_loss:
        if per_block:
            shape = y_true.shape[1:] if reduction == "none" else ()
            loss = da.concatenate([
                da.from_delayed(block[0], shape=(size,) + shape, dtype=dtype)
                for block, size in zip(blocks, rows)])
        else:
            shape = (n_labels,) if axis == 0 else ()
            out = np.float64 if axis is None else dtype
            loss = da.stack([da.from_delayed(block[0], shape=shape, dtype=out)
                             for block in blocks]).sum(axis=0, dtype=np.float64)
            if scale is not None:
                loss = loss * scale
            loss = loss.astype(out)
    if want_gradient:
        gradient = da.concatenate([
            da.from_delayed(block[1], shape=(size,) + y_pred.shape[1:], dtype=dtype)
            for block, size in zip(blocks, rows)])
        if scale is not None:
            gradient = (gradient * scale).astype(dtype)
    return loss, gradient


def _evaluate_block(y_true, y_pred, sample_weight, want_loss, want_gradient, reduction, axis,
                    options, dtype):
    """The in-memory loss of one block of rows.

    An empty block contributes nothing. A block whose sample weights are all
    zero (which the in-memory functions reject, as a whole data set) is
    checked like the others and contributes zero.
    """
    from skbce.metrics import _evaluate

    n_labels = 1 if y_true.ndim == 1 else y_true.shape[1]
    factor = 1.0
    if sample_weight is not None and not np.any(sample_weight):
        sample_weight, factor = None, 0.0
    if len(y_true) == 0:
        loss = gradient = None
        if want_loss:
            loss = (np.zeros(y_true.shape, dtype) if reduction == "none"
                    else np.zeros(0, dtype) if axis == 1
                    else np.zeros(n_labels, dtype) if axis == 0 else np.zeros(()))
        if want_gradient:
            gradient = np.zeros(y_pred.shape, dtype)
        return loss, gradient
    loss, gradient = _evaluate(y_true, y_pred, want_loss, want_gradient, reduction=reduction,
                               axis=axis, sample_weight=sample_weight, **options)
    if factor != 1.0 and not (reduction == "mean" and axis == 1):
        # (The mean over the labels of one sample does not depend on its weight.)
        loss = None if loss is None else loss * factor
        gradient = None if gradient is None else gradient * factor
    return (None if loss is None else np.asarray(loss)), gradient


def _weight_total(sample_weight, n_samples):
    """The sum of the sample weights (lazy), checked when computed."""
    if sample_weight is None:
        return float(n_samples)
    return da.map_blocks(_positive_total, sample_weight.sum(dtype=np.float64), dtype=np.float64)


def _positive_total(total):
    if not total > 0:
        raise ValueError("sample_weight must not be all zero.")
    return total


def _label_weight_total(label_weight, n_labels):
    if label_weight is None:
        return float(n_labels)
    total = float(np.sum(np.broadcast_to(np.asarray(label_weight, dtype=np.float64),
                                         (n_labels,))))
    if total <= 0:
        raise ValueError("label_weight must not be all zero.")
    return total


# -- predictions --------------------------------------------------------------


def predict_blockwise(method, X, n_features):
    """``method`` (a bound prediction method) applied to each block of rows of ``X``.

    Lazy; the blocks' results are concatenated. A block is a numpy array or
    a sparse matrix of whole rows (``X`` is rechunked to one chunk of
    columns).
    """
    X = as_row_blocks(X, "X")
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D (n_samples, n_features); got shape {X.shape}.")
    # The output's dtype and columns, from a one-row prediction.
    dtype = X.dtype if X.dtype in (np.float32, np.float64) else np.float64
    sample = method(np.zeros((1, n_features), dtype=dtype))
    if sample.ndim == 1:
        return X.map_blocks(method, drop_axis=1, chunks=(X.chunks[0],), meta=sample[:0])
    return X.map_blocks(method, chunks=(X.chunks[0], sample.shape[1:]), meta=sample[:0])


# -- training data --------------------------------------------------------------


def training_data(estimator, X, y, sample_weight, solver):
    """Validated training data on the cluster for :meth:`MultiLabelLogistic.fit`.

    Returns ``X`` (blocks of whole rows), the encoded targets ``Y`` (uint8
    for hard targets, else ``X``'s dtype; 2-D) and ``sample_weight`` (or
    None), dask arrays with the same row chunks, persisted once: every later
    pass reads the workers' copies, however ``X`` was built. Sets the
    estimator's ``classes_``, ``_one_d``, ``_y_dtype`` and ``n_features_in_``.
    """
    from skbce.linear_model._dask_problem import _client

    client = _client()
    X = as_row_blocks(X, "X")
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D (n_samples, n_features); got shape {X.shape}.")
    rows = X.chunks[0]
    y = as_row_blocks(y, "y", rows)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]  # a column vector is one binary target, as in memory
    if y.ndim not in (1, 2):
        raise ValueError(f"y must be 1-D or 2-D; got shape {y.shape}.")
    if sample_weight is not None:
        sample_weight = as_row_blocks(sample_weight, "sample_weight", rows)
        if sample_weight.ndim != 1:
            raise ValueError(
                f"sample_weight must be 1-D (n_samples,); got shape {sample_weight.shape}.")
    if solver == "newton-cholesky" and sparse.issparse(X._meta):
        raise ValueError(
            "solver='newton-cholesky' needs a dense X; use 'newton-cg' (or 'auto') for "
            "sparse chunks."
        )
    if X.dtype not in (np.float32, np.float64):
        X = X.astype(np.float64)
    dtype = X.dtype.type
    if sample_weight is None:
        X, y = client.persist([X, y])
    else:
        X, y, sample_weight = client.persist([X, y, sample_weight])
    Y = _encode_targets(estimator, y, dtype)
    if sample_weight is not None:
        low, finite, total = dask.compute(sample_weight.min(), da.isfinite(sample_weight).all(),
                                          sample_weight.sum(dtype=np.float64))
        if not finite:
            raise ValueError("sample_weight must be finite.")
        if low < 0:
            raise ValueError("Negative values in data passed to sample_weight")
        if not total > 0:
            raise ValueError("sample_weight must not be all zero.")
        sample_weight = sample_weight.astype(dtype)
    estimator.n_features_in_ = X.shape[1]
    if hasattr(estimator, "feature_names_in_"):
        del estimator.feature_names_in_
    return X, Y, sample_weight, dtype


def _encode_targets(estimator, y, dtype):
    """The targets as a 2-D dask array; the classes from a summary of ``y``.

    The in-memory encoder validates the distinct values of a 1-D label
    target (few, by then); soft and 2-D targets are checked by their range.
    """
    if y.ndim == 1:
        if y.dtype.kind == "f":
            low, high, finite, fractional = dask.compute(
                y.min(), y.max(), da.isfinite(y).all(), (y != da.floor(y)).any())
            if not finite:
                raise ValueError("Targets must be finite.")
            if fractional:  # soft targets
                _check_range(low, high, "continuous")
                estimator.classes_, estimator._one_d, estimator._y_dtype = (
                    np.array([0, 1]), True, None)
                return y.astype(dtype)[:, None]
        classes = da.unique(y).compute()
        estimator._encode_targets(classes, None, dtype, first=True)
        return (y == estimator.classes_[1]).astype(np.uint8)[:, None]
    if y.dtype.kind not in "biuf":
        raise ValueError(
            "Unknown label type: a 2-D target must hold numbers in [0, 1] (a multi-label "
            f"indicator matrix or probabilities); got dtype {y.dtype}."
        )
    if sparse.issparse(y._meta):
        # Sparse chunks: summarised from their stored values, kept sparse.
        low, high, finite, hard = _sparse_summary(y)
        if not finite:
            raise ValueError("Targets must be finite.")
    elif y.dtype.kind == "f":
        low, high, finite, hard = dask.compute(y.min(), y.max(), da.isfinite(y).all(),
                                               ((y == 0) | (y == 1)).all())
        if not finite:
            raise ValueError("Targets must be finite.")
    else:
        low, high = dask.compute(y.min(), y.max())
        hard = True
    _check_range(low, high, "multilabel-indicator" if hard else "continuous-multioutput")
    estimator.classes_ = np.arange(y.shape[1])
    estimator._one_d, estimator._y_dtype = False, y.dtype
    estimator._y_sparse = None  # predict on dask is blockwise, dense
    return y.astype(np.uint8 if hard else dtype)


def _sparse_summary(y):
    """(min, max, all finite, all 0 or 1) of the stored values of sparse chunks."""

    def summary(block):
        values = sparse.csr_matrix(block).data.astype(np.float64)
        if not values.size:
            return np.array([[0.0, 0.0, 1.0, 1.0]])
        return np.array([[values.min(), values.max(), np.isfinite(values).all(),
                          np.all((values == 0) | (values == 1))]], dtype=np.float64)

    parts = y.map_blocks(summary, chunks=((1,) * y.numblocks[0], (4,)),
                         dtype=np.float64, meta=np.empty((0, 4))).compute()
    return parts[:, 0].min(), parts[:, 1].max(), bool(parts[:, 2].all()), bool(
        parts[:, 3].all())


def _check_range(low, high, kind):
    if low < 0 or high > 1:
        raise ValueError(
            f"Unknown label type: {kind}. Targets must be 0/1 labels or probabilities in "
            f"[0, 1] (soft targets); found values in [{low}, {high}]. Continuous targets "
            "outside [0, 1] are regression targets."
        )


def weighted_column_sums(Y, sample_weight):
    """``sample_weight @ Y`` in float64 (computed)."""
    if sparse.issparse(Y._meta):
        def block_sums(block, *weights):
            block = sparse.csr_matrix(block, dtype=np.float64)
            sums = (block.sum(axis=0) if not weights
                    else block.T @ np.asarray(weights[0], dtype=np.float64))
            return np.asarray(sums).reshape(1, -1)

        args = (Y,) if sample_weight is None else (Y, sample_weight[:, None])
        parts = da.map_blocks(block_sums, *args, chunks=((1,) * Y.numblocks[0], Y.chunks[1]),
                              dtype=np.float64, meta=np.empty((0, 0)))
        return parts.sum(axis=0).compute()
    Y = Y.astype(np.float64)
    if sample_weight is not None:
        Y = Y * sample_weight.astype(np.float64)[:, None]
    return Y.sum(axis=0).compute()
