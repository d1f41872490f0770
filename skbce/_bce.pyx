# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False, nonecheck=False
"""Binary cross-entropy kernels.

Design
------
Each quantity is written once as a tiny ``noexcept nogil`` point function
(one target, one prediction in; one number out). The array functions below are
plain loops around them, split across OpenMP threads with ``prange`` and left
simple enough for gcc to vectorise: with ``-ffast-math`` (set for this module's
compile step only, see ``skbce/meson.build``) gcc calls glibc's vector
``log``/``exp``, which is what makes a loss pass about as fast as reading the
memory.

``-ffast-math`` lets the compiler assume there are no NaN or inf values.
Nothing in this module may therefore decide anything on a NaN: all values are
validated before a kernel is entered (``skbce/_validation.pyx``, compiled
without fast-math, and the Python layer in ``skbce/metrics.py``), and so are
shapes, because bounds checks are off.

Two loop shapes cover every call:

* *flat*: one contiguous pass over all ``n * k`` entries. Used when a weight is
  per entry or absent and ``pos_weight`` is one number -- 1-D targets, or 2-D
  targets with neither sample nor label weights. This is the fast path.
* *rows*: a parallel loop over samples with an inner loop over labels, for a
  per-sample weight combined with per-label weights or ``pos_weight``.

Sums are accumulated in float64 whatever the input precision, so float32
inputs keep float32 speed in the math but not float32 rounding in the mean.

When every target is exactly 0 or 1 (the Python layer learns this for free
while validating the targets), only one of the two log terms is non-zero and
the probability path takes one log per entry instead of two -- roughly halving
its cost. Soft targets take the two-log path.

The loss from logits uses ``softplus(z) = max(z, 0) + log1p(exp(-|z|))`` and
its mirror for ``-z``; every term is non-negative, so there is neither overflow
(``exp`` only ever sees ``-|z|``) nor cancellation for any finite logit.
"""

from cython cimport floating
from cython.parallel cimport prange
from libc.math cimport exp, expf, fabs, fabsf, log, log1p, log1pf, logf

cimport openmp
import numpy as np


def max_threads():
    """Threads an OpenMP region would use now.

    Honours ``OMP_NUM_THREADS`` and the limits threadpoolctl sets.
    """
    return openmp.omp_get_max_threads()


# ----------------------------------------------------------------------------
# Precision-matched elementary functions: float32 math stays in float32.
# ----------------------------------------------------------------------------

cdef inline floating _log(floating x) noexcept nogil:
    if floating is float:
        return logf(x)
    else:
        return log(x)


cdef inline floating _log1p(floating x) noexcept nogil:
    if floating is float:
        return log1pf(x)
    else:
        return log1p(x)


cdef inline floating _exp(floating x) noexcept nogil:
    if floating is float:
        return expf(x)
    else:
        return exp(x)


cdef inline floating _abs(floating x) noexcept nogil:
    if floating is float:
        return fabsf(x)
    else:
        return fabs(x)


cdef inline floating _positive_part(floating x) noexcept nogil:
    return x if x > 0 else <floating> 0


# ----------------------------------------------------------------------------
# Point functions: one entry in, one number out. Constants are cast to
# ``floating``: a bare ``1`` becomes the C double ``1.0`` and would silently
# promote float32 math to float64.
# ----------------------------------------------------------------------------

cdef inline floating _clip(floating p, floating eps) noexcept nogil:
    if p < eps:
        return eps
    if p > <floating> 1 - eps:
        return <floating> 1 - eps
    return p


cdef inline floating prob_loss(
    floating y, floating p, floating pos_weight
) noexcept nogil:
    # p is already clipped to [eps, 1 - eps].
    return -(pos_weight * y * _log(p) + (<floating> 1 - y) * _log(<floating> 1 - p))


cdef inline floating prob_loss_hard(
    floating y, floating p, floating pos_weight
) noexcept nogil:
    # prob_loss for y exactly 0 or 1, with one log instead of two: only one
    # of the two terms is non-zero, so take the log of the probability given
    # to the observed outcome. Selects, not y * p + (1 - y) * (1 - p): under
    # fast-math gcc may re-associate that sum and lose a tiny p to
    # cancellation against 1.
    cdef floating observed = p if y != 0 else <floating> 1 - p
    cdef floating weight = pos_weight if y != 0 else <floating> 1
    return -weight * _log(observed)


cdef inline floating prob_gradient(
    floating y, floating p, floating pos_weight
) noexcept nogil:
    # d loss / d p at the clipped p.
    return (<floating> 1 - y) / (<floating> 1 - p) - pos_weight * y / p


cdef inline floating logit_loss(
    floating y, floating z, floating pos_weight, floating exp_neg_abs_z
) noexcept nogil:
    # pw * y * softplus(-z) + (1 - y) * softplus(z), with
    # softplus(+-z) = log1p(exp(-|z|)) + max(+-z, 0): every term is
    # non-negative, so there is no cancellation when y == 1 and z is large.
    # exp(-|z|) comes from the caller so the gradient can share it.
    cdef floating py = pos_weight * y
    return ((py + <floating> 1 - y) * _log1p(exp_neg_abs_z)
            + py * _positive_part(-z) + (<floating> 1 - y) * _positive_part(z))


cdef inline floating logit_gradient(
    floating y, floating z, floating pos_weight, floating exp_neg_abs_z
) noexcept nogil:
    # d loss / d z = (1 - y) * sigmoid(z) - pw * y * sigmoid(-z), where with
    # e = exp(-|z|): sigmoid(|z|) = 1 / (1 + e), sigmoid(-|z|) = e / (1 + e).
    cdef floating sig_big = <floating> 1 / (<floating> 1 + exp_neg_abs_z)
    cdef floating sig_small = exp_neg_abs_z * sig_big
    cdef floating sig_pos = sig_big if z >= <floating> 0 else sig_small
    cdef floating sig_neg = sig_small if z >= <floating> 0 else sig_big
    return (<floating> 1 - y) * sig_pos - pos_weight * y * sig_neg


# ----------------------------------------------------------------------------
# Loops. ``loss_out`` / ``grad_out`` / ``weight`` may be NULL and
# ``hard_targets`` is fixed for a call: these tests are loop-invariant and gcc
# unswitches them out of the vector loop. The bare reductions, the paths that
# matter most for speed, are written out on their own.
# ----------------------------------------------------------------------------

cdef double _prob_flat(
    Py_ssize_t n_entries,
    const floating *y,
    const floating *p,
    const floating *weight,       # per entry, or NULL for all ones
    floating weight_scale,        # multiplies every weight
    floating pos_weight,
    floating eps,
    bint hard_targets,            # every y is exactly 0 or 1
    floating *loss_out,
    floating *grad_out,
    floating grad_scale,
    int n_threads,
) noexcept nogil:
    cdef Py_ssize_t e
    cdef floating w, pc, l
    cdef double total = 0.0
    if loss_out == NULL and grad_out == NULL and weight == NULL:
        if hard_targets:
            for e in prange(n_entries, schedule='static', num_threads=n_threads):
                total += prob_loss_hard(y[e], _clip(p[e], eps), pos_weight)
        else:
            for e in prange(n_entries, schedule='static', num_threads=n_threads):
                total += prob_loss(y[e], _clip(p[e], eps), pos_weight)
        return weight_scale * total
    for e in prange(n_entries, schedule='static', num_threads=n_threads):
        w = weight_scale
        if weight != NULL:
            w = w * weight[e]
        pc = _clip(p[e], eps)
        if grad_out != NULL:
            grad_out[e] = grad_scale * w * prob_gradient(y[e], pc, pos_weight)
        if hard_targets:
            l = w * prob_loss_hard(y[e], pc, pos_weight)
        else:
            l = w * prob_loss(y[e], pc, pos_weight)
        if loss_out != NULL:
            loss_out[e] = l
        total += l
    return total


cdef double _prob_rows(
    Py_ssize_t n_samples,
    Py_ssize_t n_labels,
    const floating *y,
    const floating *p,
    const floating *sample_weight,   # length n_samples
    const floating *label_weight,    # length n_labels
    const floating *pos_weight,      # length n_labels
    floating eps,
    bint hard_targets,
    floating *loss_out,
    floating *grad_out,
    floating grad_scale,
    int n_threads,
) noexcept nogil:
    cdef Py_ssize_t i, j, e
    cdef floating w, pc, l
    cdef double total = 0.0
    for i in prange(n_samples, schedule='static', num_threads=n_threads):
        for j in range(n_labels):
            e = i * n_labels + j
            w = sample_weight[i] * label_weight[j]
            pc = _clip(p[e], eps)
            if grad_out != NULL:
                grad_out[e] = grad_scale * w * prob_gradient(y[e], pc, pos_weight[j])
            if hard_targets:
                l = w * prob_loss_hard(y[e], pc, pos_weight[j])
            else:
                l = w * prob_loss(y[e], pc, pos_weight[j])
            if loss_out != NULL:
                loss_out[e] = l
            total += l
    return total


cdef double _logit_flat(
    Py_ssize_t n_entries,
    const floating *y,
    const floating *z,
    const floating *weight,
    floating weight_scale,
    floating pos_weight,
    floating *loss_out,
    floating *grad_out,
    floating grad_scale,
    int n_threads,
) noexcept nogil:
    cdef Py_ssize_t e
    cdef floating w, l, exp_neg_abs_z
    cdef double total = 0.0
    if loss_out == NULL and grad_out == NULL and weight == NULL:
        for e in prange(n_entries, schedule='static', num_threads=n_threads):
            total += logit_loss(y[e], z[e], pos_weight, _exp(-_abs(z[e])))
        return weight_scale * total
    if loss_out == NULL and grad_out != NULL and weight == NULL:
        # Reduced loss and its gradient, unweighted: what a solver calls.
        for e in prange(n_entries, schedule='static', num_threads=n_threads):
            exp_neg_abs_z = _exp(-_abs(z[e]))
            grad_out[e] = grad_scale * weight_scale * logit_gradient(
                y[e], z[e], pos_weight, exp_neg_abs_z)
            total += logit_loss(y[e], z[e], pos_weight, exp_neg_abs_z)
        return weight_scale * total
    for e in prange(n_entries, schedule='static', num_threads=n_threads):
        w = weight_scale
        if weight != NULL:
            w = w * weight[e]
        exp_neg_abs_z = _exp(-_abs(z[e]))
        if grad_out != NULL:
            grad_out[e] = grad_scale * w * logit_gradient(
                y[e], z[e], pos_weight, exp_neg_abs_z)
        l = w * logit_loss(y[e], z[e], pos_weight, exp_neg_abs_z)
        if loss_out != NULL:
            loss_out[e] = l
        total += l
    return total


cdef double _logit_rows(
    Py_ssize_t n_samples,
    Py_ssize_t n_labels,
    const floating *y,
    const floating *z,
    const floating *sample_weight,
    const floating *label_weight,
    const floating *pos_weight,
    floating *loss_out,
    floating *grad_out,
    floating grad_scale,
    int n_threads,
) noexcept nogil:
    cdef Py_ssize_t i, j, e
    cdef floating w, l, exp_neg_abs_z
    cdef double total = 0.0
    for i in prange(n_samples, schedule='static', num_threads=n_threads):
        for j in range(n_labels):
            e = i * n_labels + j
            w = sample_weight[i] * label_weight[j]
            exp_neg_abs_z = _exp(-_abs(z[e]))
            if grad_out != NULL:
                grad_out[e] = grad_scale * w * logit_gradient(
                    y[e], z[e], pos_weight[j], exp_neg_abs_z)
            l = w * logit_loss(y[e], z[e], pos_weight[j], exp_neg_abs_z)
            if loss_out != NULL:
                loss_out[e] = l
            total += l
    return total


# ----------------------------------------------------------------------------
# The one entry point. The caller (skbce/metrics.py) guarantees: y and
# prediction C-contiguous of shape (n, k) and the same dtype; weight vectors of
# that dtype with length n (sample_weight), k (label_weight, pos_weight) or 0
# (absent); outputs of shape (n, k) or (0, 0) (not wanted); all values valid.
# ----------------------------------------------------------------------------

def bce_pass(
    const floating[:, ::1] y,
    const floating[:, ::1] prediction,
    const floating[::1] sample_weight,
    const floating[::1] label_weight,
    const floating[::1] pos_weight,
    double pos_weight_scalar,
    bint from_logits,
    double eps,
    floating[:, ::1] loss_out,
    floating[:, ::1] grad_out,
    double grad_scale,
    int n_threads,
    bint hard_targets=False,
):
    """Weighted BCE sum over all entries; optionally fill loss and gradient.

    Returns ``sum_ij w_ij * loss_ij`` with ``w_ij = sample_weight_i *
    label_weight_j``. ``loss_out`` receives ``w_ij * loss_ij`` and
    ``grad_out`` receives ``grad_scale * w_ij * d loss_ij / d prediction_ij``.
    ``hard_targets`` promises that every ``y`` is exactly 0 or 1; the
    probability path then needs one log per entry instead of two.
    """
    cdef Py_ssize_t n_samples = y.shape[0]
    cdef Py_ssize_t n_labels = y.shape[1]
    cdef floating *loss_ptr = NULL
    cdef floating *grad_ptr = NULL
    cdef const floating *weight_ptr = NULL
    cdef floating weight_scale = 1
    cdef floating scalar_pw = <floating> pos_weight_scalar
    cdef double total

    if loss_out.shape[0] > 0:
        loss_ptr = &loss_out[0, 0]
    if grad_out.shape[0] > 0:
        grad_ptr = &grad_out[0, 0]

    use_flat = n_labels == 1 or (
        sample_weight.shape[0] == 0
        and label_weight.shape[0] == 0
        and pos_weight.shape[0] == 0
    )
    if use_flat:
        # With one label, per-sample weights are per-entry weights and the
        # per-label vectors are single numbers.
        if sample_weight.shape[0] > 0:
            weight_ptr = &sample_weight[0]
        if label_weight.shape[0] > 0:
            weight_scale = label_weight[0]
        if pos_weight.shape[0] > 0:
            scalar_pw = pos_weight[0]
        with nogil:
            if from_logits:
                total = _logit_flat(
                    n_samples * n_labels, &y[0, 0], &prediction[0, 0],
                    weight_ptr, weight_scale, scalar_pw,
                    loss_ptr, grad_ptr, <floating> grad_scale, n_threads,
                )
            else:
                total = _prob_flat(
                    n_samples * n_labels, &y[0, 0], &prediction[0, 0],
                    weight_ptr, weight_scale, scalar_pw, <floating> eps,
                    hard_targets, loss_ptr, grad_ptr, <floating> grad_scale, n_threads,
                )
        return total

    # Rows: every weight vector must be materialised; they are short.
    dtype = np.float32 if floating is float else np.float64
    cdef const floating[::1] sw = (
        sample_weight if sample_weight.shape[0] > 0
        else np.ones(n_samples, dtype=dtype)
    )
    cdef const floating[::1] lw = (
        label_weight if label_weight.shape[0] > 0
        else np.ones(n_labels, dtype=dtype)
    )
    cdef const floating[::1] pw = (
        pos_weight if pos_weight.shape[0] > 0
        else np.full(n_labels, pos_weight_scalar, dtype=dtype)
    )
    with nogil:
        if from_logits:
            total = _logit_rows(
                n_samples, n_labels, &y[0, 0], &prediction[0, 0],
                &sw[0], &lw[0], &pw[0],
                loss_ptr, grad_ptr, <floating> grad_scale, n_threads,
            )
        else:
            total = _prob_rows(
                n_samples, n_labels, &y[0, 0], &prediction[0, 0],
                &sw[0], &lw[0], &pw[0], <floating> eps, hard_targets,
                loss_ptr, grad_ptr, <floating> grad_scale, n_threads,
            )
    return total
