"""What the solvers share: their result, per-label bookkeeping, progress output."""


import time
from dataclasses import dataclass, field

import numpy as np

__all__ = ["SolverResult"]

STALL_LIMIT = 3  # newton-cg: iterations without a decrease before a label stops


@dataclass
class SolverResult:
    """What a solver returns.

    coef : ndarray of shape (n_labels, n_features)
    intercept : ndarray of shape (n_labels,)
    n_iter : int
        Iterations (epochs for SGD) run; the maximum over the labels.
    loss_curve : list of float
        Mean over labels of the objective ``f_j`` after each iteration.
    converged : ndarray of bool, shape (n_labels,)
    label_n_iter : ndarray of int, shape (n_labels,)
        Iterations each label took until it converged (or stopped).
    """

    coef: np.ndarray
    intercept: np.ndarray
    n_iter: int
    loss_curve: list
    converged: np.ndarray
    label_n_iter: np.ndarray = field(default=None)


def _soft_threshold(W, threshold):
    return np.sign(W) * np.maximum(np.abs(W) - threshold, 0)


def _max_abs(gW, gb):
    m = np.abs(gW).max(axis=0) if gW.shape[0] else np.zeros(gW.shape[1])
    return np.maximum(m, np.abs(gb))


def _decrease_small(decrease, f, tol):
    """The Newton solvers' second stopping test: the decrease still to be had is small.

    ``decrease`` (per label) is what a quadratic model of the objective
    predicts minimising it would still gain; it must be at most ``tol``
    times the label's objective ``f``. The max-norm gradient test alone
    does not bound it: along a rare feature the curvature is about the
    penalty alone, and the gain left, ``g**2 / (2 h)``, can be 1e-3 of the
    objective at ``|g| = 1e-4``. Both sides scale alike with the sample
    weights' total, so weights and repeated rows stop at the same point.
    ``tol**2`` is the floor: a label whose infimum is 0 and not attained
    (constant, or separable without a penalty) cannot meet a relative test.
    """
    return decrease <= tol * np.maximum(f, tol)


def _diagonal_decrease(gW, gb, curvature, col, alpha):
    """The decrease a Newton step on the Hessian's diagonal predicts, per label.

    ``1/2 sum_k g_k^2 / h_k`` with ``h_kj = c_j col_k + alpha`` (``c_j``: the
    label's total curvature ``sum_i D_ij``; ``col``: ``sum_i s_i x_ik^2``),
    the diagonal newton-cg's preconditioner approximates, and ``gb**2 / c_j``
    for the intercept (``gb`` zero when it is not fitted). Exact when the
    features share no rows, which rare features nearly do; a direction of zero
    curvature with a nonzero gradient predicts an unbounded decrease.
    """
    c = np.asarray(curvature, dtype=np.float64)
    h = np.multiply.outer(col, c) + alpha
    gW = np.asarray(gW, dtype=np.float64)
    gb = np.asarray(gb, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        # (g / sqrt(h))**2: g**2 would overflow first on extreme features.
        terms = np.where(gW != 0, np.square(gW / np.sqrt(h)), 0.0).sum(axis=0)
        terms += np.where(gb != 0, np.square(gb / np.sqrt(c)), 0.0)
    return 0.5 * np.where(np.isnan(terms), np.inf, terms)


class _Progress:
    """Verbose output: iteration, labels done, objective, gradient norm, elapsed time.

    With ``verbose=1`` a line at the first iteration, then at most one a
    second, and a few per iteration: while the iteration count stays (in
    newton-cg's pool the count is the most iterations a label has run, and
    fresh labels joining the pool do not raise it), the wait between lines
    doubles. Each line says how many labels are done of the total, so that
    a fit whose labels move through the pool is seen to progress.
    ``verbose>=2``: every iteration.
    """

    def __init__(self, name, verbose, n_labels=None):
        self.name, self.verbose, self.n_labels = name, verbose, n_labels
        self.start = time.perf_counter()
        self.last = self.start
        self.shown_iter, self.repeats = None, 0

    def __call__(self, it, objective, grad_norm, n_active, force=False, pool=None):
        """One iteration's line, if it is due; ``n_active``: the labels not done."""
        if not self.verbose:
            return
        now = time.perf_counter()
        wait = 2.0 ** self.repeats if it == self.shown_iter else 1.0
        if not (self.verbose > 1 or force or now - self.last >= wait or it == 1):
            return
        self.repeats = self.repeats + 1 if it == self.shown_iter else 0
        self.last, self.shown_iter = now, it
        if self.n_labels is None:
            labels = f"active labels {n_active:4d}"
        else:
            labels = f"labels done {self.n_labels - n_active}/{self.n_labels}"
            if pool is not None:
                labels += f" ({pool} in the pool)"
        print(f"[{self.name}] iter {it:5d}  {labels}  objective {objective:.8g}  "
              f"max|grad| {grad_norm:.3e}  {now - self.start:7.2f}s", flush=True)


class _Labels:
    """The state of all labels, the active ones in compact arrays."""

    def __init__(self, problem, W0, b0):
        k = problem.n_labels
        self.problem = problem
        self.W_all = np.array(np.asarray(W0).T, dtype=problem.dtype, order="C")  # own copy
        self.b_all = np.array(b0, dtype=problem.dtype)
        self.f_all = np.zeros(k)
        self.converged = np.zeros(k, dtype=bool)
        self.n_iter = np.zeros(k, dtype=int)
        self.active = np.arange(k)

    def retire(self, keep, W, b, f, it):
        """Write back labels not in ``keep`` (bool over the active set).

        ``it``: the iterations run, a number or one per active label.
        """
        gone = self.active[~keep]
        self.W_all[:, gone] = W[:, ~keep]
        self.b_all[gone] = b[~keep]
        self.f_all[gone] = f[~keep]
        self.n_iter[gone] = np.broadcast_to(it, keep.shape)[~keep]
        self.active = self.active[keep]
        self.problem.set_active(self.active)

    def finish(self, W, b, f, it):
        self.W_all[:, self.active] = W
        self.b_all[self.active] = b
        self.f_all[self.active] = f
        self.n_iter[self.active] = it

    def curve_value(self, f):
        values = self.f_all.copy()
        values[self.active] = f
        return float(values.mean())

    def result(self, it, curve):
        self.problem.set_active(np.arange(self.problem.n_labels))
        return SolverResult(
            coef=np.ascontiguousarray(self.W_all.T),
            intercept=self.b_all.copy(),
            n_iter=int(max(it, 1)),
            loss_curve=curve,
            converged=self.converged.copy(),
            label_n_iter=self.n_iter.copy(),
        )
