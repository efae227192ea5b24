"""Bregman proximal steps: smooth updates for nonsmooth problems (docs, Mathematics: "Bregman
proximity"; Ochs et al. 2016, §6).

A Bregman step replaces ½‖u − prev‖² by D_ψ(u, prev) = ψ(u) − ψ(prev) − ⟨∇ψ(prev), u − prev⟩.
For f = ⟨c, ·⟩ + indicator of a set X at whose boundary ∇ψ blows up, the step of the solvers

    u = argmin_u t f(u) − ⟨a, u⟩ + D_ψ(u, prev)   ⇔   ∇ψ(u) = ∇ψ(prev) + a − t c

(a = −t·grad for a descent step, a = s·ascent for the dual step of Chambolle-Pock, where f*
plays the role of f; the step methods take a, already scaled) stays inside X
and is smooth in (prev, a), so its Jacobians are smooth too:

* box [−ρ, ρ] (Examples 2, 7), ψ(u) = ρ² Σ φ(u/ρ), φ(x) = ½((1+x)log(1+x) + (1−x)log(1−x)),
  ∇ψ(u) = ρ atanh(u/ρ), 1-strongly convex:

      u = ρ tanh ζ,   ζ = η + a/ρ,   η = atanh(prev/ρ)
      ∂u/∂prev = cosh²η / cosh²ζ,   ∂u/∂a = 1 / cosh²ζ      (elementwise)

  In floating point tanh rounds to ±1 for large |ζ|, and atanh(±1) = ∞ would stall the next step;
  so ζ is clipped to |ζ| ≤ Z with tanh Z = 1 − 4ε (ε the dtype's machine epsilon), where the
  step is constant and its Jacobians are 0.
* positive orthant (Examples 3, 5), ψ(u) = Σ u log u:  u = prev·e^a,
  ∂u/∂prev = e^a, ∂u/∂a = u.
* unit simplex along a class axis (Example 6), same ψ:  u = prev·e^a / Σ_class prev·e^a
  = softmax(log prev + a) along that axis (pixelwise), and with ⟨·,·⟩ summing over the class axis

      ∂u/∂prevᵀ v = (u/prev) ⊙ (v − ⟨u, v⟩),   ∂u/∂aᵀ v = u ⊙ (v − ⟨u, v⟩).

``prox_step_vjp(saved, v, t)`` returns (∂u/∂prevᵀ v, ∂u/∂aᵀ v), the convention of
:class:`pdunroll.Function`, so the reverse recursions treat Euclidean and Bregman steps alike.
The entropic steps need an interior start (``start``): uniform on the simplex, a positive
constant on the orthant. Costs c enter through :class:`pdunroll.LinearTerm` (its steps are the
base's along a − t c).
"""

from __future__ import annotations

import math

from .._array import Array, check_positive
from .._array import xp_of as _xp
from ..registry import saveable
from .euclidean import L1Norm, LinfBall, NonNegative, Simplex, check_axis

__all__ = ["BoxBregmanL1Norm", "BoxBregmanLinfBall", "EntropicOrthant", "EntropicSimplex"]


def _box_limit(xp, dtype) -> float:
    """Z with tanh Z = 1 − 4ε: the largest |ζ| whose tanh is safely below 1."""
    eps = float(xp.finfo(dtype).eps)
    return 0.5 * math.log((2 - 4 * eps) / (4 * eps))


def _box_step(prev: Array, a: Array, rho: float) -> Array:
    xp = _xp(prev)
    zmax = _box_limit(xp, prev.dtype)
    return rho * xp.tanh(xp.clip(xp.atanh(prev / rho) + a / rho, -zmax, zmax))


def _box_step_save(prev: Array, a: Array, rho: float):
    xp = _xp(prev)
    zmax = _box_limit(xp, prev.dtype)
    eta = xp.atanh(prev / rho)
    zeta = eta + a / rho
    inside = xp.abs(zeta) < zmax
    zeta = xp.clip(zeta, -zmax, zmax)
    cz = xp.cosh(zeta)
    d_a = xp.where(inside, 1 / (cz * cz), xp.zeros_like(zeta))
    ce = xp.cosh(eta)
    return rho * xp.tanh(zeta), (ce * ce, d_a)


def _box_vjp(saved, v: Array) -> tuple[Array, Array]:
    ce2, d_a = saved
    w = d_a * v
    return ce2 * w, w


def _check_positive_start(name: str, x: Array, why: str) -> None:
    """Entropic steps multiply: a start with a zero (or negative) entry stays there."""
    xp = _xp(x)
    try:
        positive = bool(xp.all(x > 0))
    except TypeError:  # a traced JAX value: not known while tracing
        return
    if not positive:
        raise ValueError(f"{name} must be positive everywhere (an interior point) for entropic "
                         f"steps: {why}")


@saveable
class BoxBregmanL1Norm(L1Norm):
    """f(x) = w ‖x‖₁ whose conjugate steps (f* = indicator of the box [−w, w]) use the box
    Bregman distance (Example 7): y ← w tanh(atanh(y/w) + a/w), a = s·ascent, smooth in (y, a).
    The dual of ℓ1 inside :func:`pdunroll.chambolle_pock`: y^k = tanh(atanh(y^{k−1}) +
    σ K(x̃ + r̄^{k−1})) for w = 1. Its primal prox stays the Euclidean soft threshold."""

    def conj_prox_step(self, prev, a, s):
        return _box_step(prev, a, self.weight)

    def conj_prox_step_save(self, prev, a, s):
        return _box_step_save(prev, a, self.weight)

    def conj_prox_step_vjp(self, saved, v, s):
        return _box_vjp(saved, v)

    def __repr__(self):
        return f"BoxBregmanL1Norm(weight={self.weight})"


@saveable
class BoxBregmanLinfBall(LinfBall):
    """Indicator of {‖x‖_∞ ≤ ρ} whose primal steps use the box Bregman distance:
    x ← ρ tanh(atanh(x/ρ) + a/ρ), a = −t·grad. Its Euclidean prox (clip) and conjugate stay as in
    :class:`pdunroll.LinfBall`."""

    def prox_step(self, prev, a, t):
        return _box_step(prev, a, self.radius)

    def prox_step_save(self, prev, a, t):
        return _box_step_save(prev, a, self.radius)

    def prox_step_vjp(self, saved, v, t):
        return _box_vjp(saved, v)

    def __repr__(self):
        return f"BoxBregmanLinfBall(radius={self.radius})"


@saveable
class EntropicOrthant(NonNegative):
    """Indicator of {x ≥ 0} whose primal steps use the entropy (Example 5):
    x ← x·exp(a), a = −t·grad, from x⁰ = ``start_value`` (> 0) everywhere. Its Euclidean prox stays
    max(z, 0) (:class:`pdunroll.NonNegative`). A linear cost ⟨c, x⟩:
    ``LinearTerm(c, EntropicOrthant())`` (steps along a − t c, gradient w.r.t. c)."""

    def __init__(self, *, start_value: float = 1.0):
        self.start_value = check_positive("start_value", start_value)

    def start(self, zeros):
        return zeros + self.start_value

    def check_start(self, name, x):
        _check_positive_start(name, x, "the entropic step x·exp(−t·∇) never leaves 0")

    def prox_step(self, prev, a, t):
        return prev * _xp(prev).exp(a)

    def prox_step_save(self, prev, a, t):
        factor = _xp(prev).exp(a)
        u = prev * factor
        return u, (factor, u)

    def prox_step_vjp(self, saved, v, t):
        factor, u = saved
        return factor * v, u * v

    def __repr__(self):
        return f"EntropicOrthant(start_value={self.start_value})"


@saveable
class EntropicSimplex(Simplex):
    """Indicator of the unit simplex along ``axis`` at every other position (per pixel) whose
    primal steps use the entropy (Example 6): u ← u e^a / Σ_axis u e^a, a = −t·grad;
    start: uniform 1/#classes. Value, conjugate and Euclidean prox as :class:`pdunroll.Simplex`.
    Label costs ⟨c, u⟩: ``LinearTerm(c, EntropicSimplex())`` (gradient w.r.t. c included)."""

    def start(self, zeros):
        check_axis("axis", self.axis, zeros)
        return zeros + 1.0 / zeros.shape[self.axis]

    def check_start(self, name, x):
        _check_positive_start(name, x,
                              "the entropic step u·exp(−t·∇) / Σ u·exp(−t·∇) never leaves 0")

    def _softmax(self, prev, a):
        xp = _xp(prev)
        logit = xp.log(prev) + a
        top = xp.max(logit, axis=self.axis, keepdims=True)
        e = xp.exp(logit - top)
        total = xp.sum(e, axis=self.axis, keepdims=True)
        return e / total, top, total

    def prox_step(self, prev, a, t):
        check_axis("axis", self.axis, prev)
        return self._softmax(prev, a)[0]

    def prox_step_save(self, prev, a, t):
        check_axis("axis", self.axis, prev)
        xp = _xp(prev)
        u, top, total = self._softmax(prev, a)
        ratio = xp.exp(a - top) / total  # u / prev, finite also where prev underflowed to 0
        return u, (u, ratio)

    def prox_step_vjp(self, saved, v, t):
        u, ratio = saved
        w = v - _xp(v).sum(u * v, axis=self.axis, keepdims=True)
        return ratio * w, u * w

    def __repr__(self):
        return f"EntropicSimplex(axis={self.axis})"
