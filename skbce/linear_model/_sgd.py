"""Mini-batch SGD (sgd): the epochs of ``fit`` and the single epoch of ``partial_fit``."""


from dataclasses import dataclass

import numpy as np

from skbce.linear_model._solver_base import SolverResult, _Progress, _soft_threshold

__all__ = ["SGDState", "sgd", "sgd_epoch"]


@dataclass
class SGDState:
    """What mini-batch SGD carries from one call (epoch or chunk) to the next."""

    step0: float
    t: int = 0  # samples processed so far
    avg_start: float = 0.0  # samples after which iterates are averaged
    avg_W: np.ndarray = None  # Polyak-Ruppert average of the iterates
    avg_b: np.ndarray = None
    n_avg: int = 0
    precond: np.ndarray = None  # per-feature step factors (sgd_preconditioner)

    def averaged(self, W, b):
        """The averaged iterate, or the current one before averaging starts."""
        if self.n_avg == 0:
            return W, b
        return self.avg_W, self.avg_b


def sgd_preconditioner(problem):
    """Per-feature step factors ``1 / max(mean x_k^2, 1)`` for SGD.

    One feature of a much larger scale than the others sets the curvature
    bound, hence the step, of every feature: with one feature scaled by 1e3
    the step of the rest was a millionth of what they need, and SGD stopped
    (no progress within ``tol``) at a near-constant model. Dividing each
    feature's step by its mean square puts all features on the scale of a
    standardised one; features of mean square at most 1 -- standardised,
    binary, tf-idf -- keep the plain step.
    """
    return (1.0 / np.maximum(problem.squared_column_means(), 1.0)).astype(problem.dtype)


def sgd_step_size(problem, batch_size, precond=None):
    """A safe initial step ``1 / L`` for mini-batches: L bounds a batch's curvature.

    With ``precond`` (per-feature step factors), the bound of the
    preconditioned problem.
    """
    P = np.ones(problem.n_features) if precond is None else np.asarray(precond, np.float64)
    sq_max, sq_mean = problem.squared_row_norm_summary(P)
    if problem.fit_intercept:
        sq_max, sq_mean = sq_max + 1.0, sq_mean + 1.0
    pw_max = max(problem.pw_scalar, 1.0) if problem.pw_all is None else max(
        float(problem.pw_all.max()), 1.0)
    # Average over a batch: the mean row norm is a bound in expectation; use a
    # blend with the max so that large batches are not too timid.
    bound = 0.25 * pw_max * (0.5 * sq_max + 0.5 * sq_mean) + problem.alpha * P.max()
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
    dtype = problem.dtype
    order = rng.permutation(n)
    state.n_avg = 0  # average the iterates of this pass only
    for start in range(0, n, batch_size):
        rows = np.sort(order[start:start + batch_size])
        grads = problem.batch_gradient(rows, W, b)
        if grads is None:  # a batch of zero weight
            continue
        gW, gb = grads
        if learning_rate == "auto":
            eta = state.step0 / np.sqrt(1.0 + state.t / decay_every)
        else:
            eta = float(learning_rate) / np.sqrt(1.0 + state.t / decay_every)
        eta = dtype.type(eta)
        if problem.alpha > 0:
            gW += problem.alpha * W
        if state.precond is not None:
            gW *= state.precond[:, None]
        W -= eta * gW
        if problem.beta > 0:
            threshold = eta * problem.beta
            if state.precond is not None:
                threshold = threshold * state.precond[:, None]
            W[...] = _soft_threshold(W, threshold)
        if problem.fit_intercept:
            b -= eta * gb
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
    W = np.array(np.asarray(W0).T, dtype=dtype, order="C")  # own, writable copy
    b = np.array(b0, dtype=dtype)
    if rng is None:
        rng = np.random.default_rng(0)
    batch_size = int(min(batch_size, problem.n_samples))
    if decay_every is None:
        decay_every = 10.0 * batch_size
    if state is None:
        precond = sgd_preconditioner(problem)
        state = SGDState(step0=sgd_step_size(problem, batch_size, precond),
                         avg_start=decay_every, precond=precond)
    curve = []
    best = np.inf
    no_change = 0
    converged = False
    it = 0
    for it in range(1, max_iter + 1):
        problem.run_epoch(sgd_epoch, W, b, state, batch_size=batch_size,
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
