"""The per-sample arrays of the solvers over dask chunks, as the client holds them.

The solvers of :mod:`skbce.linear_model._problem` handle logits, their
gradient and their curvature as ``(n_samples, k)`` arrays. Over dask
chunks (:class:`~skbce.linear_model._dask_problem.DaskLinearBCE`) none of
them is brought to the client: the logits are :class:`AffineLogits`, the
coefficients ``(A, c)`` of ``X @ A + c``, whose arithmetic is coefficient
arithmetic; the gradient is :class:`LogitGradient`, the products the
solvers take of it; the curvature is :class:`Curvature`, the futures of
its blocks on the workers (a
:class:`~skbce.linear_model._dask_states.ChunkFutures`, which makes a
block again if its worker dies).
"""

import numpy as np

__all__ = ["AffineLogits", "Curvature", "LogitGradient"]


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


class Curvature:
    """The curvature weights ``D`` of the loss wrt the logits, on the workers.

    One block per chunk (a ``ChunkFutures``: a block lost with its worker
    is made again by a sweep of its chunk), of the labels the sweep
    evaluated; ``cols`` selects those the solver still uses, so that
    dropping labels copies nothing (the products read the columns they
    need, block by block). Its column sums came with it.
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
