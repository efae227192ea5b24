"""Linear analysis operators K acting on batches of signals.

An operator maps arrays of shape ``(batch, *in_shape)`` to ``(batch, *out_shape)``. It offers

* ``apply(x)``: K x, and ``adjoint(y)``: Kᵀ y;
* ``param_vjp(a, b)``: the gradient of Σ_batch ⟨a, K b⟩ with respect to the operator's own
  parameters ``params`` (same structure as ``params``), the only place the reverse recursions
  need to know what K is made of;
* ``with_params(params)``: the same operator with new parameters (operators are immutable);
* ``norm()``: the spectral norm ‖K‖ (exact where cheap, else :func:`estimate_norm`).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass

from ._array import Array, array_device, check_count, check_finite, namespace

__all__ = ["DenseOperator", "LinearOperator", "NormEstimate", "dct_matrix", "estimate_norm"]


class LinearOperator(ABC):
    """Base class: subclasses set ``in_shape``, ``out_shape``, ``params`` and the four maps.

    ``params`` is an array or a (nested) tuple of arrays; a fixed operator has ``params = ()``
    and overrides ``arrays`` to return an array that fixes its namespace, dtype and device.
    """

    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    params: Array

    @abstractmethod
    def apply(self, x: Array) -> Array:
        """K x for x of shape (batch, *in_shape)."""

    @abstractmethod
    def adjoint(self, y: Array) -> Array:
        """Kᵀ y for y of shape (batch, *out_shape)."""

    @abstractmethod
    def param_vjp(self, a: Array, b: Array):
        """∇_params Σ_batch ⟨a, K b⟩ for a: (batch, *out_shape), b: (batch, *in_shape)."""

    @abstractmethod
    def with_params(self, params) -> LinearOperator:
        """The same operator with new parameters (same structure as ``params``)."""

    @property
    def arrays(self) -> tuple:
        """The arrays the operator holds (its parameters' leaves): they fix namespace, dtype and
        device."""
        return _leaves(self.params)

    @property
    def xp(self):
        """The array namespace of the operator's parameters."""
        return namespace(*(("operator parameter", p) for p in self.arrays))

    @property
    def dtype(self):
        return self.arrays[0].dtype

    @property
    def device(self):
        return array_device(self.arrays[0])

    def norm(self, *, iterations: int = 500, rtol: float = 1e-7) -> float:
        """Spectral norm ‖K‖ = largest singular value (power iteration unless overridden)."""
        return estimate_norm(self, iterations=iterations, rtol=rtol).value


def check_batch(op: LinearOperator, method: str, name: str, x: Array,
                shape: tuple[int, ...]) -> None:
    """Raise ``ValueError`` naming the operator's ``method`` and its argument ``name`` unless x
    has shape (batch, *shape): a wrong size would otherwise broadcast, or be sliced, into a wrong
    result without an error."""
    if x.ndim != len(shape) + 1 or tuple(x.shape[1:]) != tuple(shape):
        raise ValueError(f"{type(op).__name__}.{method}: {name} must have shape "
                         f"(batch, {', '.join(map(str, shape))}), got {tuple(x.shape)}")


def check_params_shape(op: LinearOperator, params: Array) -> None:
    """``with_params`` keeps the operator's geometry: raise ``ValueError`` unless an array
    ``params`` has the shape of ``op.params`` (a wrong one would silently change in_shape or
    out_shape; non-arrays are left to the constructor's type check)."""
    shape = getattr(params, "shape", None)
    if shape is not None and tuple(shape) != tuple(op.params.shape):
        raise ValueError(f"{type(op).__name__}.with_params: params must have shape "
                         f"{tuple(op.params.shape)} (the operator's), got {tuple(shape)}")


def _leaves(params) -> tuple:
    if isinstance(params, tuple | list):
        return tuple(leaf for p in params for leaf in _leaves(p))
    return (params,)


@dataclass(frozen=True)
class NormEstimate:
    """Result of :func:`estimate_norm`: the estimate, the right singular vector (pass it back as
    ``v0`` to warm-start the next estimate after a small change of K) and the iterations used."""

    value: float
    vector: Array
    iterations: int


def estimate_norm(
    op: LinearOperator, *, v0: Array | None = None, iterations: int = 500, rtol: float = 1e-7
) -> NormEstimate:
    """Estimate ‖K‖ by power iteration on KᵀK: v ← KᵀK v / ‖KᵀK v‖, ‖K‖ ≈ √‖KᵀK v‖.

    Stops when the estimate changes by less than ``rtol`` (relative) or after ``iterations``.
    The estimate approaches ‖K‖ from below; the step-size rules keep a margin (0.99) for that.
    ``v0`` warm-starts from a previous :class:`NormEstimate`'s ``vector``.
    """
    iterations = check_count("iterations", iterations)
    if not 0 <= float(rtol) < math.inf:
        raise ValueError(f"rtol must be a finite number >= 0, got {rtol!r}")
    xp = op.xp
    shape, n = (1, *op.in_shape), math.prod(op.in_shape)
    if v0 is None:
        # deterministic, generic start vector (the array API has no random numbers)
        v = xp.sin(xp.arange(n, dtype=op.dtype, device=op.device) * 1.2345 + 0.5)
        v = xp.reshape(v, shape)
    else:
        namespace(("v0", v0), *(("operator parameter", p) for p in op.arrays))
        if v0.dtype != op.dtype:
            raise TypeError(f"v0 has dtype {v0.dtype} but the operator has {op.dtype}")
        if math.prod(v0.shape) != n:
            raise ValueError(f"v0 must hold one signal of shape {op.in_shape} ({n} numbers), "
                             f"got shape {tuple(v0.shape)}")
        v = xp.reshape(v0, shape)
    start = float(xp.linalg.vector_norm(v))
    if not 0 < start < math.inf:
        raise ValueError(f"v0 must be a nonzero finite vector, got norm {start}")
    v = v / start
    value = 0.0
    for it in range(1, iterations + 1):
        w = op.adjoint(op.apply(v))
        nrm = float(xp.linalg.vector_norm(w))
        if nrm == 0.0:
            return NormEstimate(0.0, v, it)
        new = math.sqrt(nrm)
        v = w / nrm
        if abs(new - value) <= rtol * new:
            return NormEstimate(new, v, it)
        value = new
    return NormEstimate(value, v, iterations)


class DenseOperator(LinearOperator):
    """A dense matrix K of shape (m, n): K x for x of shape (batch, n) is ``x @ Kᵀ``."""

    def __init__(self, matrix: Array):
        xp = namespace(("matrix", matrix))
        if matrix.ndim != 2:
            raise ValueError(f"matrix must be 2-D (m, n), got shape {tuple(matrix.shape)}")
        if 0 in matrix.shape:
            raise ValueError(f"matrix must have m, n >= 1, got shape {tuple(matrix.shape)}")
        check_finite(xp, matrix=matrix)
        self.params = matrix
        self.out_shape, self.in_shape = (matrix.shape[0],), (matrix.shape[1],)

    @property
    def matrix(self) -> Array:
        return self.params

    def apply(self, x: Array) -> Array:
        check_batch(self, "apply", "x", x, self.in_shape)
        return x @ self.params.T

    def adjoint(self, y: Array) -> Array:
        check_batch(self, "adjoint", "y", y, self.out_shape)
        return y @ self.params

    def param_vjp(self, a: Array, b: Array) -> Array:
        check_batch(self, "param_vjp", "a", a, self.out_shape)
        check_batch(self, "param_vjp", "b", b, self.in_shape)
        return a.T @ b

    def with_params(self, params: Array) -> DenseOperator:
        check_params_shape(self, params)
        return DenseOperator(params)

    def __repr__(self) -> str:
        return f"DenseOperator(m={self.out_shape[0]}, n={self.in_shape[0]}, dtype={self.dtype})"


def dct_matrix(n: int, *, xp=None, dtype=None, device=None) -> Array:
    """Orthonormal DCT-II matrix C (n×n), C[k, j] = √(2/n) c_k cos(π(2j+1)k / 2n), c_0 = 1/√2.

    The published initialisation of the speech operators. NumPy float64 unless ``xp``, ``dtype``
    and ``device`` say otherwise.
    """
    n = check_count("n", n)
    if xp is None:
        import numpy as xp
    if dtype is None:
        dtype = xp.float64
    k = xp.reshape(xp.arange(n, dtype=dtype, device=device), (n, 1))
    j = xp.reshape(xp.arange(n, dtype=dtype, device=device), (1, n))
    c = xp.cos(math.pi * (2 * j + 1) * k / (2 * n)) * math.sqrt(2 / n)
    return xp.where(k == 0, c / math.sqrt(2), c)
