"""scipy's L-BFGS-B on the labels' joint objective (lbfgs)."""


import warnings

import numpy as np
from scipy import optimize

from skbce.linear_model._solver_base import SolverResult, _max_abs, _Progress

__all__ = ["lbfgs"]


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
                     "ftol": 0.0},
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
    # L-BFGS-B also stops on a relative decrease of the objective below
    # ftol, or when its line search fails; neither means the gradient test
    # is met. On a badly scaled X (one feature x 1e10) it stopped so after 7
    # iterations at a near-constant model: only the gradient test counts.
    converged = gmax <= tol
    progress(result.nit, curve[-1], float(gmax.max()) if gmax.size else 0.0, k, force=True)
    return SolverResult(
        coef=np.ascontiguousarray(W.T), intercept=b.copy(), n_iter=int(max(result.nit, 1)),
        loss_curve=curve, converged=np.asarray(converged, dtype=bool) & np.ones(k, bool),
        label_n_iter=np.full(k, int(result.nit)),
    )
