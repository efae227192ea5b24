"""Elementwise passes and products per Chambolle-Pock step, and the time of pu.gradient against an
older checkout, at the speech size (batch 32, n = m = 320, float32, given step sizes, one
thread, process CPU time).

    python benchmarks/passes.py --count             # aten operations per forward / reverse step
    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 \\
        python benchmarks/passes.py --old OLD_CHECKOUT/src --rounds 21 [--forward]

``--count`` profiles (torch.profiler) the full gradient's forward pass and its pullback at L = 2
and 3 steps and prints the difference per operation name: the operations of one step (the ∇K
products are batched, 2 per ≈ 6 steps at this size, and do not show here). ``--old`` imports
the older package as ``pdunroll_old`` beside the current one and times both in this process,
interleaved call by call (the order alternating by round); ``--forward`` times
``chambolle_pock`` instead.
"""

from __future__ import annotations

import argparse
import collections
import statistics
import time

import numpy as np
import torch
from parity import load_old  # the old version under its own name

torch.set_num_threads(1)


def _problem(pu, conv):
    rng = np.random.default_rng(0)
    n = 320
    K = pu.dct_matrix(n) + 0.01 * rng.standard_normal((n, n))
    x = np.clip(rng.standard_normal((32, n)) * 0.3, -1, 1)
    model = pu.AnalysisModel(pu.DenseOperator(conv(K)), pu.L1Norm(),
                             pu.LinfBall(pu.quantization_radius(4)))
    return model, pu.step_sizes(model.operator, omega=30.0), conv(pu.quantize(x, 4)), conv(x)


def count() -> None:
    import pdunroll as pu
    from pdunroll.unroll.gradient import vjp_unchecked
    from pdunroll.unroll.plan import make_plan

    model, steps, xt, x = _problem(pu, lambda a: torch.tensor(a, dtype=torch.float32))

    def ops(L):
        out = {}
        for part in ("forward", "reverse"):
            with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as p:
                with torch.profiler.record_function(part):
                    if part == "forward":
                        x_hat, pull = vjp_unchecked(model, xt, make_plan(pu.Full(), L, None, steps))
                    else:
                        pull(x_hat - x)
            out[part] = collections.Counter(
                e.name for e in p.events() if e.name.startswith("aten::")
                and e.cpu_parent is not None and e.cpu_parent.name == part)
        return out

    a, b = ops(2), ops(3)  # both gather their ∇K terms into one product pair
    for part in ("forward", "reverse"):
        diff = {k: b[part][k] - a[part][k] for k in b[part] if b[part][k] != a[part][k]}
        print(f"{part} step: {dict(sorted(diff.items()))}")


def compare(old_src: str, rounds: int, forward: bool) -> None:
    old = load_old(old_src)
    import pdunroll as new

    reps = {10: 5, 100: 1}
    cases = {}
    for backend, conv in (("numpy", lambda a: np.asarray(a, np.float32)),
                          ("torch", lambda a: torch.tensor(a, dtype=torch.float32))):
        for tag, pu in (("old", old), ("new", new)):
            cases[backend, tag] = (pu, *_problem(pu, conv))

    def call(pu, model, steps, xt, x, L):
        if forward:
            return pu.chambolle_pock(model, xt, iterations=L, steps=steps)
        return pu.gradient(model, xt, x, iterations=L, steps=steps)

    print("load average before:", open("/proc/loadavg").read().split()[:3])
    times: dict = collections.defaultdict(list)
    for r in range(rounds):
        for L in (10, 100):
            for backend in ("numpy", "torch"):
                for tag in (("old", "new") if r % 2 == 0 else ("new", "old")):
                    if r == 0:
                        call(*cases[backend, tag], L)
                    t = time.process_time()
                    for _ in range(reps[L]):
                        call(*cases[backend, tag], L)
                    times[backend, L, tag].append((time.process_time() - t) / reps[L] * 1e3)
    print("load average after:", open("/proc/loadavg").read().split()[:3])
    for backend in ("numpy", "torch"):
        for L in (10, 100):
            o, n = (statistics.median(times[backend, L, tag]) for tag in ("old", "new"))
            per_round = statistics.median(
                b / a for a, b in zip(times[backend, L, "old"], times[backend, L, "new"],
                                      strict=True))
            print(f"{backend} L={L}: old {o:.2f} ms, new {n:.2f} ms, new/old {n / o:.3f} "
                  f"(median of the per-round ratios {per_round:.3f}, {rounds} rounds)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", action="store_true")
    ap.add_argument("--old", default=None)
    ap.add_argument("--rounds", type=int, default=21)
    ap.add_argument("--forward", action="store_true")
    args = ap.parse_args()
    if args.count:
        count()
    if args.old:
        compare(args.old, args.rounds, args.forward)


if __name__ == "__main__":
    main()
