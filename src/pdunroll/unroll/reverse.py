"""The reverse recursions through L unrolled Chambolle-Pock steps, one per gradient method.

With g = ∇ℓ(x̂), δ_P^{L+1} = g (0 for ergodic weights), δ_D^{L+1} = δ̄_D^{L+1} = 0 and for
k = L..1 (docs, Mathematics: "Full reverse mode", "Ergodic unrolling")

    δ_P^k = J_{prox τG}(z_P^k)ᵀ (α_k g + δ_P^{k+1} + σ Kᵀ δ̄_D^{k+1})
    δ_D^k = J_{prox σF*}(z_D^k)ᵀ (δ_D^{k+1} − τ K δ_P^k)
    δ̄_D^k = δ_D^k + θ (δ_D^k − δ_D^{k+1})

    ∇_K ℓ = Σ_k σ δ_D^k (x̃ + r̄^{k−1})ᵀ − τ y^k (δ_P^k)ᵀ,   ∇_x̃ ℓ = g + σ Kᵀ Σ_k δ_D^k.

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

Segments (:class:`~pdunroll.Full` and :class:`~pdunroll.Truncated` with ``segments=c``): the
forward pass stores only the states (r, r̄, y) at the starts of c segments of ⌈b/c⌉ steps; the
reverse pass recomputes one segment at a time from its start, with its tape, and continues the
recursion through it with the adjoint state (ε_P, ε_D, δ_D, δ̄_D) carried over from the later
segment. Same result, memory for c states plus one segment's tape instead of b steps (c ≈ √b is
best), one more forward pass.

The released primal mask (``released_mask=eta_backward`` on any method; Brauer & Lorenz,
EUSIPCO 2023, released code): the primal VJP is v·1{|z_P^k − x̃| ≤ eta_backward} instead of
J_{prox τG}(z_P^k)ᵀ v. The tape keeps no z_P, so :func:`reverse` reruns the forward pass with G
wrapped in :class:`_ReleasedMaskG`, which saves z_P^k beside G's own saved step: one more
forward pass, for an option that exists only to run with the released code's conventions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from .. import tree
from .._array import Array, array_size, is_host_device, xp_of
from ..functions.euclidean import Function
from ..model import AnalysisModel
from .forward import ForwardState, forward
from .implicit import solve_adjoint
from .methods import Asymptotic, Full, GradientMethod, Implicit, Truncated

__all__ = ["forward_plan", "reverse"]

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


def forward_plan(method: GradientMethod, iterations: int, b: int) -> tuple[int, range | tuple]:
    """What the forward pass keeps for ``method``: (steps on the tape, steps k before which the
    state is stored as a segment start)."""
    if isinstance(method, Asymptotic | Implicit):
        return 1, ()
    if method.segments:
        return 0, range(iterations - b + 1, iterations + 1, math.ceil(b / method.segments))
    return b, ()


def reverse(method: GradientMethod, model, x_tilde: Array, steps, state: ForwardState,
            x_hat: Array, g_out: Array, alphas, iterations: int, b: int):
    """Run ``method``'s recursion from v = ``g_out`` = ∂ℓ/∂x̂ over what the forward pass kept.
    Returns (∇ operator parameters, Σ δ_D (None for none), [∇ F params, ∇ G params], solve
    info or None)."""
    relax = method.relax_primal
    if method.released_mask is not None:
        model = _released_model(model, x_tilde, method.released_mask)
        if not (isinstance(method, Full | Truncated) and method.segments):
            keep = forward_plan(method, iterations, b)[0]
            state = forward(model, x_tilde, steps, iterations, alphas=alphas, keep=keep)
    if isinstance(method, Asymptotic):
        return (*_backward_asymptotic(model, steps, state, x_hat, g_out, b, relax), None)
    if isinstance(method, Implicit):
        return _backward_implicit(model, steps, state, x_hat, g_out, method)
    assert isinstance(method, Full | Truncated)
    window = alphas[iterations - b:] if alphas is not None else None
    adj = _Adjoint(g_out if alphas is None else None,
                   _ParamGrad(model.operator, steps.sigma, steps.tau))
    if method.segments:
        _backward_segmented(model, x_tilde, steps, state.starts, iterations, g_out, window,
                            relax, adj)
    else:
        _backward_unrolled(model, steps, state.tape, g_out, window, relax, adj)
    if b == iterations and adj.e_d is not None:  # the recursion reached y⁰ = F.conj_start(0)
        part = model.f.conj_start_param_vjp(adj.e_d)
        adj.grad_fg[0] = part if adj.grad_fg[0] is None else tree.add(adj.grad_fg[0], part)
    return adj.grad.flush(), adj.sum_d, adj.grad_fg, None


def _released_model(model, x_tilde: Array, eta_backward: float) -> AnalysisModel:
    """``model`` with G wrapped so that its primal VJP is the released code's mask."""
    g = model.g
    if type(g).prox_step_save is not Function.prox_step_save:
        raise ValueError("released_mask needs a G with a Euclidean prox step (z_P = r − τ Kᵀ y), "
                         f"got {type(g).__name__}")
    return AnalysisModel(model.operator, model.f, _ReleasedMaskG(g, x_tilde, eta_backward))


class _ReleasedMaskG(Function):
    """G with the released code's primal mask: forward steps are G's, the step's VJP is
    v·1{|z_P − x̃| ≤ eta_backward} (z_P = r^{k−1} − τ Kᵀ y^k, in r coordinates)."""

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

    def prox_step_save(self, prev, grad, t):
        z = prev - t * grad
        u, saved = self.g.prox_save(z, t)
        return u, (saved, z)

    def prox_step_vjp(self, saved, v, t):
        xp = xp_of(v)
        w = xp.where(xp.abs(saved[1] - self.x_tilde) <= self.eta_backward, v, xp.zeros_like(v))
        return w, w

    def prox_step_param_vjp(self, saved, v, t):
        return self.g.prox_step_param_vjp(saved[0], v, t)


class _ParamGrad:
    """Accumulates ∇_params (σ Σ ⟨a, K b⟩ over the dual terms − τ Σ ⟨a, K b⟩ over the primal
    terms) over many (a, b) pairs in few large products. σ and −τ scale each product (arrays of
    the parameters' size), once per product, not every a (∇K scaled after the product)."""

    def __init__(self, op, sigma, tau):
        self.op, self.scales, self.terms = op, (sigma, -tau), (([], []), ([], []))
        self.numbers, self.total = 0, None
        self.limit = _numbers_per_product(op)

    def add(self, term: int, a: Array, b: Array) -> None:
        """Add the pair (a, b) to term 0 (dual, scaled by σ) or 1 (primal, scaled by −τ)."""
        self.terms[term][0].append(a)
        self.terms[term][1].append(b)
        self.numbers += array_size(a) + array_size(b)
        if self.numbers >= self.limit:
            self.flush()

    def flush(self):
        xp = self.op.xp
        for scale, (a, b) in zip(self.scales, self.terms, strict=True):
            if a:
                part = tree.scale(scale, self.op.param_vjp(xp.concat(a), xp.concat(b)))
                self.total = part if self.total is None else tree.add(self.total, part)
                a.clear()
                b.clear()
        self.numbers = 0
        return self.total


def _reverse_step(model, steps, saved_d, saved_p, v, e_d, d_d, relax_primal, grad_fg):
    """One step k of the recursion: v is the adjoint reaching r^k, e_d is ε_D^{k+1} and d_d is
    δ_D^{k+1} (None for 0). Adds the step's gradients w.r.t. the parameters of F and G to
    ``grad_fg`` (a two-item list; None skips them). Returns ε_P^k, δ_P^k, ε_D^k, δ_D^k and
    δ̄_D^k."""
    op, sigma, tau, theta = model.operator, steps.sigma, steps.tau, steps.theta
    e_p, d_p = (v, v) if relax_primal else model.g.prox_step_vjp(saved_p, v, tau)
    w = -tau * op.apply(d_p) if e_d is None else e_d - tau * op.apply(d_p)
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
    """The reverse pass's state before step k: ``e_p`` = ε_P^{k+1} (the adjoint reaching r^k
    via r^{k+1}), ``e_d`` = ε_D^{k+1}, ``d_d`` = δ_D^{k+1}, ``d_dbar`` = δ̄_D^{k+1} (None for
    0), Σ δ_D so far, the ∇_K accumulator and the F, G parameter gradients so far."""

    e_p: Array | None
    grad: _ParamGrad
    e_d: Array | None = None
    d_d: Array | None = None
    d_dbar: Array | None = None
    sum_d: Array | None = None
    grad_fg: list = field(default_factory=lambda: [None, None])


def _backward_unrolled(model, steps, tape, g_out, alphas, relax_primal, adj):
    """The recursion over the stored steps (popped as it goes, freeing the tape), continuing from
    the adjoint state ``adj`` of the step after the tape and leaving in it the state after the
    tape's first step."""
    op, sigma = model.operator, steps.sigma
    acc, grad_fg = adj.grad, adj.grad_fg
    e_p, e_d, d_d, d_dbar, sum_d = adj.e_p, adj.e_d, adj.d_d, adj.d_dbar, adj.sum_d
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
        acc.add(0, d_d, x_bar)
        acc.add(1, y, d_p)
    adj.e_p, adj.e_d, adj.d_d, adj.d_dbar, adj.sum_d = e_p, e_d, d_d, d_dbar, sum_d


def _backward_segmented(model, x_tilde, steps, starts, last, g_out, alphas, relax_primal, adj):
    """The recursion over steps starts[0][0]..``last`` from the stored segment starts
    (k, r, r̄, y): each segment, last first, is recomputed from its start with its tape and
    reversed with the carried state ``adj``; starts and tapes are freed as they are used."""
    first = starts[0][0]
    end = last + 1
    while starts:
        k0, r, r_bar, y = starts.pop()
        seg = forward(model, x_tilde, steps, end - k0, keep=end - k0, start=(r, r_bar, y))
        window = None if alphas is None else alphas[k0 - first:end - first]
        _backward_unrolled(model, steps, seg.tape, g_out, window, relax_primal, adj)
        adj.grad.flush()  # keep the accumulator from holding many segments' arrays
        end = k0


def _backward_asymptotic(model, steps, state, x_hat, g_out, b, relax_primal):
    """b backward steps with the final step's Jacobians, y^L and x̂ (docs, Mathematics: "Truncated
    and asymptotic gradients")."""
    op, sigma = model.operator, steps.sigma
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
    return _fixed_point_param_grad(op, steps, sum_d, sum_p, x_hat, y), sum_d, grad_fg


def _fixed_point_param_grad(op, steps, sum_d, sum_p, x_hat, y):
    """∇_K = σ (Σ δ_D) x̂ᵀ − τ y (Σ δ_P)ᵀ: every backward step at the final iterate, so one
    product pair for all of them."""
    acc = _ParamGrad(op, steps.sigma, steps.tau)
    acc.add(0, sum_d, x_hat)
    acc.add(1, y, sum_p)
    return acc.flush()


def _backward_implicit(model, steps, state, x_hat, g_out, method):
    """The fixed-point gradient (docs, Mathematics: "Fixed-point (implicit) gradients"): u = Σ_{j≥0}
    N^j (g, 0, 0) from :func:`.implicit.solve_adjoint`, then one reverse step at u gives Σ δ_P, Σ
    δ_D and the F, G parameter gradients of all steps (the step is linear), with the final step's
    Jacobians, y^L and x̂ as in the asymptotic mode."""
    op, sigma = model.operator, steps.sigma
    _, y, saved_d, saved_p = state.tape[-1]

    def step(v, e_d, d_d, grad_fg=None):
        return _reverse_step(model, steps, saved_d, saved_p, v, e_d, d_d, method.relax_primal,
                             grad_fg)

    u, info = solve_adjoint(step, op.adjoint, sigma, g_out, y, method)
    grad_fg = [None, None]
    _, sum_p, _, sum_d, _ = step(*u, grad_fg)
    return _fixed_point_param_grad(op, steps, sum_d, sum_p, x_hat, y), sum_d, grad_fg, info
