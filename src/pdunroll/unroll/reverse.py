"""The reverse recursions through L unrolled Chambolle-Pock steps, one per gradient method.

With g = ∇ℓ(x̂), δ_P^{L+1} = g (0 for ergodic weights), δ_D^{L+1} = δ̄_D^{L+1} = 0 and for
k = L..1 (docs, Mathematics: "Full reverse mode", "Ergodic unrolling")

    δ_P^k = J_{prox τG}(z_P^k)ᵀ (α_k g + δ_P^{k+1} + σ Kᵀ δ̄_D^{k+1})
    δ_D^k = J_{prox σF*}(z_D^k)ᵀ (δ_D^{k+1} − τ K δ_P^k)
    δ̄_D^k = δ_D^k + θ (δ_D^k − δ_D^{k+1})

    ∇_K ℓ = Σ_k σ δ_D^k (x̃ + r̄^{k−1})ᵀ − τ y^k (δ_P^k)ᵀ,   ∇_x̃ ℓ = g + σ Kᵀ Σ_k δ_D^k.

The stored and asymptotic recursions run in the scaled adjoints P = −τ δ_P, Δ = σ δ_D,
Δ̄ = σ δ̄_D (each VJP is linear in its cotangent, so every line above is multiplied through):

    P^k = J_{prox τG}(z_P^k)ᵀ (−τ α_k g + P^{k+1} + (−τK)ᵀ Δ̄^{k+1})
    Δ^k = J_{prox σF*}(z_D^k)ᵀ (Δ^{k+1} + (σK) P^k)
    ∇_K ℓ = Σ_k Δ^k (x̄^{k−1})ᵀ + y^k (P^k)ᵀ,   ∇_x̃ ℓ = g + Kᵀ Σ_k Δ^k,

so the reverse pass multiplies by the forward pass's own operators σK (K x̄) and −τK (Kᵀ y),
made once per call, and ∇_K is one product per chunk of steps, unscaled (the dual and primal
terms gathered into the same product). The F and G parameter gradients, accumulated in the same
scaled adjoints, are divided by σ and −τ once at the end. Σ_k Δ^k is summed only when ∇_x̃ is
wanted.

Bregman steps (docs, Mathematics: "Bregman proximity"; :mod:`pdunroll.functions.bregman`). The
forward pass calls whole steps y^k = P_D(y^{k−1}, K x̄^{k−1}) and r^k = P_P(r^{k−1}, Kᵀ y^k). For a
Euclidean prox P_P(p, d) = prox_{τG}(p − τ d), so p and d enter only through z_P and one adjoint δ_P
serves both; a Bregman step depends on p also outside z. Its VJP returns two cotangents, ε = ∂P/∂pᵀ
v (to the previous iterate) and δ = ∂P/∂dᵀ v / (−τ) (resp. / σ for P_D), both J_prox(z)ᵀ v in the
Euclidean case. The chain rule through r^k → r^{k+1} (previous iterate), r^k → r̄^k, r̄^{k+1} → x̄
(dual direction) and y^k → y^{k+1} (previous iterate), y^k → Kᵀ y^k (primal direction) gives, with
ε_P^{L+1} = g (0 for ergodic weights), ε_D^{L+1} = 0:

    (ε_P^k, δ_P^k) = VJP of P_P at step k of  α_k g + ε_P^{k+1} + σ Kᵀ δ̄_D^{k+1}
    (ε_D^k, δ_D^k) = VJP of P_D at step k of  ε_D^{k+1} − τ K δ_P^k
    δ̄_D^k = δ_D^k + θ (δ_D^k − δ_D^{k+1})

and ∇_K, ∇_x̃ as above (only δ enters them: the direction inputs carry K and x̃). The extra
terms are ε − δ: the dependence of y^k on y^{k−1} and r^k on r^{k−1} not through z. For
Euclidean proxes ε = δ is one array and the recursion is the one above, at the same cost.
(The step's direction input is a = σ K x̄ resp. −τ Kᵀ y; δ = ∂P/∂aᵀ v.)

Segments (:class:`~pdunroll.Full` and :class:`~pdunroll.Truncated` with ``segments=c``): the
forward pass stores only the states (r, r̄, y) at the starts of c segments of ⌈b/c⌉ steps; the
reverse pass recomputes one segment at a time from its start, with its tape, and continues the
recursion through it with the adjoint state (ε_P, ε_D, δ_D, δ̄_D) carried over from the later
segment. Same result, memory for c states plus one segment's tape instead of b steps (c ≈ √b is
best), one more forward pass.

The released primal mask (``released_mask=eta_backward`` on any method; Brauer & Lorenz,
EUSIPCO 2023, released code): the primal VJP is v·1{|z_P^k − x̃| ≤ eta_backward} instead of
J_{prox τG}(z_P^k)ᵀ v. The forward pass runs with G wrapped in :class:`_ReleasedMaskG`
(:func:`forward_model`), whose saved step holds that mask beside G's own: the same iterates, one
forward pass.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from .. import tree
from .._array import Array, array_size, is_host_device, xp_of
from ..functions.euclidean import Function, _keep
from ..model import AnalysisModel
from .forward import ForwardState, forward, scaled_operators
from .implicit import solve_adjoint

__all__ = ["backward_asymptotic", "backward_implicit", "backward_stored", "forward_model",
           "reverse"]

# numbers (entries of a and b) per parameter-VJP product when ∇_K is accumulated over stored
# steps: large products, small peak (≈ 400 rows of a 320-sample speech model: the full-mode
# peak stays within ~3 % of the tape at L = 1000 at the speed of larger products; one step of a
# 48-filter bank on a 256×256 image)
_NUMBERS_PER_PRODUCT = 2**18


def _numbers_per_product(op) -> float:
    """How many numbers :class:`_ParamGrad` gathers before one product: 2**18 on a CPU (the
    measurement above), no limit on an accelerator (one large product per call: a GPU is
    fastest with it, and its memory holds the tape anyway)."""
    return _NUMBERS_PER_PRODUCT if is_host_device(op.device) else math.inf


def forward_model(method, model: AnalysisModel, x_tilde: Array) -> AnalysisModel:
    """The model the forward pass runs for ``method``: ``model``, or for ``released_mask`` the
    model whose G saves the released code's mask (same iterates); :func:`reverse` takes the
    same model."""
    if method.released_mask is None:
        return model
    return _released_model(model, x_tilde, method.released_mask)


def reverse(plan, model, x_tilde: Array, state: ForwardState, x_hat: Array, g_out: Array):
    """Run the recursion of ``plan``'s method (:meth:`~pdunroll.GradientMethod.reverse`;
    ``plan`` a :class:`~pdunroll.unroll.plan.Plan` with step sizes) from v = ``g_out`` =
    ∂ℓ/∂x̂ over what the forward pass of ``model`` (:func:`forward_model`) kept.
    Returns the fields of a :class:`~pdunroll.Cotangents`: (∇ operator parameters, ∇_x̃ (None
    unless ``plan.x_wanted``), ∇ F params, ∇ G params (``()`` for none), solve info or None)."""
    scaled = state.scaled or scaled_operators(model.operator, plan.steps)
    grad_op, sum_d, grad_fg, info = plan.method.reverse(plan, model, x_tilde, scaled, state,
                                                        x_hat, g_out)
    grad_x = None
    if plan.x_wanted:  # ∇_x̃ = g + Kᵀ Σ σ δ_D
        grad_x = g_out if sum_d is None else g_out + model.operator._adjoint(sum_d)
    f, g = (() if p is None else p for p in grad_fg)
    return grad_op, grad_x, f, g, info


def backward_stored(plan, model, x_tilde: Array, scaled, state: ForwardState, g_out: Array):
    """The recursion over the last b stored steps (:class:`~pdunroll.Full`,
    :class:`~pdunroll.Truncated`), from the tape or, with segments, recomputed from the
    segment starts, in the scaled adjoints (module docstring). Returns (∇ operator parameters,
    Σ σ δ_D or None, [∇ F, ∇ G params], None)."""
    method, steps, alphas, iterations, b = (plan.method, plan.steps, plan.alphas,
                                            plan.iterations, plan.b)
    window = alphas[iterations - b:] if alphas is not None else None
    g_p = -steps.tau * g_out  # −τ g: the cotangent of x̂ in the scaled adjoint P
    adj = _Adjoint(g_p if alphas is None else None, _ParamGrad(model.operator), plan.x_wanted)
    if method.segments:
        _backward_segmented(model, x_tilde, steps, scaled, state.starts, iterations, g_p,
                            window, method.relax_primal, adj)
    else:
        _backward_unrolled(model, steps, scaled, state.tape, g_p, window, method.relax_primal,
                           adj)
    if b == iterations and adj.e_d is not None:  # the recursion reached y⁰ = conj_start(0)
        part = model.f.conj_start_param_vjp(adj.e_d)
        adj.grad_fg[0] = part if adj.grad_fg[0] is None else tree.add(adj.grad_fg[0], part)
    return adj.grad.flush(), adj.sum_d, _unscaled_fg(adj.grad_fg, steps), None


def _unscaled_fg(grad_fg: list, steps) -> list:
    """The F and G parameter gradients of a recursion in the scaled adjoints (Δ = σ δ_D,
    P = −τ δ_P: linear in them), divided by σ and −τ."""
    return [None if part is None else tree.scale(factor, part)
            for part, factor in zip(grad_fg, (1 / steps.sigma, -1 / steps.tau), strict=True)]


def _released_model(model, x_tilde: Array, eta_backward: float) -> AnalysisModel:
    """``model`` with G wrapped so that its primal VJP is the released code's mask."""
    g = model.g
    if type(g).prox_step_save is not Function.prox_step_save:
        raise ValueError("released_mask needs a G with a Euclidean prox step (z_P = r − τ Kᵀ y), "
                         f"got {type(g).__name__}")
    return AnalysisModel(model.operator, model.f, _ReleasedMaskG(g, x_tilde, eta_backward))


class _ReleasedMaskG(Function):
    """G with the released code's primal mask: forward steps are G's, a saved step also holds
    the mask 1{|z_P − x̃| ≤ eta_backward} (z_P = r^{k−1} − τ Kᵀ y^k, in r coordinates) and the
    step's VJP is v times it."""

    def __init__(self, g: Function, x_tilde: Array, eta_backward: float):
        self.g, self.x_tilde, self.eta_backward = g, x_tilde, eta_backward
        self.params = g.params

    def value(self, x):
        return self.g.value(x)

    def conj_value(self, y):
        return self.g.conj_value(y)

    def prox_save(self, z, t):
        return self.g.prox_save(z, t)

    def prox_vjp(self, saved, v, t):
        return self.g.prox_vjp(saved, v, t)

    def start(self, zeros):
        return self.g.start(zeros)

    def prox_step(self, prev, a, t):
        return self.g.prox_step(prev, a, t)

    def prox_step_save(self, prev, a, t):
        z = prev + a
        u, saved = self.g.prox_save(z, t)
        return u, (saved, xp_of(z).abs(z - self.x_tilde) <= self.eta_backward)

    def prox_step_vjp(self, saved, v, t):
        w = _keep(saved[1], v)
        return w, w

    def prox_step_param_vjp(self, saved, v, t):
        return self.g.prox_step_param_vjp(saved[0], v, t)


class _ParamGrad:
    """Accumulates ∇_params Σ ⟨a, K b⟩ over many (a, b) pairs (the scaled adjoints' dual and
    primal terms alike: no factor) in few large products, one per ``limit`` numbers."""

    def __init__(self, op):
        self.op, self.a, self.b = op, [], []
        self.numbers, self.total = 0, None
        self.limit = _numbers_per_product(op)

    def add(self, a: Array, b: Array) -> None:
        """Add the pair (a, b): a of the operator's output shape, b of its input shape."""
        self.a.append(a)
        self.b.append(b)
        self.numbers += array_size(a) + array_size(b)
        if self.numbers >= self.limit:
            self.flush()

    def flush(self):
        if self.a:
            xp = self.op.xp
            part = self.op.param_vjp(xp.concat(self.a), xp.concat(self.b))
            self.total = part if self.total is None else tree.add(self.total, part)
            self.a.clear()
            self.b.clear()
        self.numbers = 0
        return self.total


def _reverse_step(model, steps, k_apply, saved_d, saved_p, v, e_d, d_d, relax_primal, grad_fg):
    """One step k of the recursion: v is the adjoint reaching r^k, e_d is ε_D^{k+1} and d_d is
    δ_D^{k+1} (None for 0), ``k_apply`` = −τK, or σK for the scaled adjoints (module
    docstring: then every input and output is the scaled one). Adds the step's gradients w.r.t.
    the parameters of F and G to ``grad_fg`` (a two-item list; None skips them). Returns ε_P^k,
    δ_P^k, ε_D^k, δ_D^k and δ̄_D^k."""
    sigma, tau, theta = steps.sigma, steps.tau, steps.theta
    e_p, d_p = (v, v) if relax_primal else model.g.prox_step_vjp(saved_p, v, tau)
    w = k_apply._apply(d_p) if e_d is None else e_d + k_apply._apply(d_p)
    e_d_new, d_d_new = model.f.conj_prox_step_vjp(saved_d, w, sigma)
    if grad_fg is not None:
        for i, part in enumerate((model.f.conj_prox_step_param_vjp(saved_d, w, sigma),
                                  model.g.prox_step_param_vjp(saved_p, v, tau))):
            grad_fg[i] = part if grad_fg[i] is None else tree.add(grad_fg[i], part)
    if d_d is None:  # δ_D^{k+1} = 0
        d_dbar = (1 + theta) * d_d_new
    else:
        d_dbar = (d_d_new + d_d_new) - d_d if theta == 1 else d_d_new + theta * (d_d_new - d_d)
    return e_p, d_p, e_d_new, d_d_new, d_dbar


@dataclass
class _Adjoint:
    """The reverse pass's state before step k, in the scaled adjoints (−τ ε_P, σ ε_D, σ δ_D,
    σ δ̄_D): ``e_p`` for ε_P^{k+1} (the adjoint reaching r^k via r^{k+1}), ``e_d`` for
    ε_D^{k+1}, ``d_d`` for δ_D^{k+1}, ``d_dbar`` for δ̄_D^{k+1} (None for 0), their sum Σ σ δ_D
    so far (summed only if ``sum_wanted``: ∇_x̃ needs it), the ∇_K accumulator and the F, G
    parameter gradients so far (still multiplied by σ and −τ)."""

    e_p: Array | None
    grad: _ParamGrad
    sum_wanted: bool = True
    e_d: Array | None = None
    d_d: Array | None = None
    d_dbar: Array | None = None
    sum_d: Array | None = None
    grad_fg: list = field(default_factory=lambda: [None, None])


def _backward_unrolled(model, steps, scaled, tape, g_p, alphas, relax_primal, adj):
    """The recursion in the scaled adjoints over the stored steps (popped as it goes, freeing the
    tape), continuing from the adjoint state ``adj`` of the step after the tape and leaving in
    it the state after the tape's first step; ``scaled`` = (σK, −τK), ``g_p`` = −τ g."""
    k_sigma, k_tau = scaled
    acc, grad_fg, sum_wanted = adj.grad, adj.grad_fg, adj.sum_wanted
    e_p, e_d, d_d, d_dbar, sum_d = adj.e_p, adj.e_d, adj.d_d, adj.d_dbar, adj.sum_d
    k = len(tape)
    while tape:
        x_bar, y, saved_d, saved_p = tape.pop()
        k -= 1
        v = e_p
        if d_dbar is not None:
            v = v + k_tau._adjoint(d_dbar)
        if alphas is not None:
            v = alphas[k] * g_p if v is None else v + alphas[k] * g_p
        e_p, d_p, e_d, d_d, d_dbar = _reverse_step(model, steps, k_sigma, saved_d, saved_p, v,
                                                   e_d, d_d, relax_primal, grad_fg)
        if sum_wanted:
            sum_d = d_d if sum_d is None else sum_d + d_d
        acc.add(d_d, x_bar)
        acc.add(y, d_p)
    adj.e_p, adj.e_d, adj.d_d, adj.d_dbar, adj.sum_d = e_p, e_d, d_d, d_dbar, sum_d


def _backward_segmented(model, x_tilde, steps, scaled, starts, last, g_p, alphas,
                        relax_primal, adj):
    """The recursion over steps starts[0][0]..``last`` from the stored segment starts
    (k, r, r̄, y): each segment, last first, is recomputed from its start with its tape and
    reversed with the carried state ``adj``; starts and tapes are freed as they are used."""
    first = starts[0][0]
    end = last + 1
    while starts:
        k0, r, r_bar, y = starts.pop()
        seg = forward(model, x_tilde, steps, end - k0, keep=end - k0, start=(r, r_bar, y),
                      scaled=scaled)
        window = None if alphas is None else alphas[k0 - first:end - first]
        _backward_unrolled(model, steps, scaled, seg.tape, g_p, window, relax_primal, adj)
        adj.grad.flush()  # keep the accumulator from holding many segments' arrays
        end = k0


def backward_asymptotic(plan, model, scaled, state: ForwardState, x_hat: Array,
                        g_out: Array):
    """b backward steps with the final step's Jacobians, y^L and x̂ (docs, Mathematics: "Truncated
    and asymptotic gradients"), in the scaled adjoints (module docstring). Returns (∇ operator
    parameters, Σ σ δ_D, [∇ F, ∇ G params])."""
    op, (k_sigma, k_tau) = model.operator, scaled
    steps, relax_primal = plan.steps, plan.method.relax_primal
    _, y, saved_d, saved_p = state.tape[-1]
    e_p, e_d, d_d, d_dbar = -steps.tau * g_out, None, None, None
    sum_p = sum_d = None
    grad_fg = [None, None]
    for _ in range(plan.b):
        v = e_p if d_dbar is None else e_p + k_tau._adjoint(d_dbar)
        e_p, d_p, e_d, d_d, d_dbar = _reverse_step(model, steps, k_sigma, saved_d, saved_p, v,
                                                   e_d, d_d, relax_primal, grad_fg)
        sum_p = d_p if sum_p is None else sum_p + d_p
        sum_d = d_d if sum_d is None else sum_d + d_d
    return (_fixed_point_param_grad(op, sum_d, sum_p, x_hat, y), sum_d,
            _unscaled_fg(grad_fg, steps))


def _fixed_point_param_grad(op, sum_d, sum_p, x_hat, y):
    """∇_K = (Σ σ δ_D) x̂ᵀ + y (Σ −τ δ_P)ᵀ: every backward step at the final iterate, so one
    product for all of them."""
    acc = _ParamGrad(op)
    acc.add(sum_d, x_hat)
    acc.add(y, sum_p)
    return acc.flush()


def backward_implicit(plan, model, scaled, state: ForwardState, x_hat: Array,
                      g_out: Array):
    """The fixed-point gradient (docs, Mathematics: "Fixed-point (implicit) gradients"): u = Σ_{j≥0}
    N^j (g, 0, 0) from :func:`.implicit.solve_adjoint`, then one reverse step at u gives Σ δ_P, Σ
    δ_D and the F, G parameter gradients of all steps (the step is linear), with the final step's
    Jacobians, y^L and x̂ as in the asymptotic mode; the solve runs in the unscaled adjoints
    (its tolerance is on their residual), the sums are scaled after it. Returns (∇ operator
    parameters, Σ σ δ_D, [∇ F, ∇ G params], solve info)."""
    op, (k_sigma, k_tau) = model.operator, scaled
    steps, method = plan.steps, plan.method
    _, y, saved_d, saved_p = state.tape[-1]

    def step(v, e_d, d_d, grad_fg=None):
        return _reverse_step(model, steps, k_tau, saved_d, saved_p, v, e_d, d_d,
                             method.relax_primal, grad_fg)

    u, info = solve_adjoint(step, k_sigma._adjoint, g_out, y, method)
    grad_fg = [None, None]
    _, sum_p, _, sum_d, _ = step(*u, grad_fg)
    sum_d = steps.sigma * sum_d
    return (_fixed_point_param_grad(op, sum_d, -steps.tau * sum_p, x_hat, y), sum_d, grad_fg,
            info)
