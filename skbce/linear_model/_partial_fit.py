"""The machinery of ``MultiLabelLogistic.partial_fit``: its state between calls.

The pass over the data that it weighs its penalty against (:class:`_Pass`),
the state it starts from (:func:`start`) and one call's epoch of SGD
(:func:`epoch`), used for a stream. Newton's method over passes, used when
the pass length is known, is in :mod:`skbce.linear_model._newton_passes`;
the method itself, with its documentation, is in
:mod:`skbce.linear_model._logistic`.
"""

import numbers

import numpy as np
from sklearn.utils import check_random_state

from skbce.linear_model import _sgd


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
