"""Image denoising with the published filter bank: 48 filters 7×7 (``Conv2dFilterBank``,
periodic boundaries) on one 256×256 image, F = ‖·‖₁, G = indicator of the ℓ2 ball of radius
s·√(#pixels) (a prox whose Jacobian is not diagonal), ω = 10, L = 10.

* ``FilterBankGradient``: pdunroll.gradient per backend, dtype and gradient method (time, peak
  memory);
* ``FilterBankAutograd``: torch.autograd through the same unrolled loop written with
  ``torch.nn.functional.conv2d`` (circular padding), the way a torch user writes it.

One step costs 6 filter-bank products of 48·49·65536 ≈ 154 M multiply-adds each, so L stays 10;
peak memory as in bench_speech (resident-set delta on the CPU, CUDA allocator peak on a GPU).
"""

from __future__ import annotations

import math

import numpy as np

from .common import (
    DTYPES,
    LIBRARY_BACKENDS,
    SkipNotImplemented,
    _LibraryGradient,
    _Timed,
    backend,
    peak_bytes,
    peak_rss_delta,
    pu,
)

try:
    import torch
except ImportError:
    torch = None

SIZE, FILTERS, KERNEL, ITER, NOISE = 256, 48, 7, 10, 0.1
IMAGE_MODES = ["full", "asymptotic"]  # asv parameters: Full() and Asymptotic(30)


def image_problem(seed: int = 0):
    """A smooth random image in [0, 1] plus Gaussian noise (σ = 0.1); 48 random zero-mean 7×7
    filters scaled to ‖K‖ ≈ 1; the ℓ2-ball radius s·√(#pixels) with s = the noise level."""
    rng = np.random.default_rng(seed)
    u = np.linspace(0, 1, SIZE)
    clean = 0.5 + 0.25 * np.sin(6 * np.pi * u)[:, None] * np.cos(4 * np.pi * u)[None, :]
    clean = clean + 0.2 * (u[:, None] > 0.5)
    noisy = clean + NOISE * rng.standard_normal(clean.shape)
    h = rng.standard_normal((FILTERS, KERNEL, KERNEL))
    h = h - h.mean(axis=(1, 2), keepdims=True)
    spectrum = np.abs(np.fft.rfft2(h, s=(SIZE, SIZE))) ** 2
    h = h / math.sqrt(spectrum.sum(axis=0).max())
    return h, noisy[None], clean[None], NOISE * SIZE


def _steps(norm: float, omega: float = 10.0):
    """σ, τ of pdunroll's step rule for a known ‖K‖ (for the loops written out here)."""
    steps = pu.StepRule(omega=omega).for_norm(norm)
    return steps.sigma, steps.tau


class FilterBankGradient(_LibraryGradient):
    """pdunroll.gradient with a Conv2dFilterBank on each backend."""

    params = [[b for b in LIBRARY_BACKENDS if b != "array_api_strict"], DTYPES, IMAGE_MODES]
    param_names = ["backend", "dtype", "mode"]
    repeat = (2, 5, 20.0)

    def setup(self, backend_name, dtype, mode):
        self.be = backend(backend_name)
        h, noisy, clean, radius = image_problem()
        op = pu.Conv2dFilterBank(self.be.asarray(h, dtype), (SIZE, SIZE))
        norm = op.norm()
        steps = pu.StepRule(omega=10.0).sizes(op, op_norm=norm)
        self.model = pu.AnalysisModel(op, pu.L1Norm(), pu.L2Ball(radius))
        self.xt, self.x = self.be.asarray(noisy, dtype), self.be.asarray(clean, dtype)
        method = pu.Full() if mode == "full" else pu.Asymptotic(30)
        self.kwargs = dict(iterations=ITER, method=method, steps=steps)
        pu.gradient(self.model, self.xt, self.x, iterations=1, steps=steps)


class FilterBankAutograd(_Timed):
    """torch.autograd through L plain CP steps with F.conv2d / conv_transpose2d."""

    params = [["cpu", "cuda"], DTYPES]
    param_names = ["device", "dtype"]
    repeat = (2, 3, 30.0)  # float64 conv2d on the CPU takes a slow path: ~27 s per gradient

    def setup(self, device, dtype):
        if torch is None:
            raise SkipNotImplemented("torch is not installed")
        if device == "cuda" and not torch.cuda.is_available():
            raise SkipNotImplemented("torch CUDA: no GPU on this machine")
        self.device = device
        h, noisy, clean, radius = image_problem()
        tdtype = getattr(torch, dtype)
        norm = pu.Conv2dFilterBank(h, (SIZE, SIZE)).norm()
        sigma, tau = _steps(norm)
        K = torch.tensor(h[:, None], dtype=tdtype, device=device, requires_grad=True)
        xt = torch.tensor(noisy[:, None], dtype=tdtype, device=device, requires_grad=True)
        x = torch.tensor(clean[:, None], dtype=tdtype, device=device)
        self.run = lambda: self._gradient(K, xt, x, sigma, tau, radius)

    def _gradient(self, K, xt, x, sigma, tau, radius):
        import torch.nn.functional as F

        pad = (KERNEL // 2,) * 4

        def apply(u):
            return F.conv2d(F.pad(u, pad, mode="circular"), K)

        def adjoint(v):  # the adjoint of a circular correlation: correlation with flipped K
            return F.conv2d(F.pad(v, pad, mode="circular"),
                            torch.flip(K, (2, 3)).transpose(0, 1))

        r = torch.zeros_like(xt)
        r_bar = r
        y = torch.zeros((xt.shape[0], FILTERS, SIZE, SIZE), dtype=xt.dtype, device=xt.device)
        for _ in range(ITER):
            y = torch.clamp(y + sigma * apply(xt + r_bar), -1.0, 1.0)
            z = r - tau * adjoint(y)
            nrm = torch.linalg.vector_norm(z, dim=(1, 2, 3), keepdim=True)
            r_new = torch.where(nrm > radius, z * (radius / nrm), z)
            r_bar = r_new + (r_new - r)
            r = r_new
        d = xt + r - x
        loss = 0.5 * torch.sum(d * d)
        grads = torch.autograd.grad(loss, (K, xt))
        if self.device == "cuda":
            torch.cuda.synchronize()
        return grads

    def time_gradient(self, *args):
        self.run()

    def track_peak_memory(self, *args):
        if self.device == "cuda":
            return peak_bytes("torch_cuda", self.run)
        return peak_rss_delta(self.run)

    track_peak_memory.unit = "bytes"
