"""The tasks of a dask fit on one chunk of rows, run on the worker that holds it.

Each chunk becomes an in-memory :class:`~skbce.linear_model._problem.LinearBCE`
(:func:`_chunk_problem`), its weights normalised by the total weight of all
chunks. The tasks sweep it in row blocks (:func:`_row_blocks`): the loss,
gradient and curvature at logits ``X @ A + c`` (:func:`_sweep`), the
Hessian-vector products (:func:`_hessp`), SGD's epoch (:func:`_chunk_epoch`).
The client side, which submits them and sums their results, is
:mod:`skbce.linear_model._dask_problem`. A worker's results are a cache:
if the worker dies, the client runs these tasks again on another
(:mod:`skbce.linear_model._dask_states`), so each must give the same
result from the same inputs, wherever it runs.
"""

import copy

import numpy as np
from dask.sizeof import sizeof
from scipy import sparse

from skbce._kernels import max_threads
from skbce.linear_model._problem import LinearBCE

# Entries per OpenMP thread below which a worker's kernels run on one thread
# (as in the estimator).
_MIN_ENTRIES_PER_THREAD = 20_000
# Bytes of one row block's logits inside a worker's sweep over its chunk: the
# sweep's temporaries (logits, gradient, curvature) are a few such blocks.
_SWEEP_BLOCK_BYTES = 2**20



@sizeof.register(LinearBCE)
def _sizeof_problem(problem):
    """The bytes of a chunk's problem: its data, not the object's few attributes.

    dask's scheduler keeps tasks next to their largest inputs by these
    sizes; seen as tiny, a chunk's problem (and its rows of ``X``) would be
    copied to wherever another task's input happens to be.
    """
    X = problem.X
    size = (X.data.nbytes + X.indices.nbytes + X.indptr.nbytes if sparse.issparse(X)
            else X.nbytes)
    for array in (problem.Y_all, problem.sw):
        if sparse.issparse(array):
            size += array.data.nbytes + array.indices.nbytes + array.indptr.nbytes
        else:
            size += 0 if array is None else array.nbytes
    return int(size)


def _chunk_problem(X, Y, sample_weight, total_weight, pos_weight, fit_intercept,
                   label_smoothing):
    """The in-memory problem of one chunk of rows, with globally normalised weights."""
    if sparse.issparse(X):
        X = X.tocsr()
        values = X.data
    else:
        X = np.ascontiguousarray(X)
        values = X
    if not np.all(np.isfinite(values)):
        raise ValueError("Input X contains NaN or infinity.")
    n = X.shape[0]
    threads = max(1, min(max_threads(), Y.size // _MIN_ENTRIES_PER_THREAD))
    product_threads = (max(1, min(max_threads(), X.nnz // _MIN_ENTRIES_PER_THREAD))
                       if sparse.issparse(X) else None)
    problem = LinearBCE(X, Y, None, pos_weight, 0.0, 0.0, fit_intercept, threads,
                        label_smoothing=label_smoothing, product_threads=product_threads)
    # Weights normalised by the total of all chunks: this chunk's loss and
    # derivatives are its share of the global ones.
    weights = (np.full(n, 1.0 / total_weight) if sample_weight is None
               else np.asarray(sample_weight, dtype=np.float64) / total_weight)
    problem.sw = np.ascontiguousarray(weights, dtype=problem.dtype)
    if sparse.issparse(X):
        # Cached now, while the worker holds no curvature yet: its count
        # takes a float64 weight per non-zero for a moment (on the sparse
        # benchmark a worker's peak went from 1.6x to 1.9x its chunks when
        # newton-cg's preconditioner first asked for it mid-fit).
        problem.nonzero_weights()
    return problem


def _with_labels(problem, labels, active):
    """A shallow copy restricted to ``labels`` (None: all), with ``active`` active."""
    if labels is not None:
        problem = problem.subproblem(labels)
    else:
        problem = copy.copy(problem)
    problem.set_active(active)
    return problem


def _row_blocks(problem, n_labels):
    """The chunk's problem on consecutive blocks of rows, one at a time.

    Views of the chunk, except that the rows of a dense ``X`` whose memory
    is not aligned to its dtype are copied, block by block: an array
    received from another process can start at any byte of its message,
    and numpy's products do not hand such an array to BLAS (measured:
    13107 x 100 float32, one thread, ``X @ W`` 1.6x and ``X.T @ G`` 2.5x
    the time on aligned rows; a copy of the block costs a fraction of that).
    """
    step = max(256, _SWEEP_BLOCK_BYTES // (problem.dtype.itemsize * max(1, n_labels)))
    if problem.X is not None and not sparse.issparse(problem.X):
        # ... and a dense block's rows (copied, if unaligned) at most 4 such
        # blocks: with few labels left, the logits' rule alone made copies of
        # 32 MiB, two alive at once (dense benchmark: worker peak 1.46x -> 1.23x).
        step = min(step, max(256, 4 * _SWEEP_BLOCK_BYTES
                             // (problem.dtype.itemsize * max(1, problem.n_features))))
    for start in range(0, problem.n_samples, step):
        block = problem.row_block(slice(start, min(start + step, problem.n_samples)))
        if block.X is not None and not block.X.flags.aligned:
            block.X = np.array(block.X)
        yield block


def _sweep(problem, A, c, cols, want_grad, want_hess, hess_dtype, spare=None):
    """Loss, ``X.T @ G``, the sums of ``G`` and ``H``, and ``H``, at logits ``X @ A + c``.

    One pass over the chunk in row blocks: a block's logits and their
    derivatives exist only while the block is processed (its rows of ``X``
    are still in cache for the backward product); the curvature ``H`` (if
    wanted) is the one per-sample array kept, as the second part of the
    result, in the memory of ``spare`` if that fits.
    """
    k = A.shape[1]
    loss = np.zeros(k)
    gW = np.zeros((problem.n_features, k), dtype=problem.dtype) if want_grad else None
    g_sum = np.zeros(k)
    h_sum = np.zeros(k)
    H = _buffer(spare, (problem.n_samples, k), hess_dtype) if want_hess else None
    # Column sums as products with ones (BLAS): numpy's sum over the rows
    # of a narrow array took as long as the loss.
    ones = None
    start = 0
    for block in _row_blocks(problem, k):
        if ones is None:
            ones = np.ones(block.n_samples, dtype=problem.dtype)
        Z = block.linear(A, c)
        out = block.loss_grad_logits(Z, want_grad=want_grad or want_hess, want_hess=want_hess,
                                     cols=cols, hess_dtype=hess_dtype)
        del Z
        loss += out[0]
        n = block.n_samples
        if want_grad:
            gW += block.backward(out[1])
            g_sum += ones[:n] @ out[1]
        if want_hess:
            H[start:start + n] = out[2]
            h_sum += ones[:n].astype(hess_dtype, copy=False) @ out[2]
        start += n
    return (loss, gW, g_sum, h_sum), H


def _sweep_part(part, problem, *args):
    """One part of :func:`_sweep`'s result (1: the curvature), as a task of its own."""
    return _sweep(problem, *args)[part]


def _buffer(spare, shape, dtype):
    """An array of ``shape``: the memory of ``spare`` (an array no one uses) if it fits."""
    size = shape[0] * shape[1]
    if spare is not None and spare.dtype == dtype and spare.size >= size:
        return spare.reshape(-1)[:size].reshape(shape)
    return np.empty(shape, dtype=dtype)


def _hessp(problem, V, vb, cols, H):
    """``(X.T @ U, U.sum(0))`` for ``U = H[:, cols] * (X @ V + vb)``, block by block."""
    k = V.shape[1]
    HW = np.zeros((problem.n_features, k), dtype=problem.dtype)
    Hb = np.zeros(k, dtype=problem.dtype)
    start = 0
    for block in _row_blocks(problem, k):
        D = H[start:start + block.n_samples]
        start += block.n_samples
        if cols is not None:
            D = np.ascontiguousarray(D[:, cols])
        part_W, part_b = block.hessp(V, vb, D)
        HW += part_W
        Hb += part_b
    return HW, Hb


def _row_norm_summary(problem, feature_weights):
    """The largest squared row norm of the chunk, the sum of them, as float64."""
    sq = problem.squared_row_norms(feature_weights)
    return (float(sq.max()) if sq.size else 0.0), float(sq.sum())


def _chunk_epoch(chunk, epoch, W, b, state, seed, alpha, beta, options):
    """SGD's epoch over one chunk, with the whole problem's penalty; returns its results."""
    problem = copy.copy(chunk)
    problem.alpha, problem.beta = alpha, beta
    # (Received arrays may be read-only views of the message.)
    W, b = np.array(W), np.array(b)
    epoch(problem, W, b, state, rng=np.random.default_rng(seed), **options)
    return W, b, state


def _call(problem, method, *args):
    return getattr(problem, method)(*args)
