# cython: language_level=3
"""Precision-matched elementary functions shared by the Cython kernels.

Each picks the C function of the argument's precision, so float32 math stays
in float32 (a bare ``log`` would promote it to double and halve the vector
width). Inline and ``nogil``: they compile into the loops of the modules that
cimport them.
"""

from cython cimport floating
from libc.math cimport exp, expf, fabs, fabsf, log, log1p, log1pf, logf


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
