# cython: language_level=3
"""Layout constants shared by the solver kernels' per-thread arrays."""

# Per-thread rows of small arrays that every row of X updates are padded
# by this many values (at least two 64-byte cache lines between threads):
# unpadded, the threads' rows shared cache lines, and two threads were
# slower than one on bibtex's Hessian products with 24-32 labels.
cdef enum:
    _PAD = 32
