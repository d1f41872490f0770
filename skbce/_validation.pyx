# cython: language_level=3, boundscheck=False, wraparound=False
# cython: initializedcheck=False
"""Value checks run before a loss kernel is entered.

This module is compiled *without* ``-ffast-math``: it has to see NaN, which the
fast-math kernels are allowed to assume away. One parallel pass per array,
returning a count, so that validating a large input costs about as much as
reading it once; the Python caller builds the error message (and finds the
offending entry) only when the count is non-zero.
"""

from cython cimport floating
from cython.parallel cimport prange


def count_outside(const floating[::1] values, double low, double high, int n_threads):
    """Number of entries that are not in ``[low, high]``; NaN counts."""
    cdef Py_ssize_t i
    cdef Py_ssize_t n_bad = 0
    cdef floating lo = <floating> low
    cdef floating hi = <floating> high
    with nogil:
        for i in prange(values.shape[0], schedule='static', num_threads=n_threads):
            # Written as "not inside" so that NaN, which fails every
            # comparison, is counted.
            if not (values[i] >= lo and values[i] <= hi):
                n_bad += 1
    return n_bad


def count_soft_and_outside(const floating[::1] targets, int n_threads):
    """Count targets strictly inside (0, 1) and targets not in [0, 1] (NaN counts).

    One pass serving two purposes: the second count validates the targets, the
    first tells the loss kernel whether every target is exactly 0 or 1, in
    which case it needs one logarithm per entry instead of two.
    """
    cdef Py_ssize_t i
    cdef Py_ssize_t n_soft = 0
    cdef Py_ssize_t n_outside = 0
    cdef floating t
    with nogil:
        for i in prange(targets.shape[0], schedule='static', num_threads=n_threads):
            t = targets[i]
            # Bitwise & on the comparisons keeps the loop branch-free (and
            # vectorised); NaN fails both comparisons of the first test.
            n_outside += not ((t >= 0) & (t <= 1))
            n_soft += (t > 0) & (t < 1)
    return n_soft, n_outside
