"""The Chambolle-Pock forward pass in the coordinates r = x − x̃ (docs, Mathematics: "The forward
pass").

    z_D^k = y^{k−1} + σ K (x̃ + r̄^{k−1})      y^k = prox_{σF*}(z_D^k)
    z_P^k = r^{k−1} − τ Kᵀ y^k                r^k = prox_{τG}(z_P^k)
    r̄^k  = r^k + θ (r^k − r^{k−1})

with r⁰ = r̄⁰ = 0, y⁰ = 0 and output x̂ = x̃ + r^L (or x̃ + Σ α_k r^k for ergodic weights α).
:func:`forward` is the one loop behind both :func:`chambolle_pock` and the gradients. It calls
the functions' whole steps, y^k = F.conj_prox_step(y^{k−1}, (σK) x̄^{k−1}, σ) and
r^k = G.prox_step(r^{k−1}, (−τK)ᵀ y^k, τ), which are the two lines above for Euclidean proxes and
Bregman steps for the functions of :mod:`pdunroll.functions.bregman` (which also choose r⁰, y⁰
through ``start``/``conj_start`` where 0 is not an interior point). The scaled operators σK and
−τK are made once per call (:func:`scaled_operators`), so no step multiplies by σ or τ.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Container, Sequence
from dataclasses import dataclass, field

from .._array import Array, check_count
from ..model import AnalysisModel, StepRule, StepSizes, check_model, resolve_steps

__all__ = ["CPResult", "chambolle_pock", "ergodic_weights"]


def ergodic_weights(weights, iterations: int) -> tuple[float, ...] | None:
    """Resolve ``weights`` to α_1..α_L with Σ α_k = 1, or ``None`` for the plain last iterate.

    ``"harmonic"``: α_k ∝ 1/k (Brauer & Lorenz, "Ergodic bilevel optimization"); ``"uniform"``: α_k
    = 1/L (the ergodic Chambolle-Pock of Ochs et al. 2016); or an explicit sequence (or 1-D array)
    of L non-negative numbers summing to 1.
    """
    iterations = check_count("iterations", iterations)
    if weights is None:
        return None
    if isinstance(weights, str):
        if weights == "harmonic":
            raw = [1.0 / k for k in range(1, iterations + 1)]
        elif weights == "uniform":
            raw = [1.0] * iterations
        else:
            raise ValueError(f'weights must be "harmonic", "uniform", a sequence or None, '
                             f"got {weights!r}")
        total = sum(raw)
        return tuple(a / total for a in raw)
    try:
        if getattr(weights, "ndim", 1) != 1:
            raise TypeError
        alphas = tuple(float(a) for a in weights)
    except (TypeError, ValueError) as err:
        raise TypeError('weights must be a 1-D sequence of numbers, "harmonic", "uniform" or '
                        f"None, got {type(weights).__name__}") from err
    if not all(math.isfinite(a) for a in alphas):
        raise ValueError(f"weights must be finite, got {alphas}")
    if any(a < 0 for a in alphas):  # x̂ is a convex combination of the iterates
        raise ValueError(f"weights must be non-negative (an ergodic average), got {alphas}")
    if len(alphas) != iterations:
        raise ValueError(f"weights must have one entry per iteration ({iterations}), "
                         f"got {len(alphas)}")
    if abs(sum(alphas) - 1.0) > 1e-6:
        raise ValueError(f"weights must sum to 1, got sum {sum(alphas):.8g}")
    return alphas


def scaled_operators(op, steps: StepSizes) -> tuple:
    """(σK, −τK) of a call: the operators of the dual and primal steps and of the reverse
    pass's products (:meth:`~pdunroll.LinearOperator.scaled`)."""
    return op.scaled(steps.sigma), op.scaled(-steps.tau)


@dataclass
class ForwardState:
    """What :func:`forward` leaves: last iterates, the weighted output, the stored steps and the
    call's scaled operators (σK, −τK)."""

    r: Array  # r^L
    y: Array  # y^L
    r_prev: Array  # r^{L−1}
    y_prev: Array  # y^{L−1}
    r_avg: Array | None  # Σ α_k r^k (ergodic weights only)
    y_avg: Array | None  # Σ α_k y^k
    tape: deque  # last steps: (x̄^{k−1}, y^k, saved dual step k, saved primal step k)
    starts: list = field(default_factory=list)  # checkpoints (k, r^{k−1}, r̄^{k−1}, y^{k−1})
    scaled: tuple = ()  # (σK, −τK)


def forward(
    model: AnalysisModel,
    x_tilde: Array,
    steps: StepSizes,
    iterations: int,
    *,
    alphas: Sequence[float] | None = None,
    keep: int = 0,
    callback: Callable | None = None,
    start: tuple[Array, Array, Array] | None = None,
    save_at: Container[int] = (),
    scaled: tuple | None = None,
) -> ForwardState:
    """Run L = ``iterations`` Chambolle-Pock steps; keep what the reverse pass needs for the last
    ``keep`` steps (nothing for ``keep=0``).

    ``start`` = (r, r̄, y) continues from a stored state instead of r⁰ = r̄⁰, y⁰; before each
    step k (counted from 1 in this call) in ``save_at``, (k, r^{k−1}, r̄^{k−1}, y^{k−1}) is
    appended to ``starts``: the checkpoints of a checkpointed reverse pass. ``scaled``: the
    call's (σK, −τK), made here when not given.
    """
    op, f, g = model.operator, model.f, model.g
    sigma, tau, theta = steps.sigma, steps.tau, steps.theta
    k_sigma, k_tau = scaled = scaled_operators(op, steps) if scaled is None else scaled
    xp = op.xp
    if start is None:
        r = g.start(xp.zeros_like(x_tilde))
        r_bar = r
        y = f.conj_start(xp.zeros((x_tilde.shape[0], *op.out_shape), dtype=x_tilde.dtype,
                                  device=op.device))
    else:
        r, r_bar, y = start
    r_prev, y_prev = r, y
    starts = []
    r_avg = y_avg = None
    # only the last ``keep`` steps are appended (k > L − keep): no maxlen, which torch.compile
    # would refuse once it treats L as a symbolic integer
    tape: deque = deque()
    for k in range(1, iterations + 1):
        if k in save_at:
            starts.append((k, r, r_bar, y))
        x_bar = x_tilde + r_bar
        r_prev, y_prev = r, y
        if k > iterations - keep:  # a step the reverse pass will need
            y, saved_d = f.conj_prox_step_save(y_prev, k_sigma._apply(x_bar), sigma)
            r, saved_p = g.prox_step_save(r_prev, k_tau._adjoint(y), tau)
            tape.append((x_bar, y, saved_d, saved_p))
        else:
            y = f.conj_prox_step(y_prev, k_sigma._apply(x_bar), sigma)
            r = g.prox_step(r_prev, k_tau._adjoint(y), tau)
        if theta == 1:  # the default θ = 1: r̄ = 2r − r_prev in two passes, not three
            r_bar = (r + r) - r_prev
        else:
            r_bar = r + theta * (r - r_prev) if theta else r
        if alphas is not None:
            a = alphas[k - 1]
            r_avg = a * r if r_avg is None else r_avg + a * r
            y_avg = a * y if y_avg is None else y_avg + a * y
        if callback is not None:
            callback(k, x_tilde + r, y)
    return ForwardState(r, y, r_prev, y_prev, r_avg, y_avg, tape, starts, scaled)


@dataclass(frozen=True)
class CPResult:
    """Result of :func:`chambolle_pock`.

    ``x``: the reconstruction x̃ + r (batch, *in_shape); ``y``: the dual variable; ``gap``: the
    primal-dual gap P(r) − D(y) per signal (≥ 0, 0 at the optimum; inf where a dual iterate is
    infeasible for the gap's formula); ``residual``: ‖r^L − r^{L−1}‖/τ + ‖y^L − y^{L−1}‖/σ per
    signal; ``steps``: the σ, τ, θ used.
    """

    x: Array
    r: Array
    y: Array
    iterations: int
    gap: Array
    residual: Array
    steps: StepSizes


def primal_dual_gap(model: AnalysisModel, x_tilde: Array, r: Array, y: Array) -> Array:
    """P(r) − D(y) per signal with P(r) = F(K(x̃ + r)) + G(r) and
    D(y) = ⟨K x̃, y⟩ − F*(y) − G*(−Kᵀ y)."""
    op, f, g = model.operator, model.f, model.g
    xp = op.xp
    axes = tuple(range(1, y.ndim))
    primal = f.value(op.apply(x_tilde + r)) + g.value(r)
    dual = xp.sum(op.apply(x_tilde) * y, axis=axes) - f.conj_value(y) - g.conj_value(-op.adjoint(y))
    return primal - dual


def chambolle_pock(
    model: AnalysisModel,
    x_tilde: Array,
    *,
    iterations: int,
    omega: float | None = None,
    steps: StepRule | StepSizes | None = None,
    weights=None,
    callback: Callable[[int, Array, Array], object] | None = None,
) -> CPResult:
    """Solve min_x F(Kx) + G(x − x̃) for a batch x̃ of shape (batch, *in_shape) with
    ``iterations`` Chambolle-Pock steps.

    Step sizes: ``steps`` a :class:`~pdunroll.StepRule` (default ``StepRule()``: σ =
    ω·0.99/‖K‖, τ = 0.99/(ω‖K‖) with ω = :data:`~pdunroll.DEFAULT_OMEGA`) or fixed
    :class:`~pdunroll.StepSizes` (e.g. a result's ``steps``); ``omega=w`` is shorthand for
    ``steps=StepRule(omega=w)``. ``weights
    ("harmonic", "uniform" or L numbers summing to 1) returns the ergodic average
    Σ α_k (r^k, y^k). ``callback(k, x^k, y^k)`` runs after step k.
    """
    check_model(model).check_signals(x_tilde=x_tilde)
    iterations = check_count("iterations", iterations)
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable, callback(k, x, y); got "
                        f"{type(callback).__name__}")
    steps = resolve_steps(model.operator, omega, steps)
    alphas = ergodic_weights(weights, iterations)
    return solve(model, x_tilde, steps, iterations, alphas=alphas, callback=callback)


def solve(model: AnalysisModel, x_tilde: Array, steps: StepSizes, iterations: int, *,
          alphas=None, callback=None) -> CPResult:
    """:func:`chambolle_pock` on checked inputs (no validation: internal calls)."""
    state = forward(model, x_tilde, steps, iterations, alphas=alphas, callback=callback)
    r, y = (state.r, state.y) if alphas is None else (state.r_avg, state.y_avg)
    xp = model.operator.xp
    axes = tuple(range(1, r.ndim))
    residual = (xp.linalg.vector_norm(state.r - state.r_prev, axis=axes) / steps.tau
                + xp.linalg.vector_norm(state.y - state.y_prev, axis=tuple(range(1, y.ndim)))
                / steps.sigma)
    gap = primal_dual_gap(model, x_tilde, r, y)
    return CPResult(x_tilde + r, r, y, iterations, gap, residual, steps)
