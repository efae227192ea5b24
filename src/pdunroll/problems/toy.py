"""The exact 1-D bilevel benchmark of Ochs et al. (2016), §7 (docs, Mathematics: "The
one-dimensional toy problem"), built from pdunroll's pieces.

    min_ϑ ℒ(ϑ) = ½(x*(ϑ) − g)²   s.t.   x*(ϑ) = argmin_{x ≥ 0} E(x, ϑ),
    E(x, ϑ) = (λ/2)(ϑx − b)² + ½x²,   x*(ϑ) = max(0, λϑb / (1 + λϑ²)),

    dℒ/dϑ = λb(1 − λϑ²)/(1 + λϑ²)² · (x*(ϑ) − g)   (ϑ ≠ 0; differentiable there when x* > 0),
    ∂ℒ(0) = the interval between 0 and λb(x*(0) − g).

The lower level is f(x; ϑ) = E as :class:`pdunroll.LeastSquares` (A = [[ϑ]], b, λ, μ = 1) and
g = indicator of {x ≥ 0}. The six estimates of their Figures 4-6, one function each, all
taking (ϑ, forward iterations L, back-iterations b):

* ``smoothed_impl``: log barrier f_μ = f − μ log x, minimised by L entropic (Bregman) steps,
  then the implicit function theorem −(x − g) f_μ''⁻¹ ∂_ϑ f_μ' (b unused): the
  :class:`~pdunroll.Implicit` method of :func:`pdunroll.forward_backward_gradient`, whose fixed
  points are those of f_μ' = 0.
* ``proj_gd`` / ``proj_gd2``: projected gradient x ← max(0, x − α f'(x)) (NonNegative), the
  reverse recursion over the last b of the L steps / b steps at the optimum x^L.
* ``bregman_fb`` / ``bregman_fb2``: x ← x e^{−α f'(x)} (EntropicOrthant), the same two modes.
* ``bregman_fb_impl``: the same steps, implicit derivative of the fixed point at x^L (b unused).

Constants. The paper does not print λ, b, g or the step sizes; chosen here (``Toy``): λ = 5,
b = 1, g = x*(ϑ* = 1) = 5/6, x⁰ = 1 (interior, as entropic steps need), α = 1 for both
algorithms (= 1/L_f at ϑ = 0, where f'' = 1: projected gradient then converges in one step at
ϑ = 0, as their Fig. 4 reports), μ = 10⁻³ for the barrier. At ϑ = 0.3: x* = 1.0345,
dℒ/dϑ = 0.26310; at ϑ = 0: ∂ℒ = [−4.1667, 0].
"""

from __future__ import annotations

from dataclasses import dataclass

from .._array import default_namespace, xp_of
from ..functions.bregman import EntropicOrthant
from ..functions.euclidean import NonNegative
from ..operators.dense import DenseOperator
from ..unroll.methods import Asymptotic, Implicit, Truncated
from ..unroll.splitting import (
    LeastSquares,
    SmoothFunction,
    forward_backward,
    forward_backward_gradient,
)

__all__ = ["METHODS", "Toy", "bregman_fb", "bregman_fb2", "bregman_fb_impl", "proj_gd",
           "proj_gd2", "smoothed_impl"]


@dataclass(frozen=True)
class Toy:
    """Constants of the toy problem (see the module docstring for the choices)."""

    lam: float = 5.0
    b: float = 1.0
    theta_star: float = 1.0
    x0: float = 1.0
    step: float = 1.0
    mu: float = 1e-3

    def solution(self, theta: float) -> float:
        """x*(ϑ) = max(0, λϑb/(1 + λϑ²))."""
        return max(0.0, self.lam * theta * self.b / (1 + self.lam * theta**2))

    @property
    def target(self) -> float:
        """g = x*(ϑ*)."""
        return self.solution(self.theta_star)

    def energy(self, x: float, theta: float) -> float:
        """E(x, ϑ) = (λ/2)(ϑx − b)² + ½x² (x ≥ 0)."""
        return 0.5 * self.lam * (theta * x - self.b) ** 2 + 0.5 * x**2

    def loss(self, theta: float) -> float:
        return 0.5 * (self.solution(theta) - self.target) ** 2

    def analytic_gradient(self, theta: float) -> float:
        """dℒ/dϑ for ϑ ≠ 0 (at ϑ = 0 use :meth:`subdifferential`)."""
        if theta == 0:
            raise ValueError("theta = 0 is the kink: use subdifferential(0)")
        lam, b = self.lam, self.b
        slope = lam * b * (1 - lam * theta**2) / (1 + lam * theta**2) ** 2
        return (slope if self.solution(theta) > 0 else 0.0) * (self.solution(theta) - self.target)

    def subdifferential(self) -> tuple[float, float]:
        """∂ℒ(0) = [min, max] of {0, λb(x*(0) − g)}."""
        end = self.lam * self.b * (self.solution(0.0) - self.target)
        return min(0.0, end), max(0.0, end)

    def smooth(self, theta: float, xp=None):
        """f(x; ϑ) as LeastSquares on (1, 1) arrays of ``xp`` (NumPy by default)."""
        xp = default_namespace(xp)
        return LeastSquares(DenseOperator(xp.asarray([[float(theta)]], dtype=xp.float64)),
                            xp.asarray([[self.b]], dtype=xp.float64), weight=self.lam, ridge=1.0)


TOY = Toy()


class _Barrier(SmoothFunction):
    """f_μ = f − μ Σ log x (Ochs et al. 2016, eq. (18)): ∇f_μ = ∇f − μ/x, ∇²f_μ v = ∇²f v + μ
    v/x²."""

    def __init__(self, inner: SmoothFunction, mu: float):
        self.inner, self.mu = inner, mu

    @property
    def params(self):
        return self.inner.params

    def value(self, x):
        xp = xp_of(x)
        return self.inner.value(x) - self.mu * xp.sum(xp.log(x), axis=tuple(range(1, x.ndim)))

    def grad(self, x):
        return self.inner.grad(x) - self.mu / x

    def hvp(self, x, v):
        return self.inner.hvp(x, v) + self.mu * v / (x * x)

    def param_vjp(self, x, v):
        return self.inner.param_vjp(x, v)


def _run(theta, g, method, forward, toy, smooth=None):
    import numpy as np  # not at module level: importing pdunroll must not import numpy

    smooth = toy.smooth(theta) if smooth is None else smooth
    res = forward_backward_gradient(
        smooth, g, np.asarray([[toy.x0]]), np.asarray([[toy.target]]), step=toy.step,
        iterations=forward, method=method)
    return float(res.params[0, 0])


def smoothed_impl(theta: float, forward: int = 200, back: int | None = None,
                  toy: Toy = TOY) -> float:
    """Smoothed-impl: implicit function theorem on the log-barrier problem (``back`` unused)."""
    return _run(theta, EntropicOrthant(), Implicit(), forward, toy,
                smooth=_Barrier(toy.smooth(theta), toy.mu))


def proj_gd(theta: float, forward: int = 200, back: int = 200, toy: Toy = TOY) -> float:
    """Proj.GD: projected gradient, backpropagated through the last ``back`` of ``forward``
    steps (``back`` = ``forward``: the exact derivative of the unrolled algorithm)."""
    return _run(theta, NonNegative(), Truncated(back), forward, toy)


def proj_gd2(theta: float, forward: int = 200, back: int = 200, toy: Toy = TOY) -> float:
    """Proj.GD2: ``back`` backward steps with the derivatives at the optimum x^L."""
    return _run(theta, NonNegative(), Asymptotic(back), forward, toy)


def bregman_fb(theta: float, forward: int = 200, back: int = 200, toy: Toy = TOY) -> float:
    """Bregman-FB: x ← x e^{−α f'(x)}, backpropagated through the last ``back`` steps."""
    return _run(theta, EntropicOrthant(), Truncated(back), forward, toy)


def bregman_fb2(theta: float, forward: int = 200, back: int = 200, toy: Toy = TOY) -> float:
    """Bregman-FB2: ``back`` backward steps with the derivatives at the optimum x^L."""
    return _run(theta, EntropicOrthant(), Asymptotic(back), forward, toy)


def bregman_fb_impl(theta: float, forward: int = 200, back: int | None = None,
                    toy: Toy = TOY) -> float:
    """Bregman-FB-impl: implicit derivative of the Bregman fixed point at x^L (``back``
    unused)."""
    return _run(theta, EntropicOrthant(), Implicit(), forward, toy)


METHODS = {
    "Smoothed-impl": smoothed_impl,
    "Proj.GD": proj_gd,
    "Proj.GD2": proj_gd2,
    "Bregman-FB": bregman_fb,
    "Bregman-FB2": bregman_fb2,
    "Bregman-FB-impl": bregman_fb_impl,
}


def energies(theta: float, forward: int = 200, toy: Toy = TOY) -> dict[str, list[float]]:
    """E(x^k, ϑ) − E(x*, ϑ) for k = 1..L of the forward processes: projected gradient, Bregman
    forward-backward, and the barrier problem's Bregman iteration (for Smoothed-impl)."""
    import numpy as np

    e_star = toy.energy(toy.solution(theta), theta)
    runs = {"Proj.GD": (NonNegative(), toy.smooth(theta)),
            "Bregman-FB": (EntropicOrthant(), toy.smooth(theta)),
            "Smoothed-impl": (EntropicOrthant(), _Barrier(toy.smooth(theta), toy.mu))}
    out = {}
    for name, (g, smooth) in runs.items():
        trace: list[float] = []
        forward_backward(smooth, g, np.asarray([[toy.x0]]), step=toy.step, iterations=forward,
                         callback=lambda k, x, t=trace: t.append(
                             max(toy.energy(float(x[0, 0]), theta) - e_star, 0.0)))
        out[name] = trace
    return out

