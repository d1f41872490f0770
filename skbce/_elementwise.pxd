# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The loss kernels' elementwise functions: one entry in, one number out.

Cimported by ``skbce/_bce.pyx``, whose loops they compile into (``cdef
inline``, ``nogil``): the validity tests on the bits of a float, the target
types and how a target is read, and the loss and gradient of one entry from
a probability or a logit. They are compiled with the module's flags, so
everything said there about ``-ffast-math`` holds here: no floating-point
comparison may decide anything about NaN or inf.
"""

from cython cimport floating
from libc.stdint cimport int8_t, int64_t, uint8_t, uint32_t, uint64_t
from libc.string cimport memcpy
from skbce._math cimport _abs, _exp, _log, _log1p

# ----------------------------------------------------------------------------
# Precision-matched elementary functions (_log, _log1p, _exp, _abs) come
# from skbce/_math.pxd; float32 math stays in float32.
# ----------------------------------------------------------------------------

cdef inline floating _positive_part(floating x) noexcept nogil:
    return x if x > 0 else <floating> 0


# ----------------------------------------------------------------------------
# Validity tests on the bits of a float (see "Values are validated in the loss
# pass itself" in skbce/_bce.pyx). Integer comparisons only: under fast-math a float
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


# Targets are read in their own type: 0/1 label matrices (int8, uint8 -- bool
# arrays are passed as a uint8 view --, int64) cost no conversion pass and a
# fraction of the memory traffic; float targets have the predictions' dtype.
ctypedef fused target_t:
    int8_t
    uint8_t
    int64_t
    float
    double


# ----------------------------------------------------------------------------
# Point functions: one entry in, one number out. Constants are cast to
# ``floating``: a bare ``1`` becomes the C double ``1.0`` and would silently
# promote float32 math to float64.
#
# Accuracy: every loss and gradient is within a few ulps of its exactly
# rounded value, for any p in [eps, 1 - eps] and any finite logit. The
# complement 1 - p is never rounded into a logarithm: log(1 - p) is
# log1p(-p), whose argument is exact (1 - p loses the digits of a small p:
# float32 at p = 1e-6, relative error 1.3e-2). Checked under -ffast-math by
# tests/test_accuracy.py against float64 and 40-digit references.
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
    # p is already clipped to [eps, 1 - eps]. Both terms are non-negative:
    # their sum does not cancel.
    return -(pos_weight * y * _log(p) + (<floating> 1 - y) * _log1p(-p))


cdef inline floating prob_loss_hard(
    floating y, floating p, floating pos_weight
) noexcept nogil:
    # prob_loss for y exactly 0 or 1: only one term is non-zero, so one
    # log1p per entry instead of a log and a log1p, its argument chosen so
    # that rounding it costs no digits:
    #   y = 0:            -log1p(-p)          -p is exact;
    #   y = 1, p >= 1/2:  -log1p(p - 1)       p - 1 is exact (Sterbenz);
    #   y = 1, p < 1/2:   log1p((1 - p) / p)  = -log(p); the argument is >= 1,
    #                     where log1p damps its relative rounding error.
    # Selects, not arithmetic on y: under fast-math gcc may re-associate a
    # sum like y * p + (1 - y) * (1 - p) and lose a tiny p against 1.
    # Everything is decided before the call: a test after it let gcc thread
    # the branches and vectorise two log1p calls per entry instead of one.
    cdef floating u = -p
    cdef floating factor = -1
    if y != 0:
        if p < <floating> 0.5:
            u = (<floating> 1 - p) / p
            factor = pos_weight
        else:
            u = p - <floating> 1
            factor = -pos_weight
    return factor * _log1p(u)


cdef inline floating prob_gradient(
    floating y, floating p, floating pos_weight
) noexcept nogil:
    # d loss / d p = (1 - y) / (1 - p) - pw y / p at the clipped p, over one
    # denominator: ((1 - y) p - pw y (1 - p)) / (p (1 - p)). The numerator,
    # written p - y (pw + p (1 - pw)), is p - y for pw = 1: exact when p and
    # y are within a factor 2 of each other (Sterbenz), where the two
    # fractions would cancel.
    cdef floating one = 1
    return (p - y * (pos_weight + p * (one - pos_weight))) / (p * (one - p))


cdef inline floating prob_gradient_hard(
    floating y, floating p, floating pos_weight
) noexcept nogil:
    # prob_gradient for y exactly 0 or 1: 1 / (1 - p) or -pw / p.
    cdef bint positive = y != 0
    cdef floating numerator = -pos_weight if positive else <floating> 1
    cdef floating denominator = p if positive else <floating> 1 - p
    return numerator / denominator


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
    floating y, floating z, floating pos_weight, floating exp_neg_abs_z, int *cancels
) noexcept nogil:
    # d loss / d z = (1 - y) * sigmoid(z) - pw * y * sigmoid(-z), where with
    # e = exp(-|z|): sigmoid(|z|) = 1 / (1 + e), sigmoid(-|z|) = e / (1 + e).
    # Both sigmoids are computed, never 1 - sigmoid: for hard targets one
    # term is zero and the other exact to a few ulps at any logit. For soft
    # targets near sigmoid(z) = y the two terms cancel, and the difference is
    # only exact to a few ulps of the terms: for float64, *cancels is set to
    # 1 when they are within a small factor of each other, and the caller
    # then recomputes the gradient in double-double (_precise_logit_gradient).
    cdef floating sig_big = <floating> 1 / (<floating> 1 + exp_neg_abs_z)
    cdef floating sig_small = exp_neg_abs_z * sig_big
    cdef floating sig_pos = sig_big if z >= <floating> 0 else sig_small
    cdef floating sig_neg = sig_small if z >= <floating> 0 else sig_big
    cdef floating up = (<floating> 1 - y) * sig_pos
    cdef floating down = pos_weight * y * sig_neg
    # float64: the vector path is good to about 1.5 ulps of the larger term,
    # so within 4 ulps of the difference where the terms differ by more than
    # a factor 2. float32: its vector exp and division leave up to 3.3 ulps
    # of the larger term (AVX2), too close to the bound even without
    # cancellation, so every float32 entry with two non-zero terms (a soft
    # target) is computed in double instead (_logit_entry's soft formula);
    # a hard target has one non-zero term, and nothing to redo.
    if floating is float:
        cancels[0] = 0
    else:
        cancels[0] = (up < 2 * down) & (down < 2 * up)
    return up - down


# Reading a target in its own type.

cdef inline void _read_target(target_t y, floating *value) noexcept nogil:
    # *value receives y in the working precision. An int64 goes through int32
    # because AVX2 has no vector int64 -> float conversion (gcc left the loop
    # scalar): a target outside int32 is wrapped, but it is also flagged
    # invalid by _target_invalid, and an invalid pass's numbers are discarded.
    if target_t is int64_t:
        value[0] = <floating> <int> y
    else:
        value[0] = <floating> y


cdef inline int _target_invalid(target_t y) noexcept nogil:
    # 1 if y is not in [0, 1] (or is NaN). Integer targets are tested as
    # integers.
    if target_t is float or target_t is double:
        return _outside_unit(y)
    elif target_t is int64_t:
        return (<uint64_t> y) > 1
    elif target_t is int8_t:
        return (<uint8_t> y) > 1
    else:
        return y > 1


cdef inline int _target_soft(target_t y) noexcept nogil:
    # 1 if y is strictly inside (0, 1): never for integer targets.
    if target_t is float or target_t is double:
        return _strictly_inside_unit(y)
    else:
        return 0
