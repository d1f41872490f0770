# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False, nonecheck=False
"""Dual coordinate descent for L2 logistic regression, one label per thread.

:func:`dual_cd` fits every label of a one-vs-rest problem on a CSR ``X``
independently, labels spread over OpenMP threads (``prange`` with a dynamic
schedule: a label's cost depends on how many of its samples stay active).
Each thread holds a few arrays of ``n_samples`` and ``n_features`` doubles
and writes its label's row of ``W``; nothing of size ``n_samples *
n_labels`` exists.

The math. Per label, in the units of ``P = 1/2 |w|^2 + sum_i c_i (phi(z_i) -
q_i z_i)``, ``z_i = x_i . w + b``, ``phi(z) = log(1 + e^z)`` -- the
problem's objective ``f`` divided by its L2 strength ``alpha``: with sample
weight ``s_i`` (normalised), positive weight ``pw`` and (smoothed) target
``y``, ``c_i = s_i (pw y + 1 - y) / alpha`` and ``q_i = pw y / (pw y + 1 -
y)``, in [0, 1]. Its dual in ``a_i = c_i (q_i - u_i)``, ``u_i`` in [0, 1],
is ``1/2 |sum_i a_i x_i|^2 + sum_i [c_i (u_i log u_i + (1 - u_i) log(1 -
u_i)) + b a_i]``, with ``w = sum_i a_i x_i`` at every step. The variable kept
per sample is the logit ``t_i = logit(u_i)``: the one-variable subproblem
(Yu, Huang and Lin 2011, liblinear's ``-s 7``) is then the root of ``t + A
sigmoid(t) = G + A sigmoid(t_old)``, ``A = c_i |x_i|^2``, ``G = x_i . w + b``,
a monotone equation with its root in ``[R - A, R]`` solved by safeguarded
Newton, and no ``u`` ever reaches 0 or 1: a rare label's far negatives
(``u`` ~ 1e-8) keep full precision. ``t_i = z_i`` at the optimum.

The intercept is not penalised. With it the dual has the constraint
``sum_i a_i = 0``, which single-coordinate steps cannot keep; instead ``b``
is the offset of the dual, and after each epoch it takes a Newton step on
``F(b) = min_w P(w, b)``, whose slope is ``-sum_i a_i`` (kept up to date at
no cost) and whose curvature is estimated by the samples' responses
``c_i s'_i / (1 + A_i s'_i)`` (``s' = sigmoid'(t_i)``), damped when the slope
changes sign.

Shrinking: a sample whose mismatch ``c_i |sigmoid(G) - sigmoid(t_i)| *
max_k |x_ik|`` (its share of the primal gradient) is below the epoch
tolerance leaves the epochs; for a rare label that is nearly every negative
after one or two epochs. When the remaining samples meet the tolerance, one
full pass computes the exact primal gradient and objective and applies the
estimator's stopping rule (the gradient's max-norm and the decrease a
diagonal Newton step predicts, as ``_solver_base._diagonal_decrease``); a
label that fails it resumes with all samples and a tolerance ten times
tighter.
"""

from cython.parallel cimport parallel, prange
from libc.math cimport exp, fabs, log1p, sqrt
from libc.stdlib cimport free, malloc

import numpy as np

ctypedef fused index_t:
    int
    long long

ctypedef fused data_t:
    float
    double

ctypedef fused target_t:
    unsigned char
    float
    double


cdef inline double _sigmoid(double t) noexcept nogil:
    # exp of a non-positive number only: no overflow (and -ffast-math safe).
    cdef double e
    if t >= 0:
        return 1.0 / (1.0 + exp(-t))
    e = exp(t)
    return e / (1.0 + e)


cdef inline double _log1pexp(double t) noexcept nogil:
    if t > 0:
        return t + log1p(exp(-t))
    return log1p(exp(t))


cdef inline double _sigmoid_diff(double t0, double t1) noexcept nogil:
    """``sigmoid(t0) - sigmoid(t1)`` without cancellation near 1."""
    if t0 + t1 > 0:
        return _sigmoid(-t1) - _sigmoid(-t0)
    return _sigmoid(t0) - _sigmoid(t1)


cdef inline double _solve_logit(double R, double A, double t) noexcept nogil:
    """The root of ``t + A sigmoid(t) = R`` (``A >= 0``), Newton from ``t``.

    The left side rises with slope in [1, 1 + A/4], so the root lies in
    ``[R - A, R]``; a step leaving that bracket bisects it instead.
    """
    cdef double lo = R - A, hi = R, s, f, nt
    cdef int it
    if t <= lo or t >= hi:
        t = 0.5 * (lo + hi)
    for it in range(60):
        s = _sigmoid(t)
        f = t + A * s - R
        if f > 0:
            hi = t
        else:
            lo = t
        nt = t - f / (1.0 + A * s * (1.0 - s))
        if nt <= lo or nt >= hi:
            nt = 0.5 * (lo + hi)
        if fabs(nt - t) <= 1e-13 * (1.0 + fabs(t)):
            return nt
        t = nt
    return t


cdef inline double _row_dot(const index_t[::1] indptr, const index_t[::1] indices,
                            const data_t[::1] data, Py_ssize_t i,
                            const double *w) noexcept nogil:
    cdef double acc = 0.0
    cdef index_t p
    for p in range(indptr[i], indptr[i + 1]):
        acc = acc + data[p] * w[indices[p]]
    return acc


cdef inline void _row_axpy(const index_t[::1] indptr, const index_t[::1] indices,
                           const data_t[::1] data, Py_ssize_t i, double scale,
                           double *w) noexcept nogil:
    cdef index_t p
    for p in range(indptr[i], indptr[i + 1]):
        w[indices[p]] += scale * data[p]


cdef inline unsigned long long _xorshift(unsigned long long *state) noexcept nogil:
    cdef unsigned long long x = state[0]
    x ^= x << 13
    x ^= x >> 7
    x ^= x << 17
    state[0] = x
    return x


cdef double _verify(const index_t[::1] indptr, const index_t[::1] indices,
                    const data_t[::1] data, Py_ssize_t n, Py_ssize_t d,
                    const double *c, const double *q, const double *sw_c,
                    const double[::1] col, double alpha, double b, bint fit_b,
                    const double *w, double *g, double *z_out, double *f_out, double *gb_out,
                    double *decrease_out, double *gmax_w_out,
                    double *decrease_b_out) noexcept nogil:
    """Exact objective and gradient (in the units of ``f``) at ``(w, b)``; returns max|g|.

    The logits go to ``z_out``, for the choice of the samples to revisit.
    ``sw_c[i] = c_i * alpha`` is the sample's weight in ``f``. Also gives the
    decrease a Newton step on the Hessian's diagonal predicts (the
    estimator's second stopping test).
    """
    cdef Py_ssize_t i, k
    cdef double z, s, r, loss = 0.0, gb = 0.0, curvature = 0.0, gmax, sq = 0.0, h, dec
    for k in range(d):
        g[k] = alpha * w[k]
        sq += w[k] * w[k]
    for i in range(n):
        if sw_c[i] == 0:
            continue
        z = _row_dot(indptr, indices, data, i, w) + b
        z_out[i] = z
        s = _sigmoid(z)
        loss += sw_c[i] * (_log1pexp(z) - q[i] * z)
        r = sw_c[i] * (s - q[i])
        curvature += sw_c[i] * s * (1.0 - s)
        gb += r
        _row_axpy(indptr, indices, data, i, r, g)
    gmax = 0.0
    dec = 0.0
    for k in range(d):
        if fabs(g[k]) > gmax:
            gmax = fabs(g[k])
        if g[k] != 0:
            h = curvature * col[k] + alpha
            dec += g[k] * g[k] / h
    gmax_w_out[0] = gmax
    decrease_b_out[0] = 0.0
    if fit_b:
        if fabs(gb) > gmax:
            gmax = fabs(gb)
        if gb != 0:
            decrease_b_out[0] = 0.5 * (gb * gb / curvature if curvature > 0 else 1e300)
    else:
        gb = 0.0
    f_out[0] = loss + 0.5 * alpha * sq
    gb_out[0] = gb
    decrease_out[0] = 0.5 * dec + decrease_b_out[0]
    return gmax


cdef inline double _penalty_weight(double scale, Py_ssize_t n_all, const int *active,
                                   const double *c, const double *t) noexcept nogil:
    """The augmented Lagrangian's weight: ``scale`` over the intercept's curvature.

    A multiplier update is a proximal step on ``F(b)`` that shrinks the
    intercept's error by ``1 / (1 + rho F'')``; ``F''`` is at most the
    curvature ``sum_i c_i s'_i`` at fixed weights, a few times less when the
    weights can mimic the intercept (non-negative tf-idf rows). A label
    without positives (or negatives) has its infimum at ``b = -inf`` and its
    curvature vanishes on the way: the weight then grows, capped at 1e12, and
    each update moves ``b`` by about ``scale``.
    """
    cdef double h = 0.0, s
    cdef Py_ssize_t p
    for p in range(n_all):
        s = _sigmoid(t[active[p]])
        h += c[active[p]] * s * (1.0 - s)
    if h * 1e12 <= scale:
        return 1e12
    return scale / h


cdef inline void _reactivate(Py_ssize_t n_all, int *active, Py_ssize_t *n_act,
                             const double *c, const double *z, const double *t, double shift,
                             const double[::1] xmax, double eps) noexcept nogil:
    """Put first in ``active`` the samples whose mismatch at logits ``z + shift`` exceeds ``eps``."""
    cdef Py_ssize_t p, i, m = 0
    cdef int swap
    for p in range(n_all):
        i = active[p]
        if c[i] * fabs(_sigmoid_diff(z[i] + shift, t[i])) * xmax[i] > eps:
            swap = active[m]
            active[m] = <int>i
            active[p] = swap
            m += 1
    n_act[0] = m


cdef int _fit_label(const index_t[::1] indptr, const index_t[::1] indices,
                    const data_t[::1] data, const target_t[:, ::1] Y, Py_ssize_t j,
                    const double[::1] sqnorm, const double[::1] xmax,
                    const double[::1] sw, double pw, double smoothing, double alpha,
                    const double[::1] col, double[:, ::1] W, double *b_io, bint fit_b,
                    double rho_scale, double eps_factor, double tol, int max_epochs,
                    double *f_out,
                    unsigned char *conv_out,
                    double *t, double *c, double *q, double *sw_c, int *active,
                    double *w, double *g, double *z, long long *visits) noexcept nogil:
    """Fit label ``j``; its coefficients go to ``W[j]``; returns the epochs run."""
    cdef Py_ssize_t n = sqnorm.shape[0], d = W.shape[1], i, p, k, n_all = 0, n_act
    cdef double y, a, b = b_io[0], G, R, tnew, delta, viol, maxviol, sum_a = 0.0
    cdef double eps, eps_min, rho = 0.0
    cdef double f, gb, decrease, decrease_b, gmax, gmax_w, prev_gb = 1e300, shift
    cdef int epoch = 0, swap, start_zero, intercept_off
    cdef unsigned long long rng = 0x9E3779B97F4A7C15ULL ^ (<unsigned long long>(j + 1) * 2654435761ULL)
    conv_out[0] = 0
    visits[0] = 0
    # Per-sample weights and targets of this label.
    for i in range(n):
        y = <double>Y[i, j]
        y = y * (1.0 - smoothing) + 0.5 * smoothing
        a = pw * y + 1.0 - y
        sw_c[i] = sw[i] * a
        c[i] = sw_c[i] / alpha
        q[i] = pw * y / a if a > 0 else 0.0
        if c[i] > 0:
            active[n_all] = <int>i
            n_all += 1
    # Start: the dual point of the primal start (W[j], b), t_i = z_i.
    start_zero = 1
    for k in range(d):
        w[k] = W[j, k]
        if w[k] != 0:
            start_zero = 0
    for i in range(n):
        t[i] = b if start_zero else _row_dot(indptr, indices, data, i, w) + b
    for k in range(d):
        w[k] = 0.0
    for i in range(n):
        if c[i] > 0:
            a = c[i] * (q[i] - _sigmoid(t[i]))
            sum_a += a
            _row_axpy(indptr, indices, data, i, a, w)
    # A sample's share of the primal gradient, in the units of P, below
    # which it needs no visit: the gradient's tolerance over the samples
    # (the intercept's gradient sums them all), eps_factor times.
    eps = eps_factor * tol / alpha / (n_all if n_all > 0 else 1)
    eps_min = 1e-8 * eps
    if fit_b:
        rho = _penalty_weight(rho_scale, n_all, active, c, t)
        b += rho * sum_a  # b = lambda + rho sum_a, lambda the start
    n_act = n_all
    while epoch < max_epochs:
        epoch += 1
        # A random order each epoch (Fisher-Yates on the active samples).
        for p in range(n_act - 1, 0, -1):
            k = <Py_ssize_t>(_xorshift(&rng) % <unsigned long long>(p + 1))
            swap = active[p]
            active[p] = active[k]
            active[k] = swap
        maxviol = 0.0
        p = 0
        while p < n_act:
            i = active[p]
            G = _row_dot(indptr, indices, data, i, w) + b
            visits[0] += 1
            viol = c[i] * fabs(_sigmoid_diff(G, t[i])) * xmax[i]
            if viol <= eps and epoch > 1:
                # Shrink: met the tolerance; back only after a failed check.
                n_act -= 1
                active[p] = active[n_act]
                active[n_act] = <int>i
                continue
            if viol > maxviol:
                maxviol = viol
            a = c[i] * (sqnorm[i] + rho)
            R = G + a * _sigmoid(t[i])
            tnew = _solve_logit(R, a, t[i])
            delta = c[i] * _sigmoid_diff(t[i], tnew)
            if delta != 0:
                _row_axpy(indptr, indices, data, i, delta, w)
                sum_a += delta
                b += rho * delta
            t[i] = tnew
            p += 1
        if maxviol > eps:
            continue
        if fit_b and fabs(sum_a) > 0.5 * tol / alpha:
            # The dual is far from sum_i a_i = 0: a multiplier update without
            # an exact pass. At this point t_i ~ z_i, so the samples the
            # shift disturbs are known without one.
            rho = _penalty_weight(rho_scale, n_all, active, c, t)
            shift = rho * sum_a
            b += shift
            _reactivate(n_all, active, &n_act, c, t, t, shift, xmax, eps)
            continue
        gmax = _verify(indptr, indices, data, n, d, c, q, sw_c, col, alpha, b, fit_b,
                       w, g, z, &f, &gb, &decrease, &gmax_w, &decrease_b)
        visits[0] += n_all
        f_out[0] = f
        if gmax <= tol and decrease <= tol * (f if f > tol else tol):
            conv_out[0] = 1
            break
        # Not yet. The multiplier update of the augmented Lagrangian if the
        # intercept is off (the intercept reached becomes the centre), a
        # tighter tolerance if the weights are or the intercept stalls, and
        # back to the epochs with the samples the exact logits show off.
        shift = 0.0
        intercept_off = fit_b and (fabs(gb) > tol or
                                   decrease_b > 0.5 * tol * (f if f > tol else tol))
        if intercept_off:
            rho = _penalty_weight(rho_scale, n_all, active, c, t)
            shift = rho * sum_a
            b += shift
        if (gmax_w > tol or not intercept_off or fabs(gb) > 0.9 * prev_gb) and eps > eps_min:
            eps *= 0.1
        prev_gb = fabs(gb)
        _reactivate(n_all, active, &n_act, c, z, t, shift, xmax, eps)
    for k in range(d):
        W[j, k] = w[k]
    b_io[0] = b
    if not conv_out[0]:
        _verify(indptr, indices, data, n, d, c, q, sw_c, col, alpha, b, fit_b,
                w, g, z, &f, &gb, &decrease, &gmax_w, &decrease_b)
        f_out[0] = f
    return epoch


def dual_cd(const index_t[::1] indptr, const index_t[::1] indices, const data_t[::1] data,
            const target_t[:, ::1] Y, const double[::1] sqnorm, const double[::1] xmax,
            const double[::1] sw, const double[::1] pw, double smoothing, double alpha,
            const double[::1] col, double[:, ::1] W, double[::1] b, bint fit_intercept,
            double rho, double eps_factor, double tol, int max_epochs, double[::1] f,
            int[::1] epochs,
            long long[::1] visits, unsigned char[::1] converged, int n_threads):
    """Fit every label (column of ``Y``) by dual coordinate descent, in place.

    ``X`` is the CSR ``(indptr, indices, data)``; ``Y`` (n_samples, n_labels)
    the targets in [0, 1]; ``sqnorm`` and ``xmax`` each row's squared norm
    and largest absolute value; ``sw`` the normalised sample weights (sum
    1); ``pw`` the positive weight of each label; ``col`` ``sum_i s_i
    x_ik^2``. ``W`` (n_labels, n_features) and ``b`` hold the start and
    receive the solution; ``f`` the objective of each label, ``epochs`` the
    epochs it took and ``converged`` whether it met the stopping rule
    (gradient max-norm and predicted decrease, see the module docstring).
    ``alpha`` must be positive. Validated by the caller.
    """
    cdef Py_ssize_t n = sqnorm.shape[0], d = W.shape[1], k = W.shape[0], j
    cdef double *t
    cdef double *c
    cdef double *q
    cdef double *sw_c
    cdef double *w
    cdef double *g
    cdef double *z
    cdef int *active
    cdef double *bp = &b[0] if k > 0 else NULL
    cdef double *fp = &f[0] if k > 0 else NULL
    cdef unsigned char *cp = &converged[0] if k > 0 else NULL
    if k == 0:
        return
    with nogil, parallel(num_threads=n_threads):
        t = <double *> malloc((5 * n + 2 * d + 1) * sizeof(double))
        active = <int *> malloc((n + 1) * sizeof(int))
        c = t + n
        q = c + n
        sw_c = q + n
        w = sw_c + n
        g = w + d
        z = g + d
        for j in prange(k, schedule="dynamic", chunksize=1):
            epochs[j] = _fit_label(indptr, indices, data, Y, j, sqnorm, xmax, sw, pw[j],
                                   smoothing, alpha, col, W, bp + j, fit_intercept, rho,
                                   eps_factor, tol, max_epochs, fp + j, cp + j, t, c, q, sw_c, active, w, g,
                                   z, &visits[j])
        free(active)
        free(t)
