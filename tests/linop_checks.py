"""Checks shared by the operator tests: adjoint (dot) test, dense matrix of an operator,
finite-difference check of ``param_vjp``."""

from __future__ import annotations

import math

import numpy as np


def dot_test(backend, op, dtype, seed=0):
    """Return (⟨K x, y⟩, ⟨x, Kᵀ y⟩, scale) for random x, y moved to ``backend``."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, *op.in_shape))
    y = rng.standard_normal((2, *op.out_shape))
    kx = backend.to_numpy(op.apply(backend.asarray(x, dtype))).astype(np.float64)
    kty = backend.to_numpy(op.adjoint(backend.asarray(y, dtype))).astype(np.float64)
    assert kx.shape == y.shape and kty.shape == x.shape
    scale = np.linalg.norm(kx) * np.linalg.norm(y) + np.linalg.norm(x) * np.linalg.norm(kty)
    return float(np.sum(kx * y)), float(np.sum(x * kty)), scale


def dense_matrix(op) -> np.ndarray:
    """K as an (m, n) NumPy matrix: K applied to the identity basis (a NumPy-backed operator),
    128 basis vectors at a time (a convolution's shifted copies of the whole basis at once take
    k₁k₂ times its memory)."""
    n = math.prod(op.in_shape)
    columns = []
    for start in range(0, n, 128):
        basis = np.eye(n)[start:start + 128].reshape((-1, *op.in_shape))
        columns.append(np.asarray(op.apply(basis)).reshape(basis.shape[0], -1))
    return np.concatenate(columns).T


def param_fd(make, params, a, b, direction, eps=0.5):
    """Central difference of Σ_batch ⟨a, K(θ) b⟩ along ``direction`` (NumPy float64); exact up to
    rounding for operators linear in θ, whatever ``eps``."""

    def value(p):
        return float(np.sum(a * np.asarray(make(p).apply(b))))

    return (value(params + eps * direction) - value(params - eps * direction)) / (2 * eps)
