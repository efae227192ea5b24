"""Hand-written reverse-mode gradients of ℓ(x̂) through L unrolled Chambolle-Pock steps.

With g = ∇ℓ(x̂), δ_P^{L+1} = g (0 for ergodic weights), δ_D^{L+1} = δ̄_D^{L+1} = 0 and for
k = L..1 (DESIGN §3, §5)

    δ_P^k = J_{prox τG}(z_P^k)ᵀ (α_k g + δ_P^{k+1} + σ Kᵀ δ̄_D^{k+1})
    δ_D^k = J_{prox σF*}(z_D^k)ᵀ (δ_D^{k+1} − τ K δ_P^k)
    δ̄_D^k = δ_D^k + θ (δ_D^k − δ_D^{k+1})

    ∇_K ℓ = Σ_k σ δ_D^k (x̃ + r̄^{k−1})ᵀ − τ y^k (δ_P^k)ᵀ,   ∇_x̃ ℓ = g + σ Kᵀ Σ_k δ_D^k.

Bregman steps (DESIGN §7, :mod:`pdunroll.bregman`). The forward pass calls whole steps
y^k = P_D(y^{k−1}, K x̄^{k−1}) and r^k = P_P(r^{k−1}, Kᵀ y^k). For a Euclidean prox
P_P(p, d) = prox_{τG}(p − τ d), so p and d enter only through z_P and one adjoint δ_P serves
both; a Bregman step depends on p also outside z. Its VJP returns two cotangents,
ε = ∂P/∂pᵀ v (to the previous iterate) and δ = ∂P/∂dᵀ v / (−τ) (resp. / σ for P_D), both
J_prox(z)ᵀ v in the Euclidean case. The chain rule through r^k → r^{k+1} (previous iterate),
r^k → r̄^k, r̄^{k+1} → x̄ (dual direction) and y^k → y^{k+1} (previous iterate),
y^k → Kᵀ y^k (primal direction) gives, with ε_P^{L+1} = g (0 for ergodic weights), ε_D^{L+1} = 0:

    (ε_P^k, δ_P^k) = VJP of P_P at step k of  α_k g + ε_P^{k+1} + σ Kᵀ δ̄_D^{k+1}
    (ε_D^k, δ_D^k) = VJP of P_D at step k of  ε_D^{k+1} − τ K δ_P^k
    δ̄_D^k = δ_D^k + θ (δ_D^k − δ_D^{k+1})

and ∇_K, ∇_x̃ as above (only δ enters them: the direction inputs carry K and x̃). The extra
terms are ε − δ: the dependence of y^k on y^{k−1} and r^k on r^{k−1} not through z. For
Euclidean proxes ε = δ is one array and the recursion is the one above, at the same cost.

Modes: ``"full"`` runs k = L..1 on stored steps; ``"truncated"`` only the last b; ``"asymptotic"``
stores nothing and runs b steps with the Jacobians, y and x̂ of the final iterate (DESIGN §4).
For a filter bank, the outer products are the operator's ``param_vjp``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ._array import Array, array_size, check_count, xp_of
from .model import AnalysisModel, StepSizes, step_sizes
from .solver import ergodic_weights, forward

__all__ = ["GradientResult", "MODES", "gradient"]

MODES = ("full", "truncated", "asymptotic")

# numbers (entries of a and b) per parameter-VJP product when ∇_K is accumulated over stored
# steps: large products, small peak (≈ 400 rows of a 320-sample speech model: the full-mode
# peak stays within ~3 % of the tape at L = 1000 at the speed of larger products; one step of a
# 48-filter bank on a 256×256 image)
_NUMBERS_PER_PRODUCT = 2**18


@dataclass(frozen=True)
class GradientResult:
    """``loss``: ℓ(x̂); ``operator``: ∇ℓ w.r.t. the operator's parameters (same structure and
    shape as ``operator.params``); ``x_tilde``: ∇ℓ w.r.t. x̃; ``x``: the reconstruction x̂;
    ``steps``: the σ, τ, θ used (pass them back to reproduce a run exactly); ``f``, ``g``: ∇ℓ
    w.r.t. ``model.f.params`` and ``model.g.params`` (``()`` for functions without any)."""

    loss: float
    operator: Array
    x_tilde: Array
    x: Array
    steps: StepSizes
    mode: str
    f: Array | tuple = ()
    g: Array | tuple = ()

    @property
    def sigma(self) -> float:
        return self.steps.sigma

    @property
    def tau(self) -> float:
        return self.steps.tau

    @property
    def theta(self) -> float:
        return self.steps.theta


def squared_loss(x_true: Array) -> Callable[[Array], tuple[float, Array]]:
    """ℓ(x̂) = ½ Σ_batch ‖x̂ − x†‖², returning (value, gradient x̂ − x†)."""

    def loss(x_hat):
        diff = x_hat - x_true
        return 0.5 * float(xp_of(diff).sum(diff * diff)), diff

    return loss


def gradient(
    model: AnalysisModel,
    x_tilde: Array,
    x_true: Array | None = None,
    *,
    iterations: int,
    mode: str = "full",
    b: int | None = None,
    weights=None,
    loss: Callable[[Array], tuple[float, Array]] | None = None,
    relax_primal: bool = False,
    omega: float = 1.0,
    sigma: float | None = None,
    tau: float | None = None,
    theta: float = 1.0,
    op_norm: float | None = None,
) -> GradientResult:
    """Loss and gradients of ℓ(A_L(K, x̃)) w.r.t. the operator's parameters and x̃.

    Parameters
    ----------
    x_tilde, x_true : arrays of shape (batch, *in_shape)
        Degraded and clean signals; the default loss is ½ Σ ‖x̂ − x†‖².
    iterations : int
        L, the number of unrolled Chambolle-Pock steps.
    mode : "full", "truncated" or "asymptotic"
        Exact backpropagation through all L steps; through the last ``b`` steps
        (1 ≤ b ≤ L); or ``b`` backward steps at the final iterates, storing nothing (b ≥ 1,
        may exceed L).
    weights : None, "harmonic", "uniform" or L numbers summing to 1
        Ergodic unrolling: x̂ = x̃ + Σ α_k r^k (full and truncated modes).
    loss : callable, optional
        ``loss(x_hat) -> (value, gradient)`` replacing the squared loss (then ``x_true`` is
        unused and may be omitted).
    relax_primal : bool
        Treat J_{prox τG} as the identity in the backward pass (the released code's
        ``eta_backward = 1``); an approximation, not the exact gradient.
    omega, sigma, tau, theta, op_norm
        Step sizes as in :func:`chambolle_pock`.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    iterations = check_count("iterations", iterations)
    if loss is None:
        if x_true is None:
            raise ValueError("give x_true (for the squared loss) or loss=callable")
        model.check_signals(x_tilde=x_tilde, x_true=x_true)
        loss = squared_loss(x_true)
    else:
        model.check_signals(x_tilde=x_tilde)
    if mode == "full":
        if b is not None:
            raise ValueError('b is only used by mode="truncated" and mode="asymptotic"')
        b = iterations
    else:
        b = check_count("b", b if b is not None else 1)
        if mode == "truncated" and b > iterations:
            raise ValueError(f"b must satisfy 1 <= b <= iterations ({iterations}) in truncated "
                             f"mode, got {b}")
    alphas = ergodic_weights(weights, iterations)
    if mode == "asymptotic" and alphas is not None:
        raise ValueError('weights cannot be combined with mode="asymptotic": its backward steps '
                         "all sit at the final iterate; use mode='full' or 'truncated'")
    steps = step_sizes(model.operator, omega=omega, sigma=sigma, tau=tau, theta=theta,
                       op_norm=op_norm)
    keep = 1 if mode == "asymptotic" else b
    state = forward(model, x_tilde, steps, iterations, alphas=alphas, keep=keep)
    x_hat = x_tilde + (state.r if alphas is None else state.r_avg)
    value, g_out = loss(x_hat)
    if mode == "asymptotic":
        grad_op, sum_d, grad_fg = _backward_asymptotic(model, steps, state, x_hat, g_out, b,
                                                       relax_primal)
    else:
        window = alphas[iterations - b:] if alphas is not None else None
        grad_op, sum_d, grad_fg = _backward_unrolled(model, steps, state.tape, g_out, window,
                                                     relax_primal)
    op = model.operator
    grad_x = g_out if sum_d is None else g_out + steps.sigma * op.adjoint(sum_d)
    return GradientResult(value, grad_op, grad_x, x_hat, steps, mode, *grad_fg)


class _ParamGrad:
    """Accumulates ∇_params Σ ⟨a, K b⟩ over many (a, b) pairs in few large products."""

    def __init__(self, op):
        self.op, self.a, self.b, self.numbers, self.total = op, [], [], 0, None

    def add(self, a: Array, b: Array) -> None:
        self.a.append(a)
        self.b.append(b)
        self.numbers += array_size(a) + array_size(b)
        if self.numbers >= _NUMBERS_PER_PRODUCT:
            self.flush()

    def flush(self):
        if self.a:
            xp = self.op.xp
            part = self.op.param_vjp(xp.concat(self.a), xp.concat(self.b))
            self.total = part if self.total is None else _tree_add(self.total, part)
            self.a, self.b, self.numbers = [], [], 0
        return self.total


def _tree_add(u, v):
    if isinstance(u, tuple):
        return tuple(_tree_add(p, q) for p, q in zip(u, v, strict=True))
    return u + v


def _reverse_step(model, steps, saved_d, saved_p, v, e_d, d_d, relax_primal, grad_fg):
    """One step k of the recursion: v is the adjoint reaching r^k, e_d is ε_D^{k+1} and d_d is
    δ_D^{k+1} (None for 0). Adds the step's gradients w.r.t. the parameters of F and G to
    ``grad_fg`` (a two-item list). Returns ε_P^k, δ_P^k, ε_D^k, δ_D^k and δ̄_D^k."""
    op, sigma, tau, theta = model.operator, steps.sigma, steps.tau, steps.theta
    e_p, d_p = (v, v) if relax_primal else model.g.prox_step_vjp(saved_p, v, tau)
    w = -tau * op.apply(d_p) if e_d is None else e_d - tau * op.apply(d_p)
    e_d_new, d_d_new = model.f.conj_prox_step_vjp(saved_d, w, sigma)
    for i, part in enumerate((model.f.conj_prox_step_param_vjp(saved_d, w, sigma),
                              model.g.prox_step_param_vjp(saved_p, v, tau))):
        grad_fg[i] = part if grad_fg[i] is None else _tree_add(grad_fg[i], part)
    if d_d is None:  # δ_D^{k+1} = 0
        d_dbar = (1 + theta) * d_d_new
    else:
        d_dbar = d_d_new + theta * (d_d_new - d_d)
    return e_p, d_p, e_d_new, d_d_new, d_dbar


def _backward_unrolled(model, steps, tape, g_out, alphas, relax_primal):
    """The recursion over the stored steps (popped as it goes, freeing the tape)."""
    op, sigma, tau = model.operator, steps.sigma, steps.tau
    acc, grad_fg = _ParamGrad(op), [None, None]
    e_p = g_out if alphas is None else None  # ε_P^{k+1}: adjoint reaching r^k via r^{k+1}
    e_d = d_d = d_dbar = sum_d = None  # ε_D^{k+1}, δ_D^{k+1}, δ̄_D^{k+1}, Σ δ_D
    k = len(tape)
    while tape:
        x_bar, y, saved_d, saved_p = tape.pop()
        k -= 1
        v = e_p
        if d_dbar is not None:
            v = v + sigma * op.adjoint(d_dbar)
        if alphas is not None:
            v = alphas[k] * g_out if v is None else v + alphas[k] * g_out
        e_p, d_p, e_d, d_d, d_dbar = _reverse_step(model, steps, saved_d, saved_p, v, e_d, d_d,
                                                   relax_primal, grad_fg)
        sum_d = d_d if sum_d is None else sum_d + d_d
        acc.add(sigma * d_d, x_bar)
        acc.add(-tau * y, d_p)
    return acc.flush(), sum_d, tuple(grad_fg)


def _backward_asymptotic(model, steps, state, x_hat, g_out, b, relax_primal):
    """b backward steps with the final step's Jacobians, y^L and x̂ (DESIGN §4)."""
    op, sigma, tau = model.operator, steps.sigma, steps.tau
    _, y, saved_d, saved_p = state.tape[-1]
    e_p, e_d, d_d, d_dbar = g_out, None, None, None
    sum_p = sum_d = None
    grad_fg = [None, None]
    for _ in range(b):
        v = e_p if d_dbar is None else e_p + sigma * op.adjoint(d_dbar)
        e_p, d_p, e_d, d_d, d_dbar = _reverse_step(model, steps, saved_d, saved_p, v, e_d, d_d,
                                                   relax_primal, grad_fg)
        sum_p = d_p if sum_p is None else sum_p + d_p
        sum_d = d_d if sum_d is None else sum_d + d_d
    acc = _ParamGrad(op)
    acc.add(sigma * sum_d, x_hat)
    acc.add(-tau * y, sum_p)
    return acc.flush(), sum_d, tuple(grad_fg)
