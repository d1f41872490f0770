"""Newton's method with the exact Hessian (newton-cholesky), for few labels and features."""


import numpy as np
from scipy import linalg

from skbce.linear_model._solver_base import STALL_LIMIT, _decrease_small, _Labels, _Progress

__all__ = ["newton_cholesky"]


def newton_cholesky(problem, W0, b0, *, tol=1e-4, max_iter=100, verbose=0):
    """Newton's method with the exact Hessian, for few labels on a dense X of few features.

    Each iteration takes one pass over ``X`` (``problem.newton_terms``:
    ``skbce.linear_model._problem.LinearBCE.newton_terms`` in memory,
    ``_dask_problem.DaskLinearBCE.newton_terms`` over chunks; loss, gradient
    and the ``(d+1)``-square Hessian of every active label),
    solves each label's Newton system by Cholesky and tries the full step
    at the next pass: the pass that evaluates a step also yields the next
    gradient and Hessian, so an accepted step (nearly all of them, Newton
    being quadratically convergent from the intercept-only start) costs one
    pass. A rejected one backtracks (Armijo) on the objective alone. A label
    has converged once ``max |g_j| <= tol`` and its Newton decrement
    ``-g_j . p_j / 2`` (the decrease the step would still bring) is at most
    ``tol`` times its objective (:func:`_decrease_small`); it stops so, or
    unconverged (the estimator warns) when its objective stops decreasing
    (``STALL_LIMIT`` iterations). L2 penalty only.
    """
    if problem.beta > 0:
        raise ValueError("newton_cholesky supports an L2 penalty only (l1_ratio=0).")
    labels = _Labels(problem, W0, b0)
    progress = _Progress("newton-cholesky", verbose, n_labels=problem.n_labels)
    alpha = problem.alpha
    d = problem.n_features
    fit_b = problem.fit_intercept
    W = labels.W_all.astype(np.float64)
    b = labels.b_all.astype(np.float64)
    loss, grad, hess = problem.newton_terms(W, b)
    f = loss + problem.penalty(W)
    stalls = np.zeros(len(b), dtype=int)
    curve = []
    it = 0
    for it in range(1, max_iter + 1):
        grad[:d] += alpha * W
        gmax = np.abs(grad).max(axis=0) if len(b) else np.zeros(0)
        step = _newton_directions(hess, grad, alpha, d)
        slope = np.einsum("ij,ij->j", grad, step)
        # -slope / 2 is the Newton decrement's half square: the decrease
        # still to be had, as the exact quadratic model predicts it.
        done = (gmax <= tol) & _decrease_small(-0.5 * slope, f, tol)
        labels.converged[labels.active[done]] = True
        stop = done | (stalls >= STALL_LIMIT)
        if stop.any():
            keep = ~stop
            labels.retire(keep, W, b, f, it - 1)
            W, b, f, stalls = W[:, keep], b[keep], f[keep], stalls[keep]
            grad, step, slope, gmax = grad[:, keep], step[:, keep], slope[keep], gmax[keep]
            if not keep.any():
                it -= 1
                break
        t = np.ones(len(b))
        W_new, b_new = W + step[:d], (b + step[d] if fit_b else b)
        loss, grad_new, hess_new = problem.newton_terms(W_new, b_new)
        f_new = loss + problem.penalty(W_new)
        accepted = f_new <= f + 1e-4 * slope + 1e-12 * np.abs(f)
        for _ in range(40):
            if accepted.all():
                break
            t = np.where(accepted, t, 0.5 * t)
            W_try, b_try = W + t * step[:d], (b + t * step[d] if fit_b else b)
            f_try = problem.objective(W_try, b_try)
            ok = ~accepted & (f_try <= f + 1e-4 * t * slope + 1e-12 * np.abs(f))
            W_new[:, ok], f_new[ok] = W_try[:, ok], f_try[ok]
            if fit_b:
                b_new[ok] = b_try[ok]
            accepted |= ok
        t = np.where(accepted, t, 0.0)
        if not accepted.all() or (t < 1).any():
            # The pass above evaluated the full step: recompute the
            # derivatives where a shorter (or no) step was taken.
            W_new[:, ~accepted], f_new[~accepted] = W[:, ~accepted], f[~accepted]
            if fit_b:
                b_new[~accepted] = b[~accepted]
            loss, grad_new, hess_new = problem.newton_terms(W_new, b_new)
        stalls = np.where(f_new >= f - 4 * np.finfo(np.float64).eps * np.abs(f), stalls + 1, 0)
        W, b, f, grad, hess = W_new, b_new, f_new, grad_new, hess_new
        curve.append(labels.curve_value(f))
        progress(it, curve[-1], float(gmax.max()) if gmax.size else 0.0, len(b))
    if len(labels.active):
        labels.finish(W, b, f, it)
    n_iter = int(labels.n_iter.max()) if len(labels.n_iter) else 0
    progress(n_iter, curve[-1] if curve else float(labels.f_all.mean()), 0.0, len(b),
             force=True)
    return labels.result(n_iter, curve)


def _newton_directions(hess, grad, alpha, d):
    """``-(H_j + alpha I_d) \\ g_j`` per label, by Cholesky (upper triangles given).

    A Hessian that is singular to working precision (no penalty and
    collinear features, or all curvature lost to saturated logits) gets a
    ridge of ``1e-10`` times its largest diagonal entry, then as a last
    resort the least-squares solution.
    """
    out = np.empty_like(grad)
    for j in range(grad.shape[1]):
        H = np.array(hess[j], dtype=np.float64, order="F")
        H[np.arange(d), np.arange(d)] += alpha
        try:
            factor = linalg.cho_factor(H, lower=False, check_finite=False)
            out[:, j] = -linalg.cho_solve(factor, grad[:, j], check_finite=False)
            continue
        except linalg.LinAlgError:
            pass
        H = np.triu(H) + np.triu(H, 1).T
        H[np.diag_indices_from(H)] += 1e-10 * max(float(np.abs(np.diag(H)).max()), 1e-300)
        out[:, j] = -linalg.lstsq(H, grad[:, j], check_finite=False)[0]
    return out
