"""Small building blocks for analysis operators: the image gradient, diagonal weights, and
composition and stacking of operators.

Fixed operators (:class:`Gradient2d`) have ``params = ()`` and a ``param_vjp`` returning ();
they hold a one-element template array that fixes their namespace, dtype and device.
Composite operators have the tuple of their parts' parameters as ``params``, and ``param_vjp``
returns the tuple of the parts' gradients.
"""

from __future__ import annotations

import copy
import math

from .._array import (
    Array,
    array_device,
    check_count,
    check_finite,
    namespace,
    xp_of,
)
from ..registry import saveable
from .base import FixedOperator, LinearOperator, check_batch, check_params_shape

__all__ = ["Composition", "Diagonal", "Gradient2d", "Stack"]


@saveable
class Gradient2d(FixedOperator):
    """Forward differences with Neumann boundary on images (batch, H, W) ↦ (batch, 2, H, W), or
    channel by channel on stacks (batch, C, H, W) ↦ (batch, C, 2, H, W) (``image_shape`` =
    (C, H, W), e.g. per-label TV: ``L21Norm(λ, group_axis=2)`` is λ Σ_c ‖D u_c‖_{2,1}):

        (K u)[..., 0, i, j] = u[..., i+1, j] − u[..., i, j]  (0 in the last row),
        (K u)[..., 1, i, j] = u[..., i, j+1] − u[..., i, j]  (0 in the last column).

    Kᵀ = −div. ‖K‖ = √(4 sin²(π(H−1)/2H) + 4 sin²(π(W−1)/2W)) (< √8), exact, for any C.
    ``xp``, ``dtype``, ``device``: where the operator works (NumPy float64 by default; a dtype
    of another library given without ``xp``, e.g. ``torch.float32``, chooses that library).
    """

    def __init__(self, image_shape: tuple[int, ...], *, xp=None, dtype=None, device=None):
        if not hasattr(image_shape, "__len__") or len(image_shape) not in (2, 3):
            raise ValueError(f"image_shape must be (H, W) or (C, H, W), got {image_shape!r}")
        self.in_shape = tuple(check_count("image_shape entries", n) for n in image_shape)
        self.out_shape = (*self.in_shape[:-2], 2, *self.in_shape[-2:])
        self._place(xp, dtype, device)

    def _apply(self, x: Array) -> Array:
        xp = self.xp
        rows = xp.concat([x[..., 1:, :] - x[..., :-1, :], _zero_row(xp, x, -2)], axis=-2)
        cols = xp.concat([x[..., :, 1:] - x[..., :, :-1], _zero_row(xp, x, -1)], axis=-1)
        return xp.stack([rows, cols], axis=-3)

    def _adjoint(self, y: Array) -> Array:
        xp = self.xp
        p, q = y[..., 0, :-1, :], y[..., 1, :, :-1]
        zp, zq = _zero_row(xp, p, -2), _zero_row(xp, q, -1)
        return (xp.concat([zp, p], axis=-2) - xp.concat([p, zp], axis=-2)
                + xp.concat([zq, q], axis=-1) - xp.concat([q, zq], axis=-1))

    def param_vjp(self, a: Array, b: Array) -> tuple:
        check_batch(self, "param_vjp", "a", a, self.out_shape)
        check_batch(self, "param_vjp", "b", b, self.in_shape)
        return ()

    def with_params(self, params) -> Gradient2d:
        if not (isinstance(params, tuple) and not params):
            raise ValueError(f"Gradient2d has no parameters: params must be (), got {params!r}")
        return self

    def norm(self, *, iterations: int = 500, rtol: float = 1e-7) -> float:
        h, w = self.in_shape[-2:]
        return math.sqrt(4 * math.sin(math.pi * (h - 1) / (2 * h)) ** 2
                         + 4 * math.sin(math.pi * (w - 1) / (2 * w)) ** 2)

    def at_shape(self, shape: tuple[int, ...]) -> Gradient2d:
        """The gradient of images of shape ``shape`` ((H, W) or (C, H, W))."""
        return Gradient2d(tuple(shape), xp=self.xp, dtype=self.dtype, device=self.device)

    def to_config(self, writer) -> dict:
        return {"image_shape": list(self.in_shape), "dtype": str(self.dtype).split(".")[-1]}

    @classmethod
    def from_config(cls, config, reader) -> Gradient2d:
        return cls(tuple(config["image_shape"]), xp=reader.xp,
                   dtype=reader.dtype(config["dtype"]), device=reader.device)

    def __repr__(self) -> str:
        return f"Gradient2d(image_shape={self.in_shape}, dtype={self.dtype})"


def _zero_row(xp, x: Array, axis: int) -> Array:
    axis %= x.ndim
    shape = x.shape[:axis] + (1,) + x.shape[axis + 1:]
    return xp.zeros(shape, dtype=x.dtype, device=array_device(x))


@saveable
class Diagonal(LinearOperator):
    """K x = w ⊙ x with weights w of one signal's shape (shared by the batch); the weights are
    the parameters: ``param_vjp(a, b)`` = Σ_batch a ⊙ b. ‖K‖ = max |w|."""

    def __init__(self, weights: Array):
        xp = namespace(("weights", weights))
        if weights.ndim < 1 or 0 in weights.shape:
            raise ValueError("weights must have at least one axis (the shape of one signal) and "
                             f"no empty one, got shape {tuple(weights.shape)}")
        check_finite(xp, weights=weights)
        self.params = weights
        self.in_shape = self.out_shape = tuple(weights.shape)

    @property
    def weights(self) -> Array:
        return self.params

    def _apply(self, x: Array) -> Array:
        return self.params * x

    def _adjoint(self, y: Array) -> Array:
        return self.params * y

    def param_vjp(self, a: Array, b: Array) -> Array:
        check_batch(self, "param_vjp", "a", a, self.out_shape)
        check_batch(self, "param_vjp", "b", b, self.in_shape)
        return xp_of(a).sum(a * b, axis=0)

    def scaled(self, c) -> Diagonal:
        """c K as the weights c·w."""
        return self._with_scaled_params(c)

    def with_params(self, params: Array) -> Diagonal:
        check_params_shape(self, params)
        return Diagonal(params)

    def norm(self, *, iterations: int = 500, rtol: float = 1e-7) -> float:
        xp = self.xp
        return float(xp.max(xp.abs(self.params)))

    def to_config(self, writer) -> dict:
        return {"weights": writer.array(self.params)}

    @classmethod
    def from_config(cls, config, reader) -> Diagonal:
        return cls(reader.array(config["weights"]))

    def __repr__(self) -> str:
        return f"Diagonal(shape={self.in_shape}, dtype={self.dtype})"


def _check_parts(kind: str, operators) -> tuple:
    if len(operators) < 2:
        raise ValueError(f"{kind} needs at least two operators, got {len(operators)}")
    for i, op in enumerate(operators):
        if not isinstance(op, LinearOperator):
            raise TypeError(f"{kind} operator {i} must be a LinearOperator, got "
                            f"{type(op).__name__}")
    arrays = [a for op in operators for a in op.arrays]
    namespace(*((f"{kind} operand array", a) for a in arrays))
    if any(a.dtype != arrays[0].dtype for a in arrays):
        raise TypeError(f"{kind} operators must share one dtype, got "
                        f"{sorted({str(a.dtype) for a in arrays})}")
    return tuple(operators)


@saveable
class Composition(LinearOperator):
    """K = A_1 ∘ A_2 ∘ … ∘ A_n (A_n acts first), e.g. ``Composition(Diagonal(w), Gradient2d(s))``
    for a weighted gradient. ``params`` = (A_1.params, …, A_n.params); ‖K‖ by power iteration."""

    def __init__(self, *operators: LinearOperator):
        self.operators = _check_parts("Composition", operators)
        for i, (outer, inner) in enumerate(zip(operators, operators[1:], strict=False)):
            if tuple(outer.in_shape) != tuple(inner.out_shape):
                raise ValueError(f"Composition: operator {i} takes signals of shape "
                                 f"{outer.in_shape} but operator {i + 1} returns {inner.out_shape}")
        self.in_shape, self.out_shape = operators[-1].in_shape, operators[0].out_shape
        self.params = tuple(op.params for op in operators)

    @property
    def arrays(self) -> tuple:
        return tuple(a for op in self.operators for a in op.arrays)

    def _apply(self, x: Array) -> Array:
        for op in reversed(self.operators):
            x = op._apply(x)
        return x

    def _adjoint(self, y: Array) -> Array:
        for op in self.operators:
            y = op._adjoint(y)
        return y

    def param_vjp(self, a: Array, b: Array) -> tuple:
        check_batch(self, "param_vjp", "a", a, self.out_shape)
        check_batch(self, "param_vjp", "b", b, self.in_shape)
        # ⟨a, A_1…A_n b⟩ = ⟨A_{i−1}ᵀ…A_1ᵀ a, A_i (A_{i+1}…A_n b)⟩ for each i
        inputs = [b]
        for op in reversed(self.operators[1:]):
            inputs.append(op._apply(inputs[-1]))
        grads = []
        for op, b_i in zip(self.operators, reversed(inputs), strict=True):
            grads.append(op.param_vjp(a, b_i))
            if len(grads) < len(self.operators):
                a = op._adjoint(a)
        return tuple(grads)

    def scaled(self, c) -> Composition:
        """c K as (c A_1) ∘ A_2 ∘ … ∘ A_n."""
        return _with_parts(self, (self.operators[0].scaled(c), *self.operators[1:]))

    def with_params(self, params) -> Composition:
        return Composition(*_with_each(self.operators, params))

    def at_shape(self, shape: tuple[int, ...]) -> Composition:
        """Each part for the shape the part after it returns (A_n for ``shape``)."""
        parts = []
        for op in reversed(self.operators):
            parts.append(op.at_shape(shape))
            shape = parts[-1].out_shape
        return Composition(*reversed(parts))

    def to_config(self, writer) -> dict:
        return {"operators": [writer.part(op) for op in self.operators]}

    @classmethod
    def from_config(cls, config, reader) -> Composition:
        return cls(*(reader.part(op) for op in config["operators"]))

    def __repr__(self) -> str:
        return f"Composition({', '.join(map(repr, self.operators))})"


@saveable
class Stack(LinearOperator):
    """K = [A_1; A_2; …; A_n] on a common input. The output is ONE array (batch, m) holding the
    flattened outputs (batch, m_i) of the parts one after the other, m = Σ m_i (C order), so F
    sees a flat vector (e.g. L1Norm over all responses). ``params`` = (A_1.params, …);
    ‖K‖ by power iteration (‖K‖² ≤ Σ ‖A_i‖²)."""

    def __init__(self, *operators: LinearOperator):
        self.operators = _check_parts("Stack", operators)
        for i, op in enumerate(operators):
            if tuple(op.in_shape) != tuple(operators[0].in_shape):
                raise ValueError(f"Stack: operator {i} takes signals of shape {op.in_shape} but "
                                 f"operator 0 takes {operators[0].in_shape}")
        self.sizes = tuple(math.prod(op.out_shape) for op in operators)
        self.in_shape, self.out_shape = operators[0].in_shape, (sum(self.sizes),)
        self.params = tuple(op.params for op in operators)

    @property
    def arrays(self) -> tuple:
        return tuple(a for op in self.operators for a in op.arrays)

    def _parts(self, y: Array):
        xp, start = self.xp, 0
        for op, size in zip(self.operators, self.sizes, strict=True):
            yield op, xp.reshape(y[:, start:start + size], (y.shape[0], *op.out_shape))
            start += size

    def _apply(self, x: Array) -> Array:
        xp = self.xp
        return xp.concat([xp.reshape(op._apply(x), (x.shape[0], size))
                          for op, size in zip(self.operators, self.sizes, strict=True)], axis=1)

    def _adjoint(self, y: Array) -> Array:
        total = None
        for op, part in self._parts(y):
            z = op._adjoint(part)
            total = z if total is None else total + z
        return total

    def param_vjp(self, a: Array, b: Array) -> tuple:
        check_batch(self, "param_vjp", "a", a, self.out_shape)
        check_batch(self, "param_vjp", "b", b, self.in_shape)
        return tuple(op.param_vjp(part, b) for op, part in self._parts(a))

    def scaled(self, c) -> Stack:
        """c K as [c A_1; …; c A_n]."""
        return _with_parts(self, tuple(op.scaled(c) for op in self.operators))

    def with_params(self, params) -> Stack:
        return Stack(*_with_each(self.operators, params))

    def at_shape(self, shape: tuple[int, ...]) -> Stack:
        """Every part for signals of shape ``shape``."""
        return Stack(*(op.at_shape(shape) for op in self.operators))

    def to_config(self, writer) -> dict:
        return {"operators": [writer.part(op) for op in self.operators]}

    @classmethod
    def from_config(cls, config, reader) -> Stack:
        return cls(*(reader.part(op) for op in config["operators"]))

    def __repr__(self) -> str:
        return f"Stack({', '.join(map(repr, self.operators))})"


def _with_parts(op, parts: tuple):
    """A copy of the Composition or Stack ``op`` with the parts ``parts`` (of the same shapes,
    namespace and dtype: not checked again)."""
    new = copy.copy(op)
    new.operators, new.params = parts, tuple(part.params for part in parts)
    return new


def _with_each(operators, params) -> list:
    if not isinstance(params, tuple) or len(params) != len(operators):
        raise ValueError(f"params must be a tuple with one entry per operator ({len(operators)}), "
                         f"got {type(params).__name__} of length "
                         f"{len(params) if isinstance(params, tuple) else 'n/a'}")
    return [op.with_params(p) for op, p in zip(operators, params, strict=True)]
