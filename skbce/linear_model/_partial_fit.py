"""The pass over the data that ``MultiLabelLogistic.partial_fit`` weighs its penalty against."""

import numbers

import numpy as np


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
