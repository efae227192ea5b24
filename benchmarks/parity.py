"""Side-by-side timing at the speech size in one process, one thread, process CPU time: every
implementation of ``benchmarks/benchmarks/bench_layers.py`` interleaved round by round (so that
machine noise hits all alike), the median per implementation and its ratios.

    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 \\
        python benchmarks/parity.py --iterations 10 100 --rounds 15 [--tf-path DIR]

``--tf-path``: a folder with TensorFlow installed (``pip install --target DIR tensorflow-cpu``)
appended to ``sys.path`` (after the environment's own packages). ``--old SRC``: the ``src`` of
an older pdunroll checkout, timed as ``old numpy gradient`` (``mode="full"``) beside the
current ``pu.gradient`` (also ``--old-only`` for that comparison and the asymptotic mode).
"""

# ruff: noqa: B023 - every closure below is timed within the loop iteration that made it

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false "
                                   "intra_op_parallelism_threads=1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent))


def load_old(src: str):
    """The pdunroll package under ``src`` imported as ``pdunroll_old``."""
    spec = importlib.util.spec_from_file_location(
        "pdunroll_old", Path(src) / "pdunroll" / "__init__.py",
        submodule_search_locations=[str(Path(src) / "pdunroll")])
    module = importlib.util.module_from_spec(spec)
    sys.modules["pdunroll_old"] = module
    spec.loader.exec_module(module)
    return module


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--iterations", type=int, nargs="+", default=[10, 100])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--only", nargs="*", default=None, help="implementations to time")
    ap.add_argument("--tf-path", default=None)
    ap.add_argument("--old", default=None)
    ap.add_argument("--old-only", action="store_true")
    ap.add_argument("--clock", choices=("process", "wall"), default="process",
                    help="process CPU time (every thread of the process: idle-spinning TF/XLA "
                         "threads count against whatever runs next) or wall time")
    args = ap.parse_args()
    if args.tf_path:
        sys.path.append(args.tf_path)
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass
    try:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except ImportError:
        pass
    from benchmarks.bench_layers import IMPLEMENTATIONS, SPEECH, _steps, build
    from benchmarks.common import SkipNotImplemented, pu

    for L in args.iterations:
        fns = {}
        names = args.only or IMPLEMENTATIONS
        if args.old_only:
            names = []
        load = os.getloadavg()[0]
        for name in names:
            tic = time.perf_counter()
            try:
                fns[name] = build(name, L)
            except SkipNotImplemented as err:
                print(f"skipped {name}: {err}")
            else:  # compiled implementations compile here
                print(f"built {name} in {time.perf_counter() - tic:.1f} s", flush=True)
        if args.old:
            old = load_old(args.old)
            import numpy as np

            p = SPEECH
            K, xt, xd = (np.asarray(a, dtype="float32") for a in (p.K, p.x_tilde, p.x_true))

            def old_model():
                return old.AnalysisModel(old.DenseOperator(K), old.L1Norm(), old.LinfBall(p.radius))

            def new_model():
                return pu.AnalysisModel(pu.DenseOperator(K), pu.L1Norm(), pu.LinfBall(p.radius))

            kw = {"sigma": p.sigma, "tau": p.tau, "op_norm": p.op_norm}
            fns["old full"] = lambda: old.gradient(old_model(), xt, xd, iterations=L, **kw)
            fns["new full"] = lambda: pu.gradient(new_model(), xt, xd, iterations=L,
                                                  steps=_steps(p))
            fns["old asymptotic"] = lambda: old.gradient(old_model(), xt, xd, iterations=L,
                                                         mode="asymptotic", b=L, **kw)
            fns["new asymptotic"] = lambda: pu.gradient(new_model(), xt, xd, iterations=L,
                                                        method=pu.Asymptotic(L),
                                                        steps=_steps(p))
        clock = time.process_time if args.clock == "process" else time.perf_counter
        times = {name: [] for name in fns}
        for _ in range(args.rounds):
            for name, fn in fns.items():
                t0 = clock()
                fn()
                times[name].append(clock() - t0)
        med = {name: 1e3 * statistics.median(ts) for name, ts in times.items()}
        ref = {k: med[k] for k in ("TF graph", "torch.autograd", "numpy gradient",
                                   "torch gradient") if k in med}
        print(f"\n## L = {L} (median of {args.rounds} rounds, {args.clock} ms; load average "
              f"{load:.1f} before building, {os.getloadavg()[0]:.1f} after timing)\n")
        cols = " | ".join(f"/ {k}" for k in ref)
        print(f"| implementation | ms | {cols} |")
        print("|---|---|" + "---|" * len(ref))
        for name, ms in med.items():
            ratios = " | ".join(f"{ms / r:.2f}" for r in ref.values())
            print(f"| {name} | {ms:.2f} | {ratios} |")


if __name__ == "__main__":
    main()
