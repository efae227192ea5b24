"""Peak memory and time of full backpropagation with every step stored against checkpointing
(``pu.Full(segments=⌊√L⌋)``) at speech size: batch 32, n = m = 320, float64 NumPy, DCT operator,
F = ‖·‖₁, G = box of radius Δ/2 (4 bit), ω = 10.

    OPENBLAS_NUM_THREADS=1 PYTHONPATH=src python tools/bench_checkpointing.py [--L 1000]

Peak memory is tracemalloc's (it sees NumPy's allocations), measured in a separate run from the
timings; the timings alternate the two variants (min of ``--repeat``) against drift on a busy
machine.
"""

from __future__ import annotations

import argparse
import math
import time
import tracemalloc

import numpy as np

import pdunroll as pu


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--L", type=int, default=1000, help="unrolled iterations")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--segments", type=int, default=None, help="default ⌊√L⌋")
    args = parser.parse_args()
    batch, n = 32, 320
    rng = np.random.default_rng(0)
    x = np.cumsum(rng.standard_normal((batch, n)), axis=1)
    x /= np.abs(x).max(axis=1, keepdims=True)
    delta = 2 / 2**4
    x_tilde = np.sign(x) * delta * (np.floor(np.abs(x) / delta) + 0.5)
    model = pu.AnalysisModel(pu.DenseOperator(pu.dct_matrix(n)), pu.L1Norm(),
                             pu.LinfBall(delta / 2))
    c = args.segments or math.isqrt(args.L)
    variants = {"stored": pu.Full(), f"segments={c}": pu.Full(segments=c)}
    steps = pu.step_sizes(model.operator, omega=10.0, op_norm=1.0)

    def run(method):
        return pu.gradient(model, x_tilde, x, iterations=args.L, method=method, steps=steps)

    ref = run(pu.Full())
    for name, method in variants.items():
        tracemalloc.start()
        res = run(method)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        diff = np.linalg.norm(res.operator - ref.operator) / np.linalg.norm(ref.operator)
        print(f"{name:>16}: peak {peak / 2**20:7.1f} MiB, ∇_K rel. diff to stored {diff:.1e}")
    times = {name: [] for name in variants}
    for _ in range(args.repeat):
        for name, method in variants.items():
            start = time.perf_counter()
            run(method)
            times[name].append(time.perf_counter() - start)
    for name, ts in times.items():
        print(f"{name:>16}: {min(ts):.2f} s (min of {len(ts)})")
    first, second = (min(ts) for ts in times.values())
    print(f"time ratio checkpointed / stored: {second / first:.2f}")


if __name__ == "__main__":
    main()
