"""Gradients of a loss of the reconstruction x̂ = A_L(K, x̃) through L unrolled Chambolle-Pock
steps: :func:`vjp` (x̂ and a pullback of any cotangent of x̂) and :func:`gradient` (a loss
and its gradients, the pullback of ∂ℓ/∂x̂). The recursions are those of :mod:`.reverse`, chosen
by a gradient method of :mod:`.methods`; no automatic differentiation is involved.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from .._array import Array, check_finite, namespace, xp_of
from ..model import AnalysisModel, StepRule, StepSizes, check_model, resolve_steps
from .forward import ForwardState, forward
from .krylov import SolveInfo
from .methods import GradientMethod
from .plan import Plan, make_plan
from .reverse import forward_model, reverse

__all__ = ["Cotangents", "GradientResult", "forward_pass", "gradient", "gradient_unchecked",
           "reverse_pass", "squared_loss", "vjp", "vjp_unchecked"]


@dataclass(frozen=True)
class Cotangents:
    """What a pullback returns for a cotangent v of x̂: ``operator``: the cotangent of the
    operator's parameters (structure and shapes of ``operator.params``); ``x_tilde``: of x̃;
    ``f``, ``g``: of ``model.f.params`` and ``model.g.params`` (``()`` for functions without
    any, e.g. the costs c of a :class:`~pdunroll.LinearTerm` otherwise); ``info``: how the
    linear solve of :class:`~pdunroll.Implicit` ended (``None`` for the other methods)."""

    operator: object
    x_tilde: Array
    f: object = ()
    g: object = ()
    info: SolveInfo | None = None


@dataclass(frozen=True)
class GradientResult:
    """``loss``: ℓ(x̂); ``operator``: ∇ℓ w.r.t. the operator's parameters (same structure and
    shape as ``operator.params``); ``x_tilde``: ∇ℓ w.r.t. x̃; ``x``: the reconstruction x̂;
    ``steps``: the σ, τ, θ used (pass them back as ``steps=`` to reproduce a run exactly);
    ``method``: the gradient method; ``f``, ``g``: ∇ℓ w.r.t. ``model.f.params`` and
    ``model.g.params`` (``()`` for functions without any); ``info``: how the linear solve of
    :class:`~pdunroll.Implicit` ended (:class:`~pdunroll.SolveInfo`), ``None`` otherwise."""

    loss: float
    operator: object
    x_tilde: Array
    x: Array
    steps: StepSizes
    method: GradientMethod
    f: object = ()
    g: object = ()
    info: SolveInfo | None = None


def squared_loss(x_true: Array, *, on_device: bool = False
                 ) -> Callable[[Array], tuple[float, Array]]:
    """ℓ(x̂) = ½ Σ_batch ‖x̂ − x†‖², returning (value, gradient x̂ − x†); the value is a float,
    or with ``on_device`` a 0-d array (no host round trip: the training loop's steps)."""

    def loss(x_hat):
        diff = x_hat - x_true
        value = 0.5 * xp_of(diff).sum(diff * diff)
        return (value if on_device else float(value)), diff

    return loss


def _checked_loss(loss: Callable) -> Callable[[Array], tuple[float, Array]]:
    """A user's ``loss`` whose output is checked: a pair of a real value and a finite gradient
    of x̂'s shape, dtype and backend (a wrong shape would broadcast silently)."""

    def checked(x_hat):
        out = loss(x_hat)
        try:
            value, grad = out
        except (TypeError, ValueError) as err:
            raise TypeError("loss(x_hat) must return a pair (value, gradient), got "
                            f"{type(out).__name__}") from err
        try:
            if isinstance(value, str | bytes):
                raise TypeError
            value = float(value)
        except (TypeError, ValueError) as err:
            raise TypeError(f"the value returned by loss must be a real number, got "
                            f"{type(value).__name__}") from err
        if not math.isfinite(value):
            raise ValueError(f"the value returned by loss is not finite: {value}")
        _check_cotangent(x_hat, grad, "the loss gradient")
        return value, grad

    return checked


def _check_cotangent(x_hat: Array, v: Array, name: str) -> None:
    xp = namespace(("x_hat", x_hat), (name, v))
    if tuple(v.shape) != tuple(x_hat.shape):
        raise ValueError(f"{name} must have the shape of x_hat {tuple(x_hat.shape)}, got "
                         f"{tuple(v.shape)}")
    if v.dtype != x_hat.dtype:
        raise TypeError(f"{name} has dtype {v.dtype} but x_hat has {x_hat.dtype}")
    check_finite(xp, **{name: v})


def _check_call(model, x_tilde, iterations, method, weights, omega, steps, **signals) -> Plan:
    """Validate a public call once; return its :class:`~pdunroll.unroll.plan.Plan`."""
    check_model(model)
    plan = make_plan(method, iterations, weights)
    model.check_signals(x_tilde=x_tilde, **signals)
    return plan.with_steps(resolve_steps(model.operator, omega, steps))


def vjp(
    model: AnalysisModel,
    x_tilde: Array,
    *,
    iterations: int,
    method: GradientMethod | str = "full",
    weights=None,
    omega: float | None = None,
    steps: StepRule | StepSizes | None = None,
) -> tuple[Array, Callable[[Array], Cotangents]]:
    """x̂ = A_L(K, x̃) and its pullback: ``pullback(v)`` returns the :class:`Cotangents`
    (∂x̂/∂·)ᵀ v of the operator's parameters, x̃ and the parameters of F and G for a cotangent
    v of x̂'s shape.

    The pullback runs ``method``'s reverse recursion over what the forward pass kept (no
    second forward pass; segments are recomputed where ``segments=`` asks for it) and can be
    called once: the recursion frees the tape as it goes.

    ``method``: :class:`~pdunroll.Full` (default, also ``"full"``),
    :class:`~pdunroll.Truncated`, :class:`~pdunroll.Asymptotic` or :class:`~pdunroll.Implicit`
    (also ``"implicit"``). ``weights``, ``omega``, ``steps`` as in
    :func:`~pdunroll.chambolle_pock`.
    """
    plan = _check_call(model, x_tilde, iterations, method, weights, omega, steps)
    x_hat, pull = vjp_unchecked(model, x_tilde, plan)

    def pullback(v):
        _check_cotangent(x_hat, v, "v")
        return pull(v)

    return x_hat, pullback


def vjp_unchecked(model, x_tilde, plan: Plan):
    """:func:`vjp` for callers that validated their inputs once and made their ``plan``
    (:func:`~pdunroll.unroll.plan.make_plan`, with step sizes): no checks, no host
    synchronisation. ``plan.x_wanted=False``: the pullback's ``x_tilde`` is ``None`` (the sum
    it needs is skipped)."""
    x_hat, state = forward_pass(model, x_tilde, plan)
    used = []

    def pullback(v):
        if used:
            raise RuntimeError("this pullback was already called: the reverse pass frees the "
                               "forward pass's tape; run vjp again for another cotangent")
        used.append(True)
        return reverse_pass(model, x_tilde, plan, state, x_hat, v)

    return x_hat, pullback


def forward_pass(model, x_tilde, plan: Plan) -> tuple[Array, ForwardState]:
    """The first half of :func:`vjp_unchecked`: x̂ and the forward pass's state (what
    ``plan.method`` keeps for its reverse pass)."""
    keep, save_at = plan.method.keeps(plan.iterations)
    state = forward(forward_model(plan.method, model, x_tilde), x_tilde, plan.steps,
                    plan.iterations, alphas=plan.alphas, keep=keep, save_at=save_at)
    return x_tilde + (state.r if plan.alphas is None else state.r_avg), state


def reverse_pass(model, x_tilde, plan: Plan, state: ForwardState, x_hat, v) -> Cotangents:
    """The second half of :func:`vjp_unchecked`: the :class:`Cotangents` of v, a cotangent of
    x̂, from the ``state`` of :func:`forward_pass` (which it frees as it goes)."""
    run = forward_model(plan.method, model, x_tilde)
    return Cotangents(*reverse(plan, run, x_tilde, state, x_hat, v))


def gradient(
    model: AnalysisModel,
    x_tilde: Array,
    x_true: Array | None = None,
    *,
    iterations: int,
    method: GradientMethod | str = "full",
    weights=None,
    loss: Callable[[Array], tuple[float, Array]] | None = None,
    omega: float | None = None,
    steps: StepRule | StepSizes | None = None,
) -> GradientResult:
    """Loss and gradients of ℓ(A_L(K, x̃)) w.r.t. the operator's parameters, x̃ and the
    parameters of F and G: ℓ at x̂ of :func:`vjp`, then its pullback of ∂ℓ/∂x̂.

    Parameters
    ----------
    x_tilde, x_true : arrays of shape (batch, *in_shape)
        Degraded and clean signals; the default loss is ½ Σ ‖x̂ − x†‖².
    iterations : int
        L, the number of unrolled Chambolle-Pock steps.
    method : GradientMethod or "full" or "implicit"
        :class:`~pdunroll.Full` (exact, default), :class:`~pdunroll.Truncated` (the last b
        steps), :class:`~pdunroll.Asymptotic` (b steps at the final iterate) or
        :class:`~pdunroll.Implicit` (the fixed-point gradient, from a linear solve).
    weights : None, "harmonic", "uniform" or L numbers summing to 1
        Ergodic unrolling: x̂ = x̃ + Σ α_k r^k (Full and Truncated only).
    loss : callable, optional
        ``loss(x_hat) -> (value, gradient)`` replacing the squared loss (then ``x_true`` is
        refused: the loss would ignore it); value and gradient must be finite, the gradient
        with x̂'s shape, dtype and backend.
    omega, steps
        Step sizes as in :func:`~pdunroll.chambolle_pock`.
    """
    if loss is None:
        if x_true is None:
            raise ValueError("give x_true (for the squared loss) or loss=callable")
        plan = _check_call(model, x_tilde, iterations, method, weights, omega, steps,
                           x_true=x_true)
        loss = squared_loss(x_true)
    else:
        if not callable(loss):
            raise TypeError(f"loss must be callable, loss(x_hat) -> (value, gradient); got "
                            f"{type(loss).__name__}")
        if x_true is not None:
            raise ValueError("give x_true (for the squared loss) or loss=callable, not both: "
                             "loss ignores x_true")
        plan = _check_call(model, x_tilde, iterations, method, weights, omega, steps)
        loss = _checked_loss(loss)
    return gradient_unchecked(model, x_tilde, loss, plan)


def gradient_unchecked(model, x_tilde, loss, plan: Plan) -> GradientResult:
    """:func:`gradient` for callers that validated their inputs once (the training loop's
    steps): ``loss`` returns (value, ∂ℓ/∂x̂); ``plan`` a :class:`~pdunroll.unroll.plan.Plan`
    with step sizes (``x_wanted=False`` leaves the result's ``x_tilde`` None: training needs
    no ∇_x̃). No checks and no host synchronisation besides the loss value."""
    x_hat, pullback = vjp_unchecked(model, x_tilde, plan)
    value, g_out = loss(x_hat)
    c = pullback(g_out)
    return GradientResult(value, c.operator, c.x_tilde, x_hat, plan.steps, plan.method, c.f,
                          c.g, c.info)
