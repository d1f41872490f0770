"""The problem interface of the solvers (:mod:`skbce.linear_model._problem`) on dask chunks.

Design: the in-memory solvers (newton-cg, newton-cholesky, lbfgs, gd)
drive a :class:`DaskLinearBCE` exactly as they drive an in-memory
:class:`LinearBCE`. Each chunk of rows becomes an in-memory ``LinearBCE``
living on a worker, built once from the persisted blocks of ``X`` and
``Y``; its sample weights are normalised by the total weight of *all*
chunks, so that its loss, gradient and Hessian-vector products are its
share of the global ones, computed by the same Cython kernels.
Coefficient-sized results are gathered and summed in chunk order, so the
result does not depend on which worker finishes first.

Per-sample arrays are not kept where they can be recomputed. Every array
of logits the solvers form is affine in coefficients -- ``X @ W + b``, a
direction ``X @ V + vb``, and their sums and per-label multiples -- so the
solvers' logits are :class:`AffineLogits`, the pair ``(A, c)`` of
``X @ A + c``, held on the client: their arithmetic is coefficient
arithmetic, and nothing per-sample travels or waits on the workers. A
worker forms the logits of a chunk only inside the task that needs them,
in row blocks of about 1 MiB of logits
(:func:`~skbce.linear_model._dask_chunks._sweep`), and one task per chunk gives
the loss, the gradient ``X.T @ G`` and the sums of the gradient and the
curvature in one sweep. What a worker keeps between tasks is newton-cg's
curvature weights, one value per sample and label (:class:`Curvature`);
and once the solver drops them, the next sweep writes into their memory.
On 2M x 1000 sparse float32 rows in chunks of 250 000, 20 labels (the
benchmark), a worker's peak went from 3.8x the bytes of its chunks, when
the logits, their gradient and curvature lived as arrays on the workers,
to 1.6x, and the fit from 1.4x the in-memory fit's time to 0.9x.

A loss evaluated at a point newton-cg is likely to move to (its line
search's full step, nearly always accepted) also gives the gradient and
curvature there, in the same sweep (:meth:`DaskLinearBCE.loss`): the next
iteration then starts without a pass over the data of its own.

What a worker keeps is a cache that can vanish with the worker: every
round of tasks goes through :mod:`skbce.linear_model._dask_states`, which
knows where each chunk's problem lives, builds it again from the data's
graph when its worker dies, and remakes what depended on it (a view of its
labels, newton-cg's curvature) from the recipes this module gives it. The
results are those of a fault-free fit; the solvers know nothing of it.

What does not apply to a distributed problem says so through the interface
rather than through branches in the solvers: there is no float32 twin of
the chunks (``mixed_precision_cg`` is False). The Gram preconditioner does
apply to dense chunks: its matrix is a sum over rows, coefficient-sized.

This module is the client side, the problem the solvers call; the tasks it
runs on each chunk are :mod:`skbce.linear_model._dask_chunks`, the
per-sample arrays it hands the solvers :mod:`skbce.linear_model._dask_logits`,
where the chunks' states live :mod:`skbce.linear_model._dask_states`.
"""

import copy
import functools
import operator
import weakref

import numpy as np
from scipy import sparse

from skbce.linear_model._dask_chunks import (
    _call,
    _chunk_epoch,
    _chunk_problem,
    _hessp,
    _row_norm_summary,
    _sweep,
    _sweep_part,
    _with_labels,
)
from skbce.linear_model._dask_logits import AffineLogits, Curvature, LogitGradient
from skbce.linear_model._dask_states import ChunkFutures, ChunkStates
from skbce.linear_model._problem import (
    GRAM_MAX_FEATURES,
    LinearBCE,
    _working_memory_bytes,
    gram_eigh,
)

__all__ = ["AffineLogits", "DaskLinearBCE"]

def _client():
    import distributed

    try:
        return distributed.get_client()
    except ValueError:
        raise ValueError(
            "MultiLabelLogistic.fit on dask arrays trains on a dask.distributed cluster: "
            "create a distributed.Client first (Client(LocalCluster()) on one machine), "
            "or fit on in-memory arrays (X.compute())."
        ) from None


def _sum_in_order(parts):
    """The sum of gathered per-chunk results, in chunk order (deterministic)."""
    return functools.reduce(operator.add, parts)


# -- the problem ---------------------------------------------------------------


class DaskLinearBCE(LinearBCE):
    """:class:`LinearBCE` over the row chunks of dask arrays.

    Parameters
    ----------
    X : dask array of shape (n_samples, n_features)
        Floating point, blocks of whole rows (dense or CSR chunks).
    Y : dask array of shape (n_samples, n_labels)
        Targets, uint8 (hard) or of ``X``'s dtype, with ``X``'s row chunks.
    sample_weight : dask array of shape (n_samples,) or None
        With ``X``'s row chunks.
    pos_weight, alpha, beta, fit_intercept, label_smoothing
        As for :class:`LinearBCE`.

    The futures of the problem's persisted data are its own: :meth:`close`
    releases them with everything it computed on the cluster.
    """

    def __init__(self, X, Y, sample_weight, pos_weight, alpha, beta, fit_intercept,
                 label_smoothing=0.0):
        import dask

        client = _client()
        self.dtype = np.dtype(X.dtype)
        self.n_samples, self.n_features = X.shape
        self.n_labels = self.total_labels = Y.shape[1]
        self.alpha, self.beta = float(alpha), float(beta)
        self.fit_intercept = fit_intercept
        self.label_smoothing = float(label_smoothing)
        if pos_weight is not None:
            pos_weight = np.asarray(pos_weight, dtype=self.dtype)
        self.pw_all = pos_weight
        self.pw_scalar = 1.0
        self._sparse_chunks = sparse.issparse(X._meta)
        total = (float(self.n_samples) if sample_weight is None
                 else float(sample_weight.sum(dtype=np.float64).compute()))
        # Empty chunks hold nothing to compute.
        keep = [i for i, size in enumerate(X.chunks[0]) if size > 0]
        self.rows = tuple(X.chunks[0][i] for i in keep)
        x_blocks = X.to_delayed().ravel()
        y_blocks = Y.to_delayed().ravel()
        w_blocks = (sample_weight.to_delayed().ravel() if sample_weight is not None
                    else [None] * len(x_blocks))
        blocks = [(x_blocks[i], y_blocks[i], w_blocks[i]) for i in keep]
        options = (total, pos_weight, fit_intercept, self.label_smoothing)

        def recipe(i):
            # A new key each time: a rebuilt problem is a new task.
            return dask.delayed(_chunk_problem, pure=False)(*blocks[i], *options)

        self.states = ChunkStates(client, [functools.partial(recipe, i) for i in range(len(keep))],
                                  self.rows, [X, Y, sample_weight, blocks])
        try:
            states = self.states
            self._all_labels = ChunkFutures(states, lambda i: states.base[i])
            self._cache = {}
            # The last loss() call's point and, while it pays, its gradient and
            # curvature, computed ahead of time (see loss()).
            self._ahead = None
            self._speculate, self._wants = False, True
            self._spare = None  # blocks of curvature weights no longer used
            self.set_active(np.arange(self.n_labels))
        except BaseException:
            self.close()
            raise

    def close(self):
        """Release every future of the fit on the cluster and its persisted data (also
        those of its subproblems, which share its states)."""
        self._ahead = self._spare = None
        self.states.close()

    @property
    def client(self):
        return self.states.client

    @property
    def workers(self):
        """The worker of each chunk's problem."""
        return tuple(self.states.workers)

    def _derive(self, func, *args, on):
        """``func(on[i], *args)`` for every chunk ``i``, as futures remade when needed."""
        states = self.states
        return ChunkFutures(states, lambda i: states.submit(i, func, on[i], *args))

    def _round(self, func, *args, on=None, per_chunk=()):
        """The results of ``func(on[i], *args, *per_chunk[i])`` of every chunk ``i``."""
        on = self.chunks if on is None else on
        states = self.states
        return states.gather(ChunkFutures(
            states, lambda i: states.submit(i, func, on[i], *args, *[p[i] for p in per_chunk])))

    def _method_sum(self, method, *args, on=None):
        return _sum_in_order(self._round(_call, method, *args, on=on))

    # -- labels -----------------------------------------------------------------

    def set_active(self, labels):
        labels = np.asarray(labels)
        if getattr(self, "active", None) is not None and np.array_equal(labels, self.active):
            return
        self.active = labels
        self._ahead = None
        self.chunks = self._derive(_with_labels, None, self.active, on=self._all_labels)

    def subproblem(self, labels):
        labels = np.asarray(labels)
        sub = copy.copy(self)
        sub.n_labels = len(labels)
        sub.pw_all = None if self.pw_all is None else self.pw_all[labels].copy()
        sub._all_labels = self._derive(_with_labels, labels, np.arange(len(labels)),
                                       on=self._all_labels)
        sub._cache = self._cache  # what depends on X alone is shared
        sub.active = sub._ahead = sub._spare = None
        sub.set_active(np.arange(sub.n_labels))
        return sub

    # -- what depends on X alone -------------------------------------------------

    def gram_eig(self):
        """The Gram preconditioner's eigendecomposition, from the chunks' Gram matrices.

        ``A.T S A`` is a sum over rows: each chunk forms its own (coefficient-
        sized, ``(d + 1)^2``), the client adds them and decomposes the sum.
        None where :meth:`gram_bytes` says it is not used (sparse chunks, many
        features): CG then takes the diagonal preconditioner.
        """
        if not self.gram_bytes():
            return None
        if "gram" not in self._cache:
            self._cache["gram"] = gram_eigh(self._method_sum("gram_matrix", on=self._all_labels))
        return self._cache["gram"]

    def gram_bytes(self):
        if self._sparse_chunks or self.n_features > GRAM_MAX_FEATURES:
            return 0
        m = self.n_features + 1 if self.fit_intercept else self.n_features
        size = 2 * self._gram_dtype().itemsize * m * m
        return size if size <= _working_memory_bytes() else 0

    def mixed_precision_cg(self):
        """False: no float32 twin of the chunks is made (it would double their memory)."""
        return False

    def low_precision(self):
        return self

    def product_size(self):
        return self.n_samples * self.n_features

    def squared_column_means(self):
        if "squares" not in self._cache:
            self._cache["squares"] = self._method_sum("squared_column_means",
                                                      on=self._all_labels)
        return self._cache["squares"]

    def nonzero_weights(self):
        if "nonzeros" not in self._cache:
            self._cache["nonzeros"] = self._method_sum("nonzero_weights", on=self._all_labels)
        return self._cache["nonzeros"]

    def squared_backward(self, D):
        raise NotImplementedError("squared_backward: use squared_column_means.")

    def lipschitz(self):
        """A bound on the largest curvature: the sum of the chunks' bounds.

        The largest eigenvalue of a sum of positive semi-definite matrices is
        at most the sum of theirs, and about equal to it when the chunks are
        alike; ``gd``'s backtracking corrects the rest.
        """
        return self._method_sum("lipschitz", on=self._all_labels) + self.alpha

    # -- SGD ---------------------------------------------------------------------

    def squared_row_norm_summary(self, feature_weights):
        """The largest and the mean of the rows' squared norms, from the chunks'."""
        parts = self._round(_row_norm_summary, feature_weights, on=self._all_labels)
        return (max(p[0] for p in parts),
                _sum_in_order([p[1] for p in parts]) / self.n_samples)

    def run_epoch(self, epoch, W, b, state, *, rng, **options):
        """``epoch`` (SGD's pass over the rows) over the chunks in turn, each on its worker.

        The chunks come in a shuffled order, and each shuffles its own rows;
        the coefficients and SGD's state travel from chunk to chunk (they are
        coefficient-sized), so the chunks' epochs are one pass of SGD over
        all rows, with the step size decaying as it does in memory. Each
        chunk's epoch averages its own iterates; their average over the pass,
        weighted by the iterates each averaged, is the pass's.
        """
        order = rng.permutation(len(self.rows))
        seeds = rng.integers(np.iinfo(np.int64).max, size=len(order))
        total, avg_W, avg_b = 0, None, None
        states, chunks = self.states, self.chunks
        for i, seed in zip(order, seeds):
            args = (epoch, W, b, state, seed, self.alpha, self.beta, options)
            (W_new, b_new, chunk_state), = states.gather(ChunkFutures(
                states, lambda i, args=args: states.submit(i, _chunk_epoch, chunks[i], *args),
                chunks=[i]), chunks=[i])
            W[...], b[...] = W_new, b_new
            vars(state).update(vars(chunk_state))
            if state.n_avg:
                share = W.dtype.type(state.n_avg / (total + state.n_avg))
                if total == 0:
                    avg_W, avg_b = state.avg_W.copy(), state.avg_b.copy()
                else:
                    avg_W += share * (state.avg_W - avg_W)
                    avg_b += share * (state.avg_b - avg_b)
                total += state.n_avg
        state.n_avg = total
        if total:
            state.avg_W, state.avg_b = avg_W, avg_b
        return W, b

    # -- logits ------------------------------------------------------------------

    def _logits(self, A, c):
        A = np.ascontiguousarray(A, dtype=self.dtype)
        c = (np.broadcast_to(np.asarray(c, dtype=self.dtype), (A.shape[1],)).copy()
             if self.fit_intercept else np.zeros(A.shape[1], self.dtype))
        return AffineLogits(A, c, self.n_samples)

    def empty_logits(self, n_active):
        return self._logits(np.zeros((self.n_features, n_active)), 0)

    def linear(self, W, b):
        return self._logits(W, b)

    def direction(self, V, vb):
        return self._logits(V, vb)

    @staticmethod
    def compact(Z):
        return Z

    # -- products and the loss ---------------------------------------------------

    def backward(self, G):
        return G.backward.copy()

    def hessp(self, V, vb, D):
        V = np.ascontiguousarray(V, dtype=self.dtype)
        vb = np.asarray(vb, dtype=self.dtype)
        parts = self._round(_hessp, V, vb, D.cols, per_chunk=[D.blocks])
        return (_sum_in_order([p[0] for p in parts]), _sum_in_order([p[1] for p in parts]))

    def _sweep(self, Z, cols, want_grad, want_hess, hess_dtype):
        """Submit the sweep of every chunk at logits ``Z``: ``(futures of the sums, of H)``.

        The curvature is written into the blocks of curvature weights that
        the solver no longer holds, if any: a worker holds one such block
        per chunk, not the old one while the new one is made. A block of
        ``H`` lost with its worker is made again by a sweep of its chunk
        alone (into new memory).
        """
        states, chunks, args = self.states, self.chunks, (Z.A, Z.c, cols)
        spare = [self._spare if want_hess else None]
        self._spare = None
        H = None
        if want_hess:
            H = ChunkFutures(states, lambda i: states.submit(
                i, _sweep_part, 1, chunks[i], *args, False, True, hess_dtype), chunks=())

        def sweep(i):
            reuse = None if spare[0] is None else spare[0].current(i)
            result = states.submit(i, _sweep, chunks[i], *args, want_grad, want_hess,
                                   hess_dtype, reuse)
            if H is not None:
                H.set(i, states.submit(i, operator.getitem, result, 1))
            return states.submit(i, operator.getitem, result, 0)

        sums = ChunkFutures(states, sweep)
        spare[0] = None  # (sweeps remade later write into new memory)
        return sums, H

    def loss_grad_logits(self, Z, want_grad=True, want_hess=False, cols=None,
                         hess_dtype=None):
        hess_dtype = np.dtype(hess_dtype or self.dtype)
        ahead = None
        if want_grad:
            # Did the last loss() evaluate this very point? Then it was worth
            # computing this ahead of time, and is again next time.
            ahead, self._ahead = self._ahead, None
            hit = (ahead is not None and cols is None
                   and np.array_equal(ahead["A"], Z.A) and np.array_equal(ahead["c"], Z.c))
            self._speculate, self._wants = hit, want_hess
            if not (hit and ahead["sums"] is not None and ahead["want_hess"] >= want_hess
                    and ahead["hess_dtype"] == hess_dtype):
                if ahead is not None and ahead["H"] is not None and self._spare is None:
                    # Curvature computed ahead for nothing: its memory serves the sweep.
                    self._spare = _Spare(ahead["H"])
                ahead = None
        if ahead is not None:
            sums, H = ahead["sums"], ahead["H"]
        else:
            sums, H = self._sweep(Z, cols, want_grad, want_hess, hess_dtype)
        return self._results(self.states.gather(sums), H, want_grad, want_hess, hess_dtype)

    def _results(self, parts, H, want_grad, want_hess, hess_dtype):
        loss = _sum_in_order([p[0] for p in parts])
        out = [loss]
        if want_grad:
            out.append(LogitGradient(_sum_in_order([p[1] for p in parts]),
                                     _sum_in_order([p[2] for p in parts]), self.n_samples))
        else:
            out.append(None)
        if want_hess:
            # Once no Curvature uses these blocks, the next sweep writes into them.
            weakref.finalize(H, self._recycle, _Spare(H))
            out.append(Curvature(H, None, _sum_in_order([p[3] for p in parts]),
                                 self.n_samples, hess_dtype))
        return tuple(out)

    def _recycle(self, blocks):
        if not self.states.closed:
            self._spare = blocks

    def loss(self, Z):
        """The loss at ``Z``; also, ahead of time, what the next iteration may want there.

        A solver that evaluates the loss alone at a point and then moves to it
        (newton-cg's line search, whose full step is nearly always taken)
        next asks for the gradient there: while that keeps happening, the
        sweep computes the gradient (and the curvature, if the last request
        wanted it) now, at the cost of its backward product, and saves the
        next iteration a pass over the data of its own. A solver that moves
        elsewhere (gd, from an extrapolated point) gets the loss alone.
        """
        if self._speculate:
            sums, H = self._sweep(Z, None, True, self._wants, self.dtype)
        else:
            sums, H = self._sweep(Z, None, False, False, self.dtype)
        parts = self.states.gather(sums)
        self._ahead = dict(A=Z.A, c=Z.c, want_hess=self._wants and self._speculate,
                           hess_dtype=self.dtype, sums=sums if self._speculate else None, H=H)
        return _sum_in_order([p[0] for p in parts])

    def newton_terms(self, W, b):
        """Loss, gradient and exact Hessian per label: sums over rows, so over chunks."""
        if self._sparse_chunks:
            raise ValueError("newton_terms needs a dense X.")
        W = np.asarray(W, dtype=self.dtype)
        parts = self._round(_call, "newton_terms", W, b)
        return tuple(_sum_in_order([part[i] for part in parts]) for i in range(3))


class _Spare:
    """The blocks of curvature weights no one uses: their memory serves the next sweep.

    Holds the futures (not the :class:`ChunkFutures`, whose end frees
    them); a block made before its chunk was rebuilt is not used.
    """

    def __init__(self, blocks):
        self.states, self.futures, self.epochs = blocks.states, blocks.futures, blocks.epochs

    def current(self, i):
        return self.futures[i] if self.epochs[i] == self.states.epochs[i] else None
