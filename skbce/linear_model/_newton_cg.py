"""Batched truncated Newton (newton-cg): conjugate gradient on all active labels at once."""


import numpy as np

from skbce._kernels import cg_advance, cg_curvature, cg_direction
from skbce.linear_model._solver_base import (STALL_LIMIT, _decrease_small, _diagonal_decrease,
                                            _Labels, _max_abs, _Progress)

__all__ = ["newton_cg"]


# The diagonal preconditioner: this fraction of the (approximate) Hessian
# diagonal, the rest the identity, for features of one scale (binary,
# standardised, tf-idf); the whole diagonal for features whose nonzero
# values differ in scale by more than FEATURE_SCALE_SPREAD (see
# _feature_scales_alike).
PRECONDITIONER_MIX = 0.01
FEATURE_SCALE_SPREAD = 100.0
# CG stops at a relative residual ``min(FORCING_MAX, |g|^FORCING_POWER)``.
# The classical choice (0.5, 0.5) tightens as |g| falls and oversolves the
# last Newton steps of a loose ``tol`` (bibtex: ~19% more products for the
# same stopping test); a constant 0.1 keeps a linear rate of 0.1 per
# Newton step, far more than a ``tol`` of 1e-4 needs.
FORCING_MAX, FORCING_POWER = 0.1, 0.0
# The labels' conjugate gradients run together, each sweep over X serving
# all of them, until all have converged -- or until this fraction has: the
# last few labels would keep every sweep going for little (truncated Newton
# only needs a descent direction, and the line search and the per-label
# gradient test keep the outer iteration exact). bibtex: ~25% less time.
CG_QUORUM = 0.75


def _pcg(problem, D, gW, gb, cg_tol, max_cg):
    """Batched preconditioned conjugate gradient for ``H_j p_j = -g_j``.

    ``D`` (n_samples, n_active) holds the curvature weights: ``H_j v = X.T @
    (D_j * (X @ v)) + alpha v`` (plus the intercept row). The preconditioner
    is the data's Gram matrix scaled per label for a small dense ``X``, the
    Hessian's diagonal otherwise. A label stops once its residual is below
    ``cg_tol[j]`` (or its curvature is not positive): it is dropped from the
    arrays when that makes the products narrower, frozen otherwise; all
    stop once ``CG_QUORUM`` of the labels have.
    """
    dtype = problem.dtype
    alpha = problem.alpha
    fit_b = problem.fit_intercept
    k = gW.shape[1]
    PW = np.zeros(gW.shape, dtype=dtype)
    Pb = np.zeros_like(gb)
    gram = problem.gram_eig()
    if gram is not None:
        # H_j ~ c_j * A.T S A + alpha I with A = [X, 1] and c_j the mean
        # curvature of label j: one eigendecomposition serves every label
        # and every Newton iteration.
        lam, V = gram
        curv_scale = D.sum(axis=0).astype(np.float64)
        ridge = alpha if alpha > 0 else 1e-10 * max(float(lam[-1]), 1e-300)

        def precondition(RW, Rb, idx):
            R = np.vstack([RW, Rb[None, :]]) if fit_b else RW
            T = V.T @ R.astype(V.dtype, copy=False)
            T /= curv_scale[idx] * lam[:, None] + ridge
            out = (V @ T).astype(dtype, copy=False)
            if fit_b:
                return np.ascontiguousarray(out[:-1]), out[-1].copy()
            return out, np.zeros(len(idx), dtype)
    else:
        # The Hessian's diagonal sum_i D_ij x_ik^2 approximated, like the
        # Gram preconditioner above, by c_j * sum_i s_i x_ik^2: the second
        # factor is computed once per fit, not a product per iteration.
        # Formed in place in the CG's dtype: one (d, k) array, where the
        # float64 temporaries were four (wide X: 24 MB each at 30 000
        # features and 100 labels).
        mix = PRECONDITIONER_MIX if _feature_scales_alike(problem) else 1.0
        col = problem.squared_column_means() * mix
        curv = D.sum(axis=0, dtype=np.float64)
        MW_all = np.multiply.outer(col.astype(dtype), curv.astype(dtype))
        MW_all += dtype.type(mix * alpha + (1 - mix))
        np.reciprocal(MW_all, out=MW_all)
        diag_b = mix * D.sum(axis=0) + (1 - mix)
        Mb_all = (1.0 / diag_b).astype(dtype) if fit_b else np.zeros(k, dtype)

        def precondition(RW, Rb, idx):
            if len(idx) == k:
                return MW_all * RW, Mb_all * Rb
            return MW_all[:, idx] * RW, Mb_all[idx] * Rb

    RW, Rb = np.negative(gW, order="C"), -gb
    idx = np.arange(k, dtype=np.intp)
    finished = np.zeros(k, dtype=bool)
    ZW, Zb = precondition(RW, Rb, idx)
    DW, Db = np.array(ZW, order="C"), Zb.copy()
    rz = np.einsum("ij,ij->j", RW, ZW) + Rb * Zb
    Dsub = D
    n_products = 0
    for _ in range(max_cg):
        HW, Hb = problem.hessp(DW, Db, Dsub)
        HW = np.ascontiguousarray(HW)
        n_products += DW.shape[1]
        curv = np.empty(len(idx))
        cg_curvature(HW, DW, alpha, curv)  # HW += alpha DW, and the column dots
        curv += Db * Hb
        positive = curv > 0
        step = np.where(positive, rz / np.where(positive, curv, 1), 0).astype(dtype)
        rr = np.empty(len(idx))
        cg_advance(PW, idx, DW, RW, HW, step, rr)  # PW[:, idx] += step DW, RW -= step HW
        Pb[idx] += step * Db
        Rb -= step * Hb
        rnorm = np.sqrt(rr + Rb * Rb)
        done = (rnorm <= cg_tol[idx]) | ~positive
        finished[idx[done]] = True
        if done.all() or np.count_nonzero(finished) >= CG_QUORUM * k:
            break
        if done.any():
            keep = ~done
            if _tiles(keep.sum()) < _tiles(len(keep)):
                idx = idx[keep]
                RW, Rb = np.ascontiguousarray(RW[:, keep]), Rb[keep]
                DW, Db = np.ascontiguousarray(DW[:, keep]), Db[keep]
                rz = rz[keep]
                Dsub = problem.compact(D[:, idx])
            else:
                # Dropping these labels would not make the products any
                # narrower in vector registers: freeze them instead (a zero
                # residual and direction stay zero, and take no steps).
                RW[:, done] = 0
                Rb[done] = 0
                DW[:, done] = 0
                Db[done] = 0
        ZW, Zb = precondition(RW, Rb, idx)
        rz_new = np.einsum("ij,ij->j", RW, ZW) + Rb * Zb
        beta = (rz_new / np.where(rz > 0, rz, 1)).astype(dtype)
        cg_direction(DW, np.ascontiguousarray(ZW), beta)
        Db = Zb + beta * Db
        rz = rz_new
    return PW, Pb, n_products


def _feature_scales_alike(problem):
    """Whether the features' nonzero values share a scale: the diagonal preconditioner's mix.

    The scale of a feature is the mean square of its nonzero values (its
    frequency aside): binary features all have 1, l2-normalised tf-idf ones
    spread by about 2x between the 10th and 90th percentiles. On such data
    the Hessian diagonal mixed 1:99 with the identity took fewer conjugate
    gradient steps than the diagonal alone (bibtex, C=1: 5.6 against 7.9 per
    Newton step). Features of scales spread by more than
    ``FEATURE_SCALE_SPREAD`` (raw counts, unscaled measurements) need the
    diagonal itself: bibtex with its columns scaled by log-uniform factors in
    [0.1, 10] took 13.4 steps with the mix, 9.6 with the diagonal (fit 2.3 s
    -> 1.8 s; C=100: 15.6 -> 9.2 steps, 4.0 -> 2.3 s).
    """
    counts = problem.nonzero_weights()
    seen = counts > 0
    if not seen.any():
        return True
    scales = problem.squared_column_means()[seen] / counts[seen]
    low, high = np.quantile(scales, [0.1, 0.9])
    return high <= FEATURE_SCALE_SPREAD * low


def _tiles(n_labels):
    """Register tiles (8 float32 labels) that products over ``n_labels`` use."""
    return -(-int(n_labels) // 8)


def _try_step(problem, Z, XP, W, PW, f, f_new, t, slope, cols):
    """Armijo test of the steps ``t[cols]`` of the labels ``cols``.

    Accepted labels get their logits written into ``Z`` and their objective
    into ``f_new``; returns the accepted mask. ``XP`` holds the step's
    logits on ``cols`` only.
    """
    tp = t[cols].astype(problem.dtype)
    Zp = problem.compact(Z[:, cols] + tp * XP)
    lp = problem.loss_grad_logits(Zp, want_grad=False, cols=cols)[0]
    fp = lp + problem.penalty(W[:, cols] + tp * PW[:, cols])
    ok = fp <= f[cols] + 1e-4 * t[cols] * slope[cols] + 1e-12 * np.abs(f[cols])
    if ok.any():
        done = cols[ok]
        Z[:, done] = Zp[:, ok]
        f_new[done] = fp[ok]
    return ok


def newton_cg(problem, W0, b0, *, tol=1e-4, max_iter=100, verbose=0, max_cg=None,
              pool_size=None):
    """Batched truncated Newton (Newton-CG) with per-label line search.

    L2 penalty only (``problem.beta == 0``). Each outer iteration solves
    ``H_j p_j = -g_j`` inexactly, by preconditioned conjugate gradient, for
    every active label at once -- a Hessian-vector product of all labels is
    ``X.T @ (D * (X @ V))``, one sweep over a sparse ``X`` -- to the relative
    residual ``FORCING_MAX`` (0.1), then backtracks each label's step until
    that label's objective has decreased enough (Armijo). A label stops once
    ``max |g_j| <= tol``, the criterion of scikit-learn's ``newton-cg``, and
    the decrease a Newton step on the Hessian's diagonal predicts is at most
    ``tol`` times its objective (:func:`_diagonal_decrease`,
    :func:`_decrease_small`; from the curvature weights the iteration has
    anyway), or after ``max_iter`` iterations of its own, and leaves the
    active set.

    At most ``pool_size`` labels (default: all) are active at a time: when
    labels leave, the next ones in line join at the start of the following
    iteration. The memory is that of ``pool_size`` labels, and, unlike
    solving fixed blocks one after the other, every sweep over ``X`` serves
    a full pool rather than the last few slow labels of a block.

    Memory: between iterations only the logits ``Z`` of the active labels
    live; the gradient and curvature weights with respect to them (one
    kernel pass) exist from the start of an iteration until the gradient,
    respectively the conjugate gradient, has used them, and the line search
    evaluates the loss alone.
    """
    if problem.beta > 0:
        raise ValueError("newton_cg supports an L2 penalty only (l1_ratio=0).")
    k = problem.n_labels
    pool_size = k if pool_size is None else max(1, min(int(pool_size), k))
    labels = _Labels(problem, W0, b0)
    progress = _Progress("newton-cg", verbose, n_labels=k)
    dtype = problem.dtype
    if max_cg is None:
        max_cg = max(20, min(200, problem.n_features + 1))
    fit_b = problem.fit_intercept
    cg_problem = problem.low_precision() if problem.mixed_precision_cg() else problem
    # The preconditioner's eigendecomposition (dense X) holds its input and
    # output at once: done before any per-label array exists, it does not add
    # to the peak of the iterations.
    cg_problem.gram_eig()
    # The objective of every label at its starting point, for loss_curve_.
    for start in range(0, k, pool_size):
        cols = np.arange(start, min(k, start + pool_size))
        problem.set_active(cols)
        Z0 = _start_logits(problem, labels.W_all[:, cols], labels.b_all[cols])
        labels.f_all[cols] = problem.loss(Z0) + problem.penalty(labels.W_all[:, cols])
        del Z0
    waiting = np.arange(k)  # labels not yet admitted, in order
    labels.active = waiting[:0]
    W = labels.W_all[:, :0].copy()
    b = labels.b_all[:0].copy()
    f = np.zeros(0)
    Z = problem.empty_logits(0)
    joined = np.zeros(0, dtype=int)  # iteration at which each active label joined
    stalls = np.zeros(0, dtype=int)  # iterations in a row without a real decrease
    curve = []
    it = 0
    while len(labels.active) or len(waiting):
        it += 1
        if len(waiting) and len(labels.active) < pool_size:
            new = waiting[:pool_size - len(labels.active)]
            waiting = waiting[len(new):]
            W, b, f, Z = _admit(problem, labels, new, W, b, f, Z)
            joined = np.concatenate([joined, np.full(len(new), it - 1)])
            stalls = np.concatenate([stalls, np.zeros(len(new), dtype=int)])
        _, G, D = problem.loss_grad_logits(Z, want_hess=True, hess_dtype=cg_problem.dtype)
        gW, gb = problem.gradient(W, G)
        del G
        gmax = _max_abs(gW, gb)
        done = gmax <= tol
        if done.any():
            # The curvature's column sums, then the done labels': D[:, done]
            # would copy the done labels' curvature, up to all of D.
            curvature = D.sum(axis=0, dtype=np.float64)[done]
            done[done] = _decrease_small(
                _diagonal_decrease(gW[:, done], gb[done], curvature,
                                   problem.squared_column_means(), problem.alpha),
                f[done], tol)
        labels.converged[labels.active[done]] = True
        leave = done | (it - 1 - joined >= max_iter)
        if leave.any():
            keep = ~leave
            labels.retire(keep, W, b, f, it - 1 - joined)
            W, b, f, gW, gb, gmax = W[:, keep], b[keep], f[keep], gW[:, keep], gb[keep], \
                gmax[keep]
            joined, stalls = joined[keep], stalls[keep]
            # One at a time: each old array is freed before the next copy.
            Z = problem.compact(Z[:, keep])
            D = problem.compact(D[:, keep])
            if not keep.any():
                del D
                if len(waiting):
                    continue
                it -= 1
                break
        # --- inexact Newton direction ----------------------------------------
        gnorm = np.sqrt(np.einsum("ij,ij->j", gW, gW) + gb * gb)
        cg_tol = np.minimum(FORCING_MAX, gnorm ** FORCING_POWER) * gnorm
        cg_type = cg_problem.dtype
        PW, Pb, _ = _pcg(cg_problem, D, gW.astype(cg_type, copy=False),
                         gb.astype(cg_type, copy=False), cg_tol, max_cg)
        del D
        PW, Pb = PW.astype(dtype, copy=False), Pb.astype(dtype, copy=False)
        # A label whose CG made no progress falls back to steepest descent.
        no_step = ~np.any(PW != 0, axis=0) & (Pb == 0)
        if no_step.any():
            PW[:, no_step] = -gW[:, no_step]
            Pb[no_step] = -gb[no_step]
        slope = np.einsum("ij,ij->j", gW, PW) + gb * Pb
        del gW, gb
        t, Z, f_new = _line_search(problem, W, PW, Pb, Z, f, slope)
        # The Armijo test allows a rise of rounding size; a label whose
        # objective has not really decreased for STALL_LIMIT iterations in
        # a row cannot meet its gradient test in this arithmetic (all
        # features x 1e70: 1000 iterations at the optimum, its gradient
        # ~1e70 times the rounding of the residuals).
        stalls = np.where(f_new >= f - 4 * np.finfo(np.float64).eps * np.abs(f), stalls + 1, 0)
        stuck = (t == 0) | (stalls >= STALL_LIMIT)
        W = W + t.astype(dtype) * PW
        if fit_b:
            b = b + t.astype(dtype) * Pb
        f = f_new
        del PW, Pb
        if stuck.any():
            # No decrease found: the label is at its optimum to machine
            # precision, or the problem is too badly scaled for the
            # arithmetic; either way its gradient test is not met (it was
            # made above). Keep it where it is, stop it, and let the
            # estimator warn.
            keep = ~stuck
            labels.retire(keep, W, b, f, it - joined)
            W, b, f, joined, stalls = W[:, keep], b[keep], f[keep], joined[keep], stalls[keep]
            Z = problem.compact(Z[:, keep])
        curve.append(labels.curve_value(f))
        # The count n_iter_ reports: the most iterations any label has run
        # (with a pool of labels, fewer than the sweeps over X).
        label_iter = max(int(labels.n_iter.max()), int((it - joined).max()) if len(joined) else 0)
        progress(label_iter, curve[-1], float(gmax.max()) if gmax.size else 0.0,
                 len(labels.active) + len(waiting),
                 pool=len(labels.active) if pool_size < k else None)
    if len(labels.active):
        labels.finish(W, b, f, it - joined)
    n_iter = int(labels.n_iter.max()) if k else 0
    progress(n_iter, curve[-1] if curve else float(labels.f_all.mean()) if k else 0.0,
             0.0, len(labels.active), force=True)
    return labels.result(n_iter, curve)


def _admit(problem, labels, new, W, b, f, Z):
    """Add the labels ``new`` to the active arrays, at their starting point."""
    labels.active = np.concatenate([labels.active, new])
    problem.set_active(labels.active)
    Wn, bn = labels.W_all[:, new], labels.b_all[new]
    Z = np.concatenate([Z, _start_logits(problem, Wn, bn)], axis=1)
    return (np.concatenate([W, Wn], axis=1), np.concatenate([b, bn]),
            np.concatenate([f, labels.f_all[new]]), Z)


def _start_logits(problem, W, b):
    """Logits at a starting point; no product for a cold start (``W = 0``)."""
    if W.any():
        return problem.linear(W, b)
    Z = problem.empty_logits(W.shape[1])
    Z[...] = b if problem.fit_intercept else 0
    return Z


def _line_search(problem, W, PW, Pb, Z, f, slope):
    """Per-label backtracking (Armijo) along ``(PW, Pb)`` from logits ``Z``.

    Returns the step of each label (0 where no decrease was found), the
    logits at the new point (``Z`` updated in place, or replaced) and the
    objective there. The full step is nearly always accepted: its logits
    are formed in the buffer of the step's own logits, and only the labels
    it rejects keep that buffer, as the step's logits, to retry shorter
    steps.
    """
    fit_b = problem.fit_intercept
    Zt = problem.direction(PW, Pb) if fit_b else problem.direction(PW, 0)
    Zt += Z
    ft = problem.loss(Zt) + problem.penalty(W + PW)
    accepted = ft <= f + 1e-4 * slope + 1e-12 * np.abs(f)
    f_new = np.where(accepted, ft, f)
    t = np.ones(len(f))
    pending = np.flatnonzero(~accepted)
    if not len(pending):
        return t, Zt, f_new
    np.copyto(Z, Zt, where=accepted)
    XP = np.subtract(Zt, Z, out=Zt)  # the step's logits (zero where accepted)
    del Zt
    # A step whose whole first-order decrease t * |slope| is below the
    # rounding of the objective's evaluation cannot show a decrease: the
    # label gives up there (t = 0) rather than halving up to 40 times, each
    # trial a pass over X -- on dask, a sweep of the cluster. The rounding of
    # the n per-row terms, each to eps of itself, adds up like a random walk:
    # about eps |f| / sqrt(n). (bench_dask's float32 2M x 100, 20 labels,
    # tol=1e-6, 2 workers: 33.2 s -> 14.2 s at the same objective.)
    rounding = np.finfo(problem.dtype).eps * np.abs(f) / np.sqrt(max(problem.n_samples, 1))
    for _ in range(40):
        hopeless = 0.5 * t[pending] * np.abs(slope[pending]) < rounding[pending]
        t[pending[hopeless]] = 0.0
        pending = pending[~hopeless]
        if not len(pending):
            break
        t[pending] *= 0.5
        ok = np.zeros(len(pending), dtype=bool)
        # Column chunks bound the trial arrays when most labels backtrack.
        chunk = max(8, len(f) // 2)
        for start in range(0, len(pending), chunk):
            part = pending[start:start + chunk]
            ok[start:start + chunk] = _try_step(problem, Z, XP[:, part], W, PW, f, f_new, t,
                                                slope, part)
        pending = pending[~ok]
    t[pending] = 0.0
    return t, Z, f_new
