"""Data-parallel training and sharded reconstruction on Dask distributed.

A bilevel gradient is a sum over training pairs and reconstructions are independent per
signal, so both split into parts that run on the workers of a ``distributed.Client``
(Rocklin 2015, "Dask: parallel computation with blocked algorithms and task scheduling"; the
Dask distributed documentation, "Futures" and "Data locality"):

* :class:`DaskGradient`, the :class:`~pdunroll.learning.training.MinibatchGradient` of
  ``train(..., client=client)``: the training pairs are scattered once, in contiguous shards;
  each step sends the current model (its parameters) to the workers, each shard's
  worker computes the loss and gradient sums of the minibatch pairs it holds, with the
  backend of the data, and the client adds the partial sums in shard order (so the result
  depends on the number of shards, never on which worker ran what or when);
* :func:`reconstruct_parts` and :func:`loss_sum_parts`: one Chambolle-Pock call per chunk of
  signals on the workers, results collected in chunk order.

Faults: a part whose data was lost with its worker (a killed process, a lost machine) is sent
again from the client's copy and recomputed, up to ``retries`` times; a lost connection to
the scheduler raises :class:`ConnectionError`, and :func:`~pdunroll.train` saves its
checkpoint before the error propagates. Dask itself is imported only here, when used
(``pip install dask distributed``, or from a checkout ``pip install -e ".[distributed]"``).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time

import numpy as np

from .. import tree
from ..model import StepSizes
from ..unroll.forward import solve
from ..unroll.gradient import gradient_unchecked, squared_loss
from ..unroll.plan import Plan

__all__ = ["DaskGradient", "check_client", "connected", "dask_gradient", "import_distributed",
           "local_cluster", "loss_sum_parts", "reconstruct_parts"]

#: Dask's nanny starts workers with MALLOC_TRIM_THRESHOLD_=65536 (the Dask distributed docs,
#: "Worker Memory Management"), which also fixes glibc's mmap threshold at 128 kB: every
#: MB-sized iterate of the unrolled solver is then mapped and unmapped anew, and a gradient
#: costs about twice the CPU time it costs in a plain process (measured, see the docs'
#: "Beyond one process" page). None unsets it.
UNTRIMMED = {"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}


_TIMEOUTS = (TimeoutError, asyncio.TimeoutError)  # distinct classes before Python 3.11
_DIRECT_BYTES = 8 * 2**20  # up to this size (model × tasks) the model travels with the tasks


def import_distributed(name: str):
    """The ``distributed`` package; without it an ImportError saying that the argument
    ``name`` (a keyword such as ``client``, or an option such as ``--workers``) needs it and
    how to install it."""
    try:
        import distributed
    except ImportError as err:
        what = name if name.startswith("-") else f"{name}="
        raise ImportError(f"{what} needs Dask distributed: pip install dask distributed "
                          "(from a checkout also: pip install -e \".[distributed]\")") from err
    return distributed


def check_client(client, name: str = "client"):
    """``client`` if it is a running ``distributed.Client``; a clear error otherwise."""
    distributed = import_distributed(name)
    if not isinstance(client, distributed.Client):
        raise TypeError(f"{name} must be a dask.distributed Client, got "
                        f"{type(client).__name__}")
    if client.status != "running":
        raise ValueError(f"{name} is not connected to a scheduler (status {client.status!r})")
    return client


@contextlib.contextmanager
def connected(client, name: str = "client"):
    """``client`` itself if it is a ``distributed.Client``; for a scheduler address (str), a
    Client connected to it for the ``with`` block and closed after."""
    distributed = import_distributed(name)
    if not isinstance(client, str):
        if not isinstance(client, distributed.Client):
            raise TypeError(f"{name} must be a dask.distributed Client or a scheduler address, "
                            f"got {type(client).__name__}")
        yield check_client(client, name)
        return
    try:
        c = distributed.Client(client, timeout=30, set_as_default=False)
    except (OSError, ValueError, TypeError, *_TIMEOUTS) as err:
        raise ValueError(f"{name} {client}: cannot connect to a Dask scheduler ({err})") from err
    with c:
        yield c


def local_cluster(n_workers: int, **options):
    """A ``distributed.LocalCluster`` of ``n_workers`` single-threaded worker processes,
    started without Dask's malloc trimming (:data:`UNTRIMMED`); ``options`` go to
    ``LocalCluster``. Use it as a context manager, with ``distributed.Client(cluster)``."""
    import dask
    from distributed import LocalCluster

    if isinstance(n_workers, bool) or not isinstance(n_workers, int) or n_workers < 1:
        raise ValueError(f"n_workers must be a positive integer, got {n_workers!r}")
    kw = dict(threads_per_worker=1, processes=True, dashboard_address=":0")
    with dask.config.set(UNTRIMMED):
        return LocalCluster(n_workers=n_workers, **{**kw, **options})


def _n_workers(client) -> int:
    n = len(client.scheduler_info().get("workers", {}))
    if n == 0:
        client.wait_for_workers(1, timeout=60)
        n = len(client.scheduler_info().get("workers", {}))
    return max(n, 1)


class _Parts:
    """Pieces of data held on the workers: scattered once, sent again from the client's copy
    if a worker holding one is lost."""

    def __init__(self, client, pieces: list, retries: int):
        self.client, self.pieces, self.retries = client, pieces, retries
        self.workers = _n_workers(client)
        self.futures = client.scatter(pieces, hash=False)

    def _resend_lost(self) -> int:
        """Send the pieces whose worker was lost again, each to the worker holding the fewest
        pieces, after waiting a little for a restarted worker (a nanny restarts a killed one),
        so that the parts stay spread over the workers."""
        lost = [i for i, f in enumerate(self.futures) if f.status != "finished"]
        if not lost:
            return 0
        try:
            self.client.wait_for_workers(self.workers, timeout=10)
        except _TIMEOUTS:  # fewer workers now: spread over those there are
            pass
        held = {w: 0 for w in self.client.scheduler_info()["workers"]}
        kept = [f for f in self.futures if f.status == "finished"]
        for addresses in self.client.who_has(kept).values():
            for w in addresses:
                held[w] = held.get(w, 0) + 1
        for i in lost:
            target = min(held, key=held.get)
            self.futures[i] = self.client.scatter(self.pieces[i], workers=[target], hash=False)
            held[target] += 1
        return len(lost)

    def map(self, fn, jobs: list[tuple[int, tuple]], shared) -> list:
        """``fn(piece, shared, *args)`` for each ``(part, args)`` in ``jobs`` on the workers,
        results in the order of ``jobs``. ``shared`` (e.g. the model) is sent with each task
        when small, else broadcast to every worker first."""
        try:
            from distributed.client import FutureCancelledError
        except ImportError:  # older distributed
            from distributed.utils import CancelledError as FutureCancelledError

        from dask.sizeof import sizeof

        # a small model goes with each task (one round trip), a large one is broadcast first
        params = getattr(getattr(shared, "operator", None), "params", None)
        nbytes = sizeof(shared) if params is None else sum(map(sizeof, tree.flatten(params)))
        direct = nbytes * len(jobs) <= _DIRECT_BYTES
        error = None
        for attempt in range(self.retries + 1):
            try:
                if self.client.status != "running":
                    raise ConnectionError(f"the Dask client is not connected (status "
                                          f"{self.client.status!r})")
                if attempt:
                    self._resend_lost()
                common = shared if direct else self.client.scatter(shared, broadcast=True,
                                                                    hash=False)
                futures = [self.client.submit(fn, self.futures[p], common, *args, pure=False)
                           for p, args in jobs]
                results = self.client.gather(futures)
                del common, futures
                return results
            except (FutureCancelledError, OSError, *_TIMEOUTS) as err:
                # CommClosedError is an OSError: either a worker went away (the scheduler
                # still answers: send the lost parts again and retry) or the scheduler did
                error = err
                time.sleep(0.2 * (attempt + 1))  # let the client notice a lost scheduler
                if self.client.status != "running":
                    raise ConnectionError(
                        f"lost the connection to the Dask scheduler ({type(err).__name__}: "
                        f"{err})") from err
        raise RuntimeError(f"Dask workers were lost {self.retries + 1} times in a row "
                           f"({type(error).__name__}: {error}); giving up") from error


def _check_dtypes(got, expected) -> None:
    """Workers that computed in another precision than the client's arrays (e.g. JAX workers
    without x64 turn float64 into float32 when they unpickle) give a clear error, not a
    silently rounded result."""
    for g, e in zip(got, expected, strict=True):
        if str(g.dtype) != str(e.dtype):
            raise TypeError(f"the Dask workers computed in {g.dtype}, the client's arrays are "
                            f"{e.dtype}: start the workers with the same backend settings "
                            f"(for JAX float64: JAX_ENABLE_X64=1 in the workers' environment)")


def _part_gradient(shard, model, local, plan: Plan):
    """Loss and gradient sums of the pairs ``local`` of one shard with ``plan`` (with this
    step's step sizes; runs on a worker; the loss a 0-d array)."""
    x_tilde, x_true = shard
    xp = model.operator.xp
    idx = xp.asarray(local, device=model.operator.device)
    xb, tb = xp.take(x_tilde, idx, axis=0), xp.take(x_true, idx, axis=0)
    res = gradient_unchecked(model, xb, squared_loss(tb, on_device=True), plan)
    return res.loss, res.operator  # the loss a 0-d array: no host round trip on the worker


class DaskGradient:
    """:class:`~pdunroll.learning.training.MinibatchGradient` on the workers of ``client``.

    ``plan``: the run's :class:`~pdunroll.unroll.plan.Plan` (method, L, weights; each call's
    step sizes complete it). The pairs are split into ``shards`` contiguous shards (default:
    one per worker) and scattered once. A call sends the model and the plan to the workers,
    computes each shard's part of the minibatch where the shard lives and adds the parts in
    shard order on the client.
    ``retries``: how often a step is repeated after a worker holding a shard was lost.
    """

    def __init__(self, client, x_tilde, x_true, plan: Plan, *, shards: int | None = None,
                 retries: int = 3):
        self.client = check_client(client)
        n = x_tilde.shape[0]
        k = _n_workers(client) if shards is None else shards
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
            raise ValueError(f"shards must be a positive integer, got {shards!r}")
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ValueError(f"retries must be a non-negative integer, got {retries!r}")
        self.bounds = np.linspace(0, n, min(int(k), n) + 1).round().astype(np.int64)
        self.plan = plan
        self._parts = _Parts(client, [(x_tilde[a:b, ...], x_true[a:b, ...])
                                      for a, b in zip(self.bounds[:-1], self.bounds[1:],
                                                      strict=True)], retries)

    @property
    def shards(self) -> int:
        return len(self.bounds) - 1

    def __call__(self, model, indices, steps: StepSizes):
        indices = np.asarray(indices, dtype=np.int64)
        owner = np.searchsorted(self.bounds, indices, side="right") - 1
        plan = self.plan.with_steps(steps)
        jobs = [(s, (indices[owner == s] - self.bounds[s], plan))
                for s in range(self.shards) if np.any(owner == s)]
        parts = self._parts.map(_part_gradient, jobs, model)
        _check_dtypes(tree.flatten(parts[0][1]), tree.flatten(model.operator.params))
        loss, grad = 0.0, None
        for value, g in parts:  # fixed order: shard by shard
            loss += value
            grad = g if grad is None else tree.add(grad, g)
        return loss, grad


def dask_gradient(client, *, shards: int | None = None, retries: int = 3):
    """The ``minibatch_gradient`` factory of :func:`~pdunroll.train` for ``client``."""
    check_client(client)

    def make(x_tilde, x_true, plan):
        return DaskGradient(client, x_tilde, x_true, plan, shards=shards, retries=retries)

    return make


def _chunks(client, n: int, chunk: int | None, cap: int) -> list[tuple[int, int]]:
    if chunk is not None and (isinstance(chunk, bool) or not isinstance(chunk, int)
                              or chunk < 1):
        raise ValueError(f"chunk must be a positive integer (signals per task), got {chunk!r}")
    size = min(cap, math.ceil(n / _n_workers(client))) if chunk is None else chunk
    return [(a, min(a + size, n)) for a in range(0, n, size)]


def _part_solve(x_tilde, model, steps, iterations, alphas):
    return solve(model, x_tilde, steps, iterations, alphas=alphas).x


def _part_loss_sum(pair, model, steps, iterations, alphas):
    x_tilde, x_true = pair
    d = solve(model, x_tilde, steps, iterations, alphas=alphas).x - x_true
    return float(model.operator.xp.sum(d * d))


def reconstruct_parts(client, model, x_tilde, iterations: int, steps: StepSizes, alphas, *,
                      chunk: int | None = None, cap: int = 2048, retries: int = 3):
    """A_L(K, x̃) with one solver call per chunk of ``chunk`` signals (default: the signals
    split evenly over the workers, at most ``cap`` per chunk) on the workers, in order."""
    spans = _chunks(check_client(client), x_tilde.shape[0], chunk, cap)
    parts = _Parts(client, [x_tilde[a:b, ...] for a, b in spans], retries)
    out = parts.map(_part_solve, [(i, (steps, iterations, alphas)) for i in range(len(spans))],
                    model)
    _check_dtypes(out[:1], [x_tilde])
    return out[0] if len(out) == 1 else model.operator.xp.concat(out)


def loss_sum_parts(client, model, x_tilde, x_true, iterations: int, steps: StepSizes, alphas, *,
                   chunk: int | None = None, cap: int = 2048, retries: int = 3) -> float:
    """Σ_i ‖A_L(K, x̃_i) − x†_i‖² with one solver call per chunk on the workers; the chunks'
    sums are added in chunk order."""
    spans = _chunks(check_client(client), x_tilde.shape[0], chunk, cap)
    parts = _Parts(client, [(x_tilde[a:b, ...], x_true[a:b, ...]) for a, b in spans], retries)
    sums = parts.map(_part_loss_sum, [(i, (steps, iterations, alphas))
                                      for i in range(len(spans))], model)
    return sum(sums, 0.0)
