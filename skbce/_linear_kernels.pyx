# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False, nonecheck=False
"""Kernels of the MultiLabelLogistic solvers (``skbce/linear_model/``).

* :func:`logistic_derivatives` -- for logits ``Z`` of all active labels, in
  one sweep: the weighted loss summed *per label*, the gradient and the
  Hessian weights with respect to the logits. A solver needs the per-label
  sums (each label has its own line search), which ``bce_pass`` only gives
  through a full ``(n, k)`` array of elementwise losses. The targets are
  read as stored -- uint8 for hard labels, floats for soft ones -- with
  label smoothing applied on the fly, so no float copy of them exists.
* :func:`dense_newton_terms` -- for a dense ``X`` and few labels, one sweep
  that gives each label's loss, gradient and exact Hessian (newton-cholesky).
* :func:`cg_curvature`, :func:`cg_advance`, :func:`cg_direction` -- the
  vector updates of newton-cg's conjugate gradient, all labels at once.

The products of a sparse ``X`` are in :mod:`skbce._csr_kernels`.

Compiled with the loss kernels' flags (``-ffast-math`` at the compile step
only, see ``skbce/meson.build``) so that gcc calls glibc's vector ``exp`` and
``log1p``: nothing here decides anything on a NaN -- the inputs are validated
before a solver runs -- and bounds checks are off.
"""

from cython cimport floating
from cython.parallel cimport parallel, prange, threadid
from skbce._math cimport _abs, _exp, _log1p
from skbce._padding cimport _PAD

import numpy as np

ctypedef fused target_t:
    unsigned char
    float
    double

ctypedef fused hess_t:  # float32 curvature feeds a float32 conjugate gradient
    float
    double


cdef inline floating _softplus_loss(floating y, floating py, floating z, floating e) noexcept nogil:
    # pw y softplus(-z) + (1 - y) softplus(z) with e = exp(-|z|) and
    # softplus(+-z) = log1p(e) + max(+-z, 0): no cancellation anywhere.
    cdef floating one = 1, zero = 0
    return ((py + one - y) * _log1p(e) + (one - y) * (z if z > zero else zero)
            - py * (z if z < zero else zero))


# Entries per block of rows in logistic_derivatives (about; a whole number of
# rows, at least one).
cdef enum:
    _FLAT_ENTRIES = 1024


cdef inline void _derivatives_flat(
    const target_t *y, const floating *z, const floating *pw, const floating *w,
    Py_ssize_t m, floating keep, floating shift, floating *loss, floating *g, hess_t *h,
) noexcept nogil:
    """``m`` consecutive entries of :func:`logistic_derivatives`, flat.

    ``pw`` and ``w`` hold each entry's positive weight and sample weight, so
    the loops see no rows or labels: a block of rows of a C-ordered array is
    one run of entries, long enough for gcc's vector loop (whose width, with
    uint8 targets, is 32 entries -- wider than most rows). Each loop is
    branch-free, so that gcc vectorises it with glibc's vector ``exp`` and
    ``log1p``; ``h`` needs ``g``. The curvature has a loop of its own, which
    recomputes ``exp``: with three outputs, the loop was not vectorised (too
    many possible overlaps between the arrays for gcc to check at run time).
    """
    cdef Py_ssize_t e
    cdef floating yv, zv, ev, py, s_big, p, q
    cdef floating one = 1, zero = 0
    if g == NULL:
        for e in range(m):
            yv = (<floating> y[e]) * keep + shift
            zv = z[e]
            ev = _exp(-_abs(zv))
            loss[e] = w[e] * _softplus_loss(yv, pw[e] * yv, zv, ev)
    else:
        for e in range(m):
            yv = (<floating> y[e]) * keep + shift
            zv = z[e]
            py = pw[e] * yv
            ev = _exp(-_abs(zv))
            loss[e] = w[e] * _softplus_loss(yv, py, zv, ev)
            s_big = one / (one + ev)
            # p = sigmoid(z) and q = sigmoid(-z), both from e: 1 - p would
            # lose q's digits for a large z (and be 0 from z ~ 37 on).
            p = s_big if zv >= zero else ev * s_big
            q = ev * s_big if zv >= zero else s_big
            g[e] = w[e] * ((one - yv) * p - py * q)
    if h != NULL:
        for e in range(m):
            yv = (<floating> y[e]) * keep + shift
            zv = z[e]
            ev = _exp(-_abs(zv))
            s_big = one / (one + ev)
            # p (1 - p) = e / (1 + e)^2, without forming 1 - p.
            h[e] = <hess_t> (w[e] * (pw[e] * yv + one - yv) * (ev * s_big) * s_big)


def logistic_derivatives(
    const target_t[:, ::1] Y,
    const floating[:, ::1] Z,
    const floating[::1] sample_weight,
    const floating[::1] pos_weight,
    double pos_weight_scalar,
    double label_smoothing,
    double scale,
    double[::1] loss_out,
    floating[:, ::1] grad_out,
    hess_t[:, ::1] hess_out,
    int n_threads,
):
    """Per-label weighted loss, gradient and curvature wrt the logits.

    With ``w_i = scale * sample_weight_i`` (``scale`` alone when
    ``sample_weight`` is empty), ``pw_j`` from ``pos_weight`` (or the scalar
    when it is empty) and the target ``y = Y_ij (1 - s) + s / 2`` for a label
    smoothing ``s``, for ``l = pw y softplus(-z) + (1 - y) softplus(z)``:
    ``loss_out[j] = sum_i w_i l_ij``, ``grad_out = w dl/dz`` and ``hess_out
    = w d2l/dz2 = w (pw y + 1 - y) p (1 - p)``. Outputs of shape (0, 0) are
    skipped; ``hess_out`` needs ``grad_out``.
    """
    cdef Py_ssize_t n = Y.shape[0]
    cdef Py_ssize_t k = Y.shape[1]
    cdef int tid
    cdef bint has_sw = sample_weight.shape[0] > 0
    cdef bint want_grad = grad_out.shape[0] > 0
    cdef bint want_hess = hess_out.shape[0] > 0
    if (Z.shape[0] != n or Z.shape[1] != k or loss_out.shape[0] != k
            or (want_grad and (grad_out.shape[0] != n or grad_out.shape[1] != k))
            or (want_hess and (not want_grad or hess_out.shape[0] != n
                               or hess_out.shape[1] != k))
            or (has_sw and sample_weight.shape[0] != n)
            or (pos_weight.shape[0] > 0 and pos_weight.shape[0] != k)):
        raise ValueError("logistic_derivatives: inconsistent shapes")
    loss_out[:] = 0
    if n == 0 or k == 0:
        return
    dtype = np.asarray(Z).dtype
    pw_full = (np.asarray(pos_weight) if pos_weight.shape[0] > 0
               else np.full(k, pos_weight_scalar, dtype=dtype))
    # Blocks of ``rows`` rows, each one flat run of entries; the positive
    # weights tiled to the block's length, sample weights expanded per block
    # into a per-thread buffer beside the entries' losses.
    cdef Py_ssize_t rows = max(1, _FLAT_ENTRIES // k)
    cdef Py_ssize_t n_blocks = (n + rows - 1) // rows
    cdef const floating[::1] pw = np.tile(pw_full, rows)
    scratch = np.empty((max(n_threads, 1), 2, rows * k), dtype=dtype)
    cdef floating[:, :, ::1] scr = scratch
    acc = np.zeros((max(n_threads, 1), k + _PAD), dtype=np.float64)
    cdef double[:, ::1] accv = acc
    cdef floating keep = <floating> (1.0 - label_smoothing)
    cdef floating shift = <floating> (0.5 * label_smoothing)
    cdef floating wi
    cdef floating *wbuf
    cdef floating *lbuf
    cdef double *arow
    cdef Py_ssize_t b, r0, nr, r, j
    with nogil, parallel(num_threads=n_threads):
        tid = threadid()
        arow = &accv[tid, 0]
        wbuf = &scr[tid, 0, 0]
        lbuf = &scr[tid, 1, 0]
        for b in prange(n_blocks, schedule="static"):
            r0 = b * rows
            nr = min(rows, n - r0)
            for r in range(nr):
                wi = <floating> scale
                if has_sw:
                    wi = wi * sample_weight[r0 + r]
                for j in range(k):
                    wbuf[r * k + j] = wi
            _derivatives_flat(&Y[r0, 0], &Z[r0, 0], &pw[0], wbuf, nr * k, keep, shift, lbuf,
                              &grad_out[r0, 0] if want_grad else NULL,
                              &hess_out[r0, 0] if want_hess else NULL)
            for r in range(nr):
                for j in range(k):
                    arow[j] += lbuf[r * k + j]
    np.sum(acc[:, :k], axis=0, out=np.asarray(loss_out))




# -- exact Newton terms of a dense X -----------------------------------------------

cdef extern from *:
    """
    /* H[i, j] += sum_r C[r, i] * B[r, j] over the R rows of a block, for the
       tiles of H on or above its diagonal: rows i0..i0+3, columns j0 to j0 +
       3 lanes' worth. B and C are row-major with row stride w, H too; w
       leaves room for the last tile's columns, so no tile needs a narrower
       case (the extra entries are never read). The tile of H is twelve
       vector registers for the whole block, and every row costs 4
       broadcasts and 3 vector loads for 12 vector multiply-adds: BLAS's
       syrk on the scaled block did the same arithmetic at a third of the
       speed (its kernels are tuned for large outputs, this one is 52 x 52)
       after a separate pass that scaled the block. */
    #define SKBCE_GRAM_UPDATE(NAME, E, L) \
    static void NAME(const E *B, const E *C, Py_ssize_t R, Py_ssize_t mp, Py_ssize_t w, \
                     E *H) \
    { \
        typedef E vec __attribute__((vector_size(32))); \
        typedef E vm __attribute__((vector_size(32), aligned(sizeof(E)), may_alias)); \
        for (Py_ssize_t i0 = 0; i0 < mp; i0 += 4) { \
            for (Py_ssize_t j0 = i0 - i0 % L; j0 < mp; j0 += 3 * L) { \
                E *h = H + i0 * w + j0; \
                vec a00 = *(vm *)(h), a01 = *(vm *)(h + L), a02 = *(vm *)(h + 2 * L); \
                vec a10 = *(vm *)(h + w), a11 = *(vm *)(h + w + L), \
                    a12 = *(vm *)(h + w + 2 * L); \
                vec a20 = *(vm *)(h + 2 * w), a21 = *(vm *)(h + 2 * w + L), \
                    a22 = *(vm *)(h + 2 * w + 2 * L); \
                vec a30 = *(vm *)(h + 3 * w), a31 = *(vm *)(h + 3 * w + L), \
                    a32 = *(vm *)(h + 3 * w + 2 * L); \
                const E *b = B + j0; \
                const E *c = C + i0; \
                for (Py_ssize_t r = 0; r < R; r++, b += w, c += w) { \
                    vec b0 = *(const vm *)(b), b1 = *(const vm *)(b + L), \
                        b2 = *(const vm *)(b + 2 * L); \
                    E c0 = c[0], c1 = c[1], c2 = c[2], c3 = c[3]; \
                    a00 += c0 * b0; a01 += c0 * b1; a02 += c0 * b2; \
                    a10 += c1 * b0; a11 += c1 * b1; a12 += c1 * b2; \
                    a20 += c2 * b0; a21 += c2 * b1; a22 += c2 * b2; \
                    a30 += c3 * b0; a31 += c3 * b1; a32 += c3 * b2; \
                } \
                *(vm *)(h) = a00; *(vm *)(h + L) = a01; *(vm *)(h + 2 * L) = a02; \
                *(vm *)(h + w) = a10; *(vm *)(h + w + L) = a11; *(vm *)(h + w + 2 * L) = a12; \
                *(vm *)(h + 2 * w) = a20; *(vm *)(h + 2 * w + L) = a21; \
                *(vm *)(h + 2 * w + 2 * L) = a22; \
                *(vm *)(h + 3 * w) = a30; *(vm *)(h + 3 * w + L) = a31; \
                *(vm *)(h + 3 * w + 2 * L) = a32; \
            } \
        } \
    }
    #if defined(__GNUC__) || defined(__clang__)
    SKBCE_GRAM_UPDATE(skbce_gram_update_d, double, 4)
    SKBCE_GRAM_UPDATE(skbce_gram_update_f, float, 8)
    #else
    #define SKBCE_GRAM_SCALAR(NAME, E, L) \
    static void NAME(const E *B, const E *C, Py_ssize_t R, Py_ssize_t mp, Py_ssize_t w, \
                     E *H) \
    { \
        for (Py_ssize_t r = 0; r < R; r++) \
            for (Py_ssize_t i = 0; i < mp; i++) \
                for (Py_ssize_t j = i; j < mp; j++) \
                    H[i * w + j] += C[r * w + i] * B[r * w + j]; \
    }
    SKBCE_GRAM_SCALAR(skbce_gram_update_d, double, 4)
    SKBCE_GRAM_SCALAR(skbce_gram_update_f, float, 8)
    #endif
    """
    void skbce_gram_update_d(const double *B, const double *C, Py_ssize_t R, Py_ssize_t mp,
                             Py_ssize_t w, double *H) noexcept nogil
    void skbce_gram_update_f(const float *B, const float *C, Py_ssize_t R, Py_ssize_t mp,
                             Py_ssize_t w, float *H) noexcept nogil


# Rows per block of dense_newton_terms: its two (rows, w) buffers stay in the
# level-1 cache (64 rows x 56 doubles: 28 KiB each). 400 000 x 50, one
# thread: 32 rows 59 ms, 64 rows 54 ms, 128 and 256 rows 76 ms.
cdef enum:
    _NEWTON_ROWS = 64


cdef inline void _gram_update(const floating *B, const floating *C, Py_ssize_t R,
                              Py_ssize_t mp, Py_ssize_t w, floating *H) noexcept nogil:
    if floating is double:
        skbce_gram_update_d(B, C, R, mp, w, H)
    else:
        skbce_gram_update_f(B, C, R, mp, w, H)


def dense_newton_terms(
    const floating[:, ::1] X,
    const floating[:, ::1] W,
    const floating[::1] b,
    const target_t[:, ::1] Y,
    const floating[::1] sample_weight,
    const floating[::1] pos_weight,
    double pos_weight_scalar,
    double label_smoothing,
    double scale,
    double[::1] loss_out,
    double[:, ::1] grad_out,
    floating[:, :, ::1] hess_out,
    int n_threads,
):
    """Loss, gradient and exact Hessian of each label's data term: one sweep over ``X``.

    With the weights and targets of :func:`logistic_derivatives` and ``A =
    [X, 1]`` (the column of ones only when ``b`` is not empty, i.e. with an
    intercept; ``m = d + 1`` then, ``d`` otherwise): ``loss_out[j] = sum_i
    w_i l_ij``, ``grad_out[:, j] = A.T @ g_j`` and the upper triangle of
    ``hess_out[j] = A.T @ diag(h_j) @ A`` (its lower triangle is left as
    it is), for the logits ``X @ W + b`` of the labels.

    A block of rows is read from memory once: copied with its column of
    ones into a padded buffer, it gives the logits, their derivatives, the
    gradient's share, and each label's Hessian update (see
    ``skbce_gram_update``) while it is in cache. Threads take blocks of
    rows, each accumulating into its own Hessians; they are summed at the
    end.
    """
    cdef Py_ssize_t n = X.shape[0]
    cdef Py_ssize_t d = X.shape[1]
    cdef Py_ssize_t k = W.shape[1]
    cdef bint fit_b = b.shape[0] > 0
    cdef Py_ssize_t m = d + 1 if fit_b else d
    cdef bint has_sw = sample_weight.shape[0] > 0
    if (W.shape[0] != d or Y.shape[0] != n or Y.shape[1] != k or (fit_b and b.shape[0] != k)
            or loss_out.shape[0] != k or grad_out.shape[0] != m or grad_out.shape[1] != k
            or hess_out.shape[0] != k or hess_out.shape[1] != m or hess_out.shape[2] != m
            or (has_sw and sample_weight.shape[0] != n)
            or (pos_weight.shape[0] > 0 and pos_weight.shape[0] != k)):
        raise ValueError("dense_newton_terms: inconsistent shapes")
    loss_out[:] = 0
    grad_out[:, :] = 0
    if k == 0:
        return
    dtype = np.asarray(X).dtype
    cdef Py_ssize_t lanes = 32 // dtype.itemsize
    cdef Py_ssize_t mp = (m + 3) // 4 * 4  # whole tiles of four rows of H
    cdef Py_ssize_t w = mp + 3 * lanes  # ... and room for a tile's columns
    cdef int threads = max(1, min(n_threads, n // (4 * _NEWTON_ROWS)))
    cdef Py_ssize_t R = _NEWTON_ROWS
    cdef Py_ssize_t n_blocks = (n + R - 1) // R
    pw_full = (np.asarray(pos_weight) if pos_weight.shape[0] > 0
               else np.full(k, pos_weight_scalar, dtype=dtype))
    cdef const floating[::1] pw = np.tile(pw_full, R)
    # Per thread: the block's rows B = [x, 1, 0...] and C = h_j * B, the
    # logits, their derivatives and weights of its entries, and the sums.
    rows = np.zeros((threads, 2, R, w), dtype=dtype)
    entries = np.empty((threads, 5, R * k), dtype=dtype)
    hess = np.zeros((threads, k, mp, w), dtype=dtype)
    grad = np.zeros((threads, k, m + _PAD))
    loss = np.zeros((threads, k + _PAD))
    # Each label's coefficients contiguous: the logits are dot products
    # that gcc vectorises (a strided W kept them scalar, one dependent
    # multiply-add after another).
    cdef const floating[:, ::1] WT = np.ascontiguousarray(np.asarray(W).T)
    cdef floating[:, :, :, ::1] rows_v = rows
    cdef floating[:, :, ::1] ent_v = entries
    cdef floating[:, :, :, ::1] hess_v = hess
    cdef double[:, :, ::1] grad_v = grad
    cdef double[:, ::1] loss_v = loss
    cdef floating keep = <floating> (1.0 - label_smoothing)
    cdef floating shift = <floating> (0.5 * label_smoothing)
    cdef floating one = 1
    cdef floating wi, zv, gv
    cdef floating *B
    cdef floating *C
    cdef floating *Zb
    cdef floating *Gb
    cdef floating *Hb
    cdef floating *wbuf
    cdef floating *lbuf
    cdef const floating *x
    cdef const floating *wj
    cdef double *gacc
    cdef int tid
    cdef Py_ssize_t blk, r0, nr, r, i, j
    with nogil, parallel(num_threads=threads):
        tid = threadid()
        B = &rows_v[tid, 0, 0, 0]
        C = &rows_v[tid, 1, 0, 0]
        Zb = &ent_v[tid, 0, 0]
        Gb = &ent_v[tid, 1, 0]
        Hb = &ent_v[tid, 2, 0]
        wbuf = &ent_v[tid, 3, 0]
        lbuf = &ent_v[tid, 4, 0]
        for blk in prange(n_blocks, schedule="static"):
            r0 = blk * R
            nr = min(R, n - r0)
            for r in range(nr):
                x = &X[r0 + r, 0]
                for i in range(d):
                    B[r * w + i] = x[i]
                if fit_b:
                    B[r * w + d] = one
                wi = <floating> scale
                if has_sw:
                    wi = wi * sample_weight[r0 + r]
                for j in range(k):
                    wj = &WT[j, 0]
                    zv = 0
                    for i in range(d):
                        zv = zv + x[i] * wj[i]
                    Zb[r * k + j] = zv + (b[j] if fit_b else 0)
                    wbuf[r * k + j] = wi
            _derivatives_flat(&Y[r0, 0], Zb, &pw[0], wbuf, nr * k, keep, shift, lbuf, Gb, Hb)
            for j in range(k):
                gacc = &grad_v[tid, j, 0]
                for r in range(nr):
                    loss_v[tid, j] += lbuf[r * k + j]
                    gv = Gb[r * k + j]
                    for i in range(m):
                        gacc[i] += gv * B[r * w + i]
            for j in range(k):
                for r in range(nr):
                    zv = Hb[r * k + j]
                    for i in range(m):
                        C[r * w + i] = zv * B[r * w + i]
                _gram_update(B, C, nr, mp, w, &hess_v[tid, j, 0, 0])
    np.sum(loss[:, :k], axis=0, out=np.asarray(loss_out))
    np.sum(grad[:, :, :m], axis=0, out=np.asarray(grad_out).T)
    total = hess[0]
    for t in range(1, threads):
        total += hess[t]
    out = np.asarray(hess_out)
    upper = np.triu_indices(m)
    for j in range(k):
        out[j][upper] = total[j, :m, :m][upper]


# -- vector updates of the batched conjugate gradient ------------------------------
#
# The conjugate gradient of newton-cg holds one column per label in (d, k)
# arrays. Its updates are a few multiply-adds per entry, so as separate numpy
# operations (one pass over the arrays each, some with a temporary) they cost
# a third as much as the Hessian products themselves on bibtex (d = 1836,
# k = 16). These fuse them: one pass each.

def cg_curvature(
    floating[:, ::1] HW,
    const floating[:, ::1] DW,
    double alpha,
    double[::1] curv,
):
    """``HW += alpha * DW`` and ``curv[j] = sum_i DW[i, j] * HW[i, j]``."""
    cdef Py_ssize_t d = HW.shape[0]
    cdef Py_ssize_t k = HW.shape[1]
    cdef Py_ssize_t i, j
    cdef floating a = <floating> alpha
    if DW.shape[0] != d or DW.shape[1] != k or curv.shape[0] != k:
        raise ValueError("cg_curvature: inconsistent shapes")
    curv[:] = 0
    with nogil:
        for i in range(d):
            for j in range(k):
                HW[i, j] = HW[i, j] + a * DW[i, j]
                curv[j] += DW[i, j] * HW[i, j]


def cg_advance(
    floating[:, ::1] PW,
    const Py_ssize_t[::1] cols,
    const floating[:, ::1] DW,
    floating[:, ::1] RW,
    const floating[:, ::1] HW,
    const floating[::1] step,
    double[::1] rr,
):
    """``PW[:, cols] += step * DW``, ``RW -= step * HW``, ``rr[j] = sum_i RW[i, j]**2``."""
    cdef Py_ssize_t d = DW.shape[0]
    cdef Py_ssize_t k = DW.shape[1]
    cdef Py_ssize_t i, j
    cdef floating r
    if (PW.shape[0] != d or cols.shape[0] != k or RW.shape[0] != d or RW.shape[1] != k
            or HW.shape[0] != d or HW.shape[1] != k or step.shape[0] != k
            or rr.shape[0] != k):
        raise ValueError("cg_advance: inconsistent shapes")
    for j in range(k):
        if cols[j] < 0 or cols[j] >= PW.shape[1]:
            raise ValueError("cg_advance: column index out of range")
    rr[:] = 0
    with nogil:
        for i in range(d):
            for j in range(k):
                PW[i, cols[j]] += step[j] * DW[i, j]
                r = RW[i, j] - step[j] * HW[i, j]
                RW[i, j] = r
                rr[j] += r * r


def cg_direction(
    floating[:, ::1] DW,
    const floating[:, ::1] ZW,
    const floating[::1] beta,
):
    """``DW = ZW + beta * DW``: the next conjugate direction."""
    cdef Py_ssize_t d = DW.shape[0]
    cdef Py_ssize_t k = DW.shape[1]
    cdef Py_ssize_t i, j
    if ZW.shape[0] != d or ZW.shape[1] != k or beta.shape[0] != k:
        raise ValueError("cg_direction: inconsistent shapes")
    with nogil:
        for i in range(d):
            for j in range(k):
                DW[i, j] = ZW[i, j] + beta[j] * DW[i, j]


# -- input scale ------------------------------------------------------------------

def max_abs(const floating[::1] x, int n_threads):
    """``max |x|`` over a flat array of finite values, 0 for an empty one.

    The solvers' magnitude check reads all of a dense ``X`` once; numpy's
    ``max(x.max(), -x.min())`` reads it twice (and ``np.abs`` makes a copy).
    """
    cdef Py_ssize_t n = x.shape[0]
    cdef Py_ssize_t chunks = 64
    cdef Py_ssize_t c, i, start, stop
    cdef double m, a
    partial = np.zeros(chunks)
    cdef double[::1] part = partial
    with nogil:
        for c in prange(chunks, schedule="static", num_threads=n_threads):
            start = c * n // chunks
            stop = (c + 1) * n // chunks
            m = 0
            for i in range(start, stop):
                a = _abs(x[i])
                m = a if a > m else m
            part[c] = m
    return float(partial.max())
