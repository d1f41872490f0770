"""The machinery of ``MultiLabelLogistic.partial_fit``: its state between calls.

The pass over the data that it weighs its penalty against (:class:`_Pass`),
the state it starts from (:func:`start`), and its two ways to learn from a
chunk: Newton's method over passes (:class:`NewtonPasses`, when the pass
length is known and the Hessians fit :func:`newton_budget`;
:func:`newton_state` decides) and one epoch of SGD (:func:`epoch`). The
math is the problem's (:meth:`LinearBCE.newton_terms`, the SGD kernels);
the method itself, with its documentation, is in
:mod:`skbce.linear_model._logistic`.
"""

import numbers

import numpy as np
from scipy import sparse
from sklearn.utils import check_random_state

from skbce.linear_model import _sgd
from skbce.linear_model._newton_cholesky import _newton_directions
from skbce.linear_model._problem import NEWTON_COPY_BYTES, _working_memory_bytes
from skbce.linear_model._solver_choice import _MEMORY_SLACK


class _Pass:
    """What :meth:`MultiLabelLogistic.partial_fit` knows of a pass over the data.

    ``fit``'s objective weighs the penalty ``||w||^2 / (2 C)`` against the
    sum of the losses of all rows; per unit of sample weight, it is
    ``||w||^2 / (2 C N)`` with ``N`` the weight of the data set. Each call's
    SGD steps take the penalty per unit weight against ``N`` = the weight of
    one pass: ``n_samples_per_pass`` when the caller gave it (the last value
    given is kept), else the weight of all the rows seen so far -- a stream
    that never repeats is then fitted as everything seen. Repeated passes
    over the chunks of a data set of ``N`` rows with ``n_samples_per_pass=N``
    converge to :meth:`fit`'s objective on it.

    The estimate after each call is the average of the SGD iterates over the
    last pass (a window of the pass's weight; over everything seen, without a
    pass length), as ``"sgd"``'s is over the last epoch.
    """

    def __init__(self):
        self.seen_rows = 0
        self.seen_weight = 0.0
        self.per_pass = None
        # The running average of the iterates over the current window.
        self._window = 0.0
        self._count = 0
        self._W = self._b = None

    @property
    def weight(self):
        """The weight the penalty is weighed against: a pass, or all seen."""
        return self.seen_weight if self.per_pass is None else self.per_pass

    def add(self, n_rows, weight, per_pass):
        """Count a chunk of ``n_rows`` rows of total ``weight``; ``per_pass`` as given."""
        if per_pass is not None:
            if (not isinstance(per_pass, numbers.Real) or isinstance(per_pass, bool)
                    or not np.isfinite(per_pass) or per_pass <= 0):
                raise ValueError(
                    "n_samples_per_pass must be a positive number (the rows, or the total "
                    f"sample weight, of one pass over the data); got {per_pass!r}.")
            self.per_pass = float(per_pass)
        self.seen_rows += n_rows
        self.seen_weight += weight

    def average(self, state, W, b, weight):
        """Fold the averaged iterates of this chunk (in ``state``) into the pass's."""
        if self.per_pass is not None and self._window >= self.per_pass:
            self._window = self._count = 0
        self._window += weight
        if state.n_avg:
            if self._count == 0:
                self._W, self._b = state.avg_W.copy(), state.avg_b.copy()
            else:
                share = state.n_avg / (self._count + state.n_avg)
                self._W += W.dtype.type(share) * (state.avg_W - self._W)
                self._b += b.dtype.type(share) * (state.avg_b - self._b)
            self._count += state.n_avg
        return (self._W, self._b) if self._count else (W, b)


def start(estimator, X, Y, sample_weight, dtype, first):
    """partial_fit's state: new on the first call, else from a solution of fit if fit ran last."""
    if first:
        estimator.pos_weight_ = estimator._resolve_pos_weight(Y, sample_weight)
        n_labels, n_features = Y.shape[1], X.shape[1]
        estimator._W = np.zeros((n_features, n_labels), dtype=dtype)
        estimator._b = estimator._initial_intercept(
            Y, sample_weight, estimator.pos_weight_).astype(dtype)
        estimator._sgd_rng = np.random.default_rng(
            check_random_state(estimator.random_state).randint(np.iinfo(np.int32).max))
        estimator._sgd_state = None
        estimator._pass = _Pass()
        estimator._newton = None
        estimator.n_iter_ = 0
        estimator.loss_curve_ = []
    elif getattr(estimator, "_W", None) is None:
        # Continue from a solution of fit.
        estimator._W = np.ascontiguousarray(estimator.coef_.T, dtype=dtype)
        estimator._b = np.array(estimator.intercept_, dtype=dtype)
        if getattr(estimator, "_sgd_rng", None) is None:
            estimator._sgd_rng = np.random.default_rng(
                check_random_state(estimator.random_state).randint(np.iinfo(np.int32).max))
        estimator._sgd_state = None
        estimator._pass = _Pass()
        estimator._newton = None


def epoch(estimator, problem, X, W, b, sample_weight):
    """One SGD epoch of partial_fit over ``problem``; the averaged iterates of the pass."""
    if estimator._sgd_state is None:
        batch = int(min(estimator.batch_size, X.shape[0]))
        precond = _sgd.sgd_preconditioner(problem)
        # Also the first chunk's curvature bound (a power iteration),
        # which the row-norm bound exceeds up to n_features times: a
        # few passes then go a long way (3600 x 30 Gaussian features,
        # 6 chunks: 44% above fit's objective after 20 passes with
        # the row-norm step, 0.2% with this). Either bounds the
        # preconditioned curvature (its factors are at most 1).
        step0 = max(_sgd.sgd_step_size(problem, batch, precond),
                    1.0 / problem.lipschitz())
        estimator._sgd_state = _sgd.SGDState(
            step0=step0, avg_start=estimator._step_decay(), precond=precond)
    _sgd.sgd_epoch(
        problem, W, b, estimator._sgd_state, batch_size=estimator.batch_size,
        learning_rate=estimator.learning_rate, rng=estimator._sgd_rng,
        decay_every=estimator._step_decay(),
    )
    W_avg, b_avg = estimator._pass.average(
        estimator._sgd_state, W, b,
        X.shape[0] if sample_weight is None else float(np.sum(sample_weight)))
    return W_avg, b_avg


# -- Newton's method over passes --------------------------------------------

# A pass ends when the weight given since it began reaches n_samples_per_pass
# to within this relative rounding (float32 weights summed by the caller in
# float64 differ from ours in the 8th digit).
_PASS_RTOL = 1e-6
# Armijo's sufficient decrease, and the slack below which two evaluations of
# the objective on the same rows (summed in another chunk order) are equal.
_ARMIJO = 1e-4
_ROUNDING = 1e-12
# Sparse chunks are densified for the Hessian kernel in blocks of this size.
_DENSE_BLOCK_BYTES = NEWTON_COPY_BYTES


def newton_bytes(n_labels, m, itemsize, threads):
    """Memory of the pass's Hessians: the float64 sums kept between calls, and
    a chunk's Hessians in the kernel (one set per thread and the output)."""
    return n_labels * m * m * (8 + (threads + 1) * itemsize)


def newton_budget(rows_per_pass, n_labels):
    """What a fit of the pass's rows may allocate for its per-label working
    arrays (the package's memory rule without ``X``'s own bytes), within
    scikit-learn's ``working_memory``."""
    allowed = 4 * rows_per_pass * n_labels * 8 + _MEMORY_SLACK
    return min(allowed, _working_memory_bytes())


def newton_state(estimator, problem, first):
    """partial_fit's :class:`NewtonPasses`, made or dropped for this call; None for SGD.

    Newton passes need a pass length, an L2 penalty and the Hessians within
    :func:`newton_budget`. A new pass length starts them afresh from the
    current estimate (the passes before counted rows of another pass).
    """
    passes = estimator._pass
    state = getattr(estimator, "_newton", None)
    if passes.per_pass is None or estimator.l1_ratio > 0:
        estimator._newton = None
        return None
    if state is not None and state.per_pass == passes.per_pass:
        return state
    k, d = problem.n_labels, problem.n_features
    m = d + 1 if problem.fit_intercept else d
    rows_per_pass = passes.per_pass * passes.seen_rows / max(passes.seen_weight, 1e-300)
    if newton_bytes(k, m, problem.dtype.itemsize, problem.n_threads) > newton_budget(
            rows_per_pass, k):
        estimator._newton = None
        return None
    # From scratch, SGD gives the estimate of the first pass; otherwise the
    # passes start from the model as it is (a fit's solution, SGD's estimate).
    if first:
        # All logits 0, where the loss is most curved: its quadratic model
        # there lies above the loss everywhere, so the first Newton step
        # lowers the objective (a first chunk's intercept, as SGD starts
        # from, is +-14 for a label constant in it: flat, and Newton steps
        # from there overshoot by orders of magnitude).
        W, b = np.zeros_like(estimator._W), np.zeros_like(estimator._b)
    else:
        W, b = estimator.coef_.T, estimator.intercept_
    estimator._newton = NewtonPasses(W, b, passes.per_pass, first, estimator.tol)
    return estimator._newton


def chunk_terms(estimator, problem, X, Y, sample_weight, W, b, labels):
    """The chunk's summed (not averaged) loss, gradient and Hessian at ``(W, b)``.

    For the labels ``labels`` (``W``, ``b``: their coefficients):
    :meth:`LinearBCE.newton_terms` gives them as the means over the chunk's
    weight; a sparse chunk goes to it in dense blocks of rows.
    """
    if not sparse.issparse(X):
        return _weighted(_active_terms(problem, W, b, labels),
                         _weight(X.shape[0], sample_weight))
    X = X.tocsr()
    step = max(64, _DENSE_BLOCK_BYTES // max(1, X.shape[1] * X.dtype.itemsize))
    total = None
    for start in range(0, X.shape[0], step):
        rows = slice(start, start + step)
        sw = None if sample_weight is None else sample_weight[rows]
        weight = _weight(Y[rows].shape[0], sw)
        if weight <= 0:
            continue
        block = estimator._problem(X[rows].toarray(), Y[rows], sw, estimator.pos_weight_)
        part = _weighted(_active_terms(block, W, b, labels), weight)
        total = part if total is None else tuple(t + p for t, p in zip(total, part))
    return total


def _active_terms(problem, W, b, labels):
    """``problem.newton_terms`` of the labels ``labels`` only."""
    problem.set_active(labels)
    try:
        return problem.newton_terms(W, b)
    finally:
        problem.set_active(np.arange(problem.n_labels))


def _weight(n_rows, sample_weight):
    return float(n_rows) if sample_weight is None else float(
        np.sum(sample_weight, dtype=np.float64))


def _weighted(terms, weight):
    loss, grad, hess = terms
    return loss * weight, grad * weight, hess.astype(np.float64) * weight


class NewtonPasses:
    """Newton's method on the objective of a pass, one step per pass.

    Every chunk of a pass adds its loss, gradient and exact Hessian (per
    label, intercept included) at the pass's point to running sums; once the
    pass's weight is complete, these are the data term of :meth:`fit`'s
    objective on the pass's rows, and one Newton step on them plus the
    penalty gives the point of the next pass. There is no line search
    within a pass (it would revisit the data), so it is spread over the
    passes, per label: the next pass's sums also give the objective and its
    slope at its point; a label whose objective did not decrease enough
    (Armijo) goes back to its last accepted point with a shorter step (the
    minimiser of the cubic through the two values and slopes, within [0.1,
    0.5] of the step), and the pass after that tests it. A label whose
    gradient meets fit's stopping rule stays where it is. The estimate is
    each label's last accepted point, the best known: it changes once per
    pass. From scratch, the Newton passes start from all logits 0 and SGD
    gives the estimate of the first pass (changing with every call); its
    estimate is kept for a label while it is better than the Newton
    iterate.
    """

    def __init__(self, W, b, per_pass, sgd_first, tol):
        self.per_pass = float(per_pass)
        # A label whose gradient's max-norm is at most tol (fit's stopping
        # rule) has converged: later passes skip its terms.
        self.tol = float(tol)
        self.base_W = np.array(W, dtype=np.float64)  # (n_features, n_labels)
        self.base_b = np.array(b, dtype=np.float64)
        self.trial_W, self.trial_b = self.base_W.copy(), self.base_b.copy()
        k = len(self.base_b)
        self.f_base = None  # the objective at the base point, once a pass gave it
        self.step_W, self.step_b = np.zeros_like(self.base_W), np.zeros(k)
        self.t, self.slope = np.ones(k), np.zeros(k)
        self.converged = np.zeros(k, dtype=bool)
        self.runs_sgd = bool(sgd_first)  # SGD gives the estimate of this pass
        # SGD's estimate after its pass, and its objective once the next pass gave it.
        self.sgd_W = self.sgd_b = self.f_sgd = None
        self.passes = 0
        self.n_backtracks = 0
        self._new_pass()

    def _new_pass(self):
        self.weight = 0.0
        self.sums = None
        self.sgd_loss = 0.0

    def add(self, estimator, problem, X, Y, sample_weight, sgd_estimate=None):
        """Add a chunk to the pass; at the pass's end, take the Newton step.

        ``sgd_estimate``: the estimate of this call's SGD, in the SGD pass.
        """
        dtype = problem.dtype
        labels = np.flatnonzero(~self.converged)
        if len(labels):
            terms = chunk_terms(estimator, problem, X, Y, sample_weight,
                                self.trial_W[:, labels].astype(dtype),
                                self.trial_b[labels].astype(dtype), labels)
            self.sums = terms if self.sums is None else tuple(
                s + t for s, t in zip(self.sums, terms))
        weight = _weight(X.shape[0], sample_weight)
        if self.sgd_W is not None and self.f_sgd is None:
            # The pass after SGD's also gives its estimate's loss.
            Z = problem.linear(self.sgd_W.astype(dtype), self.sgd_b.astype(dtype))
            self.sgd_loss = self.sgd_loss + problem.loss(Z) * weight
        self.weight += weight
        if self.weight < self.per_pass * (1 - _PASS_RTOL):
            return
        if self.sgd_W is not None and self.f_sgd is None:
            self.f_sgd = self.sgd_loss / self.weight + 0.5 * problem.alpha * np.einsum(
                "ij,ij->j", self.sgd_W, self.sgd_W)
        if self.runs_sgd:
            self.runs_sgd = False
            self.sgd_W = np.array(sgd_estimate[0], dtype=np.float64)
            self.sgd_b = np.array(sgd_estimate[1], dtype=np.float64)
        self._end_pass(problem.alpha)
        self.passes += 1
        self._new_pass()

    def _end_pass(self, alpha):
        labels = np.flatnonzero(~self.converged)
        if not len(labels):
            return
        # A pass that overflowed (chunks that do not tile the data) is
        # averaged over the weight it got.
        loss, grad, hess = (s / self.weight for s in self.sums)
        d = self.base_W.shape[0]
        W = self.trial_W[:, labels]
        f_trial = loss + 0.5 * alpha * np.einsum("ij,ij->j", W, W)
        grad[:d] += alpha * W
        if self.f_base is None:
            accepted = np.ones(len(labels), dtype=bool)
        else:
            t, slope, f_base = self.t[labels], self.slope[labels], self.f_base[labels]
            accepted = f_trial <= f_base + _ARMIJO * t * slope + _ROUNDING * np.abs(f_base)
        self._backtrack(labels[~accepted], f_trial[~accepted], grad[:, ~accepted])
        self._accept(labels[accepted], f_trial[accepted], grad[:, accepted],
                     hess[accepted], alpha, d)
        self.trial_W = self.base_W + self.t * self.step_W
        self.trial_b = self.base_b + self.t * self.step_b

    def _accept(self, labels, f_trial, grad, hess, alpha, d):
        """Move the labels ``labels`` to their trial points; their next steps."""
        self.base_W[:, labels] = self.trial_W[:, labels]
        self.base_b[labels] = self.trial_b[labels]
        if self.f_base is None:
            self.f_base = np.zeros(len(self.base_b))
        self.f_base[labels] = f_trial
        done = np.abs(grad).max(axis=0, initial=0.0) <= self.tol
        self.converged[labels[done]] = True
        step = _newton_directions(hess, grad, alpha, d)
        step[:, done] = 0.0
        self.step_W[:, labels] = step[:d]
        if step.shape[0] > d:
            self.step_b[labels] = step[d]
        self.slope[labels] = np.einsum("ij,ij->j", grad, step)
        self.t[labels] = 1.0

    def _backtrack(self, labels, f_trial, grad):
        """Shorter steps for the labels ``labels``, whose step did not decrease the objective.

        Along the step ``p`` from the base, ``phi(s) = f(base + s p)`` is
        known at 0 and at the rejected ``t``, value and slope: the cubic
        through them has its minimiser in ``(0, t)`` (Nocedal & Wright,
        eq. 3.59); without one (a numerically flat cubic), half the step.
        """
        if not len(labels):
            return
        self.n_backtracks += len(labels)
        d = self.base_W.shape[0]
        t, f0, d0 = self.t[labels], self.f_base[labels], self.slope[labels]
        d1 = np.einsum("ij,ij->j", grad[:d], self.step_W[:, labels])
        if grad.shape[0] > d:
            d1 += grad[d] * self.step_b[labels]
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            e1 = d0 + d1 - 3 * (f_trial - f0) / t
            e2 = np.sqrt(e1 * e1 - d0 * d1)
            best = t - t * (d1 + e2 - e1) / (d1 - d0 + 2 * e2)
        best = np.where(np.isfinite(best), best, 0.5 * t)
        self.t[labels] = np.clip(best, 0.1 * t, 0.5 * t)

    def published(self):
        """The estimate, ``(W, b)`` in float64: each label's best known point."""
        if self.f_sgd is None and self.sgd_W is not None:
            return self.sgd_W, self.sgd_b  # until the pass after SGD's compares them
        if self.f_sgd is None:
            return self.base_W, self.base_b
        sgd = self.f_sgd < self.f_base
        return np.where(sgd, self.sgd_W, self.base_W), np.where(sgd, self.sgd_b, self.base_b)
