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

``-ffast-math`` lets the compiler assume there are no NaN or inf values, so
no *floating-point* comparison in this module may decide anything about NaN or
inf: gcc is free to fold ``x != x`` to false and ``x <= 1`` to "not NaN".
Shapes are checked by the caller (``skbce/metrics.py``), because bounds checks
are off.

Values are validated in the loss pass itself
--------------------------------------------
The loss pass is memory-bound, so a separate validation pass over the targets
and one over the predictions (``skbce/_validation.pyx``, compiled without
fast-math) used to cost about as much as the loss itself. Given a ``found``
array, ``bce_pass`` instead validates every entry while it reads it, with
*integer* tests on the bits of the float (copied out with ``memcpy``, the
aliasing-safe type pun, which compiles to a plain register move). Fast-math
says nothing about integers, so these tests cannot be optimised away, and they
are branch-free ``|=`` into flags, so the loop stays vectorised:

* a probability or a target is in [0, 1] and not NaN iff its bits are at most
  those of 1.0 (all non-negative floats up to 1.0 -- +0.0, subnormals,
  normals -- order like their bits) or are exactly those of -0.0;
* a logit is finite iff its exponent bits are not all ones.

The flags are read only when the pass has finished; when one is set the
caller discards the sum and finds the first offender with an ordinary
(non-fast-math) check. Computing a loss from invalid values is harmless here:
it neither traps nor writes outside the outputs.

Measured on 10M float64 entries (a loaded 2-core Zen 4, AVX2 code, where the
one-log pass is compute-bound): the checks add 15-35% to the bare pass; the
separate validation passes they replace added about 100%. On a baseline
x86-64 build (SSE2: no 64-bit integer compare) gcc may not vectorise the
checked float64 loops; build with ``-Dmarch=x86-64-v3`` or native for speed.

When every target is exactly 0 or 1, only one of the two log terms is non-zero
and the probability path takes one log per entry instead of two -- roughly
halving its compute. Whether the targets are all hard is only known after
reading them all, so the caller *speculates*: it takes the one-log pass unless
the first few targets are soft (integer and bool targets are hard by
construction); the pass also flags any target strictly inside (0, 1), and the
caller runs the two-log pass again only then. Hard targets and targets that
look soft from the start cost one pass; soft targets behind a run of hard ones
cost two, about what the separate validation passes cost before.

Two loop shapes cover every call:

* *flat*: one contiguous pass over all ``n * k`` entries. Used when a weight is
  per entry or absent and ``pos_weight`` is one number -- 1-D targets, or 2-D
  targets with neither sample nor label weights. This is the fast path.
* *rows*: a parallel loop over samples with an inner loop over labels, for a
  per-sample weight combined with per-label weights or ``pos_weight``.

Sums are accumulated in float64 whatever the input precision, so float32
inputs keep float32 speed in the math but not float32 rounding in the mean.

The loss from logits uses ``softplus(z) = max(z, 0) + log1p(exp(-|z|))`` and
its mirror for ``-z``; every term is non-negative, so there is neither overflow
(``exp`` only ever sees ``-|z|``) nor cancellation for any finite logit.
"""

from cython cimport floating
from cython.parallel cimport prange
from skbce._math cimport _abs, _exp, _log, _log1p
from libc.stdint cimport uint32_t, uint64_t
from libc.string cimport memcpy

cimport openmp
import numpy as np


def max_threads():
    """Threads an OpenMP region would use now.

    Honours ``OMP_NUM_THREADS`` and the limits threadpoolctl sets.
    """
    return openmp.omp_get_max_threads()


# ----------------------------------------------------------------------------
# Precision-matched elementary functions (_log, _log1p, _exp, _abs) come
# from skbce/_math.pxd; float32 math stays in float32.
# ----------------------------------------------------------------------------

cdef inline floating _positive_part(floating x) noexcept nogil:
    return x if x > 0 else <floating> 0


# ----------------------------------------------------------------------------
# Validity tests on the bits of a float (see "Values are validated in the loss
# pass itself" above). Integer comparisons only: under fast-math a float
# comparison may not see NaN. Each returns 0 or 1, to be OR-ed into a flag.
# ----------------------------------------------------------------------------

# Bits of 1.0, of -0.0 and the exponent mask, for float64 and float32. C
# constants rather than module globals, so that gcc folds them into the loop.
cdef extern from *:
    """
    #define SKBCE_ONE64      UINT64_C(0x3FF0000000000000)
    #define SKBCE_NEG_ZERO64 UINT64_C(0x8000000000000000)
    #define SKBCE_EXP64      UINT64_C(0x7FF0000000000000)
    #define SKBCE_ONE32      UINT32_C(0x3F800000)
    #define SKBCE_NEG_ZERO32 UINT32_C(0x80000000)
    #define SKBCE_EXP32      UINT32_C(0x7F800000)
    """
    const uint64_t _ONE64 "SKBCE_ONE64"
    const uint64_t _NEG_ZERO64 "SKBCE_NEG_ZERO64"
    const uint64_t _EXP64 "SKBCE_EXP64"
    const uint32_t _ONE32 "SKBCE_ONE32"
    const uint32_t _NEG_ZERO32 "SKBCE_NEG_ZERO32"
    const uint32_t _EXP32 "SKBCE_EXP32"


cdef inline int _outside_unit(floating x) noexcept nogil:
    # 1 if x is not in [0, 1] or is NaN. Non-negative floats order like their
    # bits, so [+0, 1] is bits <= bits(1.0); every negative float, -NaN, +NaN
    # and +inf lies above it, and -0.0 (bits 0x80...0) is let through.
    cdef uint64_t b64
    cdef uint32_t b32
    if floating is float:
        memcpy(&b32, &x, sizeof(b32))
        return (b32 > _ONE32) & (b32 != _NEG_ZERO32)
    else:
        memcpy(&b64, &x, sizeof(b64))
        return (b64 > _ONE64) & (b64 != _NEG_ZERO64)


cdef inline int _strictly_inside_unit(floating x) noexcept nogil:
    # 1 if 0 < x < 1: a soft target. Only meaningful for an x that passed
    # _outside_unit; -0.0 (sign bit set) is not counted.
    cdef uint64_t b64
    cdef uint32_t b32
    if floating is float:
        memcpy(&b32, &x, sizeof(b32))
        return (b32 != 0) & (b32 < _ONE32)
    else:
        memcpy(&b64, &x, sizeof(b64))
        return (b64 != 0) & (b64 < _ONE64)


cdef inline int _not_finite(floating x) noexcept nogil:
    # 1 if x is inf or NaN: all exponent bits set.
    cdef uint64_t b64
    cdef uint32_t b32
    if floating is float:
        memcpy(&b32, &x, sizeof(b32))
        return (b32 & _EXP32) == _EXP32
    else:
        memcpy(&b64, &x, sizeof(b64))
        return (b64 & _EXP64) == _EXP64


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


cdef inline int _invalid_prob_entry(floating y, floating p) noexcept nogil:
    return _outside_unit(y) | _outside_unit(p)


cdef inline int _invalid_logit_entry(floating y, floating z) noexcept nogil:
    return _outside_unit(y) | _not_finite(z)


# ----------------------------------------------------------------------------
# Loops. ``loss_out`` / ``grad_out`` / ``weight`` / ``found`` may be NULL and
# ``hard_targets`` is fixed for a call: these tests are loop-invariant and gcc
# unswitches them out of the vector loop (or, failing that, if-converts them:
# the flags are branch-free ORs). The bare reductions, the paths that
# matter most for speed, are written out on their own.
#
# ``found``, when not NULL, receives two flags: [some target or prediction is
# invalid, some target is strictly inside (0, 1)]; the logit loops leave the
# second at 0, as they do not depend on it. Flags rather than counts: the
# caller needs no more. The checks come first in each loop body: the vector
# log/exp calls clobber every vector register, and checking before them
# spares gcc keeping y and p alive (spilled) across the calls.
# ----------------------------------------------------------------------------

cdef inline void _store_found(
    Py_ssize_t *found, int any_invalid, int any_soft
) noexcept nogil:
    if found != NULL:
        found[0] = any_invalid
        found[1] = any_soft


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
    Py_ssize_t *found,            # see above, or NULL: no checks
) noexcept nogil:
    cdef Py_ssize_t e
    cdef floating w, pc, l
    cdef double total = 0.0
    cdef bint check = found != NULL
    cdef int any_invalid = 0, any_soft = 0
    if loss_out == NULL and grad_out == NULL and weight == NULL:
        if hard_targets:
            for e in prange(n_entries, schedule='static', num_threads=n_threads):
                if check:
                    any_invalid |= _invalid_prob_entry(y[e], p[e])
                    any_soft |= _strictly_inside_unit(y[e])
                total += prob_loss_hard(y[e], _clip(p[e], eps), pos_weight)
        else:
            for e in prange(n_entries, schedule='static', num_threads=n_threads):
                if check:
                    any_invalid |= _invalid_prob_entry(y[e], p[e])
                    any_soft |= _strictly_inside_unit(y[e])
                total += prob_loss(y[e], _clip(p[e], eps), pos_weight)
        _store_found(found, any_invalid, any_soft)
        return weight_scale * total
    for e in prange(n_entries, schedule='static', num_threads=n_threads):
        if check:
            any_invalid |= _invalid_prob_entry(y[e], p[e])
            any_soft |= _strictly_inside_unit(y[e])
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
    _store_found(found, any_invalid, any_soft)
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
    Py_ssize_t *found,
) noexcept nogil:
    cdef Py_ssize_t i, j, e
    cdef floating w, pc, l
    cdef double total = 0.0
    cdef bint check = found != NULL
    cdef int any_invalid = 0, any_soft = 0
    for i in prange(n_samples, schedule='static', num_threads=n_threads):
        for j in range(n_labels):
            e = i * n_labels + j
            if check:
                any_invalid |= _invalid_prob_entry(y[e], p[e])
                any_soft |= _strictly_inside_unit(y[e])
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
    _store_found(found, any_invalid, any_soft)
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
    Py_ssize_t *found,
) noexcept nogil:
    cdef Py_ssize_t e
    cdef floating w, l, exp_neg_abs_z
    cdef double total = 0.0
    cdef bint check = found != NULL
    cdef int any_invalid = 0
    if loss_out == NULL and grad_out == NULL and weight == NULL:
        for e in prange(n_entries, schedule='static', num_threads=n_threads):
            if check:
                any_invalid |= _invalid_logit_entry(y[e], z[e])
            total += logit_loss(y[e], z[e], pos_weight, _exp(-_abs(z[e])))
        _store_found(found, any_invalid, 0)
        return weight_scale * total
    if loss_out == NULL and grad_out != NULL and weight == NULL:
        # Reduced loss and its gradient, unweighted: what a solver calls.
        for e in prange(n_entries, schedule='static', num_threads=n_threads):
            if check:
                any_invalid |= _invalid_logit_entry(y[e], z[e])
            exp_neg_abs_z = _exp(-_abs(z[e]))
            grad_out[e] = grad_scale * weight_scale * logit_gradient(
                y[e], z[e], pos_weight, exp_neg_abs_z)
            total += logit_loss(y[e], z[e], pos_weight, exp_neg_abs_z)
        _store_found(found, any_invalid, 0)
        return weight_scale * total
    for e in prange(n_entries, schedule='static', num_threads=n_threads):
        if check:
            any_invalid |= _invalid_logit_entry(y[e], z[e])
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
    _store_found(found, any_invalid, 0)
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
    Py_ssize_t *found,
) noexcept nogil:
    cdef Py_ssize_t i, j, e
    cdef floating w, l, exp_neg_abs_z
    cdef double total = 0.0
    cdef bint check = found != NULL
    cdef int any_invalid = 0
    for i in prange(n_samples, schedule='static', num_threads=n_threads):
        for j in range(n_labels):
            e = i * n_labels + j
            if check:
                any_invalid |= _invalid_logit_entry(y[e], z[e])
            w = sample_weight[i] * label_weight[j]
            exp_neg_abs_z = _exp(-_abs(z[e]))
            if grad_out != NULL:
                grad_out[e] = grad_scale * w * logit_gradient(
                    y[e], z[e], pos_weight[j], exp_neg_abs_z)
            l = w * logit_loss(y[e], z[e], pos_weight[j], exp_neg_abs_z)
            if loss_out != NULL:
                loss_out[e] = l
            total += l
    _store_found(found, any_invalid, 0)
    return total


# ----------------------------------------------------------------------------
# The one entry point. The caller (skbce/metrics.py) guarantees: y and
# prediction C-contiguous of shape (n, k) and the same dtype; weight vectors of
# that dtype with length n (sample_weight), k (label_weight, pos_weight) or 0
# (absent); outputs of shape (n, k) or (0, 0) (not wanted); all values valid
# unless ``found`` is given, in which case the pass checks them itself.
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
    Py_ssize_t[::1] found=None,
):
    """Weighted BCE sum over all entries; optionally fill loss and gradient.

    Returns ``sum_ij w_ij * loss_ij`` with ``w_ij = sample_weight_i *
    label_weight_j``. ``loss_out`` receives ``w_ij * loss_ij`` and
    ``grad_out`` receives ``grad_scale * w_ij * d loss_ij / d prediction_ij``.
    ``hard_targets`` promises that every ``y`` is exactly 0 or 1; the
    probability path then needs one log per entry instead of two.

    ``found``, an ``np.intp`` array of length 2, asks the pass to validate
    the values it reads. ``found[0]`` is set to 1 if some target is not in
    [0, 1] or some prediction is not a probability in [0, 1] (not a finite
    number, with ``from_logits``) -- NaN is never valid -- else 0. On the
    probability path ``found[1]`` is set to 1 if some target is strictly
    inside (0, 1), else 0. When ``found[0]`` is 1 the sum and the outputs are
    meaningless; when ``found[1]`` is 1 a ``hard_targets=True`` result is
    wrong (though the values were validated all the same).
    """
    cdef Py_ssize_t n_samples = y.shape[0]
    cdef Py_ssize_t n_labels = y.shape[1]
    cdef floating *loss_ptr = NULL
    cdef floating *grad_ptr = NULL
    cdef const floating *weight_ptr = NULL
    cdef floating weight_scale = 1
    cdef floating scalar_pw = <floating> pos_weight_scalar
    cdef double total
    cdef Py_ssize_t *found_ptr = NULL

    if found is not None:
        if found.shape[0] != 2:
            raise ValueError(f"found must have length 2; got {found.shape[0]}.")
        found_ptr = &found[0]
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
                    loss_ptr, grad_ptr, <floating> grad_scale, n_threads, found_ptr,
                )
            else:
                total = _prob_flat(
                    n_samples * n_labels, &y[0, 0], &prediction[0, 0],
                    weight_ptr, weight_scale, scalar_pw, <floating> eps,
                    hard_targets, loss_ptr, grad_ptr, <floating> grad_scale, n_threads,
                    found_ptr,
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
                loss_ptr, grad_ptr, <floating> grad_scale, n_threads, found_ptr,
            )
        else:
            total = _prob_rows(
                n_samples, n_labels, &y[0, 0], &prediction[0, 0],
                &sw[0], &lw[0], &pw[0], <floating> eps, hard_targets,
                loss_ptr, grad_ptr, <floating> grad_scale, n_threads, found_ptr,
            )
    return total
