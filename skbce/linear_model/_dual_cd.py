"""One-vs-rest dual coordinate descent (dual-cd): each label on its own, labels over threads.

newton-cg serves all labels with each sweep over ``X``: a Hessian product of
every active label is one pass. On thousands of rare labels that is the
wrong unit of work: a label with 8 positives among 15 000 rows has almost
every row far on the negative side, where its loss is nearly flat, yet each
Newton iteration (a few conjugate-gradient steps) costs the label full
passes over ``X`` until its last direction is exact. Dual coordinate
descent (Yu, Huang and Lin 2011; liblinear's ``-s 7``) visits one row at a
time, and once a row's dual variable has settled (the far negatives, after
an epoch or two) the row leaves the label's epochs: the label's cost falls
to its positives and its hard negatives.

:func:`dual_cd` hands the whole problem to :func:`skbce._dual_kernels.dual_cd`
(the algorithm, the unpenalised intercept and the stopping rule are in its
docstring): labels go in blocks of 8 that share each read of a row of
``X`` (the row's dot products with the 8 labels' weights are one vector
loop), the blocks spread over the OpenMP threads, each thread holding a few
``8 * n_samples`` and ``8 * n_features`` arrays, and no ``(n_samples,
n_labels)`` array exists. Every label ends with one exact pass (objective
and gradient) and the estimator's stopping rule, so the model is the one
newton-cg reaches, to the same ``tol``. L2 penalty with ``C < inf`` only.
``solver="auto"`` takes it where it wins (see
:func:`skbce.linear_model._solver_choice._dual_cd_pays`).
"""

import time

import numpy as np
from scipy import sparse
from sklearn import get_config

from skbce._kernels import BLOCK_WIDTH
from skbce._kernels import dual_cd as _dual_cd_kernel
from skbce.linear_model._label_groups import similar_label_order
from skbce.linear_model._solver_base import SolverResult

__all__ = ["dual_cd"]

# The intercept's weight rho in the augmented Lagrangian (see
# skbce._dual_kernels._penalty_weight): max(RHO_FLOOR, RHO / curvature). In
# a coordinate step the intercept then weighs as a feature of value 1 does
# (liblinear's bias feature -B 1), and more where the intercept's curvature
# vanishes (a label without positives, whose intercept heads to -inf).
# rho = RHO / curvature alone, RHO = 100, left it 10x a feature's weight on
# labels with one or two positives; counted passes over X per label, with /
# without the floor: the fewrows generator's labels with 1-2 positives
# (2 500 rows) 18.9 / 8.1, the EURLex-like generator's first 400 labels 9.7
# / 9.0 (RHO 1, 10, 100 with the floor: 8.1, 8.1, 18.9 and 9.0, 9.0, 9.7).
RHO = 10.0
RHO_FLOOR = 1.0
# A sample's first tolerance: EPS_FACTOR times the gradient's tolerance over
# the number of samples (see skbce._dual_kernels._load_block). Counted on the
# benchmark's EURLex-like shape at scale 0.33 (first 400 labels, tol=1e-4),
# rows visited per block of 8 labels in the epochs / exact passes: 4 -> 20.1
# / 3.6 passes over X, 1 -> 19.5 / 3.0, 0.25 -> 23.0 / 2.7, 0.06 -> 27.9 /
# 2.5 (a looser start wastes a check, a tighter one polishes every sample).
EPS_FACTOR = 1.0


def _weighted_column_sums(indptr, indices, data, sw, n_features):
    """``X^T sw``, float64: every label's cold start shares it (see the kernel's load).

    Not ``_Problem.backward``, which works in ``X``'s precision: this vector
    is part of each block's start weights, which the dual keeps equal to
    ``sum_i a_i x_i`` in float64, so a float32 ``X`` must not round it.
    """
    stored = slice(indptr[0], indptr[-1])  # a row block's indptr need not start at 0
    values = data[stored].astype(np.float64)
    values *= np.repeat(sw, np.diff(indptr))
    return np.bincount(indices[stored], weights=values, minlength=n_features)


def _row_stats(indptr, data):
    """Each row's squared norm and largest absolute value, float64."""
    n = len(indptr) - 1
    lengths = np.diff(indptr)
    sq = np.zeros(n)
    big = np.zeros(n)
    nonempty = lengths > 0
    if data.size:
        values = data[:indptr[-1]].astype(np.float64)
        starts = indptr[:-1][nonempty]
        sq[nonempty] = np.add.reduceat(values * values, starts)
        big[nonempty] = np.maximum.reduceat(np.abs(values), starts)
    return sq, big


def _label_order(problem):
    """The labels in the order the kernel takes them: similar labels in the same block."""
    return similar_label_order(problem.X, problem.Y_all, BLOCK_WIDTH)


def _label_chunks(Y, order):
    """``order`` cut into chunks whose dense targets fit in ``working_memory``.

    A dense ``Y`` is one chunk (it is already in memory); a sparse one (CSC)
    is densified a chunk of columns at a time, so that no ``(n_samples,
    n_labels)`` array is made. Chunks are whole blocks of the kernel (8
    labels), so a chunk holds at least 8 labels' targets, even when fewer
    fit in ``working_memory``.
    """
    n, k = Y.shape
    if not sparse.issparse(Y):
        return [order]
    budget = get_config()["working_memory"] * 2**20
    width = int(max(1, min(k, budget // max(n * Y.dtype.itemsize, 1))))
    width = max(BLOCK_WIDTH, width // BLOCK_WIDTH * BLOCK_WIDTH)
    return [order[start:start + width] for start in range(0, k, width)]


def _chunk_targets(Y, labels):
    """The targets the kernel reads for ``labels``, and the column of each."""
    if sparse.issparse(Y):
        dense = np.ascontiguousarray(Y[:, labels].toarray())
        return dense, np.arange(len(labels), dtype=np.intp)
    return np.ascontiguousarray(Y), labels


def _coefficient_array(W0, shape, dtype):
    """The array the kernel writes the coefficients to, and whether ``W0`` is a start to read.

    A cold start (``W0`` all zeros, usually a broadcast zero) gets lazily
    zeroed memory that the kernel does not read: copying the zeros into a
    ``(n_labels, n_features)`` array first took 2.1 s of a 25 s fit with
    4 000 labels and 20 000 features (one thread faulting in every page);
    unread, each page is first touched by the thread that writes it.
    """
    W0 = np.asarray(W0)
    if not W0.any():
        return np.zeros(shape, dtype=dtype), False
    return np.array(np.broadcast_to(W0, shape), dtype=dtype, order="C"), True


def dual_cd(problem, W0, b0, *, tol=1e-4, max_iter=1000, verbose=0):
    """Fit each label by dual coordinate descent with shrinking (see the module docstring).

    ``max_iter`` bounds each label's epochs. Returns a
    :class:`~skbce.linear_model._solver_base.SolverResult`; its ``n_iter``
    is the most epochs a label took, its loss curve the final mean objective.
    """
    if problem.beta > 0 or not problem.alpha > 0:
        raise ValueError("dual_cd needs an L2 penalty with a finite C (l1_ratio=0, C < inf).")
    if problem._csr is not None:
        indptr, indices, data = problem._csr
    else:
        X = sparse.csr_matrix(problem.X)  # a dense X: converted once
        indptr, indices, data = X.indptr, X.indices, X.data
    index = np.result_type(indptr.dtype, indices.dtype)
    indptr = np.ascontiguousarray(indptr, dtype=index)
    indices = np.ascontiguousarray(indices, dtype=index)
    n, k = problem.n_samples, problem.n_labels
    sqnorm, xmax = _row_stats(indptr, data)
    if problem.fit_intercept:
        # The intercept's feature is 1 in every row: a row's share of the
        # intercept's gradient counts in its mismatch (an empty row too).
        np.maximum(xmax, 1.0, out=xmax)
    sw = (np.full(n, 1.0 / n) if problem.sw is None
          else np.ascontiguousarray(problem.sw, dtype=np.float64))
    pw = (np.full(k, problem.pw_scalar) if problem.pw_all is None
          else np.ascontiguousarray(problem.pw_all, dtype=np.float64))
    # The coefficients in X's precision, written by the kernel in place: the
    # result needs no second copy (a block's weights are float64 while it is
    # fitted).
    W, warm = _coefficient_array(W0, (k, problem.n_features), data.dtype)
    b = np.array(np.broadcast_to(b0, (k,)), dtype=np.float64)
    if not problem.fit_intercept:
        b[:] = 0.0
    f = np.zeros(k)
    rho = RHO
    epochs = np.zeros(k, dtype=np.int32)
    converged = np.zeros(k, dtype=np.uint8)
    visits = np.zeros(k, dtype=np.int64)
    column_means = np.ascontiguousarray(problem.squared_column_means(), dtype=np.float64)
    column_sums = _weighted_column_sums(indptr, indices, data, sw, problem.n_features)
    kernel_seconds = 0.0
    start = time.perf_counter()
    order = _label_order(problem)
    order_seconds = time.perf_counter() - start
    for labels in _label_chunks(problem.Y_all, order):
        # Each label's fit is independent: the kernel writes the per-label
        # arrays' entries of its labels in place.
        Y, columns = _chunk_targets(problem.Y_all, labels)
        start = time.perf_counter()
        _dual_cd_kernel(indptr, indices, data, Y, labels, columns, sqnorm, xmax, sw, pw,
                        float(problem.label_smoothing), float(problem.alpha),
                        column_means, column_sums, W, warm, b, bool(problem.fit_intercept),
                        rho, RHO_FLOOR, EPS_FACTOR, float(tol), int(max_iter), f,
                        epochs, visits, converged, int(problem.n_threads))
        kernel_seconds += time.perf_counter() - start
        del Y  # before the next chunk is made: one chunk in memory at a time
    if verbose and k:
        # Rows visited (one sparse dot product each, plus an axpy when the
        # row's dual variable moves), in passes over X: where the time goes.
        passes = visits / max(n, 1)
        print(f"[dual-cd] {k} labels: epochs mean {epochs.mean():.1f}, max {epochs.max()}; "
              f"passes over X per label mean {passes.mean():.2f}, median "
              f"{np.median(passes):.2f}, max {passes.max():.2f}; mean objective "
              f"{f.mean():.8g}; {int(converged.sum())} converged; {kernel_seconds:.3f} s in "
              f"the kernel, {order_seconds:.3f} s ordering the labels", flush=True)
    return SolverResult(
        coef=W.astype(problem.dtype, copy=False), intercept=b.astype(problem.dtype),
        n_iter=int(max(epochs.max(), 1)) if k else 1, loss_curve=[float(f.mean())],
        converged=converged.astype(bool), label_n_iter=epochs.astype(int),
    )
