"""The convolution filter bank's products against an older checkout: ``apply`` (K x),
``adjoint`` (Kᵀ y) and ``param_vjp`` of 48 filters 7×7 (periodic boundary, float32) on a batch
of 8 patches 40×40 (denoising training) and on one 256×256 image, and ``pu.gradient`` of the
denoising model (:func:`pdunroll.tasks.denoise.denoise_model`, ω = 10) at L = 30 on the batch
of patches, on NumPy and torch; one thread, process CPU time, interleaved (the order
alternating by round), medians and the median of the per-round ratios new/old:

    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 \\
        python benchmarks/filter_bank.py --old OLD_CHECKOUT/src --rounds 15

``--profile`` prints, for the current tree only, the share of the gradient's time spent in the
three products (cProfile, cumulative time).
"""

from __future__ import annotations

import argparse
import cProfile
import importlib
import os
import pstats
import statistics
import time

import numpy as np
import torch
from parity import load_old  # the old version under its own name

import pdunroll as new

torch.set_num_threads(1)
SIZES = {"8x40x40": (8, 40, 40), "1x256x256": (1, 256, 256)}


def arrays(backend, *values):
    conv = torch.asarray if backend == "torch" else np.asarray
    return [conv(np.asarray(v, np.float32)) for v in values]


def problem(pu, backend, shape, rng_seed=0):
    """(bank, x, y, gradient call) on one backend for a batch of ``shape``."""
    rng = np.random.default_rng(rng_seed)
    x = np.cumsum(np.cumsum(rng.standard_normal(shape), 1), 2)
    x = (x - x.min()) / (x.max() - x.min())
    noisy = x + 0.098 * rng.standard_normal(shape)
    h = new.dct_filters(7)  # 48 filters 7×7
    hb, xb, nb = arrays(backend, h, x, noisy)
    denoise = importlib.import_module(pu.__name__ + ".tasks.denoise")
    model = denoise.denoise_model(7, shape[1:], 0.098, hb)
    bank = model.operator
    y = arrays(backend, rng.standard_normal((shape[0], *bank.out_shape)))[0]
    steps = pu.step_sizes(bank, omega=10.0)
    grad = (lambda: pu.gradient(model, nb, xb, iterations=30, steps=steps)
            ) if shape[1:] == (40, 40) else None
    return bank, xb, y, grad


def calls(pu, backend, size):
    bank, x, y, grad = problem(pu, backend, SIZES[size])
    out = {"apply": lambda: bank.apply(x), "adjoint": lambda: bank.adjoint(y),
           "param_vjp": lambda: bank.param_vjp(y, x)}
    if grad is not None:
        out["gradient L=30"] = grad
    return out


def clock(fn, repeat):
    t = time.process_time()
    for _ in range(repeat):
        fn()
    return (time.process_time() - t) / repeat * 1e3


def compare(old_src, rounds):
    old = load_old(old_src)
    for backend in ("numpy", "torch"):
        for size in SIZES:
            fns = {tag: calls(pu, backend, size) for tag, pu in (("old", old), ("new", new))}
            for name in fns["new"]:
                repeat = 1 if name.startswith("gradient") else (20 if size == "8x40x40" else 3)
                times = {"old": [], "new": []}
                for tag in ("old", "new"):
                    fns[tag][name]()
                for r in range(rounds):
                    for tag in (("old", "new") if r % 2 == 0 else ("new", "old")):
                        times[tag].append(clock(fns[tag][name], repeat))
                o, n = (statistics.median(times[t]) for t in ("old", "new"))
                ratio = statistics.median(b / a for a, b in zip(times["old"], times["new"],
                                                                  strict=True))
                print(f"{backend:6} {size:10} {name:14} old {o:8.2f} ms  new {n:8.2f} ms  "
                      f"new/old {ratio:.3f}", flush=True)


def profile():
    for backend in ("numpy", "torch"):
        grad = calls(new, backend, "8x40x40")["gradient L=30"]
        grad()
        prof = cProfile.Profile()
        prof.enable()
        for _ in range(3):
            grad()
        prof.disable()
        stats = pstats.Stats(prof)
        total = max(v[3] for v in stats.stats.values())
        print(f"{backend}: gradient L=30 {total / 3 * 1e3:.1f} ms per call (profiled)")
        for (file, _, func), (_, ncalls, _, cum, _) in stats.stats.items():
            if file.endswith("convolution.py") and func in ("_apply", "_adjoint", "param_vjp"):
                print(f"  {func:10} {ncalls // 3:4} calls  {cum / 3 * 1e3:7.1f} ms  "
                      f"{cum / total:.0%}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--old", default=None)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()
    print("load average", os.getloadavg())
    if args.profile:
        profile()
    if args.old:
        compare(args.old, args.rounds)


if __name__ == "__main__":
    main()
