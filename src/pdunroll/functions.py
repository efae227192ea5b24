"""Convex functions F and G and their proximal maps, each with its vector-Jacobian product.

A :class:`Function` f gives

* ``value(x)``: f(x) per signal, shape (batch,); ``conj_value(y)``: f*(y) per signal;
* ``prox(z, t)`` = prox_{t f}(z) = argmin_u f(u) + ‖u − z‖²/(2t), and
  ``conj_prox(z, s)`` = prox_{s f*}(z), by default through the Moreau identity
  prox_{s f*}(z) = z − s prox_{f/s}(z/s);
* ``prox_save(z, t)`` → (prox, saved) and ``prox_vjp(saved, v, t)`` = J_prox(z)ᵀ v, and the same
  for the conjugate (``conj_prox_save``, ``conj_prox_vjp``). ``saved`` is what the reverse pass
  keeps per step: a boolean mask for clips and soft thresholds (elementwise Jacobians, the fast
  case), the point and its norm for the ℓ2 ball (a Jacobian that is not diagonal);
* the whole proximal step of an algorithm, which the solvers call:
  ``prox_step(prev, grad, t)`` = argmin_u t f(u) + t⟨grad, u⟩ + D(u, prev) (a descent step) and
  ``conj_prox_step(prev, ascent, s)`` = argmin_y s f*(y) − s⟨ascent, y⟩ + D(y, prev) (an ascent
  step of the dual), with ``*_save`` variants and ``prox_step_vjp(saved, v, t)`` →
  (∂u/∂prevᵀ v, ∂u/∂zᵀ v). For the Euclidean distance D(u, p) = ½‖u − p‖² these are
  prox_{tf}(z) with z = prev − t·grad (resp. prox_{sf*}(z), z = prev + s·ascent), and both
  cotangents are J_prox(z)ᵀ v: one array, returned twice. A Bregman distance (module
  :mod:`pdunroll.bregman`) makes u depend on prev also outside z; its second cotangent is
  ∂u/∂gradᵀ v / (−t) (resp. ∂u/∂ascentᵀ v / s), which is what "∂u/∂zᵀ v" means there.
* ``start(zeros)`` / ``conj_start(zeros)``: the first iterate given zeros of its shape (zeros,
  unless the step needs an interior point, e.g. the entropy's positive one).

All maps act on batches: axis 0 is the batch, the other axes belong to one signal. Balls are one
ball per signal.
"""

from __future__ import annotations

import math

from ._array import Array, check_positive
from ._array import array_device as _device
from ._array import xp_of as _xp

__all__ = ["Function", "L1Norm", "L2Ball", "LinfBall", "NonNegative", "SquaredL2", "Zero"]


def _signal_axes(x: Array) -> tuple[int, ...]:
    return tuple(range(1, x.ndim))


class Function:
    """A proper convex lower-semicontinuous function with a computable prox."""

    def value(self, x: Array) -> Array:
        raise NotImplementedError

    def conj_value(self, y: Array) -> Array:
        raise NotImplementedError

    def prox(self, z: Array, t: float) -> Array:
        return self.prox_save(z, t)[0]

    def prox_save(self, z: Array, t: float):
        raise NotImplementedError

    def prox_vjp(self, saved, v: Array, t: float) -> Array:
        raise NotImplementedError

    def start(self, zeros: Array) -> Array:
        return zeros

    def conj_start(self, zeros: Array) -> Array:
        return zeros

    # the Euclidean proximal steps; Bregman functions override these six methods
    def prox_step(self, prev: Array, grad: Array, t: float) -> Array:
        return self.prox(prev - t * grad, t)

    def prox_step_save(self, prev: Array, grad: Array, t: float):
        return self.prox_save(prev - t * grad, t)

    def prox_step_vjp(self, saved, v: Array, t: float) -> tuple[Array, Array]:
        w = self.prox_vjp(saved, v, t)
        return w, w

    def conj_prox_step(self, prev: Array, ascent: Array, s: float) -> Array:
        return self.conj_prox(prev + s * ascent, s)

    def conj_prox_step_save(self, prev: Array, ascent: Array, s: float):
        return self.conj_prox_save(prev + s * ascent, s)

    def conj_prox_step_vjp(self, saved, v: Array, s: float) -> tuple[Array, Array]:
        w = self.conj_prox_vjp(saved, v, s)
        return w, w

    # conjugate through the Moreau identity; subclasses override where a direct formula is faster
    def conj_prox(self, z: Array, s: float) -> Array:
        return self.conj_prox_save(z, s)[0]

    def conj_prox_save(self, z: Array, s: float):
        inner, saved = self.prox_save(z / s, 1 / s)
        return z - s * inner, saved

    def conj_prox_vjp(self, saved, v: Array, s: float) -> Array:
        return v - self.prox_vjp(saved, v, 1 / s)


def _slack(x: Array) -> float:
    """1 + 100 ε of x's dtype: tolerance for feasibility checks of rounded iterates."""
    return 1 + 100 * float(_xp(x).finfo(x.dtype).eps)


def _inf_where(xp, infeasible: Array, like: Array) -> Array:
    zero = xp.zeros(infeasible.shape, dtype=like.dtype, device=_device(like))
    return xp.where(infeasible, xp.asarray(math.inf, dtype=like.dtype, device=_device(like)), zero)


def _keep(mask: Array, v: Array) -> Array:
    """v where mask, else 0: the VJP of a map whose Jacobian is the 0/1 diagonal ``mask``."""
    xp = _xp(v)
    return xp.where(mask, v, xp.zeros_like(v))


class L1Norm(Function):
    """f(x) = w ‖x‖₁. prox: soft threshold at t w; prox of s f*: clip to [−w, w]."""

    def __init__(self, weight: float = 1.0):
        self.weight = check_positive("weight", weight)

    def value(self, x):
        xp = _xp(x)
        return self.weight * xp.sum(xp.abs(x), axis=_signal_axes(x))

    def conj_value(self, y):
        xp = _xp(y)
        return _inf_where(xp, xp.max(xp.abs(y), axis=_signal_axes(y)) > self.weight * _slack(y), y)

    def prox_save(self, z, t):
        xp = _xp(z)
        thr = t * self.weight
        mask = xp.abs(z) > thr
        return xp.where(mask, z - thr * xp.sign(z), xp.zeros_like(z)), mask

    def prox_vjp(self, mask, v, t):
        return _keep(mask, v)

    def conj_prox_save(self, z, s):
        xp = _xp(z)
        w = self.weight
        return xp.clip(z, -w, w), xp.abs(z) <= w

    def conj_prox_vjp(self, mask, v, s):
        return _keep(mask, v)

    def __repr__(self):
        return f"L1Norm(weight={self.weight})"


class LinfBall(Function):
    """Indicator of {‖x‖_∞ ≤ radius}. prox: clip to [−radius, radius] (any step);
    prox of s f*: soft threshold at s·radius (f* = radius ‖·‖₁)."""

    def __init__(self, radius: float):
        self.radius = check_positive("radius", radius)

    def value(self, x):
        xp = _xp(x)
        return _inf_where(xp, xp.max(xp.abs(x), axis=_signal_axes(x)) > self.radius * _slack(x), x)

    def conj_value(self, y):
        xp = _xp(y)
        return self.radius * xp.sum(xp.abs(y), axis=_signal_axes(y))

    def prox_save(self, z, t):
        xp = _xp(z)
        rho = self.radius
        return xp.clip(z, -rho, rho), xp.abs(z) <= rho

    def prox_vjp(self, mask, v, t):
        return _keep(mask, v)

    def __repr__(self):
        return f"LinfBall(radius={self.radius})"


class L2Ball(Function):
    """Indicator of {‖x_i‖₂ ≤ radius} for every signal x_i of the batch (norm over all non-batch
    axes). prox: x ↦ x·min(1, ρ/‖x‖); its Jacobian outside the ball is (ρ/‖z‖)(I − u uᵀ),
    u = z/‖z‖: not diagonal. f* = radius ‖·‖₂."""

    def __init__(self, radius: float):
        self.radius = check_positive("radius", radius)

    def _norms(self, x):
        return _xp(x).linalg.vector_norm(x, axis=_signal_axes(x), keepdims=True)

    def value(self, x):
        xp = _xp(x)
        return _inf_where(xp, xp.reshape(self._norms(x), (-1,)) > self.radius * _slack(x), x)

    def conj_value(self, y):
        xp = _xp(y)
        return self.radius * xp.reshape(self._norms(y), (-1,))

    def prox_save(self, z, t):
        xp = _xp(z)
        nrm = self._norms(z)
        outside = nrm > self.radius
        scale = xp.where(outside, self.radius / xp.where(outside, nrm, xp.ones_like(nrm)),
                         xp.ones_like(nrm))
        return z * scale, (z, nrm, scale)

    def prox_vjp(self, saved, v, t):
        xp = _xp(v)
        z, nrm, scale = saved
        outside = nrm > self.radius
        safe = xp.where(outside, nrm, xp.ones_like(nrm))
        u = z / safe
        uv = xp.sum(u * v, axis=_signal_axes(v), keepdims=True)
        return scale * (v - xp.where(outside, uv, xp.zeros_like(uv)) * u)

    def __repr__(self):
        return f"L2Ball(radius={self.radius})"


class Zero(Function):
    """f = 0. prox: identity; f* is the indicator of {0}, prox of s f*: 0."""

    def value(self, x):
        xp = _xp(x)
        return xp.zeros((x.shape[0],), dtype=x.dtype, device=_device(x))

    def conj_value(self, y):
        xp = _xp(y)
        return _inf_where(xp, xp.max(xp.abs(y), axis=_signal_axes(y)) > 0, y)

    def prox_save(self, z, t):
        return z, None

    def prox_vjp(self, saved, v, t):
        return v

    def conj_prox_save(self, z, s):
        return _xp(z).zeros_like(z), None

    def conj_prox_vjp(self, saved, v, s):
        return _xp(v).zeros_like(v)

    def __repr__(self):
        return "Zero()"


class SquaredL2(Function):
    """f(x) = (w/2)‖x‖². prox: z/(1 + t w); f* = ‖·‖²/(2w)."""

    def __init__(self, weight: float = 1.0):
        self.weight = check_positive("weight", weight)

    def value(self, x):
        xp = _xp(x)
        return 0.5 * self.weight * xp.sum(x * x, axis=_signal_axes(x))

    def conj_value(self, y):
        xp = _xp(y)
        return 0.5 / self.weight * xp.sum(y * y, axis=_signal_axes(y))

    def prox_save(self, z, t):
        return z / (1 + t * self.weight), None

    def prox_vjp(self, saved, v, t):
        return v / (1 + t * self.weight)

    def __repr__(self):
        return f"SquaredL2(weight={self.weight})"


class NonNegative(Function):
    """f(x) = ⟨c, x⟩ + indicator of {x ≥ 0}, c = ``cost`` (an array that broadcasts against the
    batch; 0 if omitted). prox: max(z − t c, 0), Jacobian the 0/1 mask of z − t c ≥ 0;
    f* = indicator of {y ≤ c}."""

    def __init__(self, cost: Array | None = None):
        self.cost = cost

    def _shift(self, z, t):
        return z if self.cost is None else z - t * self.cost

    def value(self, x):
        xp = _xp(x)
        lin = xp.zeros((x.shape[0],), dtype=x.dtype, device=_device(x)) if self.cost is None \
            else xp.sum(self.cost * x, axis=_signal_axes(x))
        return lin + _inf_where(xp, xp.min(x, axis=_signal_axes(x)) < 0, x)

    def conj_value(self, y):
        xp = _xp(y)
        excess = y if self.cost is None else y - self.cost
        return _inf_where(xp, xp.max(excess, axis=_signal_axes(y)) > 0, y)

    def prox_save(self, z, t):
        xp = _xp(z)
        w = self._shift(z, t)
        mask = w >= 0
        return xp.where(mask, w, xp.zeros_like(w)), mask

    def prox_vjp(self, mask, v, t):
        return _keep(mask, v)

    def __repr__(self):
        return "NonNegative()" if self.cost is None else "NonNegative(cost=...)"
