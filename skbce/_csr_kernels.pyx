# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False, nonecheck=False
"""Products of a CSR matrix with dense blocks of label columns, for the solvers.

* :func:`csr_matmul` -- ``X @ W`` and :func:`csr_matmul_t` -- ``X.T @ G``
  for a CSR matrix ``X`` and dense C-ordered blocks of label columns, rows
  split across OpenMP threads (scipy's products are single-threaded).
  Neither needs a copy of ``X``: not its transpose (the transposed product
  scatters into one accumulator per thread, summed at the end) and not a
  float32 copy (``X``'s values are read in their own precision and rounded
  to the precision of ``W``, so the float32 inner iterations of a float64
  fit cost no memory). ``square=True`` uses the squared values of ``X``
  (the Hessian diagonal, for a preconditioner).
* :func:`csr_hessp` -- the Hessian-vector products of newton-cg on a CSR
  ``X``, one sweep over its rows.

Why tiles: the label columns are processed ``TILE`` at a time with the
tile's accumulator (or, transposed, the tile of ``G``) in a fixed-size local
array. The compiler keeps it in vector registers across a row's nonzeros;
with the run-time width ``k`` it had to load and store the output row at
every nonzero, which made narrow blocks of labels several times slower per
label than wide ones.

Compiled with the loss kernels' flags (``-ffast-math`` at the compile step
only, see ``skbce/meson.build``); the inputs are validated before a solver
runs, and bounds checks are off.
"""

from cython cimport floating
from cython.parallel cimport parallel, prange, threadid
from skbce._padding cimport _PAD
from skbce._tiles cimport *

import numpy as np

ctypedef fused index_t:
    int
    long long

ctypedef fused data_t:
    float
    double

cdef inline Py_ssize_t _tile_width(floating *x) noexcept nogil:
    """Label values per register tile: 4 doubles or 8 floats."""
    if floating is double:
        return 4
    else:
        return 8


cdef inline Py_ssize_t _safe_rows(Py_ssize_t d, Py_ssize_t k, Py_ssize_t span,
                                  Py_ssize_t lanes) noexcept nogil:
    """Rows of a (d, k) array whose ``lanes`` values from column ``k - span`` on
    lie inside the array: a narrow last tile spills into the next rows."""
    cdef Py_ssize_t spill = lanes - span
    if spill <= 0:
        return d
    return max(0, d - (spill + k - 1) // k)


cdef inline void _gather_row_single(
    const index_t *ind, const data_t *val, Py_ssize_t nnz,
    const floating *W, floating *out, bint square,
) noexcept nogil:
    """:func:`_gather_row` for one label, in scalars.

    A padded tile would spend most of its lanes on nothing and check every
    nonzero against the last rows of ``W``: 1.7x this loop's time on bibtex.
    (Two labels or more are faster in tiles.) Even and odd nonzeros still go
    to separate sums.
    """
    cdef floating even = 0
    cdef floating odd = 0
    cdef floating v, u
    cdef Py_ssize_t jj
    for jj in range(0, nnz - 1, 2):
        v = <floating> val[jj]
        u = <floating> val[jj + 1]
        if square:
            v = v * v
            u = u * u
        even += v * W[ind[jj]]
        odd += u * W[ind[jj + 1]]
    if nnz % 2:
        v = <floating> val[nnz - 1]
        if square:
            v = v * v
        even += v * W[ind[nnz - 1]]
    out[0] = even + odd


cdef inline void _scatter_row_narrow(
    const index_t *ind, const data_t *val, Py_ssize_t nnz,
    const floating *g, Py_ssize_t k, floating *out, bint square,
) noexcept nogil:
    """:func:`_scatter_row` for fewer labels than a tile's lanes, in scalars.

    A padded tile's wide loads and stores overlap from one nonzero to the
    next when their columns are close, which stalls the CPU's forwarding of
    stores to loads; scalar updates of exactly the labels do not.
    """
    cdef Py_ssize_t c, jj
    cdef floating v
    cdef floating *o
    for jj in range(nnz):
        v = <floating> val[jj]
        if square:
            v = v * v
        o = out + ind[jj] * k
        for c in range(k):
            o[c] += v * g[c]


cdef inline void _gather_row(
    const index_t *ind, const data_t *val, Py_ssize_t nnz,
    const floating *W, Py_ssize_t d, Py_ssize_t k, floating *out, bint square,
) noexcept nogil:
    """``out[:k] = sum_jj v_jj * W[ind_jj, :k]`` (``v`` squared if ``square``).

    Two tiles per pass over the row's nonzeros, each summed in two
    accumulators (even and odd nonzeros): four independent chains of fused
    multiply-adds, as one chain would wait on the FMA latency. A last tile
    narrower than the vector reads past its columns into the next rows of
    ``W`` (harmless: those lanes are not stored); the last rows of ``W``,
    where that would leave the array, are added up one value at a time.
    """
    cdef skbce_tile_d a0_d, a1_d, b0_d, b1_d
    cdef skbce_tile_f a0_f, a1_f, b0_f, b1_f
    cdef floating zeros[16]
    cdef floating side[16]
    cdef floating tail[16]
    cdef Py_ssize_t width = _tile_width(out)
    cdef Py_ssize_t n_tiles = (k + width - 1) // width
    cdef Py_ssize_t t, c0, c, jj, h, span, lanes, limit
    cdef bint pair, padded
    cdef floating v, u
    cdef const floating *w
    cdef const floating *x
    if k == 1:
        _gather_row_single(ind, val, nnz, W, out, square)
        return
    for c in range(16):
        zeros[c] = 0
    for t in range(0, n_tiles, 2):
        c0 = t * width
        pair = t + 1 < n_tiles
        lanes = (2 if pair else 1) * width
        span = min(k - c0, lanes)
        padded = span < lanes
        limit = _safe_rows(d, k, span, lanes)
        if padded:
            for c in range(span):
                side[c] = 0
        if floating is double:
            a0_d = a1_d = b0_d = b1_d = skbce_tile_d_zero()
        else:
            a0_f = a1_f = b0_f = b1_f = skbce_tile_f_zero()
        for h in range((nnz + 1) // 2):
            jj = 2 * h
            v = <floating> val[jj]
            w = W + ind[jj] * k + c0
            if jj + 1 < nnz:
                u = <floating> val[jj + 1]
                x = W + ind[jj + 1] * k + c0
            else:
                u = 0
                x = &zeros[0]
            if square:
                v = v * v
                u = u * u
            if padded:
                if ind[jj] >= limit:
                    for c in range(span):
                        side[c] += v * w[c]
                    w = &zeros[0]
                if jj + 1 < nnz and ind[jj + 1] >= limit:
                    for c in range(span):
                        side[c] += u * x[c]
                    x = &zeros[0]
            if floating is double:
                a0_d = skbce_tile_d_fma(a0_d, v, w)
                b0_d = skbce_tile_d_fma(b0_d, u, x)
                if pair:
                    a1_d = skbce_tile_d_fma(a1_d, v, w + width)
                    b1_d = skbce_tile_d_fma(b1_d, u, x + width)
            else:
                a0_f = skbce_tile_f_fma(a0_f, v, w)
                b0_f = skbce_tile_f_fma(b0_f, u, x)
                if pair:
                    a1_f = skbce_tile_f_fma(a1_f, v, w + width)
                    b1_f = skbce_tile_f_fma(b1_f, u, x + width)
        x = &tail[0] if padded else out + c0
        if floating is double:
            skbce_tile_d_store(skbce_tile_d_add(a0_d, b0_d), <double *> x)
            if pair:
                skbce_tile_d_store(skbce_tile_d_add(a1_d, b1_d), <double *> x + width)
        else:
            skbce_tile_f_store(skbce_tile_f_add(a0_f, b0_f), <float *> x)
            if pair:
                skbce_tile_f_store(skbce_tile_f_add(a1_f, b1_f), <float *> x + width)
        if padded:
            for c in range(span):
                out[c0 + c] = tail[c] + side[c]


cdef inline void _scatter_row(
    const index_t *ind, const data_t *val, Py_ssize_t nnz,
    const floating *g, Py_ssize_t d, Py_ssize_t k, floating *out, bint square,
) noexcept nogil:
    """``out[ind_jj, :k] += v_jj * g[:k]`` for the nonzeros of one row.

    A last tile narrower than the vector is padded with zeros: its extra
    lanes add exact zeros to the first values of the next rows of ``out``.
    The last rows of ``out``, where that would leave the array, are updated
    one value at a time.
    """
    cdef skbce_tile_d g0_d, g1_d
    cdef skbce_tile_f g0_f, g1_f
    cdef floating g_pad[16]
    cdef floating sink[16]
    cdef Py_ssize_t width = _tile_width(out)
    cdef Py_ssize_t n_tiles = (k + width - 1) // width
    cdef Py_ssize_t t, c0, c, jj, span, lanes, limit
    cdef bint pair, padded
    cdef floating v
    cdef floating *o
    cdef const floating *src
    if k < width:
        _scatter_row_narrow(ind, val, nnz, g, k, out, square)
        return
    for t in range(0, n_tiles, 2):
        c0 = t * width
        pair = t + 1 < n_tiles
        lanes = (2 if pair else 1) * width
        span = min(k - c0, lanes)
        padded = span < lanes
        limit = _safe_rows(d, k, span, lanes)
        src = g + c0
        if padded:
            for c in range(lanes):
                g_pad[c] = g[c0 + c] if c < span else 0
            src = &g_pad[0]
        if floating is double:
            g0_d = skbce_tile_d_load(src)
            if pair:
                g1_d = skbce_tile_d_load(src + width)
        else:
            g0_f = skbce_tile_f_load(src)
            if pair:
                g1_f = skbce_tile_f_load(src + width)
        for jj in range(nnz):
            v = <floating> val[jj]
            if square:
                v = v * v
            o = out + ind[jj] * k + c0
            if padded and ind[jj] >= limit:
                for c in range(span):
                    o[c] += v * src[c]
                o = &sink[0]  # the vector update below goes nowhere
            if floating is double:
                skbce_tile_d_axpy(o, v, g0_d)
                if pair:
                    skbce_tile_d_axpy(o + width, v, g1_d)
            else:
                skbce_tile_f_axpy(o, v, g0_f)
                if pair:
                    skbce_tile_f_axpy(o + width, v, g1_f)


def csr_matmul(
    const index_t[::1] indptr,
    const index_t[::1] indices,
    const data_t[::1] data,
    const floating[:, ::1] W,
    floating[:, ::1] out,
    bint square,
    int n_threads,
):
    """``out = X @ W`` (or ``(X * X) @ W``) for CSR ``X``; rows in parallel.

    The column indices of ``X`` must be below ``W.shape[0]`` (the caller
    checks the CSR structure once: see ``LinearBCE._setup_products``).
    """
    cdef Py_ssize_t n = out.shape[0]
    cdef Py_ssize_t k = out.shape[1]
    cdef Py_ssize_t i, start
    if indptr.shape[0] != n + 1 or W.shape[1] != k:
        raise ValueError("csr_matmul: inconsistent shapes")
    if n == 0 or k == 0:
        return
    cdef const floating *wp = &W[0, 0] if W.shape[0] > 0 else NULL
    if wp == NULL:
        out[:, :] = 0
        return
    with nogil:
        for i in prange(n, schedule="dynamic", chunksize=64, num_threads=n_threads):
            start = indptr[i]
            _gather_row(&indices[start], &data[start], indptr[i + 1] - start,
                        wp, W.shape[0], k, &out[i, 0], square)


def csr_matmul_t(
    const index_t[::1] indptr,
    const index_t[::1] indices,
    const data_t[::1] data,
    const floating[:, ::1] G,
    floating[:, ::1] out,
    bint square,
    int n_threads,
):
    """``out = X.T @ G`` (or ``(X * X).T @ G``) for CSR ``X``; rows in parallel.

    Each thread scatters its share of the rows into its own accumulator (the
    first into ``out`` itself); the accumulators are summed at the end.
    """
    cdef Py_ssize_t n = G.shape[0]
    cdef Py_ssize_t d = out.shape[0]
    cdef Py_ssize_t k = out.shape[1]
    cdef Py_ssize_t i, start
    cdef int tid
    cdef int threads = max(1, min(n_threads, n // 256))
    if indptr.shape[0] != n + 1 or G.shape[1] != k:
        raise ValueError("csr_matmul_t: inconsistent shapes")
    out[:, :] = 0
    if n == 0 or k == 0 or d == 0:
        return
    partial = np.zeros((threads - 1, d, k), dtype=np.asarray(out).dtype)
    cdef floating[:, :, ::1] partial_v = partial
    cdef floating *target
    with nogil, parallel(num_threads=threads):
        tid = threadid()
        target = &out[0, 0] if tid == 0 else &partial_v[tid - 1, 0, 0]
        for i in prange(n, schedule="static"):
            start = indptr[i]
            _scatter_row(&indices[start], &data[start], indptr[i + 1] - start,
                         &G[i, 0], d, k, target, square)
    for t in range(threads - 1):
        np.add(out, partial[t], out=np.asarray(out))


def csr_hessp(
    const index_t[::1] indptr,
    const index_t[::1] indices,
    const data_t[::1] data,
    const floating[:, ::1] V,
    const floating[::1] vb,
    const floating[:, ::1] D,
    floating[:, ::1] out,
    double[::1] out_b,
    int n_threads,
):
    """Hessian-vector products of all labels: ``out = X.T @ U``, ``out_b = U.sum(0)``.

    ``U = D * (X @ V + vb)`` (``vb`` empty: no intercept). One sweep over the
    rows of ``X`` computes a row of ``X @ V``, scales it and scatters it
    back while the row's nonzeros are still in cache, so each conjugate
    gradient iteration reads ``X`` once instead of twice and never holds
    the ``(n_samples, n_labels)`` array ``U``.
    """
    cdef Py_ssize_t n = D.shape[0]
    cdef Py_ssize_t d = out.shape[0]
    cdef Py_ssize_t k = out.shape[1]
    cdef Py_ssize_t i, c, start, nnz
    cdef int tid
    cdef int threads = max(1, min(n_threads, n // 256))
    cdef bint has_b = vb.shape[0] > 0
    if (indptr.shape[0] != n + 1 or V.shape[0] != d or V.shape[1] != k
            or D.shape[1] != k or out_b.shape[0] != k or (has_b and vb.shape[0] != k)):
        raise ValueError("csr_hessp: inconsistent shapes")
    out[:, :] = 0
    out_b[:] = 0
    if n == 0 or k == 0 or d == 0:
        return
    dtype = np.asarray(out).dtype
    partial = np.zeros((threads - 1, d, k), dtype=dtype)
    rows = np.empty((threads, k + _PAD), dtype=dtype)
    sums = np.zeros((threads, k + _PAD), dtype=np.float64)
    cdef floating[:, :, ::1] partial_v = partial
    cdef floating[:, ::1] rows_v = rows
    cdef double[:, ::1] sums_v = sums
    cdef floating *target
    cdef floating *u
    cdef double *s
    with nogil, parallel(num_threads=threads):
        tid = threadid()
        target = &out[0, 0] if tid == 0 else &partial_v[tid - 1, 0, 0]
        u = &rows_v[tid, 0]
        s = &sums_v[tid, 0]
        for i in prange(n, schedule="static"):
            start = indptr[i]
            nnz = indptr[i + 1] - start
            _gather_row(&indices[start], &data[start], nnz, &V[0, 0], d, k, u, False)
            for c in range(k):
                if has_b:
                    u[c] = u[c] + vb[c]
                u[c] = u[c] * D[i, c]
                s[c] += u[c]
            _scatter_row(&indices[start], &data[start], nnz, u, d, k, target, False)
    for t in range(threads - 1):
        np.add(out, partial[t], out=np.asarray(out))
    np.sum(sums[:, :k], axis=0, out=np.asarray(out_b))
