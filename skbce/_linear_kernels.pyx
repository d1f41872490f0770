# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False, nonecheck=False
"""Kernels of the MultiLabelLogistic solvers (``skbce/_solvers.py``).

* :func:`logistic_derivatives` -- for logits ``Z`` of all active labels, in
  one sweep: the weighted loss summed *per label*, the gradient and the
  Hessian weights with respect to the logits. A solver needs the per-label
  sums (each label has its own line search), which ``bce_pass`` only gives
  through a full ``(n, k)`` array of elementwise losses.
* :func:`csr_matmul` -- ``X @ W`` for a CSR matrix and a dense C-ordered
  block of label columns, rows split across OpenMP threads (scipy's products
  are single-threaded). Each nonzero of ``X`` scales a contiguous row of
  ``k`` label values, a loop gcc vectorises. ``X.T @ G`` is the same kernel
  on the CSR matrix of ``X.T``: a gather, so no two threads write the same
  cache line. ``square=True`` uses the squared values of ``X`` (the
  diagonal of the Hessian, for the preconditioner).

Compiled with the loss kernels' flags (``-ffast-math`` at the compile step
only, see ``skbce/meson.build``) so that gcc calls glibc's vector ``exp`` and
``log1p``: nothing here decides anything on a NaN -- the inputs are validated
before a solver runs -- and bounds checks are off.
"""

from cython cimport floating
from cython.parallel cimport parallel, prange, threadid
from skbce._math cimport _abs, _exp, _log1p

import numpy as np

ctypedef fused index_t:
    int
    long long


def logistic_derivatives(
    const floating[:, ::1] Y,
    const floating[:, ::1] Z,
    const floating[::1] sample_weight,
    const floating[::1] pos_weight,
    double pos_weight_scalar,
    double scale,
    double[::1] loss_out,
    floating[:, ::1] grad_out,
    floating[:, ::1] hess_out,
    int n_threads,
):
    """Per-label weighted loss, gradient and curvature wrt the logits.

    With ``w_i = scale * sample_weight_i`` (``scale`` alone when
    ``sample_weight`` is empty) and ``pw_j`` from ``pos_weight`` (or the
    scalar when it is empty), for ``l = pw y softplus(-z) + (1 - y)
    softplus(z)``: ``loss_out[j] = sum_i w_i l_ij``, ``grad_out = w dl/dz``
    and ``hess_out = w d2l/dz2 = w (pw y + 1 - y) p (1 - p)``. Outputs of
    shape (0, 0) are skipped.
    """
    cdef Py_ssize_t n = Y.shape[0]
    cdef Py_ssize_t k = Y.shape[1]
    cdef Py_ssize_t i, j
    cdef int tid
    cdef bint has_sw = sample_weight.shape[0] > 0
    cdef bint has_pw = pos_weight.shape[0] > 0
    cdef bint want_grad = grad_out.shape[0] > 0
    cdef bint want_hess = hess_out.shape[0] > 0
    cdef floating w, y, z, e, sp, s_big, p, pwj, py, l
    cdef floating one = 1, zero = 0
    cdef floating pw_s = <floating> pos_weight_scalar
    acc = np.zeros((max(n_threads, 1), k), dtype=np.float64)
    cdef double[:, ::1] accv = acc
    if n == 0 or k == 0:
        loss_out[:] = 0
        return
    cdef const floating *yrow
    cdef const floating *zrow
    cdef const floating *pwp = &pos_weight[0] if has_pw else NULL
    cdef floating *grow
    cdef floating *hrow
    cdef double *arow
    with nogil, parallel(num_threads=n_threads):
        tid = threadid()
        arow = &accv[tid, 0]
        for i in prange(n, schedule="dynamic", chunksize=64):
            w = <floating> scale
            if has_sw:
                w = w * sample_weight[i]
            yrow = &Y[i, 0]
            zrow = &Z[i, 0]
            grow = &grad_out[i, 0] if want_grad else NULL
            hrow = &hess_out[i, 0] if want_hess else NULL
            for j in range(k):
                y = yrow[j]
                z = zrow[j]
                pwj = pwp[j] if has_pw else pw_s
                py = pwj * y
                e = _exp(-_abs(z))
                sp = _log1p(e)
                # softplus(z) = sp + max(z, 0), softplus(-z) = sp + max(-z, 0)
                l = (py + one - y) * sp + (one - y) * (z if z > zero else zero) \
                    - py * (z if z < zero else zero)
                arow[j] += w * l
                s_big = one / (one + e)
                p = s_big if z >= zero else e * s_big
                if want_grad:
                    grow[j] = w * ((one - y) * p - py * (one - p))
                if want_hess:
                    hrow[j] = w * (py + one - y) * p * (one - p)
    np.sum(acc, axis=0, out=np.asarray(loss_out))


def csr_matmul(
    const index_t[::1] indptr,
    const index_t[::1] indices,
    const floating[::1] data,
    const floating[:, ::1] W,
    floating[:, ::1] out,
    bint square,
    int n_threads,
):
    """``out = X @ W`` (or ``(X * X) @ W``) for CSR ``X``; rows in parallel."""
    cdef Py_ssize_t n = out.shape[0]
    cdef Py_ssize_t k = out.shape[1]
    cdef Py_ssize_t i, c, jj, col
    cdef floating v
    cdef floating *orow
    cdef const floating *wrow
    with nogil:
        for i in prange(n, schedule="dynamic", chunksize=64, num_threads=n_threads):
            orow = &out[i, 0]
            for c in range(k):
                orow[c] = 0
            for jj in range(indptr[i], indptr[i + 1]):
                col = indices[jj]
                v = data[jj]
                if square:
                    v = v * v
                wrow = &W[col, 0]
                for c in range(k):
                    orow[c] += v * wrow[c]
