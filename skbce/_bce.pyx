# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False, nonecheck=False
"""Binary cross-entropy kernels.

Design
------
Each quantity is written once as a tiny ``noexcept nogil`` point function
(one target, one prediction in; one number out), in ``skbce/_elementwise.pxd``
with the validity tests on the bits of a float. The array functions here are
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
and the probability path takes one logarithm per entry instead of two -- roughly
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

float32 stays float32 end to end: the math, and the sums of blocks of 256
entries, which are then added in float64 (see "Loops" below) -- so float32
inputs get float32 vector widths but not float32 rounding in the mean.
Integer and bool targets are read as stored (int8, uint8, int64) inside the
vector loops themselves, with no conversion pass and no conversion buffer.

Accuracy: the complement ``1 - p`` is never rounded into a logarithm
(``log1p(-p)`` instead), so every elementwise loss and gradient is within a
few ulps of its exactly rounded value for any ``p`` in [eps, 1 - eps] and any
finite logit (tests/test_accuracy.py).

The loss from logits uses ``softplus(z) = max(z, 0) + log1p(exp(-|z|))`` and
its mirror for ``-z``; every term is non-negative, so there is neither overflow
(``exp`` only ever sees ``-|z|``) nor cancellation for any finite logit.
"""

from cython cimport floating
from cython.parallel cimport prange
from skbce._elementwise cimport (
    _clip, _not_finite, _outside_unit, _read_target, _strictly_inside_unit, _target_invalid,
    _target_soft, logit_gradient, logit_loss, prob_gradient, prob_gradient_hard, prob_loss,
    prob_loss_hard, target_t,
)
from skbce._math cimport _abs, _exp

cdef extern from "_precise.h":
    void skbce_logit_gradient_dd(
        const double *y, const double *z, const double *pos_weight,
        double scalar_pos_weight, Py_ssize_t n, double *out) noexcept nogil

cimport openmp
import numpy as np


def max_threads():
    """Threads an OpenMP region would use now.

    Honours ``OMP_NUM_THREADS`` and the limits threadpoolctl sets.
    """
    return openmp.omp_get_max_threads()


# Where the build targets AVX-512, gcc's vectoriser is told to use its full
# width: at gcc's default (256-bit vectors, for its generic tuning) the loss
# loops took 1.5-2.4x as long on a Zen 4 (2M entries, one thread: float64
# soft-target loss 11.9 -> 4.9 ms, fused logit loss+gradient 8.7 -> 5.6 ms).
# Cython writes this block among the includes, ahead of every function of the
# module, the inline ones cimported from skbce/_elementwise.pxd included.
cdef extern from *:
    """
    #if defined(__AVX512F__) && defined(__GNUC__) && !defined(__clang__)
    #pragma GCC target("prefer-vector-width=512")
    #endif
    """


# ----------------------------------------------------------------------------
# Loops. ``loss_out`` / ``grad_out`` / ``weight`` may be NULL when they reach
# a block function, and ``hard_targets`` and ``check`` are fixed for a call.
# The bare reductions, the paths that matter most for speed, are written out
# on their own.
#
# No loop tests a pointer: each block function picks, outside its loops, a
# loop that reads and writes only arrays that exist. Where the general loop
# has no weights it reads an array of ones (_ONES), and an output not wanted
# goes to the thread's scratch row (_thread_scratch). A NULL test inside a
# vectorised loop is if-converted by gcc into a masked load or store *at*
# the NULL pointer (AVX2 vmaskmov, AVX-512 masks): undefined behaviour in C,
# which the hardware happens to forgive, but qemu's AVX2 emulation does not
# (reduction="none" from logits died with SIGSEGV under qemu -cpu Haswell).
#
# Each thread works through blocks of at most _BLOCK consecutive entries; a
# block function sums its block's weighted losses in the working precision
# and the caller adds the blocks' sums in float64. A float32 partial sum
# keeps the float32 loop as wide as float32 vectors go (accumulating every
# entry in float64 halved its vector width: float32 was no faster than
# float64). Every entry is non-negative, so a block's sum has a relative
# error of at most about _BLOCK / lanes + log2(lanes) roundings -- a few
# 1e-7 in float32 -- and the float64 total of the blocks adds none.
#
# ``flags``, when ``check`` is set, receives two ORed bits: 1 if some target
# or prediction is invalid, 2 if some target is strictly inside (0, 1); the logit
# loops leave the second at 0, as they do not depend on it. Flags rather
# than counts: the caller needs no more. The checks come first in each loop
# body: the vector log/exp calls clobber every vector register, and checking
# before them spares gcc keeping y and p alive (spilled) across the calls.
#
# Integer targets are read in their own type inside the vector loop
# (_read_target; for int8 under AVX2 gcc widens 32 targets a step). They used
# to be converted a block at a time into a float buffer on the stack first.
# That conversion loop was vectorised, but its burst of reads (2 KiB of int8
# at once, then nothing for the rest of the block) ran ahead of the hardware
# prefetcher: out of cache, half of its profile samples sat on the int8
# load, and the int8 loss took 1.25-1.4x the time of the float64 one (10M
# entries, AVX2, one thread); in the loop it takes 0.6-0.8x. The validity
# tests of a target are separate functions (_target_invalid, _target_soft):
# a soft-target bit computed and then masked off in the logit loops kept gcc
# from vectorising them for float targets ("reduction used in loop").
# ----------------------------------------------------------------------------

cdef enum:
    _BLOCK = 2048


# The weights of the general loops when none are given. Read-only after
# import, shared by all threads; 16 KiB, so they stay in cache.
cdef double _ONES64[_BLOCK]
cdef float _ONES32[_BLOCK]
cdef Py_ssize_t _i
for _i in range(_BLOCK):
    _ONES64[_i] = 1
    _ONES32[_i] = 1


cdef inline const floating *_or_ones(const floating *weight) noexcept nogil:
    if weight != NULL:
        return weight
    if floating is float:
        return _ONES32
    else:
        return _ONES64


cdef inline floating *_or_scratch(floating *out, floating *scratch) noexcept nogil:
    return scratch if out == NULL else out


# Compile-time tags of the two probability formulas, for targets all 0 or 1
# and for soft ones: types, so that Cython compiles each loop once per
# formula. (A constant bint argument was not enough: where gcc did not
# inline a loop at every call, the choice inside it was if-converted and
# every entry paid for both formulas.)
ctypedef signed char _hard
ctypedef short _soft
ctypedef fused formula_t:
    _hard
    _soft


cdef inline floating _prob_entry(
    floating y, floating p, floating w, floating pos_weight, floating eps, bint hard,
    floating grad_scale, floating *grad,
) noexcept nogil:
    # w * loss of one entry; *grad (a local: the caller decides whether to
    # store it) receives the scaled gradient.
    cdef floating pc = _clip(p, eps)
    if hard:
        grad[0] = grad_scale * w * prob_gradient_hard(y, pc, pos_weight)
        return w * prob_loss_hard(y, pc, pos_weight)
    grad[0] = grad_scale * w * prob_gradient(y, pc, pos_weight)
    return w * prob_loss(y, pc, pos_weight)


cdef inline floating _logit_entry(
    floating y, floating z, floating w, floating pos_weight,
    floating grad_scale, floating *grad, int *cancels, formula_t formula,
) noexcept nogil:
    # _prob_entry from a logit; *cancels: see logit_gradient. The soft
    # formula matters for float32 only: its gradient is computed in double
    # from the start (the terms of a soft target may cancel, see
    # logit_gradient), so nothing is redone; the loss takes exp(-|z|)
    # rounded from that double. float64 has one formula: its cancelling
    # entries are few and redone in double-double.
    cdef double exp_double
    cdef floating exp_neg_abs_z
    if floating is float and formula_t is _soft:
        exp_double = _exp(-_abs(<double> z))
        grad[0] = <float> ((<double> grad_scale) * (<double> w) * logit_gradient(
            <double> y, <double> z, <double> pos_weight, exp_double, cancels))
        cancels[0] = 0
        return w * logit_loss(y, z, pos_weight, <float> exp_double)
    exp_neg_abs_z = _exp(-_abs(z))
    grad[0] = grad_scale * w * logit_gradient(y, z, pos_weight, exp_neg_abs_z, cancels)
    return w * logit_loss(y, z, pos_weight, exp_neg_abs_z)


cdef inline floating _prob_loop(
    const target_t *y,
    const floating *p,
    Py_ssize_t m,
    const floating *weight,       # per entry, or NULL for all ones
    floating weight_scale,        # multiplies every weight
    floating pos_weight,
    floating eps,
    formula_t formula,            # its type: which formula
    floating *loss_out,
    floating *grad_out,
    floating grad_scale,
    floating *scratch,            # 2 * _BLOCK entries of the thread's own
    bint check,
    int *flags,
) noexcept nogil:
    # _prob_block's loops for a flat run: the bare sum, the sum and the
    # gradient (a fused call), and any outputs with any weights.
    cdef Py_ssize_t e
    cdef floating yv, l, g
    cdef floating part = 0
    cdef int found = 0
    cdef bint hard = formula_t is _hard
    cdef const floating *w
    if (target_t is float and floating is double) or (target_t is double and floating is float):
        return 0  # float targets always have the predictions' type (bce_pass)
    if loss_out == NULL and grad_out == NULL and weight == NULL:
        for e in range(m):
            _read_target(y[e], &yv)
            if check:
                found |= _target_invalid(y[e]) | _outside_unit(p[e]) | (_target_soft(y[e]) << 1)
            part += _prob_entry(yv, p[e], 1, pos_weight, eps, hard, 0, &g)
        part *= weight_scale
    elif loss_out == NULL and weight == NULL:
        for e in range(m):
            _read_target(y[e], &yv)
            if check:
                found |= _target_invalid(y[e]) | _outside_unit(p[e]) | (_target_soft(y[e]) << 1)
            part += _prob_entry(yv, p[e], 1, pos_weight, eps, hard,
                                grad_scale * weight_scale, &g)
            grad_out[e] = g
        part *= weight_scale
    else:
        w = _or_ones(weight)
        loss_out = _or_scratch(loss_out, scratch)
        grad_out = _or_scratch(grad_out, scratch + _BLOCK)
        for e in range(m):
            _read_target(y[e], &yv)
            if check:
                found |= _target_invalid(y[e]) | _outside_unit(p[e]) | (_target_soft(y[e]) << 1)
            l = _prob_entry(yv, p[e], weight_scale * w[e], pos_weight, eps, hard,
                            grad_scale, &g)
            loss_out[e] = l
            grad_out[e] = g
            part += l
    if check:
        flags[0] |= found
    return part


cdef inline floating _prob_row_loop(
    const target_t *y,
    const floating *p,
    Py_ssize_t m,
    floating sample_weight,       # of the row
    const floating *label_weight, # of its m labels
    const floating *pos_weight,   # of its m labels
    floating eps,
    formula_t formula,            # its type: which formula
    floating *loss_out,           # or NULL
    floating *grad_out,           # or NULL
    floating grad_scale,
    floating *scratch,            # 2 * _BLOCK entries of the thread's own
    bint check,
    int *flags,
) noexcept nogil:
    # _prob_loop for a run of labels of one row, with per-label weights.
    cdef Py_ssize_t j
    cdef floating yv, l, g
    cdef floating part = 0
    cdef int found = 0
    if (target_t is float and floating is double) or (target_t is double and floating is float):
        return 0  # float targets always have the predictions' type (bce_pass)
    loss_out = _or_scratch(loss_out, scratch)
    grad_out = _or_scratch(grad_out, scratch + _BLOCK)
    for j in range(m):
        _read_target(y[j], &yv)
        if check:
            found |= _target_invalid(y[j]) | _outside_unit(p[j]) | (_target_soft(y[j]) << 1)
        l = _prob_entry(yv, p[j], sample_weight * label_weight[j], pos_weight[j],
                        eps, formula_t is _hard, grad_scale, &g)
        loss_out[j] = l
        grad_out[j] = g
        part += l
    if check:
        flags[0] |= found
    return part


cdef floating _prob_block(
    const target_t *y,
    const floating *p,
    Py_ssize_t m,                 # entries in the block, at most _BLOCK
    const floating *weight,
    floating weight_scale,
    const floating *label_weight, # not NULL: a run of one row's labels
    const floating *pos_weight,   # per label, with label_weight
    floating scalar_pos_weight,
    floating eps,
    bint hard_targets,            # every y is exactly 0 or 1
    floating *loss_out,
    floating *grad_out,
    floating grad_scale,
    floating *scratch,            # 2 * _BLOCK entries of the thread's own
    bint check,
    int *flags,
) noexcept nogil:
    # The weighted losses of a block, summed; ``weight_scale`` is the row's
    # sample weight for a run of labels.
    if label_weight != NULL:
        if hard_targets:
            return _prob_row_loop(y, p, m, weight_scale, label_weight, pos_weight, eps,
                                  <_hard> 0, loss_out, grad_out, grad_scale, scratch, check, flags)
        return _prob_row_loop(y, p, m, weight_scale, label_weight, pos_weight, eps,
                              <_soft> 0, loss_out, grad_out, grad_scale, scratch, check, flags)
    if hard_targets:
        return _prob_loop(y, p, m, weight, weight_scale, scalar_pos_weight, eps, <_hard> 0,
                          loss_out, grad_out, grad_scale, scratch, check, flags)
    return _prob_loop(y, p, m, weight, weight_scale, scalar_pos_weight, eps, <_soft> 0,
                      loss_out, grad_out, grad_scale, scratch, check, flags)


cdef floating _logit_block(
    const target_t *y,
    const floating *z,
    Py_ssize_t m,
    const floating *weight,
    floating weight_scale,
    const floating *label_weight,
    const floating *pos_weight,
    floating scalar_pos_weight,
    floating *loss_out,
    floating *grad_out,
    floating grad_scale,
    floating *scratch,            # 2 * _BLOCK entries of the thread's own
    bint check,
    int *flags,
) noexcept nogil:
    # _prob_block from logits. A float32 block whose gradient is wanted and
    # which holds a soft target takes the soft formula (see _logit_entry):
    # computing its gradient in float32 and then again in double (every soft
    # entry was redone) cost float32 soft targets 1.8x the time of hard ones
    # (10M entries, AVX-512, one thread: 44 against 24 ms). The scan of the
    # block's targets is a pass over 8 KiB that the loop then reads from cache.
    cdef Py_ssize_t e
    cdef int soft = 0
    if target_t is float and grad_out != NULL:
        for e in range(m):
            soft |= _strictly_inside_unit(y[e])
        if soft:
            return _logit_loop(y, z, m, weight, weight_scale, label_weight, pos_weight,
                               scalar_pos_weight, <_soft> 0, loss_out, grad_out,
                               grad_scale, scratch, check, flags)
    return _logit_loop(y, z, m, weight, weight_scale, label_weight, pos_weight,
                       scalar_pos_weight, <_hard> 0, loss_out, grad_out, grad_scale,
                       scratch, check, flags)


cdef inline floating _logit_loop(
    const target_t *y,
    const floating *z,
    Py_ssize_t m,
    const floating *weight,
    floating weight_scale,
    const floating *label_weight,
    const floating *pos_weight,
    floating scalar_pos_weight,
    formula_t formula,            # its type: which formula (_logit_entry)
    floating *loss_out,
    floating *grad_out,
    floating grad_scale,
    floating *scratch,            # 2 * _BLOCK entries of the thread's own
    bint check,
    int *flags,
) noexcept nogil:
    # _logit_block's loops. ``entry_weight``: the per-entry weights the
    # extra-precision pass multiplies by (all ones, the flat run's or the
    # row's labels').
    cdef Py_ssize_t e
    cdef floating yv, l, g
    cdef floating part = 0
    cdef int found = 0
    cdef int cancels, n_cancels = 0
    cdef unsigned char cancelling[_BLOCK]
    cdef const floating *entry_weight = _or_ones(weight)
    cdef bint want_grad = grad_out != NULL
    if (target_t is float and floating is double) or (target_t is double and floating is float):
        return 0  # float targets always have the predictions' type (bce_pass)
    if label_weight != NULL:
        entry_weight = label_weight
        loss_out = _or_scratch(loss_out, scratch)
        grad_out = _or_scratch(grad_out, scratch + _BLOCK)
        for e in range(m):
            _read_target(y[e], &yv)
            if check:
                found |= _target_invalid(y[e]) | _not_finite(z[e])
            l = _logit_entry(yv, z[e], weight_scale * label_weight[e], pos_weight[e],
                             grad_scale, &g, &cancels, formula)
            cancelling[e] = cancels
            n_cancels += cancels
            grad_out[e] = g
            loss_out[e] = l
            part += l
    elif weight == NULL and loss_out == NULL and grad_out == NULL:
        for e in range(m):
            _read_target(y[e], &yv)
            if check:
                found |= _target_invalid(y[e]) | _not_finite(z[e])
            part += _logit_entry(yv, z[e], 1, scalar_pos_weight, 0, &g, &cancels, formula)
        part *= weight_scale
    elif weight == NULL and loss_out == NULL:
        # The loss and its gradient, unweighted: what a solver calls.
        for e in range(m):
            _read_target(y[e], &yv)
            if check:
                found |= _target_invalid(y[e]) | _not_finite(z[e])
            part += _logit_entry(yv, z[e], 1, scalar_pos_weight,
                                 grad_scale * weight_scale, &g, &cancels, formula)
            cancelling[e] = cancels
            n_cancels += cancels
            grad_out[e] = g
        part *= weight_scale
    else:
        loss_out = _or_scratch(loss_out, scratch)
        grad_out = _or_scratch(grad_out, scratch + _BLOCK)
        for e in range(m):
            _read_target(y[e], &yv)
            if check:
                found |= _target_invalid(y[e]) | _not_finite(z[e])
            l = _logit_entry(yv, z[e], weight_scale * entry_weight[e], scalar_pos_weight,
                             grad_scale, &g, &cancels, formula)
            cancelling[e] = cancels
            n_cancels += cancels
            grad_out[e] = g
            loss_out[e] = l
            part += l
    if n_cancels and want_grad:
        _precise_logit_gradient(y, z, m, entry_weight, weight_scale, pos_weight,
                                scalar_pos_weight, grad_scale, grad_out, cancelling,
                                n_cancels)
    if check:
        flags[0] |= found
    return part


cdef void _precise_logit_gradient(
    const target_t *y,
    const floating *z,
    Py_ssize_t m,
    const floating *entry_weight, # per entry, never NULL
    floating weight_scale,
    const floating *pos_weight,   # per entry (a row's labels), or NULL
    floating scalar_pos_weight,   # ... then this one for all
    floating grad_scale,
    floating *grad_out,
    const unsigned char *cancelling,  # 1 for the entries to redo
    Py_ssize_t n_cancelling,
) noexcept nogil:
    # The float64 gradients of a block's cancelling entries again, in
    # double-double (skbce/_precise.c, about 4 ns an entry on AVX-512): the
    # whole block if it mostly cancels (soft targets at a close fit), else
    # only its cancelling entries, packed first (soft targets at random
    # logits: about 1 in 6). Only soft targets cancel: integer ones never get
    # here, but would be handled all the same. (float32 never cancels: its
    # soft targets are computed in double in the first place.)
    cdef double gradient[_BLOCK]
    cdef double y_packed[_BLOCK]
    cdef double z_packed[_BLOCK]
    cdef double pos_weight_packed[_BLOCK]
    cdef Py_ssize_t index[_BLOCK]
    cdef Py_ssize_t e, i, n
    cdef floating yv
    if floating is double:
        if target_t is double:
            if 4 * n_cancelling > m:
                skbce_logit_gradient_dd(y, z, pos_weight, scalar_pos_weight, m, gradient)
                for e in range(m):
                    grad_out[e] = (_entry_scale(entry_weight[e], weight_scale, grad_scale)
                                   * gradient[e])
                return
        # Branch-free packing: every entry is written, the count advances
        # only past the cancelling ones.
        n = 0
        if pos_weight != NULL:
            for e in range(m):
                index[n] = e
                _read_target(y[e], &yv)
                y_packed[n] = yv
                z_packed[n] = z[e]
                pos_weight_packed[n] = pos_weight[e]
                n += cancelling[e]
        else:
            for e in range(m):
                index[n] = e
                _read_target(y[e], &yv)
                y_packed[n] = yv
                z_packed[n] = z[e]
                pos_weight_packed[n] = scalar_pos_weight
                n += cancelling[e]
        skbce_logit_gradient_dd(y_packed, z_packed, pos_weight_packed, 0, n, gradient)
        for i in range(n):
            e = index[i]
            grad_out[e] = (_entry_scale(entry_weight[e], weight_scale, grad_scale)
                           * gradient[i])


cdef inline double _entry_scale(
    floating entry_weight, floating weight_scale, floating grad_scale,
) noexcept nogil:
    # grad_scale * w of an entry, as _logit_block's loops weigh it, in double:
    # the extra-precision gradient is rounded once, after it.
    cdef double w = weight_scale
    return grad_scale * (w * entry_weight)


cdef inline floating _block(
    const target_t *y,
    const floating *prediction,
    Py_ssize_t m,
    const floating *weight,
    floating weight_scale,
    const floating *label_weight,
    const floating *pos_weight,
    floating scalar_pos_weight,
    bint from_logits,
    floating eps,
    bint hard_targets,
    floating *loss_out,
    floating *grad_out,
    floating grad_scale,
    floating *scratch,            # 2 * _BLOCK entries of the thread's own
    bint check,
    int *flags,
) noexcept nogil:
    if from_logits:
        return _logit_block(y, prediction, m, weight, weight_scale, label_weight,
                            pos_weight, scalar_pos_weight, loss_out, grad_out,
                            grad_scale, scratch, check, flags)
    return _prob_block(y, prediction, m, weight, weight_scale, label_weight, pos_weight,
                       scalar_pos_weight, eps, hard_targets, loss_out, grad_out,
                       grad_scale, scratch, check, flags)


cdef inline floating *_offset(floating *array, Py_ssize_t start) noexcept nogil:
    return NULL if array == NULL else array + start


cdef inline const floating *_const_offset(
    const floating *array, Py_ssize_t start
) noexcept nogil:
    return NULL if array == NULL else array + start


cdef inline void _store_found(
    Py_ssize_t *found, int any_invalid, int any_soft
) noexcept nogil:
    if found != NULL:
        found[0] = any_invalid
        found[1] = any_soft


cdef inline floating *_thread_scratch(floating *scratch) noexcept nogil:
    # This thread's part of the scratch rows that bce_pass allocated: the
    # outputs a loop does not want are written there. Not on the stack of the
    # loop functions: 32 KiB more in their frames made the float32 fused
    # logit pass 12% slower out of cache (AVX-512), its loop unchanged.
    return scratch + openmp.omp_get_thread_num() * (2 * _BLOCK)


cdef double _flat(
    Py_ssize_t n_entries,
    const target_t *y,
    const floating *prediction,
    const floating *weight,
    floating weight_scale,
    floating pos_weight,
    bint from_logits,
    floating eps,
    bint hard_targets,
    floating *loss_out,
    floating *grad_out,
    floating grad_scale,
    int n_threads,
    floating *scratch,            # 2 * _BLOCK entries per thread, n_threads times
    Py_ssize_t *found,            # [invalid, soft] flags, or NULL: no checks
) noexcept nogil:
    # One contiguous run of n_entries, split into blocks across threads.
    cdef Py_ssize_t b, start, m
    cdef Py_ssize_t n_blocks = (n_entries + _BLOCK - 1) // _BLOCK
    cdef int flags
    cdef double total = 0.0
    cdef bint check = found != NULL
    cdef int any_invalid = 0, any_soft = 0
    for b in prange(n_blocks, schedule='static', num_threads=n_threads):
        start = b * _BLOCK
        m = n_entries - start
        if m > _BLOCK:
            m = _BLOCK
        flags = 0
        total += _block(
            y + start, prediction + start, m, _const_offset(weight, start),
            weight_scale, NULL, NULL, pos_weight, from_logits, eps, hard_targets,
            _offset(loss_out, start), _offset(grad_out, start), grad_scale,
            _thread_scratch(scratch), check, &flags)
        any_invalid |= flags & 1
        any_soft |= flags >> 1
    _store_found(found, any_invalid, any_soft)
    return total


cdef double _rows(
    Py_ssize_t n_samples,
    Py_ssize_t n_labels,
    const target_t *y,
    const floating *prediction,
    const floating *sample_weight,   # length n_samples
    const floating *label_weight,    # length n_labels
    const floating *pos_weight,      # length n_labels
    bint from_logits,
    floating eps,
    bint hard_targets,
    floating *loss_out,
    floating *grad_out,
    floating grad_scale,
    int n_threads,
    floating *scratch,            # 2 * _BLOCK entries per thread, n_threads times
    Py_ssize_t *found,
) noexcept nogil:
    # Rows split across threads; each row in blocks of labels.
    cdef Py_ssize_t i, jb, j0, m, start
    cdef Py_ssize_t label_blocks = (n_labels + _BLOCK - 1) // _BLOCK
    cdef int flags
    cdef double total = 0.0
    cdef bint check = found != NULL
    cdef int any_invalid = 0, any_soft = 0
    for i in prange(n_samples, schedule='static', num_threads=n_threads):
        flags = 0
        for jb in range(label_blocks):
            j0 = jb * _BLOCK
            m = n_labels - j0
            if m > _BLOCK:
                m = _BLOCK
            start = i * n_labels + j0
            total += _block(
                y + start, prediction + start, m, NULL, sample_weight[i],
                label_weight + j0, pos_weight + j0, 0, from_logits, eps, hard_targets,
                _offset(loss_out, start), _offset(grad_out, start), grad_scale,
                _thread_scratch(scratch), check, &flags)
        any_invalid |= flags & 1
        any_soft |= flags >> 1
    _store_found(found, any_invalid, any_soft)
    return total


# ----------------------------------------------------------------------------
# The one entry point. The caller (skbce/metrics.py) guarantees: prediction
# C-contiguous of shape (n, k), y C-contiguous of that shape and of the
# prediction's dtype or an integer type (int8, uint8 -- a bool array viewed
# as uint8 --, int64); weight vectors of the prediction's dtype with length n
# (sample_weight), k (label_weight, pos_weight) or 0 (absent); outputs of
# shape (n, k) or (0, 0) (not wanted); all values valid unless ``found`` is
# given, in which case the pass checks them itself.
# ----------------------------------------------------------------------------

def bce_pass(
    const target_t[:, ::1] y,
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
    probability path then needs one logarithm per entry instead of two.
    ``y`` may be of the prediction's dtype or int8, uint8 (a bool array:
    pass ``y.view(np.uint8)``) or int64.

    ``found``, an ``np.intp`` array of length 2, asks the pass to validate
    the values it reads. ``found[0]`` is set to 1 if some target is not in
    [0, 1] or some prediction is not a probability in [0, 1] (not a finite
    number, with ``from_logits``) -- NaN is never valid -- else 0. On the
    probability path ``found[1]`` is set to 1 if some target is strictly
    inside (0, 1), else 0. When ``found[0]`` is 1 the sum and the outputs are
    meaningless; when ``found[1]`` is 1 a ``hard_targets=True`` result is
    wrong (though the values were validated all the same).
    """
    if (target_t is float or target_t is double) and sizeof(target_t) != sizeof(floating):
        raise ValueError("Floating targets must have the predictions' dtype.")
    cdef Py_ssize_t n_samples = y.shape[0]
    cdef Py_ssize_t n_labels = y.shape[1]
    cdef floating *loss_ptr = NULL
    cdef floating *grad_ptr = NULL
    cdef const floating *weight_ptr = NULL
    cdef floating weight_scale = 1
    cdef floating scalar_pw = <floating> pos_weight_scalar
    cdef double total
    cdef Py_ssize_t *found_ptr = NULL

    n_threads = max(1, n_threads)
    dtype = np.float32 if floating is float else np.float64
    cdef floating[:, ::1] scratch = np.empty((n_threads, 2 * _BLOCK), dtype=dtype)
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
            total = _flat(
                n_samples * n_labels, &y[0, 0], &prediction[0, 0],
                weight_ptr, weight_scale, scalar_pw, from_logits, <floating> eps,
                hard_targets, loss_ptr, grad_ptr, <floating> grad_scale, n_threads,
                &scratch[0, 0], found_ptr,
            )
        return total

    # Rows: every weight vector must be materialised; they are short.
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
        total = _rows(
            n_samples, n_labels, &y[0, 0], &prediction[0, 0],
            &sw[0], &lw[0], &pw[0], from_logits, <floating> eps, hard_targets,
            loss_ptr, grad_ptr, <floating> grad_scale, n_threads, &scratch[0, 0], found_ptr,
        )
    return total
