"""Before/after numbers of the redesign: speech-size gradients (batch 32, n = m = 320, float32,
one thread, process CPU time, min of repeats) and the per-step cost of ``train`` at a small size
where overhead dominates (n = 32, L = 5, batch 8), on NumPy and torch. Runs on the current API
and on the one before it (``mode=``), so the same script measures both trees:

    git worktree add /tmp/before bf96480
    PYTHONPATH=/tmp/before/src python tools/bench_redesign.py before
    PYTHONPATH=src python tools/bench_redesign.py after

``--namespace compat`` routes NumPy arrays through array-api-compat's wrapper instead of NumPy's
own namespace (the alternative namespace policy), for the forward pass and the full gradient.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")

import numpy as np  # noqa: E402

import pdunroll as pu  # noqa: E402

NEW = hasattr(pu, "Full")


def problem(n, batch, dtype, backend):
    rng = np.random.default_rng(0)
    x = np.cumsum(rng.standard_normal((batch, n)), 1) / 30
    x = x / np.abs(x).max(1, keepdims=True)
    if backend == "torch":
        import torch

        torch.set_num_threads(1)
        conv = lambda a: torch.asarray(np.asarray(a, dtype))  # noqa: E731
    else:
        conv = lambda a: np.asarray(a, dtype)  # noqa: E731
    model = pu.AnalysisModel(pu.DenseOperator(conv(pu.dct_matrix(n))), pu.L1Norm(),
                             pu.LinfBall(1 / 16))
    return model, conv(pu.quantize(x, 4)), conv(x)


def best(fn, repeats):
    fn()
    times = []
    for _ in range(repeats):
        t = time.process_time()
        fn()
        times.append(time.process_time() - t)
    return min(times)


def gradient_call(model, xt, x, L, method, norm):
    if NEW:
        steps = pu.step_sizes(model.operator, omega=10.0, op_norm=norm)
        m = pu.Full() if method == "full" else pu.Asymptotic(30)
        return lambda: pu.gradient(model, xt, x, iterations=L, method=m, steps=steps)
    kw = dict(mode="full") if method == "full" else dict(mode="asymptotic", b=30)
    return lambda: pu.gradient(model, xt, x, iterations=L, omega=10.0, op_norm=norm, **kw)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("label")
    p.add_argument("--namespace", choices=("own", "compat"), default="own")
    args = p.parse_args()
    if args.namespace == "compat":
        import array_api_compat

        import pdunroll._array as arrays

        arrays._namespace_of = array_api_compat.array_namespace
    for backend in ("numpy", "torch"):
        model, xt, x = problem(320, 32, "float32", backend)
        norm = pu.estimate_norm(model.operator).value
        for L in (10, 100):
            for method in ("full", "asymptotic"):
                t = best(gradient_call(model, xt, x, L, method, norm), 20 if L == 10 else 6)
                print(f"{args.label} gradient {backend:6s} L={L:3d} {method:10s} "
                      f"{1e3 * t:8.2f} ms", flush=True)
        model, xt, x = problem(32, 256, "float64", backend)
        kw = dict(iterations=5, epochs=2, batch_size=8, progress=False, lr=1e-3)
        t = best(lambda: pu.train(model, xt, x, **kw), 3)  # noqa: B023
        print(f"{args.label} train step {backend:6s} n=32 L=5 batch 8 {1e3 * t / 64:8.3f} ms",
              flush=True)


if __name__ == "__main__":
    main()
