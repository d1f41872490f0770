"""Where a dask fit's chunk problems live, and how they are built again when a worker dies.

Design: what a worker keeps for a chunk -- the chunk's in-memory problem,
a view of its active labels, newton-cg's curvature weights -- is a cache
that can vanish with the worker. Each is a :class:`ChunkFutures`, one
future per chunk together with the recipe that makes it from the chunk's
problem; the problems themselves are :class:`ChunkStates`, built by dask
from the graph of the fit's persisted blocks, wherever dask puts them, and
every later task of a chunk is pinned to its problem's worker (a chunk's
rows never move). Pinned, a task whose worker died would wait for it
forever: :meth:`ChunkStates.gather`, through which every round of tasks is
waited for, looks at the workers while it waits. A chunk whose worker is
gone is built again on the live workers (dask recomputes its blocks from
their graph if they were lost too), the futures that depend on it are
remade from their recipes when next used, and the round's task of that
chunk runs again; the other chunks' results stand. As every chunk
computes what it computed before and the client sums the chunks' results
in chunk order, the fit's result is that of a fault-free fit.

Nothing waits without a bound. Without a live worker (or a reachable
scheduler) for ``skbce.dask.timeout`` seconds (dask config, default 60),
or when a chunk's data cannot be recomputed (scattered data have no
graph), or when a chunk is lost more often than dask's
``distributed.scheduler.allowed-failures``, the fit raises an error that
names what was lost. :meth:`ChunkStates.close` releases every future of
the fit, whatever it ends with. (Released, not cancelled: dask's
``Client.cancel`` follows a task's dependents, and one that no client
holds -- a sweep's result, held only by the tasks that take its parts --
fails an assertion in its scheduler, which then drops the client.)

The problem the solvers call, :mod:`skbce.linear_model._dask_problem`,
submits its rounds through these classes; no solver learns about workers.
Measured (``benchmarks/bench_dask.py --fault``): see the scale-out page.
"""

import logging
import time
import weakref

__all__ = ["ChunkFutures", "ChunkStates", "TIMEOUT_KEY"]

logger = logging.getLogger(__name__)

# The dask config key of the longest wait without a live worker or a
# scheduler, and its default (seconds). Long enough for a nanny or a
# cluster manager to start a replacement worker.
TIMEOUT_KEY = "skbce.dask.timeout"
DEFAULT_TIMEOUT = 60.0
# The longest a wait goes before it looks at the workers (seconds): the
# delay before a lost worker is noticed. A round that finishes sooner costs
# no look at all.
_POLL = 0.5

# Called as ``_ROUND_HOOK(states, n)`` when round ``n`` of tasks (counted
# from 1 per fit) has been submitted, before it is waited for: tests kill a
# worker at a chosen point of the fit with it.
_ROUND_HOOK = None


def _timeout():
    """``skbce.dask.timeout`` from dask's config in seconds (a number, or "2 minutes")."""
    import dask
    from dask.utils import parse_timedelta

    value = dask.config.get(TIMEOUT_KEY, DEFAULT_TIMEOUT)
    try:
        seconds = parse_timedelta(value, default="seconds")
    except (KeyError, ValueError, TypeError):
        seconds = None
    if seconds is None or not seconds > 0:
        raise ValueError(f"dask config {TIMEOUT_KEY!r} must be a positive duration (seconds, "
                         f"or a string such as '2 minutes'); got {value!r}.")
    return float(seconds)


class ChunkFutures:
    """One future per chunk, and the recipe that makes chunk ``i``'s again.

    ``remake(i)`` submits what the future computes, from the current state
    of chunk ``i``; ``family[i]`` is the future, remade first if the chunk's
    problem was rebuilt since it was made (on another worker, after its own
    was lost). ``chunks`` says which chunks' futures are made now; None: all.
    """

    def __init__(self, states, remake, chunks=None):
        self.states = states
        self.remake = remake
        n = len(states.epochs)
        self.futures = [None] * n
        self.epochs = [None] * n  # the state of its chunk each future was made from
        states.families.add(self)
        for i in range(n) if chunks is None else chunks:
            self[i]

    def __getitem__(self, i):
        if self.epochs[i] != self.states.epochs[i]:
            self.set(i, self.remake(i))
        return self.futures[i]

    def set(self, i, future):
        """Chunk ``i``'s future, made from its current state."""
        self.futures[i] = future
        self.epochs[i] = self.states.epochs[i]

    def current(self, i):
        """Chunk ``i``'s future if made from its current state, else None (not remade)."""
        return self.futures[i] if self.epochs[i] == self.states.epochs[i] else None


class ChunkStates:
    """Where the chunks' problems live on the cluster, and how to build them again.

    The one place that knows about workers. Each chunk's problem is built by
    ``recipes[i]()``, a dask delayed of ``_chunk_problem`` on the chunk's
    blocks (from the graph of the persisted data, which dask recomputes if
    a block is lost), run wherever dask puts it; every later task of the
    chunk is pinned to that worker (:meth:`submit`). :meth:`gather` waits for
    a round of such tasks and rebuilds the chunks whose worker is gone.

    Parameters
    ----------
    client : distributed.Client
    recipes : list of callable
        ``recipes[i]()`` is a new dask delayed of chunk ``i``'s problem.
    rows : tuple of int
        The rows of each chunk (for messages).
    data : list
        What holds the fit's persisted data (dask arrays, delayed blocks):
        their futures are released by :meth:`close`.
    """

    def __init__(self, client, recipes, rows, data):
        import dask

        self.client = client
        self.recipes = recipes
        self.rows = rows
        self.data = data
        n = len(recipes)
        self.base = [None] * n       # the futures of the chunks' problems
        self.workers = [None] * n    # where they live
        self.epochs = [-1] * n       # how often each was built, less one
        self.losses = [0] * n
        self.lost = []               # (chunk, worker) of each loss, for messages
        self.families = weakref.WeakSet()
        self.rounds = 0
        self.allowed_losses = int(dask.config.get("distributed.scheduler.allowed-failures", 3))
        self._stalled_since = None
        self.closed = False
        try:
            self.timeout = _timeout()
            self._build(range(n))
        except BaseException:
            self.close()
            raise

    # -- tasks ---------------------------------------------------------------------

    def submit(self, i, func, *args):
        """``func(*args)`` as a task on chunk ``i``'s worker (pinned: dask would
        otherwise move a chunk's data to balance the load)."""
        return self.client.submit(func, *args, workers=[self.workers[i]],
                                  allow_other_workers=False, pure=False)

    def gather(self, family, chunks=None):
        """The results of ``family``'s futures of ``chunks`` (None: all), in chunk order.

        Waits for them; a chunk whose worker died is rebuilt, and its task
        (remade by the family's recipe) runs again, on its new worker.
        """
        import distributed

        chunks = range(len(self.epochs)) if chunks is None else chunks
        self.rounds += 1
        if _ROUND_HOOK is not None:
            _ROUND_HOOK(self, self.rounds)
        # A result lost after its task finished: Client.gather would wait for
        # it forever (it is recomputed where its worker was). Gathers get a
        # short patience, doubled each time it runs out; meanwhile the
        # workers are looked at.
        look, patience, failed = False, 4 * _POLL, 0
        while True:
            futures = {i: family[i] for i in chunks}
            lost = self._wait(futures, pinned=True, look=look)
            if lost:
                # With them, the other chunks of their dead workers: one
                # build for all, rather than one per later round.
                alive = self._live_workers()
                if alive is not None:
                    lost |= {i for i, worker in enumerate(self.workers) if worker not in alive}
                self._rebuild(sorted(lost))
                look = False
                continue
            try:
                return self.client.sync(self.client._gather, list(futures.values()),
                                        callback_timeout=patience)
            except (distributed.TimeoutError, distributed.CancelledError, OSError):
                look = True
                failed += patience >= self.timeout
                if failed > self.allowed_losses:
                    raise
                patience = min(2 * patience, self.timeout)

    def _wait(self, futures, pinned, look=False):
        """Wait for ``futures`` (chunk -> future); the chunks whose future was lost.

        A task's own error is raised. A pinned task whose worker is gone
        would wait for it forever: its chunk is lost too (and, if ``look``,
        a finished one whose worker is gone).
        """
        import distributed
        from distributed.scheduler import KilledWorker

        while True:
            try:
                distributed.wait(list(futures.values()), timeout=_POLL)
            except (distributed.TimeoutError, distributed.CancelledError):
                pass
            lost, pending = set(), []
            for i, future in futures.items():
                status = future.status
                if status == "pending":
                    pending.append(i)
                elif status == "error":
                    if not isinstance(future.exception(), KilledWorker):
                        future.result()  # raises the chunk's error (e.g. NaN in X)
                    lost.add(i)
                elif status != "finished":
                    lost.add(i)  # cancelled (with its lost dependencies) or lost
            if lost or not (pending or look):
                return lost
            alive = self._live_workers()
            if pinned and alive is not None:
                lost = {i for i in (futures if look else pending)
                        if self.workers[i] not in alive}
                if lost or not pending:
                    return lost

    def _live_workers(self):
        """The addresses of the live workers; raises after ``timeout`` s without any."""
        asked = time.monotonic()
        try:
            alive = set(self._ask_scheduler("ncores", timeout=max(_POLL, self.timeout / 4)))
        except Exception:  # the scheduler cannot be reached
            alive = None
        if alive:
            self._stalled_since = None
            return alive
        if self._stalled_since is None:
            self._stalled_since = asked
        if time.monotonic() - self._stalled_since > self.timeout:
            what = "no worker was alive" if alive is not None else "the scheduler was unreachable"
            raise TimeoutError(
                f"The dask fit stopped: {what} for {self.timeout:g} s (dask config "
                f"{TIMEOUT_KEY!r}). {self._describe_losses()}")
        return alive

    def _ask_scheduler(self, method, timeout=None, **kwargs):
        """The scheduler's answer to ``method(**kwargs)``, waited for at most ``timeout``
        seconds (default: the fit's)."""
        return self.client.sync(getattr(self.client.scheduler, method),
                                callback_timeout=timeout or self.timeout, **kwargs)

    def _describe_losses(self):
        if not self.lost:
            return "No chunk had been lost before."
        lost = ", ".join(f"chunk {i} ({self.rows[i]} rows) with worker {worker}"
                         for i, worker in self.lost)
        return f"Lost so far: {lost}."

    # -- building the chunks' problems ----------------------------------------------

    def _build(self, chunks):
        """Build the problems of ``chunks``, wherever dask puts them, and note where."""
        pending = list(chunks)
        while pending:
            futures = dict(zip(pending, self.client.compute([self.recipes[i]()
                                                             for i in pending])))
            try:
                lost = self._wait(futures, pinned=False)
            except BaseException:
                self._release(futures.values())
                raise
            cancelled = [i for i in lost if futures[i].status == "cancelled"]
            if cancelled:
                self._release(futures.values())
                raise RuntimeError(
                    "The dask fit stopped: the data of chunk(s) "
                    + ", ".join(f"{i} ({self.rows[i]} rows)" for i in cancelled)
                    + " were lost and cannot be recomputed (scattered data have no graph to "
                    "recompute them from: build the arrays from a graph, e.g. da.from_array "
                    "or da.from_zarr, or replicate them). " + self._describe_losses())
            for i in lost:
                self._count_loss(i, None)
            holders = self._ask_scheduler(
                "who_has", keys=[futures[i].key for i in futures if i not in lost])
            pending = []
            for i, future in futures.items():
                where = holders.get(future.key) if i not in lost else None
                if where:
                    self.base[i], self.workers[i] = future, where[0]
                    self.epochs[i] += 1
                else:  # lost before it could be used
                    self._release([future])
                    pending.append(i)
            del futures, holders

    def _rebuild(self, chunks):
        """Build the problems of ``chunks`` again: their workers died (or their tasks)."""
        start = time.perf_counter()
        for i in chunks:
            self._count_loss(i, self.workers[i])
        self._forget(chunks)
        self._build(chunks)
        logger.warning(
            "dask fit: rebuilt chunk(s) %s (%s rows) lost with worker(s) %s in %.2f s",
            ", ".join(map(str, chunks)), sum(self.rows[i] for i in chunks),
            ", ".join(sorted({str(w) for i, w in self.lost[-len(chunks):]})),
            time.perf_counter() - start)

    def _count_loss(self, i, worker):
        self.lost.append((i, worker))
        self.losses[i] += 1
        if self.losses[i] > self.allowed_losses:
            raise RuntimeError(
                f"The dask fit stopped: chunk {i} ({self.rows[i]} rows) was lost "
                f"{self.losses[i]} times (dask config 'distributed.scheduler.allowed-failures' "
                f"is {self.allowed_losses}): its tasks may be killing their workers (memory?). "
                + self._describe_losses())

    # -- cleaning up ---------------------------------------------------------------

    def _forget(self, chunks):
        """Release every future made from the problems of ``chunks``.

        Their worker is gone: the tasks pinned to it would wait for it, and
        dask would recompute the problems they depend on, for nothing. The
        families remake theirs from the rebuilt problems when next used.
        """
        for family in list(self.families):
            self._release([family.futures[i] for i in chunks])
            for i in chunks:
                family.futures[i] = None
        self._release([self.base[i] for i in chunks])
        for i in chunks:
            self.base[i] = None

    @staticmethod
    def _release(futures):
        for future in futures:
            if future is not None:
                future.release()

    def close(self):
        """Release every future of the fit, and its persisted data."""
        from distributed import futures_of

        if self.closed:
            return
        self.closed = True
        self._forget(range(len(self.base)))
        self._release(futures_of(self.data))
        self.data = self.recipes = None
