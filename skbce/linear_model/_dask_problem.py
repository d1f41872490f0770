"""The problem interface of the solvers (:mod:`skbce.linear_model._problem`) on dask chunks.

Design: the in-memory solvers (newton-cg, newton-cholesky, lbfgs, gd)
drive a :class:`DaskLinearBCE` exactly as they drive an in-memory
:class:`LinearBCE`. Each chunk of rows becomes an in-memory ``LinearBCE``
living on a worker, built once from the persisted blocks of ``X`` and
``Y``; its sample weights are normalised by the total weight of *all*
chunks, so that its loss, gradient and Hessian-vector products are its
share of the global ones, computed by the same Cython kernels.
Coefficient-sized results are gathered and summed in chunk order, so the
result does not depend on which worker finishes first.

Per-sample arrays are not kept where they can be recomputed. Every array
of logits the solvers form is affine in coefficients -- ``X @ W + b``, a
direction ``X @ V + vb``, and their sums and per-label multiples -- so the
solvers' logits are :class:`AffineLogits`, the pair ``(A, c)`` of
``X @ A + c``, held on the client: their arithmetic is coefficient
arithmetic, and nothing per-sample travels or waits on the workers. A
worker forms the logits of a chunk only inside the task that needs them,
in row blocks of about 1 MiB of logits (:func:`_sweep`), and one task per chunk gives
the loss, the gradient ``X.T @ G`` and the sums of the gradient and the
curvature in one sweep. What a worker keeps between tasks is newton-cg's
curvature weights, one value per sample and label (:class:`Curvature`);
and once the solver drops them, the next sweep writes into their memory.
On 2M x 1000 sparse float32 rows in chunks of 250 000, 20 labels (the
benchmark), a worker's peak went from 3.8x the bytes of its chunks, when
the logits, their gradient and curvature lived as arrays on the workers,
to 1.6x, and the fit from 1.4x the in-memory fit's time to 0.9x.

A loss evaluated at a point newton-cg is likely to move to (its line
search's full step, nearly always accepted) also gives the gradient and
curvature there, in the same sweep (:meth:`DaskLinearBCE.loss`): the next
iteration then starts without a pass over the data of its own.

What does not apply to a distributed problem says so through the interface
rather than through branches in the solvers: there is no float32 twin of
the chunks (``mixed_precision_cg`` is False). The Gram preconditioner does
apply to dense chunks: its matrix is a sum over rows, coefficient-sized.
"""

import copy
import functools
import operator
import weakref

import numpy as np
from dask.sizeof import sizeof
from scipy import sparse

from skbce._kernels import max_threads
from skbce.linear_model._problem import (
    GRAM_MAX_FEATURES,
    LinearBCE,
    _working_memory_bytes,
    gram_eigh,
)

__all__ = ["AffineLogits", "DaskLinearBCE"]

# Entries per OpenMP thread below which a worker's kernels run on one thread
# (as in the estimator).
_MIN_ENTRIES_PER_THREAD = 20_000
# Bytes of one row block's logits inside a worker's sweep over its chunk: the
# sweep's temporaries (logits, gradient, curvature) are a few such blocks.
_SWEEP_BLOCK_BYTES = 2**20


def _client():
    import distributed

    try:
        return distributed.get_client()
    except ValueError:
        raise ValueError(
            "MultiLabelLogistic.fit on dask arrays trains on a dask.distributed cluster: "
            "create a distributed.Client first (Client(LocalCluster()) on one machine), "
            "or fit on in-memory arrays (X.compute())."
        ) from None


def _submit_at(client, worker, func, *args):
    """``func(*args)`` as a task on ``worker`` (pinned: dask would otherwise
    move a chunk's data to balance the load)."""
    return client.submit(func, *args, workers=[worker], allow_other_workers=False, pure=False)


def _sum_in_order(parts):
    """The sum of gathered per-chunk results, in chunk order (deterministic)."""
    return functools.reduce(operator.add, parts)


# -- per-sample arrays, as the solvers see them ---------------------------------


class AffineLogits(np.lib.mixins.NDArrayOperatorsMixin):
    """The ``(n_samples, k)`` logits ``X @ A + c`` of the chunks, held as ``(A, c)``.

    Supports what the solvers do with logits: sums and differences,
    products with scalars and per-label vectors, ``Z[:, cols]`` and
    ``Z[:, cols] = other``, ``Z[...] = b``, ``np.concatenate(..., axis=1)``,
    ``np.copyto(Z, other, where=per_label_mask)``, ``np.empty_like``,
    ``copy`` and ``astype``. Each of these is the same operation on the
    coefficients; ``A`` and ``c`` are never written to once made, so
    sharing them between objects is safe. Converting it to a numpy array
    is an error: it would bring per-sample data to the client.
    """

    ndim = 2

    def __init__(self, A, c, n_samples):
        self.A = A
        self.c = c
        self.n_samples = int(n_samples)

    @property
    def shape(self):
        return (self.n_samples, self.A.shape[1])

    @property
    def dtype(self):
        return self.A.dtype

    @property
    def size(self):
        return self.shape[0] * self.shape[1]

    def __len__(self):
        return self.n_samples

    def __repr__(self):
        return f"AffineLogits(shape={self.shape}, dtype={self.dtype})"

    def __array__(self, dtype=None, copy=None):
        raise TypeError(
            "AffineLogits are the logits of dask chunks, held as coefficients; they are "
            "not converted to a numpy array (that would gather them on the client)."
        )

    def _like(self, A, c):
        return AffineLogits(A, c, self.n_samples)

    def _assign(self, other):
        """Become ``other`` (in place, as seen by every name bound to this object)."""
        self.A, self.c = other.A, other.c

    # numpy protocols ---------------------------------------------------------

    def __array_ufunc__(self, ufunc, method, *inputs, out=None, **kwargs):
        if method != "__call__" or kwargs:
            return NotImplemented
        result = _affine_ufunc(ufunc, inputs)
        if result is NotImplemented:
            return result
        if out is not None:
            (target,) = out
            if not isinstance(target, AffineLogits):
                return NotImplemented
            target._assign(result)
            return target
        return result

    def __array_function__(self, func, types, args, kwargs):
        handler = _FUNCTIONS.get(func)
        if handler is None or not all(issubclass(t, (AffineLogits, np.ndarray)) for t in types):
            return NotImplemented
        return handler(*args, **kwargs)

    # indexing ---------------------------------------------------------------

    def __getitem__(self, key):
        cols = _columns(key, self.shape[1])
        if isinstance(cols, slice):
            return self
        return self._like(np.ascontiguousarray(self.A[:, cols]), self.c[cols])

    def __setitem__(self, key, value):
        cols = _columns(key, self.shape[1])
        A, c = self.A.copy(), self.c.copy()
        if isinstance(value, AffineLogits):
            A[:, cols], c[cols] = value.A, value.c
        else:
            # A per-label constant: logits that do not depend on X.
            A[:, cols] = 0
            c[cols] = np.broadcast_to(np.asarray(value, dtype=c.dtype), c[cols].shape)
        self.A, self.c = A, c

    def copy(self):
        return self._like(self.A, self.c)

    def astype(self, dtype, copy=True):
        dtype = np.dtype(dtype)
        if dtype == self.dtype:
            return self.copy() if copy else self
        return self._like(self.A.astype(dtype), self.c.astype(dtype))


def _columns(key, n_cols):
    """The column index of ``Z[:, cols]`` or ``Z[...]``, as an index array or slice."""
    if key is Ellipsis:
        return slice(None)
    if (isinstance(key, tuple) and len(key) == 2 and isinstance(key[0], slice)
            and key[0] == slice(None)):
        cols = key[1]
        if isinstance(cols, slice):
            return np.arange(n_cols)[cols]
        cols = np.asarray(cols)
        if cols.dtype == bool:
            return np.flatnonzero(cols)
        return cols.astype(np.intp, copy=False)
    raise IndexError(f"AffineLogits support Z[:, columns] and Z[...], not Z[{key!r}].")


def _per_label(value, k):
    """A scalar or per-label vector as a ``(k,)`` array, or None if it is neither."""
    if isinstance(value, AffineLogits):
        return None
    value = np.asarray(value)
    if value.ndim == 2 and value.shape[0] == 1:
        value = value[0]
    if value.ndim > 1 or (value.ndim == 1 and value.shape[0] not in (1, k)):
        return None
    return np.broadcast_to(value, (k,))


def _affine_ufunc(ufunc, inputs):
    """``ufunc(*inputs)`` on logits, where the result is affine in coefficients."""
    first = next(a for a in inputs if isinstance(a, AffineLogits))
    k, dtype, n = first.shape[1], first.dtype, first.n_samples

    def cast(array):
        return np.asarray(array, dtype=dtype)

    if ufunc is np.negative:
        return first._like(-first.A, -first.c)
    if ufunc is np.positive:
        return first.copy()
    if len(inputs) != 2:
        return NotImplemented
    a, b = inputs
    if ufunc in (np.add, np.subtract):
        sign = 1 if ufunc is np.add else -1
        if isinstance(a, AffineLogits) and isinstance(b, AffineLogits):
            if a.shape != b.shape:
                raise ValueError(f"AffineLogits of shapes {a.shape} and {b.shape}.")
            return AffineLogits(cast(a.A + sign * b.A), cast(a.c + sign * b.c), n)
        if isinstance(a, AffineLogits):
            v = _per_label(b, k)
            return NotImplemented if v is None else AffineLogits(a.A, cast(a.c + sign * v), n)
        v = _per_label(a, k)
        if v is None:
            return NotImplemented
        return AffineLogits(cast(sign * b.A), cast(v + sign * b.c), n)
    if ufunc in (np.multiply, np.true_divide):
        if isinstance(a, AffineLogits) and isinstance(b, AffineLogits):
            raise TypeError("The product of two arrays of logits is not affine.")
        if ufunc is np.true_divide and not isinstance(a, AffineLogits):
            raise TypeError("Dividing by logits is not affine.")
        logits, other = (a, b) if isinstance(a, AffineLogits) else (b, a)
        v = _per_label(other, k)
        if v is None:
            return NotImplemented
        v = 1 / v if ufunc is np.true_divide else v
        return AffineLogits(cast(logits.A * v), cast(logits.c * v), n)
    return NotImplemented


def _concatenate(arrays, axis=0):
    if axis not in (1, -1) or not all(isinstance(a, AffineLogits) for a in arrays):
        raise ValueError("AffineLogits are concatenated along their columns (axis=1) only.")
    first = arrays[0]
    return first._like(np.concatenate([a.A for a in arrays], axis=1),
                       np.concatenate([a.c for a in arrays]))


def _copyto(dst, src, casting="same_kind", where=True):
    mask = np.broadcast_to(np.asarray(where, dtype=bool).reshape(-1), (dst.shape[1],))
    src = src if isinstance(src, AffineLogits) else AffineLogits(
        np.zeros_like(dst.A), np.broadcast_to(np.asarray(src, dst.dtype), dst.c.shape), len(dst))
    A, c = dst.A.copy(), dst.c.copy()
    A[:, mask], c[mask] = src.A[:, mask], src.c[mask]
    dst.A, dst.c = A, c


def _empty_like(prototype, dtype=None, order="K", subok=True, shape=None, **kwargs):
    dtype = prototype.dtype if dtype is None else np.dtype(dtype)
    return prototype._like(np.zeros(prototype.A.shape, dtype), np.zeros(prototype.c.shape, dtype))


_FUNCTIONS = {np.concatenate: _concatenate, np.copyto: _copyto, np.empty_like: _empty_like}


class LogitGradient:
    """The gradient ``G`` of the loss wrt the logits, as the solvers use it.

    The solvers use ``G`` only through ``X.T @ G`` and its column sums,
    which the sweep that evaluated the loss computed with it: they are
    kept, not ``G``.
    """

    ndim = 2

    def __init__(self, backward, column_sums, n_samples):
        self.backward = backward
        self.column_sums = column_sums
        self.shape = (int(n_samples), backward.shape[1])
        self.dtype = backward.dtype

    def sum(self, axis=None, dtype=None):
        if axis not in (0, -2):
            raise ValueError("A LogitGradient sums over its rows only (axis=0).")
        return self.column_sums.astype(self.dtype if dtype is None else dtype)

    def __getitem__(self, key):
        cols = _columns(key, self.shape[1])
        if isinstance(cols, slice):
            return self
        return LogitGradient(np.ascontiguousarray(self.backward[:, cols]),
                             self.column_sums[cols], self.shape[0])


class _Blocks:
    """The futures of one array's blocks, shared by the views of the array."""

    def __init__(self, futures):
        self.futures = futures


class Curvature:
    """The curvature weights ``D`` of the loss wrt the logits, on the workers.

    One block per chunk (a future), of the labels the sweep evaluated;
    ``cols`` selects those the solver still uses, so that dropping labels
    copies nothing (the products read the columns they need, block by
    block). Its column sums came with it.
    """

    ndim = 2

    def __init__(self, blocks, cols, column_sums, n_samples, dtype):
        self.blocks = blocks
        self.cols = cols  # None: all the blocks' columns
        self.column_sums = column_sums
        self.shape = (int(n_samples), len(column_sums))
        self.dtype = np.dtype(dtype)

    def __array__(self, dtype=None, copy=None):
        raise TypeError("Curvature weights stay on the dask workers.")

    def sum(self, axis=None, dtype=None):
        if axis not in (0, -2):
            raise ValueError("Curvature weights sum over their rows only (axis=0).")
        return self.column_sums.astype(self.dtype if dtype is None else dtype)

    def __getitem__(self, key):
        cols = _columns(key, self.shape[1])
        if isinstance(cols, slice):
            return self
        base = cols if self.cols is None else self.cols[cols]
        return Curvature(self.blocks, base, self.column_sums[cols], self.shape[0], self.dtype)


# -- the tasks on a chunk ------------------------------------------------------------


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


# -- the problem ---------------------------------------------------------------


class DaskLinearBCE(LinearBCE):
    """:class:`LinearBCE` over the row chunks of dask arrays.

    Parameters
    ----------
    X : dask array of shape (n_samples, n_features)
        Floating point, blocks of whole rows (dense or CSR chunks).
    Y : dask array of shape (n_samples, n_labels)
        Targets, uint8 (hard) or of ``X``'s dtype, with ``X``'s row chunks.
    sample_weight : dask array of shape (n_samples,) or None
        With ``X``'s row chunks.
    pos_weight, alpha, beta, fit_intercept, label_smoothing
        As for :class:`LinearBCE`.
    """

    def __init__(self, X, Y, sample_weight, pos_weight, alpha, beta, fit_intercept,
                 label_smoothing=0.0):
        import dask
        import distributed

        self.client = _client()
        self.dtype = np.dtype(X.dtype)
        self.n_samples, self.n_features = X.shape
        self.n_labels = self.total_labels = Y.shape[1]
        self.alpha, self.beta = float(alpha), float(beta)
        self.fit_intercept = fit_intercept
        self.label_smoothing = float(label_smoothing)
        if pos_weight is not None:
            pos_weight = np.asarray(pos_weight, dtype=self.dtype)
        self.pw_all = pos_weight
        self.pw_scalar = 1.0
        self._sparse_chunks = sparse.issparse(X._meta)
        total = (float(self.n_samples) if sample_weight is None
                 else float(sample_weight.sum(dtype=np.float64).compute()))
        # Empty chunks hold nothing to compute.
        keep = [i for i, size in enumerate(X.chunks[0]) if size > 0]
        self.rows = tuple(X.chunks[0][i] for i in keep)
        x_blocks = X.to_delayed().ravel()
        y_blocks = Y.to_delayed().ravel()
        w_blocks = (sample_weight.to_delayed().ravel() if sample_weight is not None
                    else [None] * len(x_blocks))
        make = dask.delayed(_chunk_problem, pure=True)
        self._all_labels = self.client.compute([
            make(x_blocks[i], y_blocks[i], w_blocks[i], total, pos_weight, fit_intercept,
                 self.label_smoothing)
            for i in keep])
        # Every later task of a chunk runs where its problem was built, next
        # to its rows: nothing per-sample moves between workers.
        distributed.wait(self._all_labels)
        for future in self._all_labels:
            if future.status == "error":
                future.result()  # raises the chunk's error (e.g. NaN in X)
        who_has = self.client.who_has(self._all_labels)
        self.workers = tuple(who_has[future.key][0] for future in self._all_labels)
        self._cache = {}
        # The last loss() call's point and, while it pays, its gradient and
        # curvature, computed ahead of time (see loss()).
        self._ahead = None
        self._speculate, self._wants = False, True
        self._spare = None  # blocks of curvature weights no longer used
        self.set_active(np.arange(self.n_labels))

    def _map(self, func, *args, chunks=None, per_chunk=()):
        """``func(chunk_problem, *args, *per_chunk[i])`` on every chunk ``i``."""
        chunks = self.chunks if chunks is None else chunks
        return [_submit_at(self.client, self.workers[i], func, chunk, *args,
                           *[blocks[i] for blocks in per_chunk])
                for i, chunk in enumerate(chunks)]

    def _gather_sum(self, func, *args, chunks=None, per_chunk=()):
        return _sum_in_order(self.client.gather(self._map(func, *args, chunks=chunks,
                                                          per_chunk=per_chunk)))

    def _method_sum(self, method, *args, chunks=None):
        return self._gather_sum(_call, method, *args, chunks=chunks)

    # -- labels -----------------------------------------------------------------

    def set_active(self, labels):
        labels = np.asarray(labels)
        if getattr(self, "active", None) is not None and np.array_equal(labels, self.active):
            return
        self.active = labels
        self._ahead = None
        self.chunks = self._map(_with_labels, None, self.active, chunks=self._all_labels)

    def subproblem(self, labels):
        labels = np.asarray(labels)
        sub = copy.copy(self)
        sub.n_labels = len(labels)
        sub.pw_all = None if self.pw_all is None else self.pw_all[labels].copy()
        sub._all_labels = self._map(_with_labels, labels, np.arange(len(labels)),
                                    chunks=self._all_labels)
        sub._cache = self._cache  # what depends on X alone is shared
        sub.active = sub._ahead = sub._spare = None
        sub.set_active(np.arange(sub.n_labels))
        return sub

    # -- what depends on X alone -------------------------------------------------

    def gram_eig(self):
        """The Gram preconditioner's eigendecomposition, from the chunks' Gram matrices.

        ``A.T S A`` is a sum over rows: each chunk forms its own (coefficient-
        sized, ``(d + 1)^2``), the client adds them and decomposes the sum.
        None where :meth:`gram_bytes` says it is not used (sparse chunks, many
        features): CG then takes the diagonal preconditioner.
        """
        if not self.gram_bytes():
            return None
        if "gram" not in self._cache:
            self._cache["gram"] = gram_eigh(
                self._method_sum("gram_matrix", chunks=self._all_labels))
        return self._cache["gram"]

    def gram_bytes(self):
        if self._sparse_chunks or self.n_features > GRAM_MAX_FEATURES:
            return 0
        m = self.n_features + 1 if self.fit_intercept else self.n_features
        size = 2 * self._gram_dtype().itemsize * m * m
        return size if size <= _working_memory_bytes() else 0

    def mixed_precision_cg(self):
        """False: no float32 twin of the chunks is made (it would double their memory)."""
        return False

    def low_precision(self):
        return self

    def product_size(self):
        return self.n_samples * self.n_features

    def squared_column_means(self):
        if "squares" not in self._cache:
            self._cache["squares"] = self._method_sum("squared_column_means",
                                                      chunks=self._all_labels)
        return self._cache["squares"]

    def nonzero_weights(self):
        if "nonzeros" not in self._cache:
            self._cache["nonzeros"] = self._method_sum("nonzero_weights",
                                                       chunks=self._all_labels)
        return self._cache["nonzeros"]

    def squared_backward(self, D):
        raise NotImplementedError("squared_backward: use squared_column_means.")

    def lipschitz(self):
        """A bound on the largest curvature: the sum of the chunks' bounds.

        The largest eigenvalue of a sum of positive semi-definite matrices is
        at most the sum of theirs, and about equal to it when the chunks are
        alike; ``gd``'s backtracking corrects the rest.
        """
        return self._method_sum("lipschitz", chunks=self._all_labels) + self.alpha

    # -- SGD ---------------------------------------------------------------------

    def squared_row_norm_summary(self, feature_weights):
        """The largest and the mean of the rows' squared norms, from the chunks'."""
        parts = self.client.gather(self._map(_row_norm_summary, feature_weights,
                                             chunks=self._all_labels))
        return (max(p[0] for p in parts),
                _sum_in_order([p[1] for p in parts]) / self.n_samples)

    def run_epoch(self, epoch, W, b, state, *, rng, **options):
        """``epoch`` (SGD's pass over the rows) over the chunks in turn, each on its worker.

        The chunks come in a shuffled order, and each shuffles its own rows;
        the coefficients and SGD's state travel from chunk to chunk (they are
        coefficient-sized), so the chunks' epochs are one pass of SGD over
        all rows, with the step size decaying as it does in memory. Each
        chunk's epoch averages its own iterates; their average over the pass,
        weighted by the iterates each averaged, is the pass's.
        """
        order = rng.permutation(len(self.chunks))
        seeds = rng.integers(np.iinfo(np.int64).max, size=len(order))
        total, avg_W, avg_b = 0, None, None
        for i, seed in zip(order, seeds):
            future = _submit_at(self.client, self.workers[i], _chunk_epoch, self.chunks[i],
                                epoch, W, b, state, seed, self.alpha, self.beta, options)
            W_new, b_new, chunk_state = future.result()
            W[...], b[...] = W_new, b_new
            vars(state).update(vars(chunk_state))
            if state.n_avg:
                share = W.dtype.type(state.n_avg / (total + state.n_avg))
                if total == 0:
                    avg_W, avg_b = state.avg_W.copy(), state.avg_b.copy()
                else:
                    avg_W += share * (state.avg_W - avg_W)
                    avg_b += share * (state.avg_b - avg_b)
                total += state.n_avg
        state.n_avg = total
        if total:
            state.avg_W, state.avg_b = avg_W, avg_b
        return W, b

    # -- logits ------------------------------------------------------------------

    def _logits(self, A, c):
        A = np.ascontiguousarray(A, dtype=self.dtype)
        c = (np.broadcast_to(np.asarray(c, dtype=self.dtype), (A.shape[1],)).copy()
             if self.fit_intercept else np.zeros(A.shape[1], self.dtype))
        return AffineLogits(A, c, self.n_samples)

    def empty_logits(self, n_active):
        return self._logits(np.zeros((self.n_features, n_active)), 0)

    def linear(self, W, b):
        return self._logits(W, b)

    def direction(self, V, vb):
        return self._logits(V, vb)

    @staticmethod
    def compact(Z):
        return Z

    # -- products and the loss ---------------------------------------------------

    def backward(self, G):
        return G.backward.copy()

    def hessp(self, V, vb, D):
        V = np.ascontiguousarray(V, dtype=self.dtype)
        vb = np.asarray(vb, dtype=self.dtype)
        parts = self.client.gather(self._map(_hessp, V, vb, D.cols,
                                            per_chunk=[D.blocks.futures]))
        return (_sum_in_order([p[0] for p in parts]), _sum_in_order([p[1] for p in parts]))

    def _sweep(self, Z, cols, want_grad, want_hess, hess_dtype):
        """Submit the sweep of every chunk at logits ``Z``: ``(futures of the sums, of H)``.

        The curvature is written into the blocks of curvature weights that
        the solver no longer holds, if any: a worker holds one such block
        per chunk, not the old one while the new one is made.
        """
        spare, self._spare = self._spare, None
        if want_hess and spare is not None:
            results = self._map(_sweep, Z.A, Z.c, cols, want_grad, want_hess, hess_dtype,
                                per_chunk=[spare])
        else:
            results = self._map(_sweep, Z.A, Z.c, cols, want_grad, want_hess, hess_dtype)
        del spare
        sums = [_submit_at(self.client, w, operator.getitem, r, 0)
                for w, r in zip(self.workers, results)]
        H = ([_submit_at(self.client, w, operator.getitem, r, 1)
              for w, r in zip(self.workers, results)] if want_hess else None)
        return sums, H

    def loss_grad_logits(self, Z, want_grad=True, want_hess=False, cols=None,
                         hess_dtype=None):
        hess_dtype = np.dtype(hess_dtype or self.dtype)
        ahead = None
        if want_grad:
            # Did the last loss() evaluate this very point? Then it was worth
            # computing this ahead of time, and is again next time.
            ahead, self._ahead = self._ahead, None
            hit = (ahead is not None and cols is None
                   and np.array_equal(ahead["A"], Z.A) and np.array_equal(ahead["c"], Z.c))
            self._speculate, self._wants = hit, want_hess
            if not (hit and ahead["sums"] is not None and ahead["want_hess"] >= want_hess
                    and ahead["hess_dtype"] == hess_dtype):
                if ahead is not None and ahead["H"] is not None and self._spare is None:
                    # Curvature computed ahead for nothing: its memory serves the sweep.
                    self._spare = ahead["H"]
                ahead = None
        if ahead is not None:
            sums, H = ahead["sums"], ahead["H"]
        else:
            sums, H = self._sweep(Z, cols, want_grad, want_hess, hess_dtype)
        return self._results(self.client.gather(sums), H, want_grad, want_hess, hess_dtype)

    def _results(self, parts, H, want_grad, want_hess, hess_dtype):
        loss = _sum_in_order([p[0] for p in parts])
        out = [loss]
        if want_grad:
            out.append(LogitGradient(_sum_in_order([p[1] for p in parts]),
                                     _sum_in_order([p[2] for p in parts]), self.n_samples))
        else:
            out.append(None)
        if want_hess:
            blocks = _Blocks(H)
            # Once no Curvature uses these blocks, the next sweep writes into them.
            weakref.finalize(blocks, self._recycle, H)
            out.append(Curvature(blocks, None, _sum_in_order([p[3] for p in parts]),
                                 self.n_samples, hess_dtype))
        return tuple(out)

    def _recycle(self, blocks):
        self._spare = blocks

    def loss(self, Z):
        """The loss at ``Z``; also, ahead of time, what the next iteration may want there.

        A solver that evaluates the loss alone at a point and then moves to it
        (newton-cg's line search, whose full step is nearly always taken)
        next asks for the gradient there: while that keeps happening, the
        sweep computes the gradient (and the curvature, if the last request
        wanted it) now, at the cost of its backward product, and saves the
        next iteration a pass over the data of its own. A solver that moves
        elsewhere (gd, from an extrapolated point) gets the loss alone.
        """
        if self._speculate:
            sums, H = self._sweep(Z, None, True, self._wants, self.dtype)
        else:
            sums, H = self._sweep(Z, None, False, False, self.dtype)
        parts = self.client.gather(sums)
        self._ahead = dict(A=Z.A, c=Z.c, want_hess=self._wants and self._speculate,
                           hess_dtype=self.dtype, sums=sums if self._speculate else None, H=H)
        return _sum_in_order([p[0] for p in parts])

    def newton_terms(self, W, b):
        """Loss, gradient and exact Hessian per label: sums over rows, so over chunks."""
        if self._sparse_chunks:
            raise ValueError("newton_terms needs a dense X.")
        W = np.asarray(W, dtype=self.dtype)
        parts = self.client.gather(self._map(_call, "newton_terms", W, b))
        return tuple(_sum_in_order([part[i] for part in parts]) for i in range(3))


def _same_columns(a, b):
    if a is None or b is None:
        return a is None and b is None
    return np.array_equal(a, b)
