"""Small reference problems shared by the tests, built in NumPy float64."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import pdunroll as pu


@dataclass
class Problem:
    K: np.ndarray
    x_tilde: np.ndarray
    x_true: np.ndarray
    g_kind: str
    radius: float

    def function_g(self):
        if self.g_kind == "linf":
            return pu.LinfBall(self.radius)
        if self.g_kind == "l2ball":
            return pu.L2Ball(self.radius)
        return pu.SquaredL2()

    def model(self, backend, dtype="float64", K=None):
        K = self.K if K is None else K
        return pu.AnalysisModel(pu.DenseOperator(backend.asarray(K, dtype)), pu.L1Norm(),
                                self.function_g())

    def signals(self, backend, dtype="float64"):
        return backend.asarray(self.x_tilde, dtype), backend.asarray(self.x_true, dtype)


def speech_like(g_kind="linf", *, n=16, m=None, batch=3, seed=0) -> Problem:
    """Quantized smooth random signals (bitrate 3, η = 1/8) and a perturbed DCT operator."""
    rng = np.random.default_rng(seed)
    m = n if m is None else m
    t = np.linspace(0, 1, n)
    x = np.stack([0.6 * np.sin(2 * np.pi * (2 + i) * t + i) + 0.2 * rng.standard_normal(n)
                  for i in range(batch)])
    K = pu.dct_matrix(max(n, m))[:m, :n] + 0.05 * rng.standard_normal((m, n))
    if g_kind == "linf":
        return Problem(K, pu.quantize(x, 3), x, g_kind, 1 / 8)
    noisy = x + 0.3 * rng.standard_normal(x.shape)
    return Problem(K, noisy, x, g_kind, 0.8 if g_kind == "l2ball" else 0.0)


def sparse_quantized(n_signals: int, n: int = 8, seed: int = 0):
    """Signals sparse in a fixed random orthonormal basis (not the DCT), each normalised to
    max |x| = 1 and quantized at 3 bits: (x̃, x†, η), the training tests' data."""
    basis = np.linalg.qr(np.random.default_rng(123).standard_normal((n, n)))[0]
    rng = np.random.default_rng(seed)
    coef = rng.standard_normal((n_signals, n)) * (rng.random((n_signals, n)) < 0.3)
    x = coef @ basis.T
    x = x / np.maximum(np.abs(x).max(axis=1, keepdims=True), 1e-12)
    return pu.quantize(x, 3), x, pu.quantization_radius(3)
