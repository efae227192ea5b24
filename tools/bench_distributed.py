"""Measured cost of data-parallel minibatch gradients on a Dask LocalCluster.

Two measurements (each repeated ``--repeats`` times; the spread is printed):

1. step time of one minibatch gradient at a compute-heavy setting (speech model, n = 320,
   float32, L = 100, full backpropagation, 1024 signals per step) in this process and on
   LocalClusters of 1 and 2 worker processes with one thread each: speed-up;
2. the cost of communication and scheduling per step against the parameter size: the same
   round trip as a step (the model broadcast to every worker, one task per shard, a result of
   the parameter size back, reduced on the client) with no computation.

    python tools/bench_distributed.py                       # the settings above
    python tools/bench_distributed.py --L 10 --batch 256    # quicker

Prints a table and writes JSON (``--out``). The machine may be shared: numbers are noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

import pdunroll as pu  # noqa: E402
from pdunroll.learning.distributed import (  # noqa: E402
    DaskGradient,
    _part_gradient,
    _Parts,
    local_cluster,
)
from pdunroll.learning.training import LocalGradient  # noqa: E402
from pdunroll.unroll.plan import make_plan  # noqa: E402


def _echo(piece, model, nbytes):
    """No computation: return a parameter-sized array (as a gradient part would be)."""
    return np.zeros(nbytes // 4, dtype=np.float32)


def _timed_part(shard, model, *args):
    """A shard's part of the gradient, with its wall-clock and CPU seconds on the worker."""
    tic, cpu = time.perf_counter(), time.process_time()
    out = _part_gradient(shard, model, *args)
    return out, time.perf_counter() - tic, time.process_time() - cpu


def _timed_step(g: DaskGradient, model, indices, steps):
    """:meth:`DaskGradient.__call__` with the parts timed: (step seconds, slowest part's
    seconds, parts' CPU seconds)."""
    tic = time.perf_counter()
    owner = np.searchsorted(g.bounds, indices, side="right") - 1
    plan = g.plan.with_steps(steps)
    jobs = [(s, (indices[owner == s] - g.bounds[s], plan))
            for s in range(g.shards) if np.any(owner == s)]
    parts = g._parts.map(_timed_part, jobs, model)
    _reduce([p[0][1] for p in parts])
    return time.perf_counter() - tic, max(p[1] for p in parts), [p[2] for p in parts]


def _reduce(parts):
    """The client's reduction, in order, as :class:`DaskGradient` does it."""
    total = parts[0]
    for g in parts[1:]:
        total = pu.tree.add(total, g)
    return total


def _problem(n, batch, seed=0):
    rng = np.random.default_rng(seed)
    x = np.cumsum(rng.standard_normal((batch, n)), axis=1).astype(np.float32)
    x /= np.abs(x).max(axis=1, keepdims=True)
    xt = pu.quantize(x, 4).astype(np.float32)
    model = pu.AnalysisModel(pu.DenseOperator(pu.dct_matrix(n).astype(np.float32)),
                             f=pu.L1Norm(), g=pu.LinfBall(pu.quantization_radius(4)))
    return model, xt, x


def _time(fn, steps, cpu=None):
    fn()  # warm-up (imports, first allocation)
    out = []
    for _ in range(steps):
        tic, c = time.perf_counter(), time.process_time()
        fn()
        out.append(time.perf_counter() - tic)
        if cpu is not None:
            cpu.append(time.process_time() - c)
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=320)
    p.add_argument("--L", type=int, default=100)
    p.add_argument("--batch", type=int, default=1024)
    p.add_argument("--steps", type=int, default=2, help="timed steps per repeat")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default="bench_distributed.json")
    p.add_argument("--trim", action="store_true",
                   help="workers with Dask's default MALLOC_TRIM_THRESHOLD_=65536 (default: "
                        "unset, as pdunroll.learning.distributed.local_cluster starts them)")
    args = p.parse_args(argv)
    from distributed import Client, LocalCluster

    model, xt, x = _problem(args.n, args.batch)
    steps = pu.step_sizes(model.operator, omega=10.0)
    idx = np.arange(args.batch)
    plan = make_plan(pu.Full(), args.L, x_wanted=False)  # a training step's
    results = {"settings": vars(args), "step": {}, "overhead": {}}

    def record(name, times):
        results["step"].setdefault(name, []).extend(times)

    local = LocalGradient(xt, x, plan)
    clusters = {}
    for k in (1, 2):
        cluster = (LocalCluster(n_workers=k, threads_per_worker=1, dashboard_address=":0")
                   if args.trim else local_cluster(k))
        clusters[k] = (cluster, Client(cluster))
        clusters[k][1].wait_for_workers(k)
    grads = {k: DaskGradient(c, xt, x, plan) for k, (_, c) in clusters.items()}
    results["parts"] = {}
    for r in range(args.repeats):  # interleaved, so that a busy spell hits every setting
        record("in process", _time(lambda: local(model, idx, steps), args.steps,
                                   results.setdefault("in_process_cpu", [])))
        for k, g in grads.items():
            _timed_step(g, model, idx, steps)  # warm-up
            for _ in range(args.steps):
                wall, slowest, cpu = _timed_step(g, model, idx, steps)
                record(f"{k} worker{'s' * (k > 1)}", [wall])
                results["parts"].setdefault(str(k), []).append(
                    {"step": wall, "slowest_part": slowest, "part_cpu": cpu})
        print(f"repeat {r + 1}: " + ", ".join(f"{k} {v[-1]:.2f} s"
                                              for k, v in results["step"].items()), flush=True)

    sizes = [4_000, 40_000, 400_000, 4_000_000]
    for k, (_, client) in clusters.items():
        parts = _Parts(client, [np.zeros(1)] * k, retries=0)
        for nbytes in sizes:
            m = pu.AnalysisModel(pu.DenseOperator(np.zeros((1, nbytes // 4), np.float32)),
                                 f=pu.L1Norm(), g=pu.LinfBall(1.0))
            jobs = [(i, (nbytes,)) for i in range(k)]
            t = []
            for _ in range(args.repeats):
                t += _time(lambda m=m, jobs=jobs, parts=parts: _reduce(parts.map(_echo, jobs, m)),
                           5)
            results["overhead"][f"{k} x {nbytes}"] = t
    for cluster, client in clusters.values():
        client.close()
        cluster.close()

    print(f"\nminibatch gradient, n = {args.n} float32, L = {args.L}, batch {args.batch}, "
          f"full ({args.repeats} × {args.steps} steps):")
    base = statistics.median(results["step"]["in process"])
    for name, t in results["step"].items():
        med = statistics.median(t)
        print(f"  {name:<12} median {med:7.3f} s  (min {min(t):.3f}, max {max(t):.3f})  "
              f"speed-up {base / med:.2f}")
    cpu = results["in_process_cpu"]
    print(f"  in process CPU seconds per step: median {statistics.median(cpu):.3f}")
    print("\nstep minus the slowest worker's part (communication, scheduling, reduction):")
    for k, rows in results["parts"].items():
        over = [r["step"] - r["slowest_part"] for r in rows]
        cpu = [c for r in rows for c in r["part_cpu"]]
        print(f"  {k} worker(s): median {1e3 * statistics.median(over):6.1f} ms (min "
              f"{1e3 * min(over):.1f}, max {1e3 * max(over):.1f}); CPU seconds per part: "
              f"median {statistics.median(cpu):.3f}")
    print("\nround trip without computation (broadcast model, one task per worker, gather):")
    for key, t in results["overhead"].items():
        k, nbytes = key.split(" x ")
        print(f"  {k} worker(s), parameters {int(nbytes) / 1e3:>6.0f} kB: median "
              f"{1e3 * statistics.median(t):6.1f} ms (min {1e3 * min(t):.1f}, "
              f"max {1e3 * max(t):.1f})")
    with open(args.out, "w") as fh:
        json.dump(results, fh, indent=1)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
