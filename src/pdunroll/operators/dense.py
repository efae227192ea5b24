"""Dense analysis operators: a matrix K, and the orthonormal DCT-II that starts the speech
models."""

from __future__ import annotations

import math

from .._array import Array, check_count, check_finite, default_namespace, namespace
from ..registry import saveable
from .base import LinearOperator, check_batch, check_params_shape

__all__ = ["DenseOperator", "dct_matrix"]


@saveable
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

    # True on the operators σK and −τK that :meth:`scaled` makes for a Chambolle-Pock call
    _row_major = False

    def _apply(self, x: Array) -> Array:
        if not self._row_major:
            return x @ self.params.T
        t = self.__dict__.get("_transposed")
        if t is None:  # the first product of σK (the forward pass's K x̄ and the reverse's)
            xp, t = self.xp, self.params.T
            t = self.__dict__["_transposed"] = xp.reshape(xp.reshape(t, (-1,)), t.shape)
        return x @ t

    def _adjoint(self, y: Array) -> Array:
        return y @ self.params

    def param_vjp(self, a: Array, b: Array) -> Array:
        check_batch(self, "param_vjp", "a", a, self.out_shape)
        check_batch(self, "param_vjp", "b", b, self.in_shape)
        return a.T @ b

    def scaled(self, c) -> DenseOperator:
        """c K as the matrix c·K, for the 2L products of a Chambolle-Pock call. Its products
        K x multiply by a copy of (c·K)ᵀ of its own, made at the first one by a reshape through
        1-D, which copies the transposed view row by row (NumPy, torch, CuPy; a
        value-preserving reshape on every backend): OpenBLAS multiplies a 32 × 320 batch by
        the transposed view of a 320 × 320 float32 matrix in 113 µs and by the row-major copy
        in 74 µs (one thread; torch's MKL takes 76 and 73 µs). A call makes L products K x̄
        forward and L in reverse with σK (:mod:`pdunroll.unroll.reverse`), for one copy
        (70 µs); −τK multiplies only by Kᵀ there, and makes none."""
        new = self._with_scaled_params(c)
        new.__dict__.pop("_transposed", None)
        new._row_major = True
        return new

    def with_params(self, params: Array) -> DenseOperator:
        check_params_shape(self, params)
        return DenseOperator(params)

    def to_config(self, writer) -> dict:
        return {"matrix": writer.array(self.params)}

    @classmethod
    def from_config(cls, config, reader) -> DenseOperator:
        return cls(reader.array(config["matrix"]))

    def __repr__(self) -> str:
        return f"DenseOperator(m={self.out_shape[0]}, n={self.in_shape[0]}, dtype={self.dtype})"


def dct_matrix(n: int, m: int | None = None, *, xp=None, dtype=None, device=None) -> Array:
    """DCT-II analysis operator C (m×n), C[k, j] = √(2/m) c_k cos(π(2j+1)k / 2m), c_0 = 1/√2.

    With m = n (the default) the orthonormal DCT-II, the published initialisation of the speech
    operators. With m > n the first n columns of the m×m orthonormal DCT-II: an overcomplete
    Parseval frame (CᵀC = I) of m cosines on a finer frequency grid. NumPy float64 unless
    ``xp``, ``dtype`` and ``device`` say otherwise.
    """
    n = check_count("n", n)
    m = n if m is None else check_count("m", m, minimum=n)
    xp = default_namespace(xp)
    if dtype is None:
        dtype = xp.float64
    namespace(("dtype", xp.zeros((1,), dtype=dtype, device=device)))
    k = xp.reshape(xp.arange(m, dtype=dtype, device=device), (m, 1))
    j = xp.reshape(xp.arange(n, dtype=dtype, device=device), (1, n))
    c = xp.cos(math.pi * (2 * j + 1) * k / (2 * m)) * math.sqrt(2 / m)
    return xp.where(k == 0, c / math.sqrt(2), c)
