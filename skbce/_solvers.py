"""Optimisers for MultiLabelLogistic: pure functions on (X, Y, weights).

Every solver minimises, for each label ``j`` separately,

    f_j(w_j, b_j) = sum_i s_i * loss(y_ij, x_i . w_j + b_j) / S
                    + alpha / 2 * ||w_j||^2 + beta * ||w_j||_1

with ``s`` the sample weights, ``S = sum(s)``, ``alpha = (1 - l1_ratio) / (C * S)``
and ``beta = l1_ratio / (C * S)``. This is scikit-learn's ``LogisticRegression``
objective divided by ``C * S``, so a gradient tolerance means the same thing
in both.

The labels share nothing but the data, and the solvers exploit it: the
coefficients of all labels are held as the columns of one ``(n_features,
n_active)`` matrix, so that a forward pass is the single product ``X @ W`` and
a backward pass ``X.T @ G`` (BLAS or scipy.sparse), and the fused Cython
kernel :func:`skbce._bce.bce_pass` computes loss and gradient with respect
to the logits of all labels in one sweep. Each label has its own step size,
momentum or curvature and its own convergence test; a label that has
converged leaves the active set and stops costing work.

The solvers are plain functions on a :class:`LinearBCE` problem and return a
:class:`SolverResult`; the estimator validates inputs once, beforehand.
"""

import time
import warnings
from dataclasses import dataclass, field

import numpy as np
from scipy import optimize, sparse
from scipy.special import expit
from sklearn.utils.extmath import safe_sparse_dot

from skbce._bce import bce_pass

__all__ = [
    "LinearBCE",
    "SolverResult",
    "SOLVERS",
    "gradient_descent",
    "lbfgs",
    "newton_cg",
    "sgd",
    "sgd_epoch",
]


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


class LinearBCE:
    """The penalised per-label BCE of a linear model, on validated data.

    Parameters
    ----------
    X : ndarray or sparse matrix of shape (n_samples, n_features)
        Floating point, the dtype of the computation.
    Y : ndarray of shape (n_samples, n_labels)
        Targets in [0, 1], C-contiguous, of ``X``'s dtype.
    sample_weight : ndarray of shape (n_samples,) or None
    pos_weight : ndarray of shape (n_labels,) or None
    alpha, beta : float
        L2 and L1 strengths of the scaled objective (see the module docstring).
    fit_intercept : bool
    n_threads : int
        OpenMP threads for the loss kernel.
    """

    def __init__(self, X, Y, sample_weight, pos_weight, alpha, beta, fit_intercept,
                 n_threads=1):
        self.X = X
        self.XT = X.T
        self.dtype = Y.dtype
        self.Y_all = Y
        self.n_samples, self.n_features = X.shape
        self.n_labels = Y.shape[1]
        if sample_weight is not None:
            sample_weight = np.asarray(sample_weight, dtype=np.float64)
            total = sample_weight.sum()
            if np.allclose(sample_weight, sample_weight[0]):
                sample_weight = None
            else:
                sample_weight = np.ascontiguousarray(sample_weight / total, dtype=self.dtype)
        self.sw = sample_weight  # normalised to sum 1, or None for 1 / n
        if pos_weight is not None:
            pos_weight = np.ascontiguousarray(pos_weight, dtype=self.dtype)
            if np.all(pos_weight == pos_weight[0]):
                self.pw_scalar, pos_weight = float(pos_weight[0]), None
            else:
                self.pw_scalar = 1.0
        else:
            self.pw_scalar = 1.0
        self.pw_all = pos_weight
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.fit_intercept = fit_intercept
        self.n_threads = int(n_threads)
        self._empty = np.empty(0, dtype=self.dtype)
        self._empty2 = np.empty((0, 0), dtype=self.dtype)
        self.set_active(np.arange(self.n_labels))

    # -- active set ---------------------------------------------------------

    def set_active(self, labels):
        """Restrict the computations to the labels ``labels`` (indices)."""
        self.active = np.asarray(labels)
        if len(self.active) == self.n_labels:
            self.Y = self.Y_all
            self.pw = self.pw_all
        else:
            self.Y = np.ascontiguousarray(self.Y_all[:, self.active])
            self.pw = None if self.pw_all is None else self.pw_all[self.active].copy()
        pw = self.pw_scalar if self.pw is None else self.pw[None, :]
        # Curvature factor of each entry: the second derivative of the loss
        # with respect to the logit is (pw * y + 1 - y) * p * (1 - p).
        if self.pw is None and self.pw_scalar == 1.0:
            self._curv_factor = None
        else:
            self._curv_factor = self.Y * (pw - 1) + 1
        if self.sw is not None:
            base = self.sw[:, None] if self._curv_factor is None else (
                self.sw[:, None] * self._curv_factor)
        else:
            scale = self.dtype.type(1.0 / self.n_samples)
            base = scale if self._curv_factor is None else self._curv_factor * scale
        self._hess_base = base

    # -- model pieces -------------------------------------------------------

    def linear(self, W, b):
        """Logits ``X @ W + b`` of shape (n_samples, n_active), C-contiguous."""
        Z = safe_sparse_dot(self.X, W, dense_output=True)
        Z = np.ascontiguousarray(Z, dtype=self.dtype)
        if self.fit_intercept:
            Z += b
        return Z

    def direction(self, V, vb):
        """``X @ V + vb``: a linear map without copying for C order."""
        return self.linear(V, vb)

    def backward(self, G):
        """``X.T @ G`` of shape (n_features, n_active)."""
        return np.asarray(safe_sparse_dot(self.XT, G, dense_output=True))

    def loss_grad_logits(self, Z, want_grad=True):
        """Per-label mean loss (n_active,) and its gradient wrt ``Z``.

        The gradient ``G`` already carries the normalised sample weights, so
        ``X.T @ G`` is the gradient of the data term.
        """
        n = self.n_samples
        loss_out = np.empty(Z.shape, dtype=self.dtype)
        grad_out = np.empty(Z.shape, dtype=self.dtype) if want_grad else self._empty2
        if self.sw is None and self.pw is None:
            bce_pass(self.Y, Z, self._empty, self._empty, self._empty, self.pw_scalar,
                     True, 0.0, loss_out, grad_out, 1.0 / n, self.n_threads)
            loss = loss_out.sum(axis=0, dtype=np.float64) / n
        else:
            sw = self._empty if self.sw is None else self.sw
            pw = self._empty if self.pw is None else self.pw
            scale = 1.0 / n if self.sw is None else 1.0
            bce_pass(self.Y, Z, sw, self._empty, pw, self.pw_scalar,
                     True, 0.0, loss_out, grad_out, scale, self.n_threads)
            loss = loss_out.sum(axis=0, dtype=np.float64) * scale
        return loss, (grad_out if want_grad else None)

    def loss(self, Z):
        return self.loss_grad_logits(Z, want_grad=False)[0]

    def hessian_weights(self, Z):
        """Weight of each entry in the Gauss-Newton/Hessian product."""
        P = expit(Z)
        P *= 1 - P
        P *= self._hess_base
        return P

    def penalty(self, W, smooth_only=False):
        value = 0.5 * self.alpha * np.einsum("ij,ij->j", W, W, dtype=np.float64)
        if self.beta > 0 and not smooth_only:
            value = value + self.beta * np.abs(W).sum(axis=0, dtype=np.float64)
        return value

    def gradient(self, W, G):
        """Gradient of the smooth part wrt (W, b) given the logit gradient G."""
        gW = self.backward(G)
        if self.alpha > 0:
            gW = gW + self.alpha * W
        gb = G.sum(axis=0) if self.fit_intercept else np.zeros(G.shape[1], self.dtype)
        return gW, gb

    def objective(self, W, b):
        """Per-label objective at (W, b) over the active labels."""
        return self.loss(self.linear(W, b)) + self.penalty(W)

    def lipschitz(self):
        """An estimate of the largest curvature of the data term (all labels)."""
        X = self.X
        rng = np.random.RandomState(0)
        v = rng.normal(size=self.n_features + 1)
        sw = (np.full(self.n_samples, 1.0 / self.n_samples) if self.sw is None
              else self.sw.astype(np.float64))
        ones = 1.0 if self.fit_intercept else 0.0
        lam = 1.0
        for _ in range(12):
            v /= np.linalg.norm(v)
            u = np.asarray(safe_sparse_dot(X, v[:-1].astype(self.dtype))).ravel() + ones * v[-1]
            u = u * sw
            v_new = np.empty_like(v)
            v_new[:-1] = np.asarray(safe_sparse_dot(self.XT, u.astype(self.dtype))).ravel()
            v_new[-1] = ones * u.sum()
            lam = np.linalg.norm(v_new)
            v = v_new
        pw_max = max(self.pw_scalar, 1.0) if self.pw_all is None else max(
            float(self.pw_all.max()), 1.0)
        return 0.25 * pw_max * lam * 1.05 + self.alpha


def _soft_threshold(W, threshold):
    return np.sign(W) * np.maximum(np.abs(W) - threshold, 0)


def _max_abs(gW, gb):
    m = np.abs(gW).max(axis=0) if gW.shape[0] else np.zeros(gW.shape[1])
    return np.maximum(m, np.abs(gb))


def _l1_subgradient(gW, W, beta):
    """Minimum-norm subgradient of ``smooth + beta * ||W||_1`` given the smooth gradient."""
    if beta == 0:
        return gW
    out = gW + beta * np.sign(W)
    zero = W == 0
    out[zero] = np.sign(gW[zero]) * np.maximum(np.abs(gW[zero]) - beta, 0)
    return out


class _Progress:
    """Verbose output: iteration, objective, gradient norm, elapsed time."""

    def __init__(self, name, verbose):
        self.name, self.verbose = name, verbose
        self.start = time.perf_counter()
        self.last = self.start

    def __call__(self, it, objective, grad_norm, n_active, force=False):
        if not self.verbose:
            return
        now = time.perf_counter()
        if self.verbose > 1 or force or now - self.last >= 1.0 or it == 1:
            self.last = now
            print(f"[{self.name}] iter {it:5d}  objective {objective:.8g}  "
                  f"max|grad| {grad_norm:.3e}  active labels {n_active:4d}  "
                  f"{now - self.start:7.2f}s", flush=True)


class _Labels:
    """The state of all labels, the active ones in compact arrays."""

    def __init__(self, problem, W0, b0):
        k = problem.n_labels
        self.problem = problem
        self.W_all = np.ascontiguousarray(np.asarray(W0, dtype=problem.dtype).T)
        self.b_all = np.array(b0, dtype=problem.dtype)
        self.f_all = np.zeros(k)
        self.converged = np.zeros(k, dtype=bool)
        self.n_iter = np.zeros(k, dtype=int)
        self.active = np.arange(k)

    def retire(self, keep, W, b, f, it):
        """Write back labels not in ``keep`` (bool over the active set)."""
        gone = self.active[~keep]
        self.W_all[:, gone] = W[:, ~keep]
        self.b_all[gone] = b[~keep]
        self.f_all[gone] = f[~keep]
        self.n_iter[gone] = it
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


def newton_cg(problem, W0, b0, *, tol=1e-4, max_iter=100, verbose=0, max_cg=None):
    """Batched truncated Newton (Newton-CG) with per-label Armijo line search.

    L2 penalty only (``problem.beta == 0``). Each outer iteration solves
    ``H_j p_j = -g_j`` inexactly by conjugate gradient for every active label
    at once -- a Hessian-vector product of all labels is the two matrix
    products ``X.T @ (D * (X @ V))`` -- then backtracks each label's step
    until it decreases that label's objective enough. A label stops once
    ``max |g_j| <= tol``, the criterion of scikit-learn's ``newton-cg``.
    """
    if problem.beta > 0:
        raise ValueError("newton_cg supports an L2 penalty only (l1_ratio=0).")
    labels = _Labels(problem, W0, b0)
    progress = _Progress("newton-cg", verbose)
    dtype = problem.dtype
    n_features = problem.n_features
    if max_cg is None:
        max_cg = max(20, min(200, n_features + 1))
    fit_b = problem.fit_intercept
    W = labels.W_all.copy()
    b = labels.b_all.copy()
    Z = problem.linear(W, b)
    loss, G = problem.loss_grad_logits(Z)
    f = loss + problem.penalty(W)
    curve = []
    it = 0
    for it in range(1, max_iter + 1):
        gW, gb = problem.gradient(W, G)
        gmax = _max_abs(gW, gb)
        done = gmax <= tol
        if done.any():
            labels.converged[labels.active[done]] = True
            keep = ~done
            labels.retire(keep, W, b, f, it - 1)
            W, b, Z, f, gW, gb, gmax = (W[:, keep], b[keep], np.ascontiguousarray(Z[:, keep]),
                                        f[keep], gW[:, keep], gb[keep], gmax[keep])
            if not keep.any():
                it -= 1
                break
        # --- inexact Newton direction by batched conjugate gradient ---------
        D = problem.hessian_weights(Z)
        gnorm = np.sqrt(np.einsum("ij,ij->j", gW, gW) + gb * gb)
        cg_tol = np.minimum(0.5, np.sqrt(gnorm)) * gnorm
        PW = np.zeros_like(W)
        Pb = np.zeros_like(b)
        RW, Rb = -gW, -gb.copy()
        DW, Db = RW.copy(), Rb.copy()
        rs = gnorm ** 2
        cg_done = np.zeros(len(b), dtype=bool)
        for _ in range(max_cg):
            U = problem.direction(DW, Db)
            U *= D
            HW = problem.backward(U)
            HW += problem.alpha * DW
            Hb = U.sum(axis=0) if fit_b else np.zeros_like(Db)
            curv = np.einsum("ij,ij->j", DW, HW) + Db * Hb
            good = (~cg_done) & (curv > 0)
            step = np.where(good, rs / np.where(curv > 0, curv, 1), 0).astype(dtype)
            cg_done |= curv <= 0
            PW += step * DW
            Pb += step * Db
            RW -= step * HW
            Rb -= step * Hb
            rs_new = np.einsum("ij,ij->j", RW, RW) + Rb * Rb
            cg_done |= np.sqrt(rs_new) <= cg_tol
            if cg_done.all():
                break
            beta = np.where(cg_done, 0, rs_new / np.where(rs > 0, rs, 1)).astype(dtype)
            DW = RW + beta * DW
            Db = Rb + beta * Db
            DW[:, cg_done] = 0
            Db[cg_done] = 0
            rs = rs_new
        # A label whose CG made no progress falls back to steepest descent.
        no_step = ~np.any(PW != 0, axis=0) & (Pb == 0)
        if no_step.any():
            PW[:, no_step] = -gW[:, no_step]
            Pb[no_step] = -gb[no_step]
        # --- per-label backtracking line search -----------------------------
        slope = np.einsum("ij,ij->j", gW, PW) + gb * Pb
        XP = problem.direction(PW, Pb)
        t = np.ones(len(b))
        accepted = np.zeros(len(b), dtype=bool)
        Z_new = Z.copy()
        f_new = f.copy()
        G_new = G.copy() if G.shape == Z.shape else np.empty_like(Z)
        for _ in range(40):
            trial = ~accepted
            tt = t.astype(dtype)
            Zt = Z + tt * XP
            Wt = W + tt * PW
            lt, Gt = problem.loss_grad_logits(Zt)
            ft = lt + problem.penalty(Wt)
            ok = trial & (ft <= f + 1e-4 * t * slope + 1e-12 * np.abs(f))
            if ok.any():
                Z_new[:, ok] = Zt[:, ok]
                G_new[:, ok] = Gt[:, ok]
                f_new[ok] = ft[ok]
                accepted |= ok
            if accepted.all():
                break
            t = np.where(accepted, t, 0.5 * t)
        stuck = ~accepted
        t = np.where(stuck, 0.0, t).astype(dtype)
        if stuck.any():
            # No decrease found: the label is at the optimum to machine
            # precision. Keep it where it is and stop it.
            Z_new[:, stuck] = Z[:, stuck]
            G_new[:, stuck] = G[:, stuck]
        W = W + t * PW
        if fit_b:
            b = b + t * Pb
        Z, G, f = Z_new, G_new, f_new
        if stuck.any():
            labels.converged[labels.active[stuck]] = True
            keep = ~stuck
            labels.retire(keep, W, b, f, it)
            W, b, Z, G, f = W[:, keep], b[keep], np.ascontiguousarray(Z[:, keep]), \
                np.ascontiguousarray(G[:, keep]), f[keep]
        curve.append(labels.curve_value(f))
        progress(it, curve[-1], float(gmax.max()) if gmax.size else 0.0, len(labels.active))
        if len(labels.active) == 0:
            break
    else:
        # Ran out of iterations: test convergence at the final point.
        if len(labels.active):
            gW, gb = problem.gradient(W, G)
            done = _max_abs(gW, gb) <= tol
            labels.converged[labels.active[done]] = True
    if len(labels.active):
        labels.finish(W, b, f, it)
    progress(it, curve[-1] if curve else float(f.mean()) if f.size else 0.0,
             0.0, len(labels.active), force=True)
    return labels.result(it, curve)


def gradient_descent(problem, W0, b0, *, tol=1e-4, max_iter=1000, verbose=0):
    """Accelerated proximal gradient descent (FISTA) with per-label steps.

    Each label has its own step ``1 / L_j``, found by backtracking (``L_j``
    doubles until the quadratic upper bound holds at the new point, and
    shrinks a little after every accepted step), its own Nesterov momentum,
    restarted whenever its objective goes up, and its own stopping test: the
    gradient mapping ``L_j * (y_j - x_j^+)`` -- the gradient for an L2-only
    penalty, its proximal generalisation with an L1 part -- has max-norm at
    most ``tol``. The L1 part of the penalty enters by soft-thresholding.

    A forward pass ``X @ W`` is needed only at the new point: the logits at
    the extrapolated point are the same extrapolation of the logits.
    """
    labels = _Labels(problem, W0, b0)
    progress = _Progress("gd", verbose)
    dtype = problem.dtype
    fit_b = problem.fit_intercept
    beta = problem.beta
    L0 = problem.lipschitz()
    W = labels.W_all.copy()
    b = labels.b_all.copy()
    Zx = problem.linear(W, b)
    f = problem.loss(Zx) + problem.penalty(W)
    k = len(b)
    L = np.full(k, L0 * 0.5)
    momentum_t = np.ones(k)
    Wy, by, Zy = W.copy(), b.copy(), Zx.copy()
    curve = []
    it = 0
    for it in range(1, max_iter + 1):
        loss_y, G = problem.loss_grad_logits(Zy)
        fy_smooth = loss_y + problem.penalty(Wy, smooth_only=True)
        gW, gb = problem.gradient(Wy, G)
        # Backtracking on L, per label.
        pending = np.ones(len(b), dtype=bool)
        W_new = np.empty_like(W)
        b_new = np.empty_like(b)
        Z_new = np.empty_like(Zx)
        f_new = np.empty_like(f)
        gmap = np.empty(len(b))
        for _ in range(60):
            step = (1.0 / L).astype(dtype)
            Wc = Wy - step * gW
            if beta > 0:
                Wc = _soft_threshold(Wc, (step * beta).astype(dtype))
            bc = by - step * gb if fit_b else by
            Zc = problem.linear(Wc, bc)
            lc = problem.loss(Zc)
            dW = Wc - Wy
            db = bc - by
            quad = (np.einsum("ij,ij->j", gW, dW) + gb * db
                    + 0.5 * L * (np.einsum("ij,ij->j", dW, dW) + db * db))
            smooth_c = lc + problem.penalty(Wc, smooth_only=True)
            ok = pending & (smooth_c <= fy_smooth + quad + 1e-12 * np.abs(fy_smooth))
            if ok.any():
                W_new[:, ok] = Wc[:, ok]
                b_new[ok] = bc[ok]
                Z_new[:, ok] = Zc[:, ok]
                f_new[ok] = (smooth_c + (beta * np.abs(Wc).sum(axis=0) if beta > 0 else 0))[ok]
                gmap[ok] = (L * _max_abs(dW, db))[ok]
                pending &= ~ok
            if not pending.any():
                break
            L = np.where(pending, 2 * L, L)
        if pending.any():  # numerical floor: accept the last candidate
            W_new[:, pending] = Wc[:, pending]
            b_new[pending] = bc[pending]
            Z_new[:, pending] = Zc[:, pending]
            f_new[pending] = smooth_c[pending]
            gmap[pending] = 0.0
        # Momentum with function-value restart, kept monotone: a label whose
        # objective went up keeps its previous point and restarts from it
        # with a plain proximal gradient step.
        restart = f_new > f
        if restart.any():
            W_new[:, restart] = W[:, restart]
            b_new[restart] = b[restart]
            Z_new[:, restart] = Zx[:, restart]
            f_new[restart] = f[restart]
        t_next = 0.5 * (1 + np.sqrt(1 + 4 * momentum_t ** 2))
        mom = np.where(restart, 0.0, (momentum_t - 1) / t_next).astype(dtype)
        momentum_t = np.where(restart, 1.0, t_next)
        Wy = W_new + mom * (W_new - W)
        by = b_new + mom * (b_new - b) if fit_b else b_new
        Zy = Z_new + mom * (Z_new - Zx)
        W, b, Zx, f = W_new, b_new, Z_new, f_new
        L = L * 0.9
        curve.append(labels.curve_value(f))
        progress(it, curve[-1], float(gmap.max()), len(labels.active))
        done = gmap <= tol
        if done.any():
            labels.converged[labels.active[done]] = True
            keep = ~done
            labels.retire(keep, W, b, f, it)
            if not keep.any():
                break
            W, b, f, L, momentum_t = W[:, keep], b[keep], f[keep], L[keep], momentum_t[keep]
            Wy, by = Wy[:, keep], by[keep]
            Zx = np.ascontiguousarray(Zx[:, keep])
            Zy = np.ascontiguousarray(Zy[:, keep])
    if len(labels.active):
        labels.finish(W, b, f, it)
    progress(it, curve[-1] if curve else 0.0, 0.0, len(labels.active), force=True)
    return labels.result(it, curve)


def lbfgs(problem, W0, b0, *, tol=1e-4, max_iter=100, verbose=0):
    """scipy's L-BFGS-B on the sum over labels of the objectives (L2 only).

    The labels are optimised jointly as one vector; since the objective is a
    sum of per-label terms, the gradient test ``max |g| <= tol`` is the
    per-label test of the other solvers taken over all labels.
    """
    if problem.beta > 0:
        raise ValueError(
            "solver='lbfgs' supports only l1_ratio=0 (an L2 penalty); use "
            "solver='gd' or 'sgd' for an L1 or elastic-net penalty."
        )
    progress = _Progress("lbfgs", verbose)
    d, k = problem.n_features, problem.n_labels
    dtype = problem.dtype
    fit_b = problem.fit_intercept
    x0 = np.concatenate([np.asarray(W0, dtype=np.float64).T.ravel(),
                         np.asarray(b0, dtype=np.float64)])
    state = {"f": None}

    def unpack(x):
        W = x[: d * k].reshape(d, k).astype(dtype)
        b = x[d * k:].astype(dtype)
        return W, b

    def fun(x):
        W, b = unpack(x)
        Z = problem.linear(W, b)
        loss, G = problem.loss_grad_logits(Z)
        fj = loss + problem.penalty(W)
        gW, gb = problem.gradient(W, G)
        if not fit_b:
            gb = np.zeros_like(gb)
        grad = np.concatenate([gW.astype(np.float64).ravel(), gb.astype(np.float64)])
        state["f"], state["fj"] = float(fj.sum()), fj
        state["g"] = float(np.abs(grad).max()) if grad.size else 0.0
        return float(fj.sum()), grad

    curve = []

    def callback(intermediate_result):
        curve.append(float(intermediate_result.fun) / k)
        progress(len(curve), curve[-1], state["g"], k)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        result = optimize.minimize(
            fun, x0, method="L-BFGS-B", jac=True, callback=callback,
            options={"maxiter": max_iter, "maxls": 50, "gtol": tol,
                     "ftol": 64 * np.finfo(float).eps},
        )
    W, b = unpack(result.x)
    if not curve:
        curve.append(float(result.fun) / k)
    Z = problem.linear(W, b)
    loss, G = problem.loss_grad_logits(Z)
    gW, gb = problem.gradient(W, G)
    if not fit_b:
        gb = np.zeros_like(gb)
    gmax = _max_abs(gW, gb)
    # L-BFGS-B also stops on a relative decrease of the objective below ftol:
    # at that point the problem is solved to machine precision.
    converged = (gmax <= tol) | bool(result.status == 0 and result.nit < max_iter)
    progress(result.nit, curve[-1], float(gmax.max()) if gmax.size else 0.0, k, force=True)
    return SolverResult(
        coef=np.ascontiguousarray(W.T), intercept=b.copy(), n_iter=int(max(result.nit, 1)),
        loss_curve=curve, converged=np.asarray(converged, dtype=bool) & np.ones(k, bool),
        label_n_iter=np.full(k, int(result.nit)),
    )


@dataclass
class SGDState:
    """What mini-batch SGD carries from one call (epoch or chunk) to the next."""

    step0: float
    t: int = 0  # samples processed so far
    avg_start: float = 0.0  # samples after which iterates are averaged
    avg_W: np.ndarray = None  # Polyak-Ruppert average of the iterates
    avg_b: np.ndarray = None
    n_avg: int = 0

    def averaged(self, W, b):
        """The averaged iterate, or the current one before averaging starts."""
        if self.n_avg == 0:
            return W, b
        return self.avg_W, self.avg_b


def sgd_step_size(problem, batch_size):
    """A safe initial step ``1 / L`` for mini-batches: L bounds a batch's curvature."""
    X = problem.X
    if sparse.issparse(X):
        sq = np.asarray(X.multiply(X).sum(axis=1)).ravel()
    else:
        sq = np.einsum("ij,ij->i", X, X, dtype=np.float64)
    if problem.fit_intercept:
        sq = sq + 1.0
    pw_max = max(problem.pw_scalar, 1.0) if problem.pw_all is None else max(
        float(problem.pw_all.max()), 1.0)
    # Average over a batch: the mean row norm is a bound in expectation; use a
    # blend with the max so that large batches are not too timid.
    bound = 0.25 * pw_max * (0.5 * sq.max() + 0.5 * sq.mean()) + problem.alpha
    return 1.0 / bound


def sgd_epoch(problem, W, b, state, *, batch_size, learning_rate, rng, decay_every):
    """One pass of mini-batch SGD over ``problem``'s rows, in a shuffled order.

    ``W`` (n_features, n_labels) and ``b`` are updated in place. The step is
    ``step0 / sqrt(1 + t / decay_every)`` with ``t`` the number of samples
    processed so far; an L1 part is applied by soft-thresholding after each
    step. Once ``t`` reaches ``state.avg_start`` the iterates of the pass are
    also averaged in ``state`` (tail averaging): the average is the estimate,
    far less noisy than the last iterate, and lags it by half a pass only.
    """
    n = problem.n_samples
    X, Y = problem.X, problem.Y_all
    dtype = problem.dtype
    order = rng.permutation(n)
    state.n_avg = 0  # average the iterates of this pass only
    sw_all = problem.sw
    fit_b = problem.fit_intercept
    for start in range(0, n, batch_size):
        rows = np.sort(order[start:start + batch_size])
        Xb = X[rows]
        Yb = np.ascontiguousarray(Y[rows])
        Zb = np.ascontiguousarray(safe_sparse_dot(Xb, W, dense_output=True), dtype=dtype)
        if fit_b:
            Zb += b
        Gb = np.empty_like(Zb)
        if sw_all is None:
            sw = np.empty(0, dtype=dtype)
            scale = 1.0 / len(rows)
        else:
            sw = np.ascontiguousarray(sw_all[rows])
            total = float(sw.sum())
            if total <= 0:
                continue
            sw = sw / dtype.type(total)
            scale = 1.0
        pw = np.empty(0, dtype=dtype) if problem.pw_all is None else problem.pw_all
        bce_pass(Yb, Zb, sw, np.empty(0, dtype=dtype), pw, problem.pw_scalar, True, 0.0,
                 np.empty((0, 0), dtype=dtype), Gb, scale, 1)
        if learning_rate == "auto":
            eta = state.step0 / np.sqrt(1.0 + state.t / decay_every)
        else:
            eta = float(learning_rate) / np.sqrt(1.0 + state.t / decay_every)
        eta = dtype.type(eta)
        gW = np.asarray(safe_sparse_dot(Xb.T, Gb, dense_output=True))
        if problem.alpha > 0:
            gW += problem.alpha * W
        W -= eta * gW
        if problem.beta > 0:
            W[...] = _soft_threshold(W, eta * problem.beta)
        if fit_b:
            b -= eta * Gb.sum(axis=0)
        state.t += len(rows)
        if state.t >= state.avg_start:
            if state.n_avg == 0:
                state.avg_W, state.avg_b = W.copy(), b.copy()
            state.n_avg += 1
            weight = dtype.type(1.0 / state.n_avg)
            state.avg_W += weight * (W - state.avg_W)
            state.avg_b += weight * (b - state.avg_b)
    return W, b


def sgd(problem, W0, b0, *, tol=1e-4, max_iter=1000, verbose=0, batch_size=256,
        learning_rate="auto", rng=None, n_iter_no_change=5, state=None, decay_every=None):
    """Mini-batch SGD over epochs until the objective stops improving.

    Stops when the objective (evaluated on all the data after each epoch) has
    not decreased by more than ``tol`` for ``n_iter_no_change`` epochs in a
    row, the rule of scikit-learn's ``SGDClassifier``.
    """
    progress = _Progress("sgd", verbose)
    dtype = problem.dtype
    W = np.ascontiguousarray(np.asarray(W0, dtype=dtype).T)
    b = np.array(b0, dtype=dtype)
    if rng is None:
        rng = np.random.default_rng(0)
    batch_size = int(min(batch_size, problem.n_samples))
    if decay_every is None:
        decay_every = 10.0 * batch_size
    if state is None:
        state = SGDState(step0=sgd_step_size(problem, batch_size), avg_start=decay_every)
    curve = []
    best = np.inf
    no_change = 0
    converged = False
    it = 0
    for it in range(1, max_iter + 1):
        sgd_epoch(problem, W, b, state, batch_size=batch_size,
                  learning_rate=learning_rate, rng=rng, decay_every=decay_every)
        fj = problem.objective(*state.averaged(W, b))
        value = float(fj.mean())
        curve.append(value)
        progress(it, value, float("nan"), problem.n_labels)
        if value > best - tol:
            no_change += 1
        else:
            no_change = 0
        best = min(best, value)
        if no_change >= n_iter_no_change:
            converged = True
            break
    k = problem.n_labels
    W_avg, b_avg = state.averaged(W, b)
    return SolverResult(
        coef=np.ascontiguousarray(W_avg.T), intercept=b_avg.copy(), n_iter=int(max(it, 1)),
        loss_curve=curve, converged=np.full(k, converged), label_n_iter=np.full(k, it),
    ), state


SOLVERS = {"gd": gradient_descent, "lbfgs": lbfgs, "newton-cg": newton_cg}
