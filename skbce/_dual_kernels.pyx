# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False, nonecheck=False
"""Dual coordinate descent for L2 logistic regression, a block of labels per thread.

:func:`dual_cd` fits every label of a one-vs-rest problem on a CSR ``X``
independently. Labels go in blocks of up to ``LANES = 8`` (the lanes), the
blocks spread over OpenMP threads (``prange`` with a dynamic schedule: a
block's cost depends on how many of its samples stay active). A visit of
row ``i`` serves every lane of the block at once: the lanes' weights are
stored ``(n_features, LANES)``, so each non-zero ``x_ik`` reads one cache
line of 8 weights and the dot products and updates of the 8 labels are one
vector loop -- the row's indices and values, the memory-bound part of a
sparse dot product, are read once for 8 labels instead of 8 times. Each
lane keeps its own shrinking (a bit per row and lane), tolerance,
intercept and stopping rule; the block's epochs run over the rows active
in some lane. Each thread holds a few arrays of ``LANES * n_samples`` and
``LANES * n_features`` doubles and writes its lanes' rows of ``W``;
nothing of size ``n_samples * n_labels`` exists.

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
is the offset of the dual, kept by an augmented Lagrangian: ``b = lambda +
rho sum_i a_i`` moves with every coordinate step (``sum_i a_i`` is minus the
slope of ``F(b) = min_w P(w, b)``, kept up to date at no cost), so the
epochs solve a proximal step on ``F`` from the centre ``lambda``, and a
multiplier update moves the centre. At an exact pass the new centre is the
Newton point of ``b`` with the weights held (its slope and curvature are
exact there); the proximal step from it then leaves about ``1 / (1 + rho
F'')`` of the Newton step's error.

Shrinking (per lane): a sample whose mismatch ``c_i |sigmoid(G) - sigmoid(t_i)| *
max_k |x_ik|`` (its share of the primal gradient) is below the epoch
tolerance leaves the epochs; for a rare label that is nearly every negative
after one or two epochs. When the remaining samples meet the tolerance, one
full pass computes the exact primal gradient and objective and applies the
estimator's stopping rule (the gradient's max-norm and the decrease a
diagonal Newton step predicts, as ``_solver_base._diagonal_decrease``); a
label that fails it resumes with the samples the exact logits show off and
a tolerance ten times tighter. A lane whose epochs are done waits for the
block's other lanes, and one exact pass serves all the waiting lanes:
waiting costs nothing (the running lanes' epochs read the same rows), so
the block makes as few full passes as its slowest lane needs.
"""

from cython.parallel cimport parallel, prange
from libc.math cimport exp, fabs, fmax, fmin, log1p, sqrt
from libc.stdlib cimport free, malloc

cdef extern from "<stdlib.h>" nogil:
    # C11; its size must be a multiple of the alignment.
    void *aligned_alloc(size_t alignment, size_t size)
from skbce._tiles cimport *

import numpy as np

# LANES for Python: the labels a block fits together (callers put similar ones
# in the same block).
BLOCK_WIDTH = LANES

cdef enum:
    LANES = 8  # labels a block fits together: one 64-byte line of float64 weights

# A lane's state.
cdef enum:
    RUNNING = 0  # in the epochs
    WAITING = 1  # epochs met their tolerance: waits for the exact pass
    DONE = 2     # stopped (converged, out of epochs, or an unused lane)

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


cdef inline double _sigmoid_lane(double t) noexcept nogil:
    """``sigmoid(t)`` without branches, for the loops over the 8 lanes.

    gcc turns such a loop into vector ``exp`` calls (libmvec, compiled with
    -ffast-math); the clamp keeps ``exp`` finite, and ``1 / (1 + e^-t)``
    is accurate to rounding on both sides of 0.
    """
    return 1.0 / (1.0 + exp(-fmin(fmax(t, -700.0), 700.0)))


cdef extern from *:
    """
    #include <math.h>
    /* sigmoid of a row's 8 lanes. An 8-iteration loop of exp in Cython
       is unrolled by gcc into 8 scalar calls before the loop vectoriser
       sees it; `omp simd` keeps it a loop, which -ffast-math hands to
       libmvec's vector exp (two calls with AVX2, one with AVX-512). */
    static inline void skbce_sigmoid_lanes(const double *z, double *out)
    {
        #pragma omp simd
        for (int l = 0; l < 8; l++)
            out[l] = 1.0 / (1.0 + exp(-fmin(fmax(z[l], -700.0), 700.0)));
    }
    """
    void skbce_sigmoid_lanes(const double *z, double *out) noexcept nogil


cdef inline double _log1pexp_lane(double t) noexcept nogil:
    """``log(1 + e^t)`` without branches, for the loops over the 8 lanes."""
    return fmax(t, 0.0) + log1p(exp(-fabs(t)))


cdef inline double _solve_logit(double R, double A, double t, double *s_io, double scale,
                               double eps) noexcept nogil:
    """The root of ``t + A sigmoid(t) = R`` (``A >= 0``), Newton from ``t``.

    ``s_io`` holds ``sigmoid(t)`` and receives the sigmoid of the root returned.

    The left side rises with slope in [1, 1 + A/4], so the root lies in
    ``[R - A, R]``; a step leaving that bracket bisects it instead. The
    solve stops as soon as its error is below what the epochs can see: at
    the root, ``t`` equals the sample's new logit ``G``, and a residual
    ``r`` (in logits) leaves the sample a mismatch of about ``scale *
    sigmoid'(t) * |r|`` (``scale = c_i max_k |x_ik|``); half the epoch's
    tolerance ``eps`` is enough (``|r| <= 0.01`` keeps the first-order
    estimate honest, and the final exact pass checks the result anyway).
    """
    cdef double lo = R - A, hi = R, f, nt, ds, s = s_io[0]
    cdef int it
    if t <= lo or t >= hi:
        t = 0.5 * (lo + hi)
        s = _sigmoid(t)
    for it in range(60):
        f = t + A * s - R
        if f > 0:
            hi = t
        else:
            lo = t
        ds = s * (1.0 - s)
        if fabs(f) <= 0.01 and 1.02 * scale * ds * fabs(f) <= 0.5 * eps:
            break
        nt = t - f / (1.0 + A * ds)
        if nt <= lo or nt >= hi:
            nt = 0.5 * (lo + hi)
        if fabs(nt - t) <= 1e-13 * (1.0 + fabs(t)):
            t = nt
            s = _sigmoid(t)
            break
        t = nt
        s = _sigmoid(t)
    s_io[0] = s
    return t


cdef extern from *:
    """
    #if defined(__GNUC__) || defined(__clang__)
    #define skbce_prefetch(p) __builtin_prefetch((const void *)(p))
    #else
    #define skbce_prefetch(p) ((void)0)
    #endif
    """
    void skbce_prefetch(const void *p) noexcept nogil


cdef inline void _row_dots(const index_t[::1] indptr, const index_t[::1] indices,
                           const data_t[::1] data, Py_ssize_t i, const double *w,
                           double *out) noexcept nogil:
    """``out[l] = x_i . w[:, l]`` for every lane; ``w`` is ``(n_features, LANES)``.

    The 8 lanes are two register tiles, held through the row's non-zeros,
    twice over: even and odd non-zeros add into their own pair, so that
    each add waits for the one two non-zeros back (the chain of adds, not
    the loads of the weights, bounded a row's time).
    """
    cdef skbce_tile_d lo = skbce_tile_d_zero(), hi = skbce_tile_d_zero()
    cdef skbce_tile_d lo2 = skbce_tile_d_zero(), hi2 = skbce_tile_d_zero()
    cdef const double *wk
    cdef const double *wk2
    cdef double v, v2
    cdef index_t p = indptr[i], end = indptr[i + 1]
    while p + 1 < end:
        v = data[p]
        v2 = data[p + 1]
        wk = w + <Py_ssize_t>indices[p] * LANES
        wk2 = w + <Py_ssize_t>indices[p + 1] * LANES
        lo = skbce_tile_d_fma(lo, v, wk)
        hi = skbce_tile_d_fma(hi, v, wk + 4)
        lo2 = skbce_tile_d_fma(lo2, v2, wk2)
        hi2 = skbce_tile_d_fma(hi2, v2, wk2 + 4)
        p += 2
    if p < end:
        v = data[p]
        wk = w + <Py_ssize_t>indices[p] * LANES
        lo = skbce_tile_d_fma(lo, v, wk)
        hi = skbce_tile_d_fma(hi, v, wk + 4)
    skbce_tile_d_store(skbce_tile_d_add(lo, lo2), out)
    skbce_tile_d_store(skbce_tile_d_add(hi, hi2), out + 4)


cdef inline void _row_axpys(const index_t[::1] indptr, const index_t[::1] indices,
                            const data_t[::1] data, Py_ssize_t i, const double *scale,
                            double *w) noexcept nogil:
    """``w[:, l] += scale[l] * x_i`` for every lane."""
    cdef skbce_tile_d lo = skbce_tile_d_load(scale), hi = skbce_tile_d_load(scale + 4)
    cdef double *wk
    cdef index_t p
    for p in range(indptr[i], indptr[i + 1]):
        wk = w + <Py_ssize_t>indices[p] * LANES
        skbce_tile_d_axpy(wk, <double>data[p], lo)
        skbce_tile_d_axpy(wk + 4, <double>data[p], hi)


cdef inline unsigned long long _xorshift(unsigned long long *state) noexcept nogil:
    cdef unsigned long long x = state[0]
    x ^= x << 13
    x ^= x >> 7
    x ^= x << 17
    state[0] = x
    return x


ctypedef struct Workspace:
    # Per (sample, lane), sample-major: a row's lanes share a cache line.
    double *t  # the dual variables' logits
    double *s  # sigmoid(t), the dual variables' u: one exp per visit saved
    double *c  # the sample's weight in P (0: not in this lane's problem)
    double *q  # the sample's target
    double *z  # the logits of the last exact pass
    # Per (feature, lane), feature-major.
    double *w  # the weights, sum_i a_i x_i
    double *g  # the exact gradient
    unsigned char *mask  # per sample: bit l set while the sample is active in lane l
    int *active  # the epochs' samples: active in a running lane (some may have left since)
    Py_ssize_t n_act


ctypedef struct Lanes:
    Py_ssize_t n_all[LANES]  # samples with c > 0
    int state[LANES]
    int epochs[LANES]
    unsigned char converged[LANES]
    long long visits[LANES]
    double b[LANES]  # the intercept (the dual's offset)
    double rho[LANES]  # the augmented Lagrangian's weight
    double sum_a[LANES]  # sum_i a_i: minus the slope of F(b)
    double eps[LANES]  # a sample's tolerance in the epochs
    double eps_min[LANES]
    double prev_gb[LANES]
    double maxviol[LANES]
    double f[LANES]


cdef inline void _prefetch_row(const index_t[::1] indptr, const index_t[::1] indices,
                               const data_t[::1] data, const Workspace *ws,
                               Py_ssize_t i) noexcept nogil:
    """Ask for row ``i``'s first non-zeros and its lanes' state ahead of its visit.

    The epochs visit rows in a random order: without this, every row
    starts with a cache miss on its indices, values and per-lane arrays,
    which the hardware prefetcher only covers once a row is under way.
    """
    cdef index_t start = indptr[i]
    skbce_prefetch(&indices[start])
    skbce_prefetch(&indices[start] + 16)
    skbce_prefetch(&data[start])
    skbce_prefetch(&data[start] + 64 // sizeof(data_t))
    skbce_prefetch(ws.c + i * LANES)
    skbce_prefetch(ws.s + i * LANES)
    skbce_prefetch(ws.t + i * LANES)


cdef inline unsigned int _lanes_in(const Lanes *ln, int state) noexcept nogil:
    cdef unsigned int bits = 0
    cdef int l
    for l in range(LANES):
        if ln.state[l] == state:
            bits |= 1u << l
    return bits


cdef double _penalty_weight(double scale, double floor, Py_ssize_t n, const Workspace *ws,
                            int l) noexcept nogil:
    """The augmented Lagrangian's weight of lane ``l``: ``scale`` over the intercept's curvature.

    At least ``floor``: the weight is also the intercept's share of a
    coordinate step's curvature ``A = c_i (|x_i|^2 + rho)``, and one much
    larger than a row's squared norm makes the steps crawl.

    A multiplier update is a proximal step on ``F(b)`` that shrinks the
    intercept's error by ``1 / (1 + rho F'')``; ``F''`` is at most the
    curvature ``sum_i c_i s'_i`` at fixed weights, a few times less when the
    weights can mimic the intercept (non-negative tf-idf rows). A label
    without positives (or negatives) has its infimum at ``b = -inf`` and its
    curvature vanishes on the way: the weight then grows, capped at 1e12, and
    each update moves ``b`` by about ``scale``.
    """
    cdef double h = 0.0, s
    cdef Py_ssize_t i, o
    for i in range(n):
        o = i * LANES + l
        if ws.c[o] > 0:
            s = ws.s[o]
            h += ws.c[o] * s * (1.0 - s)
    if h * 1e12 <= scale:
        return 1e12
    return max(floor, scale / h)


cdef unsigned int _reactivate(Py_ssize_t n, Workspace *ws, unsigned int lanes,
                              const double *logits, const double *shift,
                              const double[::1] xmax, const double *eps) noexcept nogil:
    """The active samples of the lanes in ``lanes``: those whose mismatch exceeds ``eps[l]``.

    The mismatch is taken at the logits ``logits + shift[l]``, against each
    sample's dual variable. One pass for all the lanes: their sigmoids are
    one vector loop a row. Other lanes' bits are left as they are. Returns
    the lanes that have an active sample.
    """
    cdef Py_ssize_t i, o
    cdef double over[LANES]
    cdef double shifted[LANES]
    cdef double sig[LANES]
    cdef double xm
    cdef unsigned int bits, touched = 0
    cdef int l
    for i in range(n):
        o = i * LANES
        xm = xmax[i]
        for l in range(LANES):
            shifted[l] = logits[o + l] + shift[l]
        skbce_sigmoid_lanes(shifted, sig)
        for l in range(LANES):
            over[l] = ws.c[o + l] * fabs(sig[l] - ws.s[o + l]) * xm - eps[l]
        bits = ws.mask[i] & ~lanes
        for l in range(LANES):
            if (lanes >> l & 1) and over[l] > 0:
                bits |= 1u << l
        ws.mask[i] = <unsigned char>bits
        touched |= bits & lanes
    return touched


cdef void _gather_active(Py_ssize_t n, Workspace *ws, unsigned int running) noexcept nogil:
    """The epochs' samples: those active in a running lane."""
    cdef Py_ssize_t i, m = 0
    for i in range(n):
        if ws.mask[i] & running:
            ws.active[m] = <int>i
            m += 1
    ws.n_act = m


cdef void _constant_start_weights(const index_t[::1] indptr, const index_t[::1] indices,
                                  const data_t[::1] data, const target_t[:, ::1] Y,
                                  const Py_ssize_t *label, const Py_ssize_t *column, int width,
                                  const double[::1] sw, const double[::1] pw, double smoothing,
                                  double alpha, const double[::1] xt_sw, Workspace *ws,
                                  Lanes *ln) noexcept nogil:
    """Add the dual start's weights ``sum_i a_i x_i`` to ``ws.w`` (zero) when every logit is ``b``.

    With every sample's ``u_i = s = sigmoid(b)`` (zero weights), ``a_i =
    c_i (q_i - s)`` is ``s_i / alpha (kappa y_i - s)``, ``kappa = pw - s (pw
    - 1)``, ``y_i`` the smoothed target ``(1 - smoothing) t_i + smoothing /
    2`` (``t_i`` the column of ``Y``). So the weights are ``kappa (1 -
    smoothing) / alpha sum_i s_i t_i x_i``, a sum over the rows with a
    non-zero target (a rare label's positives), plus ``(kappa smoothing / 2
    - s) / alpha`` times ``xt_sw = X^T s``, shared by all labels: the
    block's start reads the rows of its positives, not all of ``X``.
    """
    cdef Py_ssize_t n = sw.shape[0], d = xt_sw.shape[0], i, k
    cdef double kappa[LANES]
    cdef double shared[LANES]
    cdef double r[LANES]
    cdef double t, s, sw_sum = 0.0
    cdef bint any_r
    cdef int l
    for l in range(LANES):
        kappa[l] = 0.0
        shared[l] = 0.0
        if l < width:
            s = ws.s[l]  # row 0's: every row's
            kappa[l] = pw[label[l]] - s * (pw[label[l]] - 1.0)
            shared[l] = (0.5 * smoothing * kappa[l] - s) / alpha
    for i in range(n):
        sw_sum += sw[i]
        any_r = False
        for l in range(LANES):
            r[l] = 0.0
            if l < width:
                t = <double>Y[i, column[l]]
                if t != 0:
                    r[l] = sw[i] * kappa[l] * (1.0 - smoothing) * t / alpha
                    ln.sum_a[l] += r[l]
                    any_r = True
        if any_r:
            _row_axpys(indptr, indices, data, i, r, ws.w)
    for l in range(width):
        ln.sum_a[l] += shared[l] * sw_sum
    for k in range(d):
        for l in range(LANES):
            ws.w[k * LANES + l] += shared[l] * xt_sw[k]


cdef void _load_block(const index_t[::1] indptr, const index_t[::1] indices,
                      const data_t[::1] data, const target_t[:, ::1] Y, const Py_ssize_t *label,
                      const Py_ssize_t *column, int width, const double[::1] sw,
                      const double[::1] pw,
                      double smoothing, double alpha, const data_t[:, ::1] W, bint warm,
                      const double[::1] b0, bint fit_b, double rho_scale, double rho_floor, double eps_factor,
                      double tol, const double[::1] xt_sw, Workspace *ws, Lanes *ln) noexcept nogil:
    """Lane ``l < width`` takes label ``label[l]`` (its targets: column ``column[l]`` of ``Y``).

    Its dual start is the primal start's: ``W``'s rows if ``warm``, else
    zero weights (``W`` is then not read: on a cold start its pages need
    never be touched before the block writes them).
    The dual point of ``(W[j], b[j])`` has ``t_i = z_i``; its weights are
    ``sum_i a_i x_i`` (equal to ``W[j]`` only at the optimum).
    """
    cdef Py_ssize_t n = sw.shape[0], d = W.shape[1], i, k, o
    cdef double y, a
    cdef double G[LANES]
    cdef double r[LANES]
    cdef int l, start_zero = 1
    for l in range(LANES):
        ln.n_all[l] = 0
        ln.state[l] = RUNNING if l < width else DONE
        ln.epochs[l] = 0
        ln.converged[l] = 0
        ln.visits[l] = 0
        ln.b[l] = b0[label[l]] if l < width and fit_b else 0.0
        ln.rho[l] = 0.0
        ln.sum_a[l] = 0.0
        ln.eps[l] = 0.0
        ln.eps_min[l] = 0.0
        ln.prev_gb[l] = 1e300
        ln.maxviol[l] = 0.0
        ln.f[l] = 0.0
    for i in range(n):
        ws.mask[i] = 0
        for l in range(LANES):
            o = i * LANES + l
            ws.c[o] = 0.0
            ws.q[o] = 0.0
            if l >= width:
                continue
            y = <double>Y[i, column[l]]
            y = y * (1.0 - smoothing) + 0.5 * smoothing
            a = pw[label[l]] * y + 1.0 - y
            ws.c[o] = sw[i] * a / alpha
            ws.q[o] = pw[label[l]] * y / a if a > 0 else 0.0
            if ws.c[o] > 0:
                ws.mask[i] |= <unsigned char>(1u << l)
                ln.n_all[l] += 1
    for k in range(d):
        for l in range(LANES):
            ws.w[k * LANES + l] = W[label[l], k] if warm and l < width else 0.0
            if ws.w[k * LANES + l] != 0:
                start_zero = 0
    for l in range(LANES):
        G[l] = 0.0
    for i in range(n):
        if not start_zero:
            _row_dots(indptr, indices, data, i, ws.w, G)
        for l in range(LANES):
            ws.t[i * LANES + l] = G[l] + ln.b[l]
        skbce_sigmoid_lanes(ws.t + i * LANES, ws.s + i * LANES)
    for k in range(d * LANES):
        ws.w[k] = 0.0
    if start_zero and n > 0:
        _constant_start_weights(indptr, indices, data, Y, label, column, width, sw, pw,
                                smoothing, alpha, xt_sw, ws, ln)
    else:
        for i in range(n):
            for l in range(LANES):
                o = i * LANES + l
                r[l] = ws.c[o] * (ws.q[o] - ws.s[o]) if ws.c[o] > 0 else 0.0
                ln.sum_a[l] += r[l]
            _row_axpys(indptr, indices, data, i, r, ws.w)
    for l in range(width):
        # A sample's share of the primal gradient, in the units of P, below
        # which it needs no visit: the gradient's tolerance over the samples
        # (the intercept's gradient sums them all), eps_factor times.
        ln.eps[l] = eps_factor * tol / alpha / (ln.n_all[l] if ln.n_all[l] > 0 else 1)
        ln.eps_min[l] = 1e-8 * ln.eps[l]
        if fit_b:
            ln.rho[l] = _penalty_weight(rho_scale, rho_floor, n, ws, l)
            ln.b[l] += ln.rho[l] * ln.sum_a[l]  # b = lambda + rho sum_a, lambda the start
    _gather_active(n, ws, _lanes_in(ln, RUNNING))


cdef void _epoch(const index_t[::1] indptr, const index_t[::1] indices,
                 const data_t[::1] data, const double[::1] sqnorm, const double[::1] xmax,
                 Workspace *ws, Lanes *ln, unsigned int running,
                 unsigned long long *rng) noexcept nogil:
    """One pass of coordinate steps over the running lanes' active samples, in a random order."""
    cdef Py_ssize_t p, k, i, o
    cdef int l, swap, moved
    cdef unsigned int live
    cdef double G[LANES]
    cdef double delta[LANES]
    cdef double zs[LANES]
    cdef double viols[LANES]
    cdef double sig[LANES]
    cdef double b[LANES]  # the intercepts, a local copy the vector loop can trust
    cdef double z, st, snew, viol, a, R, tnew, step, xm
    # A random order each epoch (Fisher-Yates on the active samples).
    for p in range(ws.n_act - 1, 0, -1):
        k = <Py_ssize_t>(_xorshift(rng) % <unsigned long long>(p + 1))
        swap = ws.active[p]
        ws.active[p] = ws.active[k]
        ws.active[k] = swap
    for l in range(LANES):
        b[l] = ln.b[l]
        if running >> l & 1:
            ln.maxviol[l] = 0.0
            ln.epochs[l] += 1
    p = 0
    while p < ws.n_act:
        i = ws.active[p]
        if p + 1 < ws.n_act:
            _prefetch_row(indptr, indices, data, ws, ws.active[p + 1])
        if p + 2 < ws.n_act:
            skbce_prefetch(&indptr[ws.active[p + 2]])
            skbce_prefetch(&ws.mask[ws.active[p + 2]])
        live = ws.mask[i] & running
        if live == 0:
            ws.n_act -= 1
            ws.active[p] = ws.active[ws.n_act]
            continue
        _row_dots(indptr, indices, data, i, ws.w, G)
        # Every lane's logit and mismatch in one vector loop (most rows
        # leave most lanes at this point), then the lanes that move.
        o = i * LANES
        xm = xmax[i]
        for l in range(LANES):
            zs[l] = G[l] + b[l]
        skbce_sigmoid_lanes(zs, sig)
        for l in range(LANES):
            viols[l] = ws.c[o + l] * fabs(sig[l] - ws.s[o + l]) * xm
        moved = 0
        for l in range(LANES):
            delta[l] = 0.0
            if not (live >> l & 1):
                continue
            o = i * LANES + l
            z = zs[l]
            ln.visits[l] += 1
            st = ws.s[o]
            viol = viols[l]
            if viol <= ln.eps[l]:
                # Shrink: met the tolerance; back only after a failed check.
                ws.mask[i] &= <unsigned char>~(1u << l)
                continue
            if viol > ln.maxviol[l]:
                ln.maxviol[l] = viol
            a = ws.c[o] * (sqnorm[i] + ln.rho[l])
            R = z + a * st
            snew = st
            tnew = _solve_logit(R, a, ws.t[o], &snew, ws.c[o] * xmax[i], ln.eps[l])
            # u's change, from the cached sigmoids: near u = 1 the
            # difference loses relative digits, not absolute ones, and
            # only its absolute size reaches the weights.
            step = ws.c[o] * (st - snew)
            ws.t[o] = tnew
            ws.s[o] = snew
            if step != 0:
                delta[l] = step
                ln.sum_a[l] += step
                b[l] += ln.rho[l] * step
                moved = 1
        if moved:
            _row_axpys(indptr, indices, data, i, delta, ws.w)
        if ws.mask[i] & running == 0:
            ws.n_act -= 1
            ws.active[p] = ws.active[ws.n_act]
            continue
        p += 1
    for l in range(LANES):
        ln.b[l] = b[l]


cdef inline double _intercept_newton_step(double slope, double curvature) noexcept nogil:
    """``-slope / curvature``, at most one logit either way (0 without curvature).

    The samples' curvature ``s (1 - s)`` changes by up to ``e^|step|`` over a
    step; past one logit the quadratic model is no longer a guide (a rare
    label's far negatives: ``s ~ e^z``, Newton's step grows like the ratio
    where the root grows like its log). The augmented Lagrangian finishes
    from wherever the step stops.
    """
    if not curvature > 0:
        return 0.0
    return fmin(1.0, fmax(-1.0, -slope / curvature))


cdef void _exact_pass(const index_t[::1] indptr, const index_t[::1] indices,
                      const data_t[::1] data, const double[::1] col, double alpha,
                      bint fit_b, unsigned int lanes, Workspace *ws, Lanes *ln,
                      double *gmax, double *gmax_w, double *gb, double *decrease,
                      double *decrease_b, double *newton_b) noexcept nogil:
    """Exact objective and gradient (in the units of ``f``) of the lanes in ``lanes``, in one pass.

    The objective goes to ``ln.f``, the logits to ``ws.z`` (for the choice
    of the samples to revisit), the gradient's max-norm to ``gmax`` (and
    without the intercept's to ``gmax_w``), the intercept's gradient to
    ``gb``, and the decrease a Newton step on the Hessian's diagonal
    predicts (the estimator's second stopping test) to ``decrease`` (the
    intercept's share in ``decrease_b``, its Newton step with the weights
    held in ``newton_b``). ``c_i * alpha`` is the sample's weight in ``f``.
    """
    cdef Py_ssize_t n = indptr.shape[0] - 1, d = col.shape[0], i, k, o
    cdef double G[LANES]
    cdef double r[LANES]
    cdef double loss[LANES]
    cdef double curvature[LANES]
    cdef double sq[LANES]
    cdef double dec[LANES]
    cdef double b[LANES]
    cdef double on[LANES]
    cdef double z, s, weight, gk, any_r
    cdef int l
    for l in range(LANES):
        loss[l] = 0.0
        curvature[l] = 0.0
        sq[l] = 0.0
        dec[l] = 0.0
        gb[l] = 0.0
        gmax_w[l] = 0.0
    for k in range(d):
        for l in range(LANES):
            o = k * LANES + l
            ws.g[o] = alpha * ws.w[o]
            sq[l] += ws.w[o] * ws.w[o]
    for l in range(LANES):
        b[l] = ln.b[l]
        # A lane outside ``lanes`` weighs 0: the vector loop below runs
        # over all 8 lanes without branches.
        on[l] = alpha if lanes >> l & 1 else 0.0
    for i in range(n):
        _row_dots(indptr, indices, data, i, ws.w, G)
        o = i * LANES
        any_r = 0.0
        for l in range(LANES):
            weight = ws.c[o + l] * on[l]
            z = G[l] + b[l]
            ws.z[o + l] = z
            s = _sigmoid_lane(z)
            loss[l] += weight * (_log1pexp_lane(z) - ws.q[o + l] * z)
            r[l] = weight * (s - ws.q[o + l])
            curvature[l] += weight * s * (1.0 - s)
            gb[l] += r[l]
            any_r += fabs(r[l])
        if any_r != 0:
            _row_axpys(indptr, indices, data, i, r, ws.g)
    for k in range(d):
        for l in range(LANES):
            gk = ws.g[k * LANES + l]
            if fabs(gk) > gmax_w[l]:
                gmax_w[l] = fabs(gk)
            if gk != 0:
                dec[l] += gk * gk / (curvature[l] * col[k] + alpha)
    for l in range(LANES):
        if not (lanes >> l & 1):
            continue
        gmax[l] = gmax_w[l]
        decrease_b[l] = 0.0
        newton_b[l] = 0.0
        if fit_b:
            newton_b[l] = _intercept_newton_step(gb[l], curvature[l])
            if fabs(gb[l]) > gmax[l]:
                gmax[l] = fabs(gb[l])
            if gb[l] != 0:
                decrease_b[l] = 0.5 * (gb[l] * gb[l] / curvature[l] if curvature[l] > 0 else 1e300)
        else:
            gb[l] = 0.0
        ln.f[l] = loss[l] + 0.5 * alpha * sq[l]
        decrease[l] = 0.5 * dec[l] + decrease_b[l]
        ln.visits[l] += ln.n_all[l]


cdef void _fit_block(const index_t[::1] indptr, const index_t[::1] indices,
                     const data_t[::1] data, const target_t[:, ::1] Y,
                     const Py_ssize_t[::1] labels, const Py_ssize_t[::1] columns, Py_ssize_t p0,
                     int width, const double[::1] sqnorm, const double[::1] xmax,
                     const double[::1] sw, const double[::1] pw, double smoothing,
                     double alpha, const double[::1] col, const double[::1] xt_sw,
                     data_t[:, ::1] W, bint warm,
                     double[::1] b, bint fit_b, double rho_scale, double rho_floor, double eps_factor, double tol,
                     int max_epochs, double[::1] f_out, int[::1] epochs_out,
                     long long[::1] visits_out, unsigned char[::1] converged_out,
                     double *buffer, unsigned char *mask, int *active) noexcept nogil:
    """Fit labels ``labels[p0 : p0+width]`` together; their coefficients go to ``W`` and ``b``.

    Their targets are the columns ``columns[p0 : p0+width]`` of ``Y``.
    ``buffer`` holds ``(5 n + 2 d) LANES`` doubles, ``mask`` and ``active``
    ``n`` entries: the thread's workspace.
    """
    cdef Py_ssize_t n = sqnorm.shape[0], d = W.shape[1], k
    cdef Workspace workspace
    cdef Workspace *ws = &workspace
    cdef Lanes ln
    cdef Py_ssize_t label[LANES]
    cdef Py_ssize_t column[LANES]
    cdef unsigned int running, waiting, moved_b, resumed, touched
    cdef double shifts[LANES]
    cdef int l
    cdef double gmax[LANES]
    cdef double gmax_w[LANES]
    cdef double gb[LANES]
    cdef double decrease[LANES]
    cdef double decrease_b[LANES]
    cdef double newton_b[LANES]
    cdef double f_scale, decrease_w, factor
    cdef bint intercept_off, weights_off
    cdef unsigned long long rng = 0x9E3779B97F4A7C15ULL ^ (<unsigned long long>(p0 + 1) * 2654435761ULL)
    ws.t = buffer
    ws.s = ws.t + n * LANES
    ws.c = ws.s + n * LANES
    ws.q = ws.c + n * LANES
    ws.z = ws.q + n * LANES
    ws.w = ws.z + n * LANES
    ws.g = ws.w + d * LANES
    ws.mask = mask
    ws.active = active
    ws.n_act = 0
    for l in range(width):
        label[l] = labels[p0 + l]
        column[l] = columns[p0 + l]
    _load_block(indptr, indices, data, Y, label, column, width, sw, pw, smoothing, alpha, W, warm,
                b, fit_b,
                rho_scale, rho_floor, eps_factor, tol, xt_sw, ws, &ln)
    while True:
        running = _lanes_in(&ln, RUNNING)
        if running:
            _epoch(indptr, indices, data, sqnorm, xmax, ws, &ln, running, &rng)
            moved_b = 0
            for l in range(LANES):
                shifts[l] = 0.0
                if not (running >> l & 1):
                    continue
                if ln.maxviol[l] > ln.eps[l]:
                    if ln.epochs[l] >= max_epochs:
                        ln.state[l] = WAITING  # its last exact pass
                    continue
                if fit_b and fabs(ln.sum_a[l]) > 0.5 * tol / alpha and ln.epochs[l] < max_epochs:
                    # The dual is far from sum_i a_i = 0: a multiplier update
                    # without an exact pass. At this point t_i ~ z_i, so the
                    # samples the shift disturbs are known without one.
                    ln.rho[l] = _penalty_weight(rho_scale, rho_floor, n, ws, l)
                    shifts[l] = ln.rho[l] * ln.sum_a[l]
                    ln.b[l] += shifts[l]
                    moved_b |= 1u << l
                    continue
                ln.state[l] = WAITING
            if moved_b:
                touched = _reactivate(n, ws, moved_b, ws.t, shifts, xmax, ln.eps)
                for l in range(LANES):
                    if moved_b >> l & 1 and not (touched >> l & 1):
                        # The shift disturbed no sample beyond its tolerance
                        # (a label without positives, its intercept heading
                        # to -inf, its samples' duals all tiny): more such
                        # updates would only move b. The exact pass decides.
                        ln.state[l] = WAITING
                _gather_active(n, ws, _lanes_in(&ln, RUNNING))
            continue
        waiting = _lanes_in(&ln, WAITING)
        if not waiting:
            break
        # Every lane waits: one exact pass checks them all.
        _exact_pass(indptr, indices, data, col, alpha, fit_b, waiting, ws, &ln,
                    gmax, gmax_w, gb, decrease, decrease_b, newton_b)
        resumed = 0
        for l in range(LANES):
            shifts[l] = 0.0
            if not (waiting >> l & 1):
                continue
            f_scale = ln.f[l] if ln.f[l] > tol else tol
            if gmax[l] <= tol and decrease[l] <= tol * f_scale:
                ln.converged[l] = 1
                ln.state[l] = DONE
                continue
            if ln.epochs[l] >= max_epochs:
                ln.state[l] = DONE
                continue
            # Not yet. The multiplier update of the augmented Lagrangian if
            # the intercept is off, a tighter tolerance if the weights are
            # or the intercept stalls, and back to the epochs with the
            # samples the exact logits show off.
            intercept_off = fit_b and (fabs(gb[l]) > tol or
                                       decrease_b[l] > 0.5 * tol * f_scale)
            if intercept_off:
                # The new centre is the intercept's Newton point with the
                # weights held, not the intercept reached: the weights'
                # response makes F'' smaller than that curvature, so the
                # step falls short of F's minimum (by a quarter to a third on
                # the benchmark's rare labels) and the proximal step goes on from
                # there. Centring on the intercept reached left a rare
                # label's intercept off for one or two more exact passes.
                ln.rho[l] = _penalty_weight(rho_scale, rho_floor, n, ws, l)
                shifts[l] = newton_b[l] + ln.rho[l] * ln.sum_a[l]
                ln.b[l] += shifts[l]
            # The weights' own test: their gradient and their share of the
            # predicted decrease. Both shrink with the samples' tolerance,
            # the gradient in proportion and the decrease (a sum of squared
            # gradients) with its square: the next tolerance aims a
            # quarter below the test, in one step where it can.
            decrease_w = decrease[l] - decrease_b[l]
            weights_off = gmax_w[l] > tol or decrease_w > 0.5 * tol * f_scale
            if ((weights_off or not intercept_off or fabs(gb[l]) > 0.9 * ln.prev_gb[l])
                    and ln.eps[l] > ln.eps_min[l]):
                factor = 0.1
                if weights_off:
                    factor = 0.5
                    if gmax_w[l] > tol:
                        factor = min(factor, 0.25 * tol / gmax_w[l])
                    if decrease_w > 0.5 * tol * f_scale:
                        factor = min(factor, sqrt(0.25 * tol * f_scale / decrease_w))
                    factor = max(factor, 0.01)
                ln.eps[l] *= factor
            ln.prev_gb[l] = fabs(gb[l])
            ln.state[l] = RUNNING
            resumed |= 1u << l
        if resumed:
            _reactivate(n, ws, resumed, ws.z, shifts, xmax, ln.eps)
            _gather_active(n, ws, _lanes_in(&ln, RUNNING))
    for k in range(d):
        for l in range(width):
            W[label[l], k] = <data_t>ws.w[k * LANES + l]
    for l in range(width):
        b[label[l]] = ln.b[l]
        f_out[label[l]] = ln.f[l]
        epochs_out[label[l]] = ln.epochs[l]
        visits_out[label[l]] = ln.visits[l]
        converged_out[label[l]] = ln.converged[l]


def dual_cd(const index_t[::1] indptr, const index_t[::1] indices, const data_t[::1] data,
            const target_t[:, ::1] Y, const Py_ssize_t[::1] labels,
            const Py_ssize_t[::1] columns, const double[::1] sqnorm, const double[::1] xmax,
            const double[::1] sw, const double[::1] pw, double smoothing, double alpha,
            const double[::1] col, const double[::1] xt_sw, data_t[:, ::1] W, bint warm,
            double[::1] b,
            bint fit_intercept,
            double rho, double rho_floor, double eps_factor, double tol, int max_epochs,
            double[::1] f,
            int[::1] epochs,
            long long[::1] visits, unsigned char[::1] converged, int n_threads):
    """Fit the labels ``labels`` by dual coordinate descent, in place.

    ``X`` is the CSR ``(indptr, indices, data)``. ``Y`` (n_samples, m) holds
    the targets in [0, 1], label ``labels[p]``'s in column ``columns[p]``.
    Consecutive groups of 8 in ``labels`` are fitted together (a block; 4,
    2 or 1 when the call has fewer than ``8 * n_threads`` labels, so that
    every thread has a block), so labels that share rows should be
    neighbours there. ``sqnorm`` and ``xmax`` are each row's squared norm
    and largest absolute value, ``sw`` the normalised sample weights (sum
    1), ``col`` ``sum_i s_i x_ik^2`` and ``xt_sw`` ``sum_i s_i x_ik``. Indexed by label: ``pw`` (the
    positive weights), ``W`` (n_labels, n_features, in ``X``'s precision;
    a thread's copy of a block's weights is float64) and ``b``, which hold
    the start (``W``'s only if ``warm``: else the weights start at zero and
    ``W`` is only written) and receive the solution, and the outputs ``f`` (the
    objective), ``epochs`` (the epochs taken), ``visits`` (the rows visited,
    the exact passes' included) and ``converged`` (whether the label met
    the stopping rule: gradient max-norm and predicted decrease, see the
    module docstring). ``alpha`` must be positive. Validated by the caller.
    """
    cdef Py_ssize_t n = sqnorm.shape[0], d = W.shape[1], k = labels.shape[0], blk, n_blocks
    cdef int width, threads, failed = 0
    cdef int *failed_flag = &failed  # written through a pointer: shared by the threads
    cdef double *buffer
    cdef unsigned char *mask
    cdef int *active
    if col.shape[0] != d or xt_sw.shape[0] != d:
        raise ValueError(f"dual_cd: col and xt_sw need W's {d} features, got "
                         f"{col.shape[0]} and {xt_sw.shape[0]}")
    if k == 0:
        return
    # Blocks of 8 labels, narrower when there are too few labels to give
    # every thread a block; no more threads than blocks.
    threads = max(1, n_threads)
    width = <int>min(<Py_ssize_t>LANES, max(<Py_ssize_t>1, (k + threads - 1) // threads))
    n_blocks = (k + width - 1) // width
    threads = <int>min(<Py_ssize_t>threads, n_blocks)
    with nogil, parallel(num_threads=threads):
        # Aligned to 64 bytes: a sample's or a feature's 8 lanes are then one
        # cache line (LANES * 8 bytes), not two.
        buffer = <double *> aligned_alloc(64, (5 * n + 2 * d) * LANES * sizeof(double))
        mask = <unsigned char *> malloc((n + 1) * sizeof(unsigned char))
        active = <int *> malloc((n + 1) * sizeof(int))
        if buffer == NULL or mask == NULL or active == NULL:
            failed_flag[0] = 1
        for blk in prange(n_blocks, schedule="dynamic", chunksize=1):
            if buffer != NULL and mask != NULL and active != NULL:
                _fit_block(indptr, indices, data, Y, labels, columns, blk * width,
                           <int>min(<Py_ssize_t>width, k - blk * width), sqnorm, xmax, sw, pw,
                           smoothing, alpha, col, xt_sw, W, warm, b, fit_intercept, rho, rho_floor, eps_factor, tol,
                           max_epochs, f, epochs, visits, converged, buffer, mask, active)
        free(active)
        free(mask)
        free(buffer)
    if failed:
        raise MemoryError(
            f"dual_cd: could not allocate its working arrays "
            f"({(5 * n + 2 * d) * LANES * 8 / 2**20:.1f} MiB a thread)")
