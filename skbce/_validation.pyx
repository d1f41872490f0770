# cython: language_level=3, boundscheck=False, wraparound=False
# cython: initializedcheck=False
"""Value checks outside the loss pass.

The loss pass validates its own inputs with integer bit tests (see
``skbce/_bce.pyx``), so these checks run only where that is not enough: on the
error path, to tell which argument holds the invalid value the pass found, and
on targets before label smoothing (which could move an invalid target into
[0, 1]).

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

