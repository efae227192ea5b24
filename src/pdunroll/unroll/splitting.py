"""Forward-backward splitting with a (Bregman) proximal step, unrolled, with its hand-written
reverse mode (Ochs et al. 2016, §5.1, Algorithm 2; docs, Mathematics: "Bregman proximity").

For min_x f(x; ϑ) + g(x) with smooth f, L steps from x⁰:

    x^k = P(x^{k−1}, ∇f(x^{k−1}; ϑ)),   P(prev, grad) = g.prox_step(prev, −α grad, α)

Euclidean P: prox_{αg}(x − α∇f(x)), projected gradient descent for an indicator g
(:class:`pdunroll.NonNegative`); Bregman P, e.g. x·e^{−α∇f(x)} (:class:`pdunroll.EntropicOrthant`).

Reverse mode. With v^L = ∇ℓ(x^L), w = 0 and, for k = L..1, (ε^k, δ^k) = the step's VJP of v^k
(ε = ∂P/∂prevᵀ v, δ = ∂P/∂gradᵀ v / (−α), the step's cotangent of its direction −α grad; both
J_proxᵀ v for a Euclidean prox):

    w       ← w − α (∂_ϑ∇f(x^{k−1}))ᵀ δ^k
    v^{k−1} = ε^k − α ∇²f(x^{k−1}) δ^k

and ∇_ϑ ℓ = w; parameters of g (``g.params``) collect Σ_k g.prox_step_param_vjp at v^k.
For a Euclidean prox this is Algorithm 2 of Ochs et al. (2016),
v^{k−1} = (I − α∇²f)ᵀ J_proxᵀ v^k. Writing one step as T(x, ϑ), the terms are
T_xᵀ v = ε − α∇²f δ and T_ϑᵀ v = −α(∂_ϑ∇f)ᵀ δ.

Methods: :class:`~pdunroll.Full` (all L steps, stored), :class:`~pdunroll.Truncated` (the last
b), :class:`~pdunroll.Asymptotic` (the "derivative at the optimum" of Ochs et al. (2016), §4.3
and §7, Proj.GD2 and Bregman-FB2: b steps of the recursion with every Jacobian at x^L, i.e.
w = Σ_{j<b} T_ϑᵀ (T_xᵀ)^j ∇ℓ, nothing stored) and :class:`~pdunroll.Implicit`
(Bregman-FB-impl: w = T_ϑᵀ v with (I − T_xᵀ) v = ∇ℓ at x^L, solved per signal like the
Chambolle-Pock fixed-point gradient; singular where x^L sits on a kink, which the solver
reports).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from .. import tree
from .._array import Array, check_count, check_finite, check_positive, namespace
from .._array import xp_of as _xp
from ..functions.euclidean import Function
from ..operators.base import LinearOperator
from .gradient import squared_loss
from .krylov import SolveInfo
from .methods import GradientMethod, as_method

__all__ = ["FBGradient", "FBResult", "LeastSquares", "SmoothFunction", "forward_backward",
           "forward_backward_gradient"]


class SmoothFunction(ABC):
    """A smooth f(x; ϑ) per signal: ``value(x)`` (shape (batch,)), ``grad(x)`` = ∇f(x),
    ``hvp(x, v)`` = ∇²f(x) v, ``param_vjp(x, v)`` = (∂_ϑ∇f(x))ᵀ v summed over the batch (the
    structure of ``params``), and ``params``."""

    params: Array

    @abstractmethod
    def value(self, x: Array) -> Array:
        """f(x) per signal, shape (batch,)."""

    @abstractmethod
    def grad(self, x: Array) -> Array:
        """∇f(x)."""

    @abstractmethod
    def hvp(self, x: Array, v: Array) -> Array:
        """∇²f(x) v."""

    @abstractmethod
    def param_vjp(self, x: Array, v: Array):
        """(∂_ϑ ∇f(x))ᵀ v summed over the batch, structured like ``params``."""

    def lipschitz(self) -> float | None:
        """The Lipschitz constant of ∇f (``None``: unknown, not checked), against which
        the step α < 2/Lip is checked."""
        return None


class LeastSquares(SmoothFunction):
    """f(x) = (λ/2)‖A x − b‖² + (μ/2)‖x‖² with A a :class:`pdunroll.LinearOperator` (ϑ = its
    parameters), b of shape (batch, *A.out_shape) or broadcastable to it, λ = ``weight``,
    μ = ``ridge``:

        ∇f = λAᵀ(Ax − b) + μx,   ∇²f v = λAᵀA v + μv,
        (∂_ϑ∇f)ᵀ v = λ ∇_ϑ[⟨Ax − b, A v⟩] = λ (param_vjp(Ax − b, v) + param_vjp(A v, x)).
    """

    def __init__(self, operator: LinearOperator, b: Array, *, weight: float = 1.0,
                 ridge: float = 0.0):
        if not isinstance(operator, LinearOperator):
            raise TypeError(f"operator must be a LinearOperator, got {type(operator).__name__}")
        xp = namespace(("b", b), *(("operator parameter", p) for p in operator.arrays))
        out = tuple(operator.out_shape)
        if b.ndim > len(out) + 1 or any(
                n not in (1, m) for n, m in zip(reversed(tuple(b.shape)), reversed(out),
                                                strict=False)):
            raise ValueError(f"b must have shape (batch, {', '.join(map(str, out))}) or "
                             f"broadcast to it, got {tuple(b.shape)}")
        check_finite(xp, b=b)
        self.operator, self.b = operator, b
        self.weight = check_positive("weight", weight)
        if not (ridge >= 0 and math.isfinite(ridge)):
            raise ValueError(f"ridge must be a finite number >= 0, got {ridge!r}")
        self.ridge = float(ridge)
        self._lipschitz = None

    @property
    def params(self):
        return self.operator.params

    def _residual(self, x):  # the products unchecked: x was checked by value() at the start
        return self.operator._apply(x) - self.b

    def value(self, x):
        xp = _xp(x)
        res = self.operator.apply(x) - self.b  # checked: forward_backward's entry check
        out = 0.5 * self.weight * xp.sum(res * res, axis=tuple(range(1, res.ndim)))
        if self.ridge:
            out = out + 0.5 * self.ridge * xp.sum(x * x, axis=tuple(range(1, x.ndim)))
        return out

    def grad(self, x):
        g = self.weight * self.operator._adjoint(self._residual(x))
        return g + self.ridge * x if self.ridge else g

    def hvp(self, x, v):
        h = self.weight * self.operator._adjoint(self.operator._apply(v))
        return h + self.ridge * v if self.ridge else h

    def lipschitz(self) -> float:
        """λ‖A‖² + μ (‖A‖ by power iteration, once)."""
        if self._lipschitz is None:
            self._lipschitz = self.weight * self.operator.norm() ** 2 + self.ridge
        return self._lipschitz

    def param_vjp(self, x, v):
        op = self.operator
        a = op.param_vjp(self._residual(x), v)
        c = op.param_vjp(op._apply(v), x)
        # λ(a + c) leaf by leaf: composite operators nest their parts' parameters in tuples
        return tree.axpy(self.weight, c, tree.axpy(self.weight, a, None))


@dataclass(frozen=True)
class FBResult:
    """``x``: x^L; ``residual``: ‖x^L − x^{L−1}‖/α per signal; ``iterations``: L."""

    x: Array
    residual: Array
    iterations: int


@dataclass(frozen=True)
class FBGradient:
    """``loss``: ℓ(x^L); ``params``: ∇ℓ w.r.t. the smooth part's parameters (structure of
    ``smooth.params``); ``x``: x^L; ``method``: the gradient method; ``g``: ∇ℓ w.r.t.
    ``g.params`` (e.g. the costs of a :class:`pdunroll.LinearTerm`; ``()`` for functions without
    any); ``info``: how the linear solve of :class:`~pdunroll.Implicit` ended
    (:class:`~pdunroll.SolveInfo`), ``None`` otherwise."""

    loss: float
    params: object
    x: Array
    method: GradientMethod
    g: object = ()
    info: SolveInfo | None = None


def _check(smooth, g, x0, step, iterations):
    if not isinstance(smooth, SmoothFunction):
        raise TypeError(f"smooth must be a pdunroll SmoothFunction (e.g. LeastSquares), got "
                        f"{type(smooth).__name__}")
    if not isinstance(g, Function):
        raise TypeError(f"g must be a pdunroll Function (e.g. NonNegative()), got "
                        f"{type(g).__name__}")
    xp = namespace(("x0", x0), *(("smooth parameters", p) for p in tree.flatten(smooth.params)))
    check_finite(xp, x0=x0)
    if x0.ndim == 0 or x0.shape[0] == 0:
        raise ValueError(f"x0 must hold a batch of at least one signal, got shape "
                         f"{tuple(x0.shape)}")
    try:
        smooth.value(x0)
    except ValueError as err:
        raise ValueError(f"x0 of shape {tuple(x0.shape)} does not fit the smooth part: "
                         f"{err}") from err
    g.check_start("x0", x0)
    step = check_positive("step", step)
    lip = smooth.lipschitz()
    if lip is not None and step * lip >= 2:  # the steps oscillate or diverge
        raise ValueError(f"step={step:g} is too large for this smooth part: forward-backward "
                         f"needs step < 2 / Lip = {2 / lip:.4g} (Lip = {lip:.4g}, the Lipschitz "
                         "constant of its gradient)")
    return step, check_count("iterations", iterations)


# the iteration explodes when its last step ‖x^L − x^{L−1}‖ is this many times the first one
# while f grew (for α < 2/Lip(∇f) Euclidean steps are averaged maps, whose step lengths never
# grow, and a Bregman step from a point near the boundary may take growing steps, but downhill)
DIVERGENCE_FACTOR = 1e3


def _run(smooth, g, x, step, iterations, keep, callback=None):
    """L steps from x; keeps (x^{k−1}, saved step k) for the last ``keep`` steps. Checks once,
    after the loop (no host synchronisation inside it), that the iterates did not diverge."""
    tape: deque = deque(maxlen=keep)
    x_prev, first, f0 = x, None, smooth.value(x)
    for k in range(1, iterations + 1):
        x_prev = x
        if keep:
            x, saved = g.prox_step_save(x_prev, -step * smooth.grad(x_prev), step)
            tape.append((x_prev, saved))
        else:
            x = g.prox_step(x_prev, -step * smooth.grad(x_prev), step)
        if k == 1:
            first = _step_length(x, x_prev)
        if callback is not None:
            callback(k, x)
    _check_converging(smooth, x, f0, first, _step_length(x, x_prev), step)
    return x, x_prev, tape


def _step_length(x, x_prev):
    return _xp(x).linalg.vector_norm(x - x_prev, axis=tuple(range(1, x.ndim)))


def _check_converging(smooth, x, f0, first, last, step) -> None:
    """Non-finite or exploding iterates (growing steps and a growing f) are an error, not a
    returned result."""
    xp = _xp(x)
    finite = xp.all(xp.isfinite(x))
    exploding = xp.logical_and(last > DIVERGENCE_FACTOR * first + 1e-30, smooth.value(x) > f0)
    if not bool(xp.logical_and(finite, xp.logical_not(xp.any(exploding)))):
        worst = float(xp.max(xp.where(xp.isfinite(x), xp.abs(x), xp.inf)))
        raise FloatingPointError(
            f"forward-backward diverged with step={step:g}: the iterates grew to max |x| = "
            f"{worst:.3g} (their last step is over {DIVERGENCE_FACTOR:g} times the first, and "
            "f grew); choose step < 2 / (Lipschitz constant of the gradient of the smooth part)")


def forward_backward(smooth: SmoothFunction, g: Function, x0: Array, *, step: float,
                     iterations: int, callback: Callable[[int, Array], object] | None = None
                     ) -> FBResult:
    """L = ``iterations`` steps x ← g.prox_step(x, −α∇f(x), α) from x⁰ (an interior point of g's
    domain for entropic steps, checked). ``callback(k, x^k)`` runs after step k. A step
    α ≥ 2/Lip(∇f) is refused where the smooth part knows its Lipschitz constant
    (:class:`LeastSquares`: λ‖A‖² + μ); otherwise iterates that explode raise
    ``FloatingPointError``."""
    step, iterations = _check(smooth, g, x0, step, iterations)
    x, x_prev, _ = _run(smooth, g, x0, step, iterations, 0, callback)
    xp = _xp(x)
    residual = xp.linalg.vector_norm(x - x_prev, axis=tuple(range(1, x.ndim))) / step
    return FBResult(x, residual, iterations)


def _step_transposes(smooth, g, step, x, saved, v):
    """(T_xᵀ v, δ) for one step at x: T_xᵀ v = ε − α∇²f(x) δ; T_ϑᵀ v = −α param_vjp(x, δ)."""
    e, d = g.prox_step_vjp(saved, v, step)
    return e - step * smooth.hvp(x, d), d


def forward_backward_gradient(
    smooth: SmoothFunction,
    g: Function,
    x0: Array,
    x_true: Array | None = None,
    *,
    step: float,
    iterations: int,
    method: GradientMethod | str = "full",
    loss: Callable[[Array], tuple[float, Array]] | None = None,
) -> FBGradient:
    """Loss ℓ(x^L) of L forward-backward steps and its gradient w.r.t. ``smooth.params``.

    ``method``: :class:`~pdunroll.Full` (all L steps), :class:`~pdunroll.Truncated` (the last
    b), :class:`~pdunroll.Asymptotic` (b backward steps with every Jacobian at x^L) or
    :class:`~pdunroll.Implicit` (solve (I − T_xᵀ) v = ∇ℓ at x^L per signal, with the solver,
    tolerance and ``strict`` of the method; ``info`` of the result says how it ended).
    ``segments``, ``relax_primal`` and ``released_mask`` are Chambolle-Pock options and
    refused here. The default
    loss is ½ Σ ‖x^L − x†‖²; ``loss(x) -> (value, gradient)`` replaces it.
    """
    step, iterations = _check(smooth, g, x0, step, iterations)
    method = as_method(method)
    if getattr(method, "segments", None) or method.relax_primal or method.released_mask:
        raise ValueError("forward_backward_gradient takes no segments and no relax_primal "
                         "or released_mask: "
                         f"got {method!r}")
    b = method.back_steps(iterations)
    if loss is not None and x_true is not None:
        raise ValueError("give x_true (for the squared loss) or loss=callable, not both: loss "
                         "ignores x_true")
    if loss is None:
        if x_true is None:
            raise ValueError("give x_true (for the squared loss) or loss=callable")
        xp = namespace(("x0", x0), ("x_true", x_true))
        if tuple(x_true.shape) != tuple(x0.shape):
            raise ValueError(f"x_true has shape {tuple(x_true.shape)} but x0 has "
                             f"{tuple(x0.shape)}")
        check_finite(xp, x_true=x_true)
        loss = squared_loss(x_true)
    x, _, tape = _run(smooth, g, x0, step, iterations, b if method.stores_steps else 0)
    value, v = loss(x)
    if method.stores_steps:
        w = w_g = None
        while tape:
            x_prev, saved = tape.pop()
            v_next, d = _step_transposes(smooth, g, step, x_prev, saved, v)
            w = tree.axpy(-step, smooth.param_vjp(x_prev, d), w)
            w_g = tree.axpy(1.0, g.prox_step_param_vjp(saved, v, step), w_g)
            v = v_next
        return FBGradient(value, w, x, method, g=w_g)
    _, saved = g.prox_step_save(x, -step * smooth.grad(x), step)  # the Jacobians at x^L

    def at_final(s):  # one reverse step at x^L: (v,) → ((T_xᵀ v,), (v, δ))
        v_next, d = _step_transposes(smooth, g, step, x, saved, s[0])
        return (v_next,), (s[0], d)

    (v, d), info = method.final_series(at_final, (v,))  # Σ v^j, Σ δ^j
    w = tree.axpy(-step, smooth.param_vjp(x, d), None)
    return FBGradient(value, w, x, method, g.prox_step_param_vjp(saved, v, step), info)
