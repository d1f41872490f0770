"""The pass over the chunks of data that ``MultiLabelLogistic.partial_fit`` is given."""

import hashlib

import numpy as np
from scipy import sparse


class _Pass:
    """One pass over the chunks that :meth:`MultiLabelLogistic.partial_fit` is given.

    Its weight is that of the distinct chunks seen so far, until a chunk
    comes again (the same bytes): then a pass is complete and its weight
    fixed. The penalty of each chunk's SGD steps is weighed against it, as
    :meth:`~MultiLabelLogistic.fit` weighs it against all rows: repeated
    passes converge to the fit of the data set, and a stream that never
    repeats to the fit of everything seen. The estimate is the average of
    the SGD iterates over the last pass (over everything seen, in the first),
    as ``"sgd"``'s is over the last epoch.
    """

    def __init__(self):
        self.weight = 0.0
        self.rows = 0
        self.complete = False
        self._seen = set()
        # The running average of the iterates over the current window.
        self._window_rows = 0
        self._count = 0
        self._W = self._b = None

    def add(self, X, Y, sample_weight):
        if self.complete:
            return
        key = _fingerprint(X, Y, sample_weight)
        if key in self._seen:
            self.complete, self._seen = True, None
            return
        self._seen.add(key)
        self.rows += X.shape[0]
        self.weight += X.shape[0] if sample_weight is None else float(
            np.sum(sample_weight, dtype=np.float64))

    def average(self, state, W, b, n_rows):
        """Fold the averaged iterates of this chunk (in ``state``) into the pass's."""
        if self.complete and self._window_rows >= self.rows:
            self._window_rows = self._count = 0
        self._window_rows += n_rows
        if state.n_avg:
            if self._count == 0:
                self._W, self._b = state.avg_W.copy(), state.avg_b.copy()
            else:
                share = state.n_avg / (self._count + state.n_avg)
                self._W += W.dtype.type(share) * (state.avg_W - self._W)
                self._b += b.dtype.type(share) * (state.avg_b - self._b)
            self._count += state.n_avg
        return (self._W, self._b) if self._count else (W, b)


def _fingerprint(X, Y, sample_weight):
    """A digest of a chunk's bytes: the same chunk given again has the same one."""
    digest = hashlib.blake2b(digest_size=16)
    parts = [X.data, X.indices, X.indptr] if sparse.issparse(X) else [X]
    for part in [*parts, Y] + ([] if sample_weight is None else [sample_weight]):
        part = np.ascontiguousarray(part)
        digest.update(f"{part.dtype.str}{part.shape}".encode())
        digest.update(memoryview(part).cast("B"))
    return digest.digest()
