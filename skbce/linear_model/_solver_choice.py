"""Which solver, and how many labels at once: ``solver="auto"``, dense or CSR, the memory budget.

Memory: the solvers hold about ten ``(n_samples, n_active)`` arrays; when
that exceeds a budget the labels are solved block by block
(:func:`solve_in_blocks`), or, for newton-cg, in a pool of that many labels.
"""

import numpy as np
from scipy import sparse

from skbce.linear_model._gd import gradient_descent
from skbce.linear_model._lbfgs import lbfgs
from skbce.linear_model._newton_cg import newton_cg
from skbce.linear_model._newton_cholesky import newton_cholesky
from skbce.linear_model._problem import _working_memory_bytes
from skbce.linear_model._solver_base import SolverResult

__all__ = ["SOLVERS", "label_block_size", "memory_budget", "solve_in_blocks"]

# Labels per joint L-BFGS-B problem.
_LBFGS_BLOCK = 16
# The memory rule: the extra memory a fit allocates stays within
# ``bytes(X) + 4 * n_samples * n_labels * 8 + _MEMORY_SLACK`` -- the logits
# of all labels, their gradient, the curvature and one trial set, the size
# of X (for its float32 twin and the products' buffers) and a constant for
# the small arrays -- and within scikit-learn's ``working_memory``.
_MEMORY_SLACK = 32 * 2**20
# "auto" takes Newton with the exact Hessian for one label up to this many
# features (see _exact_newton_pays).
_EXACT_NEWTON_MAX_FEATURES = 64
# A dense X at most this dense is fitted as a CSR copy for this many labels
# or more (see _csr_pays).
_CSR_MAX_DENSITY = 0.05
_CSR_MIN_LABELS = 32
# "auto" takes dual coordinate descent on a sparse X with at least this many
# labels, rare on average, and a mild curvature per sample (see _dual_cd_pays).
_DUAL_CD_MIN_LABELS = 32
_DUAL_CD_MAX_SHARE = 0.05
_DUAL_CD_MAX_CURVATURE = 100.0


def _exact_newton_pays(X, n_labels):
    """Whether ``"auto"`` takes Newton with the exact Hessian: one label, dense X, few features.

    Per iteration it costs one pass over ``X`` with ``n m^2 / 2`` multiply-adds
    at matrix-matrix speed (:func:`skbce._linear_kernels.dense_newton_terms`),
    ``m = n_features + 1``; newton-cg's conjugate gradient costs ``2 n m``
    per inner iteration at the speed of memory-bound matrix-vector products,
    and takes one to a few of them per Newton step on one label with the Gram
    preconditioner. Measured with one thread, binary targets, C=1 and C=1e4
    on rescaled features: 50 000 x 50, exact Newton 0.033 / 0.037 s against
    newton-cg's 0.038 / 0.043 s; x 75, 0.055 / 0.063 against 0.045 / 0.056;
    x 100, 0.091 / 0.110 against 0.055 / 0.066; 400 000 x 50, 0.27 against
    0.37 s. With more labels the conjugate gradient's products are
    matrix-matrix too, while the exact Hessians grow with the labels.
    """
    return (not sparse.issparse(X) and n_labels == 1
            and X.shape[1] <= _EXACT_NEWTON_MAX_FEATURES)


def _dual_cd_pays(X, Y, C):
    """Whether ``"auto"`` takes dual coordinate descent: sparse X, many rare labels, mild curvature.

    dual-cd's work per label is its epochs over the samples that still move
    (a rare label's far negatives settle in an epoch or two and leave); a
    batched Newton step costs every label full passes over ``X``. So it wins
    where labels are many and rare, and loses where they are frequent (every
    sample stays active) or where one sample's curvature ``A = C |x_i|^2``
    is large (the dual's coordinates then couple strongly and the epochs
    crawl). Measured (2 threads, default tol; the user guide's ``"auto"``
    entry has the numbers): the EURLex-like generator's first 400 labels
    (tf-idf rows, ``|x_i| = 1``) at C=1 and 10: dual-cd 1.7x faster; 64
    labels with 25 % positives at C=10: no faster; bibtex's binary rows at
    C=10 (``C |x_i|^2`` about 680): 1.7x slower, with labels stopped at
    max_iter; at C=1 (about 68, near the edge) within 5 % of newton-cg.

    ``Y`` is the encoded target matrix (dense or sparse); the share of a
    label is its mean target (its positives' share), folded to the minority
    side.
    """
    if not sparse.issparse(X) or not np.isfinite(C) or Y.ndim != 2:
        return False
    n, k = Y.shape
    if k < _DUAL_CD_MIN_LABELS or n == 0:
        return False
    share = np.asarray(Y.mean(axis=0), dtype=np.float64).ravel()
    if np.minimum(share, 1.0 - share).mean() > _DUAL_CD_MAX_SHARE:
        return False
    values = np.asarray(X.data, dtype=np.float64)  # CSR or CSC: each stored value once
    mean_sq_norm = float(values @ values) / n
    return C * mean_sq_norm <= _DUAL_CD_MAX_CURVATURE


def _csr_pays(X, n_labels):
    """Whether a dense ``X`` is fitted faster as a CSR copy: mostly zeros, many labels.

    The sparse kernels' products cost ``nnz * n_labels``, BLAS's ``n_samples *
    n_features * n_labels`` at a few times the speed per multiply-add. One
    float32 Hessian product, 12000 x 500 (one thread each): 100 labels,
    density 4 %: dense 50 ms, CSR 21 ms; 15 %: 56 / 55 ms; 983 labels, 4 %:
    0.72 s / 0.18 s. With 8 labels the narrow sparse products lose at every
    density (4 %: 4.6 / 12 ms). The copy, at most 12 bytes per non-zero,
    stays within the memory rule's bytes(X).
    """
    if sparse.issparse(X) or n_labels < _CSR_MIN_LABELS or X.size == 0:
        return False
    return np.count_nonzero(X) <= _CSR_MAX_DENSITY * X.size


def memory_budget(X, problem, solver):
    """Bytes the solvers' per-label working arrays may take.

    The memory rule's allowance (``_MEMORY_SLACK``, above) less what the
    fit holds whatever the number of labels at once: the float32 twin of
    a dense ``X`` (newton-cg's mixed precision) and the Gram
    preconditioner. Never more than scikit-learn's ``working_memory``
    setting: a user who sets it low trades time for memory (fewer labels
    at a time, each sweep over ``X`` serving fewer of them).
    """
    if sparse.issparse(X):
        x_bytes = X.data.nbytes + X.indices.nbytes + X.indptr.nbytes
    else:
        x_bytes = X.nbytes
    allowed = x_bytes + 4 * problem.n_samples * problem.n_labels * 8 + _MEMORY_SLACK
    # The coefficients of all labels and the result's copy of them: on a
    # wide X (30 000 features, 100 labels) 24 MB each.
    allowed -= 2 * problem.n_features * problem.n_labels * problem.dtype.itemsize
    if solver == "newton-cg":
        allowed -= problem.gram_bytes()
        if problem.mixed_precision_cg() and not sparse.issparse(X):
            allowed -= X.size * 4
    return max(0, min(allowed, _working_memory_bytes()))


SOLVERS = {"gd": gradient_descent, "lbfgs": lbfgs, "newton-cg": newton_cg,
           "newton-cholesky": newton_cholesky}


def label_block_size(problem, budget_bytes, solver="newton-cg"):
    """Labels solved at once so that the solvers' working arrays fit ``budget_bytes``.

    Per label, newton-cg holds about three values per sample at once (the
    logits, the logit gradient and the curvature -- float32 when the
    conjugate gradient is -- or, later, the trial logits of the line search)
    and ten coefficient-sized vectors (the iterate, the gradient and the
    conjugate gradient's); gd about eight per sample (the logits at the
    iterate, the extrapolated and the trial points, their gradient and the
    momentum's temporaries); lbfgs three; each also a target per sample
    (the dense block of the active labels' targets, read from a sparse
    ``Y`` block by block). Labels are independent problems,
    so working on fewer at once bounds the memory at the cost of narrower
    (less efficient) sweeps over ``X``. The result is a multiple of 8, the
    labels a vector register holds in the sparse kernels.
    """
    itemsize = problem.dtype.itemsize
    if solver == "newton-cg":
        curvature = 4 if problem.mixed_precision_cg() else itemsize
        per_sample = 2 * itemsize + curvature
    else:
        per_sample = (8 if solver == "gd" else 3) * itemsize
    # ... and the active labels' targets, a dense block (uint8 for hard labels).
    targets = getattr(problem, "Y_all", None)  # on dask, on the workers
    per_sample += 0 if targets is None else targets.dtype.itemsize
    per_label = per_sample * problem.n_samples + 10 * itemsize * problem.n_features
    size = int(budget_bytes // max(per_label, 1))
    if 8 <= size < problem.n_labels:
        size -= size % 8
    return int(max(1, min(problem.n_labels, size)))


def solve_in_blocks(solver, problem, W0, b0, block_size, **options):
    """Run ``solver`` on blocks of ``block_size`` labels; stitch the results."""
    k = problem.n_labels
    W0 = np.asarray(W0)
    b0 = np.asarray(b0)
    if block_size >= k:
        return solver(problem, W0, b0, **options)
    coef = np.empty((k, problem.n_features), dtype=problem.dtype)
    intercept = np.empty(k, dtype=problem.dtype)
    converged = np.empty(k, dtype=bool)
    label_n_iter = np.empty(k, dtype=int)
    curves = []
    for start in range(0, k, block_size):
        cols = np.arange(start, min(k, start + block_size))
        sub = problem.subproblem(cols)
        result = solver(sub, W0[cols], b0[cols], **options)
        del sub
        coef[cols] = result.coef
        intercept[cols] = result.intercept
        converged[cols] = result.converged
        label_n_iter[cols] = result.label_n_iter
        curves.append((len(cols), np.asarray(result.loss_curve, dtype=float)))
    n_iter = max(len(c) for _, c in curves)
    curve = np.zeros(max(n_iter, 1))
    for size, c in curves:
        if len(c):
            padded = np.concatenate([c, np.full(len(curve) - len(c), c[-1])])
            curve += size * padded
    return SolverResult(
        coef=coef, intercept=intercept, n_iter=int(max(n_iter, 1)),
        loss_curve=list(curve / k), converged=converged, label_n_iter=label_n_iter,
    )
