"""The problem interface of :mod:`skbce.linear_model._problem` over row chunks on a dask cluster.

Design: the in-memory solvers (newton-cg, lbfgs, gd) drive a
:class:`DaskLinearBCE` exactly as they drive a
:class:`~skbce.linear_model._problem.LinearBCE`.
Each chunk of rows becomes an in-memory ``LinearBCE`` living on a worker,
built once from the persisted blocks of ``X`` and ``Y``; its sample weights
are normalised by the total weight of *all* chunks, so that its loss,
gradient, curvature and Hessian-vector products are its share of the
global ones, computed by the same Cython kernels. Coefficient-sized results
(per-label losses, ``X.T @ G``, Hessian products) are gathered and summed in
chunk order, so the result does not depend on which worker finishes first.

Per-sample arrays -- the logits, their gradient and curvature -- never
leave the workers: the solvers hold them as :class:`ChunkedArray` objects,
one future per chunk, on which numpy's arithmetic, column selection and
assignment run as tasks next to the data (NEP 13/18 protocols). Every
operation makes new blocks instead of writing into old ones, so sharing a
block between arrays is safe and a copy costs nothing.

What does not apply to a distributed problem says so through the interface
rather than through branches in the solvers: there is no float32 twin of
the chunks (``mixed_precision_cg`` is False). The Gram preconditioner does
apply to dense chunks: its matrix is a sum over rows, coefficient-sized.
"""

import copy
import functools
import numbers
import operator

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

__all__ = ["ChunkedArray", "DaskLinearBCE"]

# Entries per OpenMP thread below which a worker's kernels run on one thread
# (as in the estimator).
_MIN_ENTRIES_PER_THREAD = 20_000


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


# -- per-sample arrays on the workers ------------------------------------------


class ChunkedArray(np.lib.mixins.NDArrayOperatorsMixin):
    """An ``(n_samples, k)`` array held on the workers, one future per chunk of rows.

    Supports what the solvers do with logits and their derivatives:
    elementwise arithmetic with scalars and per-label vectors, ``A[:, cols]``
    and ``A[:, cols] = B``, ``A[...] = b``, ``np.concatenate(..., axis=1)``,
    ``np.copyto(A, B, where=mask)``, ``np.empty_like``, ``A.sum(axis=0)``,
    ``A.copy()`` and ``A.astype``. Converting it to a numpy array is an
    error: it would bring per-sample data to the client.
    """

    def __init__(self, client, blocks, rows, workers, n_cols, dtype, column_sums=None):
        self.client = client
        self.blocks = list(blocks)
        self.rows = tuple(rows)
        self.workers = tuple(workers)  # where each block lives: its chunk's worker
        self.shape = (sum(self.rows), int(n_cols))
        self.dtype = np.dtype(dtype)
        # The float64 column sums, when the task that made the blocks also
        # summed them (the gradient and curvature of the loss: their sums
        # are the intercept's gradient and the preconditioner's scale).
        self._column_sums = column_sums

    ndim = 2

    @property
    def blocks(self):
        return self._blocks

    @blocks.setter
    def blocks(self, blocks):
        self._blocks = list(blocks)
        self._column_sums = None

    @property
    def size(self):
        return self.shape[0] * self.shape[1]

    def __len__(self):
        return self.shape[0]

    def __repr__(self):
        return (f"ChunkedArray(shape={self.shape}, dtype={self.dtype}, "
                f"chunks={len(self.blocks)})")

    def __array__(self, dtype=None, copy=None):
        raise TypeError(
            "A ChunkedArray holds per-sample data on the dask workers; it is not "
            "converted to a numpy array (that would gather it on the client)."
        )

    def _like(self, blocks, n_cols=None, dtype=None):
        return ChunkedArray(self.client, blocks, self.rows, self.workers,
                            self.shape[1] if n_cols is None else n_cols,
                            self.dtype if dtype is None else dtype)

    def _submit(self, func, *args):
        """``func`` on each block; ChunkedArray arguments contribute their blocks."""
        blocks = []
        for i, block in enumerate(self.blocks):
            block_args = [a.blocks[i] if isinstance(a, ChunkedArray) else a for a in args]
            blocks.append(_submit_at(self.client, self.workers[i], func, block, *block_args))
        return blocks

    # numpy protocols ---------------------------------------------------------

    def __array_ufunc__(self, ufunc, method, *inputs, out=None, **kwargs):
        if method != "__call__" or ufunc.nout != 1:
            return NotImplemented
        arrays = [a for a in inputs if isinstance(a, ChunkedArray)]
        for other in inputs:
            if not isinstance(other, (ChunkedArray, numbers.Number, np.ndarray, np.generic)):
                return NotImplemented
            if isinstance(other, np.ndarray) and other.ndim == 2 and other.shape[0] != 1:
                raise ValueError("A ChunkedArray combines with per-label vectors only.")
        # The result's dtype and width, from one row of each operand.
        sample = ufunc(*[np.zeros((1, a.shape[1]), a.dtype) if isinstance(a, ChunkedArray)
                         else a for a in inputs], **kwargs)
        first = arrays[0]
        blocks = []
        for i, block in enumerate(first.blocks):
            args = [a.blocks[i] if isinstance(a, ChunkedArray) else a for a in inputs]
            blocks.append(_submit_at(first.client, first.workers[i], _apply_ufunc, ufunc,
                                     kwargs, *args))
        result = first._like(blocks, sample.shape[-1], sample.dtype)
        if out is not None:
            (target,) = out
            if not isinstance(target, ChunkedArray):
                return NotImplemented
            target._assign(result)
            return target
        return result

    def __array_function__(self, func, types, args, kwargs):
        handler = _FUNCTIONS.get(func)
        if handler is None or not all(issubclass(t, (ChunkedArray, np.ndarray)) for t in types):
            return NotImplemented
        return handler(*args, **kwargs)

    def _assign(self, other):
        """Become ``other`` (in place, as seen by every name bound to this object)."""
        if other.rows != self.rows:
            raise ValueError("ChunkedArrays of different row chunks.")
        self.blocks, self.shape, self.dtype = other.blocks, other.shape, other.dtype
        self._column_sums = other._column_sums

    # indexing ---------------------------------------------------------------

    @staticmethod
    def _columns(key, n_cols):
        """The column index of ``A[:, cols]`` or ``A[...]``, as an index array or slice."""
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
        raise IndexError(f"A ChunkedArray supports A[:, columns] and A[...], not A[{key!r}].")

    def __getitem__(self, key):
        cols = self._columns(key, self.shape[1])
        if isinstance(cols, slice):
            return self
        return self._like(self._submit(_take_columns, cols), len(cols))

    def __setitem__(self, key, value):
        cols = self._columns(key, self.shape[1])
        if not isinstance(value, ChunkedArray):
            value = np.asarray(value)
        self.blocks = self._submit(_set_columns, cols, value)

    # methods the solvers call --------------------------------------------------

    def copy(self):
        # Blocks are never written to: sharing them is a copy.
        copied = self._like(self.blocks)
        copied._column_sums = self._column_sums
        return copied

    def astype(self, dtype, copy=True):
        dtype = np.dtype(dtype)
        if dtype == self.dtype:
            return self.copy() if copy else self
        return self._like(self._submit(_astype, dtype), dtype=dtype)

    def sum(self, axis=None, dtype=None):
        if axis not in (0, -2):
            raise ValueError("A ChunkedArray sums over its rows only (axis=0).")
        if self._column_sums is None:
            parts = self.client.gather(self._submit(_column_sums, np.float64))
            self._column_sums = _sum_in_order(parts)
        return self._column_sums.astype(self.dtype if dtype is None else dtype)


def _concatenate(arrays, axis=0):
    if axis not in (1, -1) or not all(isinstance(a, ChunkedArray) for a in arrays):
        raise ValueError("ChunkedArrays are concatenated along their columns (axis=1) only.")
    first = arrays[0]
    if any(a.rows != first.rows for a in arrays):
        raise ValueError("ChunkedArrays of different row chunks.")
    blocks = [_submit_at(first.client, first.workers[i], _concatenate_blocks,
                         *(a.blocks[i] for a in arrays))
              for i in range(len(first.blocks))]
    dtype = np.result_type(*[a.dtype for a in arrays])
    return first._like(blocks, sum(a.shape[1] for a in arrays), dtype)


def _copyto(dst, src, casting="same_kind", where=True):
    dst.blocks = dst._submit(_copyto_block, src, np.asarray(where))


def _empty_like(prototype, dtype=None, order="K", subok=True, shape=None, **kwargs):
    dtype = prototype.dtype if dtype is None else np.dtype(dtype)
    return prototype._like(prototype._submit(_empty_block, dtype), dtype=dtype)


_FUNCTIONS = {np.concatenate: _concatenate, np.copyto: _copyto, np.empty_like: _empty_like}


# Block functions: run on the workers, never write into their inputs.

def _apply_ufunc(ufunc, kwargs, *args):
    return ufunc(*args, **kwargs)


def _take_columns(block, cols):
    return np.ascontiguousarray(block[:, cols])


def _set_columns(block, cols, value):
    out = block.copy()
    out[:, cols] = value
    return out


def _astype(block, dtype):
    return block.astype(dtype)


def _column_sums(block, dtype):
    return block.sum(axis=0, dtype=dtype)


def _concatenate_blocks(*blocks):
    return np.concatenate(blocks, axis=1)


def _copyto_block(dst, src, where):
    out = dst.copy()
    np.copyto(out, src, where=where)
    return out


def _empty_block(block, dtype):
    return np.empty(block.shape, dtype=dtype)


def _zero_logits(problem, n_cols):
    return np.zeros((problem.n_samples, n_cols), dtype=problem.dtype)


# -- the problem ---------------------------------------------------------------


@sizeof.register(LinearBCE)
def _sizeof_problem(problem):
    """The bytes of a chunk's problem: its data, not the object's few attributes.

    dask's scheduler keeps tasks next to their largest inputs by these
    sizes; seen as tiny, a chunk's problem (and its rows of ``X``) would be
    copied to wherever a logits block happens to be.
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
    return problem


def _with_labels(problem, labels, active):
    """A shallow copy restricted to ``labels`` (None: all), with ``active`` active."""
    if labels is not None:
        problem = problem.subproblem(labels)
    else:
        problem = copy.copy(problem)
    problem.set_active(active)
    return problem


def _linear(problem, W, b):
    return problem.linear(W, b)


def _loss_grad_logits(problem, Z, want_grad, want_hess, cols, hess_dtype):
    """``((loss, G's column sums, H's), G, H)``: the first part is gathered."""
    out = problem.loss_grad_logits(Z, want_grad=want_grad, want_hess=want_hess, cols=cols,
                                   hess_dtype=hess_dtype)
    loss, G, H = out if want_hess else (*out, None)
    sums = [None if A is None else A.sum(axis=0, dtype=np.float64) for A in (G, H)]
    return (loss, *sums), G, H


def _backward(problem, G):
    return problem.backward(G)


def _hessp(problem, V, vb, D):
    return problem.hessp(V, vb, D)


def _squared_column_means(problem):
    return problem.squared_column_means()


def _lipschitz(problem):
    return problem.lipschitz()


def _gram_matrix(problem):
    return problem.gram_matrix()


def _newton_terms(problem, W, b):
    return problem.newton_terms(W, b)


class DaskLinearBCE(LinearBCE):
    """:class:`~skbce.linear_model._problem.LinearBCE` over the row chunks of dask arrays.

    Parameters
    ----------
    X : dask array of shape (n_samples, n_features)
        Floating point, blocks of whole rows (dense or CSR chunks).
    Y : dask array of shape (n_samples, n_labels)
        Targets, uint8 (hard) or of ``X``'s dtype, with ``X``'s row chunks.
    sample_weight : dask array of shape (n_samples,) or None
        With ``X``'s row chunks.
    pos_weight, alpha, beta, fit_intercept, label_smoothing
        As for :class:`~skbce.linear_model._problem.LinearBCE`.
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
        self.set_active(np.arange(self.n_labels))

    def _map(self, func, *args, chunks=None):
        """``func(chunk_problem, *args)`` on every chunk; ChunkedArrays give their blocks."""
        chunks = self.chunks if chunks is None else chunks
        return [_submit_at(self.client, self.workers[i], func, chunk,
                           *[a.blocks[i] if isinstance(a, ChunkedArray) else a for a in args])
                for i, chunk in enumerate(chunks)]

    def _parts(self, results, index):
        return [_submit_at(self.client, worker, operator.getitem, result, index)
                for worker, result in zip(self.workers, results)]

    def _gather_sum(self, func, *args, chunks=None):
        return _sum_in_order(self.client.gather(self._map(func, *args, chunks=chunks)))

    def _per_sample(self, blocks, n_cols, dtype=None):
        return ChunkedArray(self.client, blocks, self.rows, self.workers, n_cols,
                            self.dtype if dtype is None else dtype)

    # -- labels -----------------------------------------------------------------

    def set_active(self, labels):
        self.active = np.asarray(labels)
        self.chunks = self._map(_with_labels, None, self.active, chunks=self._all_labels)

    def subproblem(self, labels):
        labels = np.asarray(labels)
        sub = copy.copy(self)
        sub.n_labels = len(labels)
        sub.pw_all = None if self.pw_all is None else self.pw_all[labels].copy()
        sub._all_labels = self._map(_with_labels, labels, np.arange(len(labels)),
                                    chunks=self._all_labels)
        sub._cache = self._cache  # what depends on X alone is shared
        sub.set_active(np.arange(sub.n_labels))
        return sub

    # -- what a distributed problem does not have --------------------------------

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
                self._gather_sum(_gram_matrix, chunks=self._all_labels))
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

    def targets(self, rows=None, labels=None):
        raise NotImplementedError(
            "solver='sgd' does not run on dask arrays; use partial_fit (e.g. through "
            "dask_ml.wrappers.Incremental) or another solver.")

    # -- per-sample arrays -------------------------------------------------------

    def empty_logits(self, n_active):
        # Made by the chunks' problems: every block is born where its chunk is.
        return self._per_sample(self._map(_zero_logits, n_active), n_active)

    @staticmethod
    def compact(Z):
        return Z if isinstance(Z, ChunkedArray) else np.ascontiguousarray(Z)

    # -- products and the loss ---------------------------------------------------

    def linear(self, W, b):
        W = np.asarray(W, dtype=self.dtype)
        b = np.asarray(b, dtype=self.dtype) if self.fit_intercept else 0
        return self._per_sample(self._map(_linear, W, b), W.shape[1])

    def backward(self, G):
        return self._gather_sum(_backward, G)

    def hessp(self, V, vb, D):
        V = np.asarray(V, dtype=self.dtype)
        parts = self.client.gather(self._map(_hessp, V, vb, D))
        return (_sum_in_order([p[0] for p in parts]), _sum_in_order([p[1] for p in parts]))

    def squared_column_means(self):
        if "squares" not in self._cache:
            self._cache["squares"] = self._gather_sum(_squared_column_means,
                                                      chunks=self._all_labels)
        return self._cache["squares"]

    def squared_backward(self, D):
        raise NotImplementedError("squared_backward: use squared_column_means.")

    def loss_grad_logits(self, Z, want_grad=True, want_hess=False, cols=None,
                         hess_dtype=None):
        results = self._map(_loss_grad_logits, Z, want_grad, want_hess, cols, hess_dtype)
        parts = self.client.gather(self._parts(results, 0))
        loss = _sum_in_order([p[0] for p in parts])
        n_cols = Z.shape[1]
        G = H = None
        if want_grad:
            G = self._per_sample(self._parts(results, 1), n_cols)
            G._column_sums = _sum_in_order([p[1] for p in parts])
        if want_hess:
            H = self._per_sample(self._parts(results, 2), n_cols, hess_dtype or self.dtype)
            H._column_sums = _sum_in_order([p[2] for p in parts])
            return loss, G, H
        return loss, G

    def newton_terms(self, W, b):
        """Loss, gradient and exact Hessian per label: sums over rows, so over chunks."""
        if self._sparse_chunks:
            raise ValueError("newton_terms needs a dense X.")
        W = np.asarray(W, dtype=self.dtype)
        parts = self.client.gather(self._map(_newton_terms, W, b))
        return tuple(_sum_in_order([part[i] for part in parts]) for i in range(3))

    def lipschitz(self):
        """A bound on the largest curvature: the sum of the chunks' bounds.

        The largest eigenvalue of a sum of positive semi-definite matrices is
        at most the sum of theirs, and about equal to it when the chunks are
        alike; ``gd``'s backtracking corrects the rest.
        """
        return self._gather_sum(_lipschitz, chunks=self._all_labels) + self.alpha
