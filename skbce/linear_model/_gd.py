"""Accelerated proximal gradient descent (gd, FISTA): the solver for L1 and elastic-net."""


import numpy as np

from skbce.linear_model._solver_base import _Labels, _max_abs, _Progress, _soft_threshold

__all__ = ["gradient_descent"]


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
    progress = _Progress("gd", verbose, n_labels=problem.n_labels)
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
    had_momentum = np.zeros(k, dtype=bool)
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
        floor = pending.copy()
        if floor.any():
            # No step size gave the bound: the label is at its optimum to
            # machine precision, or the problem is too badly scaled for the
            # arithmetic. Keep its point and stop it, unconverged (the
            # estimator warns): its gradient mapping was not shown small.
            W_new[:, floor] = W[:, floor]
            b_new[floor] = b[floor]
            Z_new[:, floor] = Zx[:, floor]
            f_new[floor] = f[floor]
            gmap[floor] = np.inf
        # Momentum with function-value restart, kept monotone: a label whose
        # objective went up keeps its previous point and restarts from it
        # with a plain proximal gradient step.
        # (A step taken without momentum is a proximal gradient step, which
        # cannot go up but by rounding: it is always kept.)
        restart = f_new > f + 1e-15 * np.abs(f)
        reject = restart & had_momentum
        if reject.any():
            W_new[:, reject] = W[:, reject]
            b_new[reject] = b[reject]
            Z_new[:, reject] = Zx[:, reject]
            f_new[reject] = f[reject]
        t_next = 0.5 * (1 + np.sqrt(1 + 4 * momentum_t ** 2))
        mom = np.where(restart, 0.0, (momentum_t - 1) / t_next).astype(dtype)
        momentum_t = np.where(restart, 1.0, t_next)
        had_momentum = mom != 0
        Wy = W_new + mom * (W_new - W)
        by = b_new + mom * (b_new - b) if fit_b else b_new
        Zy = Z_new + mom * (Z_new - Zx)
        W, b, Zx, f = W_new, b_new, Z_new, f_new
        L = L * 0.9
        curve.append(labels.curve_value(f))
        progress(it, curve[-1], float(gmap.max()), len(labels.active))
        done = gmap <= tol
        labels.converged[labels.active[done]] = True
        done |= floor
        if done.any():
            keep = ~done
            labels.retire(keep, W, b, f, it)
            if not keep.any():
                break
            W, b, f, L, momentum_t = W[:, keep], b[keep], f[keep], L[keep], momentum_t[keep]
            had_momentum = had_momentum[keep]
            Wy, by = Wy[:, keep], by[keep]
            Zx = problem.compact(Zx[:, keep])
            Zy = problem.compact(Zy[:, keep])
    if len(labels.active):
        labels.finish(W, b, f, it)
    progress(it, curve[-1] if curve else 0.0, 0.0, len(labels.active), force=True)
    return labels.result(it, curve)
