"""Functions of stacked outputs and of data: the dual function of an inverse problem (docs,
Mathematics: "A forward operator in the data term").

For M = [K; A] (a :class:`~pdunroll.Stack`, whose output is one flat array holding K x and A x)
the function F(K x) + H(A x − f) of M x is separable over the blocks:

* :class:`BlockSeparable` applies one function per block (reshaped to the block's shape), so its
  prox, its conjugate's prox, their whole steps, their VJPs and their parameter VJPs are the
  blocks' own, side by side;
* :class:`Translated` is H_f(u) = H(u − f) with per-signal data f as its parameter:
  prox_{tH_f}(z) = f + prox_{tH}(z − f) and, since H_f*(y) = H*(y) + ⟨f, y⟩,
  prox_{sH_f*}(z) = prox_{sH*}(z − s f). Its parameter VJPs are ∇_f ⟨v, prox_{tH_f}(z)⟩ =
  v − J_{prox tH}ᵀ v and ∇_f ⟨v, prox_{sH_f*}(z)⟩ = −s J_{prox sH*}ᵀ v, which is how gradients
  reach the measurements.
"""

from __future__ import annotations

import math

from .. import tree
from .._array import Array, check_finite, namespace
from .._array import xp_of as _xp
from ..registry import saveable
from .euclidean import Function

__all__ = ["BlockSeparable", "Translated"]


def _no_params(name: str, fn: Function) -> Function:
    if not isinstance(fn, Function):
        raise TypeError(f"{name} must be a pdunroll Function, got {type(fn).__name__}")
    return fn


@saveable
class Translated(Function):
    """H_f(u) = H(u − f) for measurements f of shape (batch, *signal_shape), one per signal
    (``params`` = f). ``base`` = H, a function without parameters whose Euclidean prox is used.
    """

    def __init__(self, base: Function, data: Array):
        base = _no_params("base", base)
        if tree.flatten(base.params):
            raise ValueError(f"base must be a function without parameters, got {base!r}")
        xp = namespace(("data", data))
        if data.ndim < 2:
            raise ValueError("data must have shape (batch, *signal_shape), one measurement per "
                             f"signal, got {tuple(data.shape)}")
        check_finite(xp, data=data)
        self.base, self.params = base, data

    per_signal = True

    @property
    def data(self) -> Array:
        return self.params

    def with_params(self, data: Array) -> Translated:
        return Translated(self.base, data)

    def to_config(self, writer) -> dict:
        return {"base": writer.part(self.base), "data": writer.array(self.params)}

    @classmethod
    def from_config(cls, config, reader) -> Translated:
        return cls(reader.part(config["base"]), reader.array(config["data"]))

    def take(self, indices: Array) -> Translated:
        return Translated(self.base, _xp(self.params).take(self.params, indices, axis=0))

    def _check_params(self, name, signal_shape, batch):
        want = (batch, *signal_shape)
        if tuple(self.params.shape) != want:
            raise ValueError(f"the data of {name} must have shape (batch, "
                             f"{', '.join(map(str, signal_shape))}) = {want}, one measurement "
                             f"per signal, got {tuple(self.params.shape)}")

    def value(self, x):
        return self.base.value(x - self.params)

    def conj_value(self, y):
        xp = _xp(y)
        axes = tuple(range(1, y.ndim))
        return self.base.conj_value(y) + xp.sum(self.params * y, axis=axes)

    def prox_save(self, z, t):
        u, saved = self.base.prox_save(z - self.params, t)
        return self.params + u, saved

    def prox_vjp(self, saved, v, t):
        return self.base.prox_vjp(saved, v, t)

    def prox_param_vjp(self, saved, v, t):
        return v - self.base.prox_vjp(saved, v, t)

    def conj_prox_save(self, z, s):
        return self.base.conj_prox_save(z - s * self.params, s)

    def conj_prox_vjp(self, saved, v, s):
        return self.base.conj_prox_vjp(saved, v, s)

    def conj_prox_param_vjp(self, saved, v, s):
        return -s * self.base.conj_prox_vjp(saved, v, s)

    def conj_start_param_vjp(self, e):
        return _xp(e).zeros_like(self.params)  # y⁰ = 0 for any f

    def __repr__(self):
        return f"Translated({self.base!r}, data of shape {tuple(self.params.shape)})"


@saveable
class BlockSeparable(Function):
    """Σ_i F_i(u_i) over the blocks u_i of a flat array (batch, Σ_i m_i) (a
    :class:`~pdunroll.Stack`'s output): block i holds m_i = prod(shapes[i]) numbers and is
    reshaped to ``(batch, *shapes[i])`` for F_i. ``params`` = (F_1.params, …); every map and VJP is
    the blocks' own, concatenated (Bregman steps of a block included)."""

    def __init__(self, parts, shapes):
        parts, shapes = tuple(parts), tuple(tuple(int(n) for n in s) for s in shapes)
        if len(parts) < 1 or len(parts) != len(shapes):
            raise ValueError(f"give one shape per function: {len(parts)} functions, "
                             f"{len(shapes)} shapes")
        for i, fn in enumerate(parts):
            _no_params(f"parts[{i}]", fn)
        self.parts, self.shapes = parts, shapes
        self.sizes = tuple(math.prod(s) for s in shapes)
        self.params = tuple(fn.params for fn in parts)

    def with_params(self, params) -> BlockSeparable:
        if not isinstance(params, tuple) or len(params) != len(self.parts):
            raise ValueError(f"params must be a tuple with one entry per block "
                             f"({len(self.parts)})")
        return BlockSeparable([fn.with_params(p) if tree.flatten(p) else fn
                               for fn, p in zip(self.parts, params, strict=True)], self.shapes)

    def to_config(self, writer) -> dict:
        return {"parts": [writer.part(fn) for fn in self.parts],
                "shapes": [list(s) for s in self.shapes]}

    @classmethod
    def from_config(cls, config, reader) -> BlockSeparable:
        return cls([reader.part(fn) for fn in config["parts"]],
                   [tuple(s) for s in config["shapes"]])

    @property
    def per_signal(self) -> bool:
        return any(fn.per_signal for fn in self.parts)

    def take(self, indices: Array) -> BlockSeparable:
        return BlockSeparable([fn.take(indices) for fn in self.parts], self.shapes)

    def _check_params(self, name, signal_shape, batch):
        total = sum(self.sizes)
        if tuple(signal_shape) != (total,):
            raise ValueError(f"{name} is a BlockSeparable function of blocks of {self.sizes} "
                             f"numbers: it needs flat signals of {total} numbers, got shape "
                             f"{tuple(signal_shape)}")
        for i, (fn, shape) in enumerate(zip(self.parts, self.shapes, strict=True)):
            fn._check_params(f"{name} block {i}", shape, batch)

    # splitting a flat batch into blocks and joining the blocks' results
    def _split(self, u: Array) -> list:
        xp, start, out = _xp(u), 0, []
        for size, shape in zip(self.sizes, self.shapes, strict=True):
            out.append(xp.reshape(u[:, start:start + size], (u.shape[0], *shape)))
            start += size
        return out

    def _join(self, blocks) -> Array:
        xp = _xp(blocks[0])
        return xp.concat([xp.reshape(b, (b.shape[0], size))
                          for b, size in zip(blocks, self.sizes, strict=True)], axis=1)

    def _each(self, method: str, *arrays: Array, extra=()):
        """[F_i.method(block_i of each array, *extra)] over the blocks."""
        split = [self._split(a) for a in arrays]
        return [getattr(fn, method)(*(s[i] for s in split), *extra)
                for i, fn in enumerate(self.parts)]

    def _each_saved(self, method: str, saved, *arrays: Array, extra=()):
        split = [self._split(a) for a in arrays]
        return [getattr(fn, method)(saved[i], *(s[i] for s in split), *extra)
                for i, fn in enumerate(self.parts)]

    def value(self, x):
        parts = self._each("value", x)
        total = parts[0]
        for p in parts[1:]:
            total = total + p
        return total

    def conj_value(self, y):
        parts = self._each("conj_value", y)
        total = parts[0]
        for p in parts[1:]:
            total = total + p
        return total

    def _saving(self, method: str, *arrays, extra=()):
        out = self._each(method, *arrays, extra=extra)
        return self._join([o[0] for o in out]), tuple(o[1] for o in out)

    def prox_save(self, z, t):
        return self._saving("prox_save", z, extra=(t,))

    def prox_vjp(self, saved, v, t):
        return self._join(self._each_saved("prox_vjp", saved, v, extra=(t,)))

    def conj_prox_save(self, z, s):
        return self._saving("conj_prox_save", z, extra=(s,))

    def conj_prox_vjp(self, saved, v, s):
        return self._join(self._each_saved("conj_prox_vjp", saved, v, extra=(s,)))

    def prox_param_vjp(self, saved, v, t):
        return tuple(self._each_saved("prox_param_vjp", saved, v, extra=(t,)))

    def conj_prox_param_vjp(self, saved, v, s):
        return tuple(self._each_saved("conj_prox_param_vjp", saved, v, extra=(s,)))

    def start(self, zeros):
        return self._join(self._each("start", zeros))

    def conj_start(self, zeros):
        return self._join(self._each("conj_start", zeros))

    def conj_start_param_vjp(self, e):
        return tuple(self._each("conj_start_param_vjp", e))

    def prox_step(self, prev, a, t):
        return self._join(self._each("prox_step", prev, a, extra=(t,)))

    def prox_step_save(self, prev, a, t):
        return self._saving("prox_step_save", prev, a, extra=(t,))

    def prox_step_vjp(self, saved, v, t):
        out = self._each_saved("prox_step_vjp", saved, v, extra=(t,))
        return self._join([o[0] for o in out]), self._join([o[1] for o in out])

    def prox_step_param_vjp(self, saved, v, t):
        return tuple(self._each_saved("prox_step_param_vjp", saved, v, extra=(t,)))

    def conj_prox_step(self, prev, a, s):
        return self._join(self._each("conj_prox_step", prev, a, extra=(s,)))

    def conj_prox_step_save(self, prev, a, s):
        return self._saving("conj_prox_step_save", prev, a, extra=(s,))

    def conj_prox_step_vjp(self, saved, v, s):
        out = self._each_saved("conj_prox_step_vjp", saved, v, extra=(s,))
        return self._join([o[0] for o in out]), self._join([o[1] for o in out])

    def conj_prox_step_param_vjp(self, saved, v, s):
        return tuple(self._each_saved("conj_prox_step_param_vjp", saved, v, extra=(s,)))

    def __repr__(self):
        blocks = ", ".join(f"{fn!r} on {shape}" for fn, shape in zip(self.parts, self.shapes,
                                                                      strict=True))
        return f"BlockSeparable({blocks})"
