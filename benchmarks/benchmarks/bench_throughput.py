"""Throughput of the full-mode gradient at the published batch (32) and a GPU-sized one (1024),
n = m = 320, against the same backend's matrix-product peak: the GPU part of the suite.

* ``SpeechThroughput``: pdunroll.gradient (full mode) per backend (numpy, torch CPU, torch CUDA,
  cupy), dtype, batch and L: time, peak memory (the CUDA allocator's on torch CUDA) and
  ``track_tflops``, the gradient's matrix-product work per second: 6 products of 2·B·m·n flops
  per step (forward K x̄ and Kᵀ y; backward K δ_P, Kᵀ δ̄_D and the two ∇_K factors), over the
  best of ``REPEATS`` synchronised runs;
* ``MatmulPeak``: the same backend's TFLOP/s on one large square product (4096² on a GPU, 2048²
  on the CPU), the reference for "fraction of the matmul throughput".

The report divides the two (fraction of the peak) and the CPU time by the GPU time at the same
dtype, batch and L (speed-up over the CPU). torch CUDA runs with TF32 off (common.backend), so
float32 products are true float32 on both sides.
"""

from __future__ import annotations

import numpy as np

from .common import DTYPES, TIMER, _LibraryGradient, backend, pu, speech_problem

GPU_BACKENDS = ("torch_cuda", "cupy")
THROUGHPUT_BACKENDS = ["numpy", "torch", *GPU_BACKENDS]
BATCHES = [32, 1024]
THROUGHPUT_L = [10, 100]
REPEATS = 3


def gradient_flops(batch: int, n: int, m: int, iterations: int) -> float:
    """Matrix-product flops of a full-mode gradient: 6 products of 2·B·m·n per step."""
    return 12.0 * batch * n * m * iterations


def best_seconds(fn, sync, repeats: int = REPEATS) -> float:
    """The fastest of ``repeats`` runs of ``fn``, each timed up to the device's sync."""
    best = float("inf")
    for _ in range(repeats):
        start = TIMER()
        fn()
        sync()
        best = min(best, TIMER() - start)
    return best


class SpeechThroughput(_LibraryGradient):
    """Full-mode pdunroll.gradient at batch 32 and 1024 on the CPU and GPU backends."""

    params = [THROUGHPUT_BACKENDS, DTYPES, BATCHES, THROUGHPUT_L]
    param_names = ["backend", "dtype", "batch", "L"]
    repeat = (2, 5, 20.0)

    def setup(self, backend_name, dtype, batch, L):
        self.be = backend(backend_name)
        p = speech_problem(batch=batch)
        self.model = pu.AnalysisModel(pu.DenseOperator(self.be.asarray(p.K, dtype)), pu.L1Norm(),
                                      pu.LinfBall(p.radius))
        self.xt, self.x = self.be.asarray(p.x_tilde, dtype), self.be.asarray(p.x_true, dtype)
        steps = pu.step_sizes(self.model.operator, sigma=p.sigma, tau=p.tau, theta=p.theta,
                              op_norm=p.op_norm)
        self.kwargs = dict(iterations=L, method=pu.Full(), steps=steps)
        self.flops = gradient_flops(batch, *p.K.shape, L)
        pu.gradient(self.model, self.xt, self.x, iterations=2, steps=steps)  # lazy init, kernels

    def track_tflops(self, *args):
        return self.flops / best_seconds(self._run, self.be.sync) / 1e12

    track_tflops.unit = "TFLOP/s"


class MatmulPeak:
    """TFLOP/s of one large square matrix product on each backend (the throughput reference)."""

    params = [THROUGHPUT_BACKENDS, DTYPES]
    param_names = ["backend", "dtype"]
    timeout = 600

    def setup(self, backend_name, dtype):
        self.be = backend(backend_name)
        self.size = 4096 if backend_name in GPU_BACKENDS else 2048
        a = np.random.default_rng(0).standard_normal((self.size, self.size))
        self.a, self.b = self.be.asarray(a, dtype), self.be.asarray(a.T, dtype)
        self._product()
        self.be.sync()

    def _product(self):
        return self.be.xp.matmul(self.a, self.b)

    def track_tflops(self, *args):
        return 2.0 * self.size**3 / best_seconds(self._product, self.be.sync, 5) / 1e12

    track_tflops.unit = "TFLOP/s"
