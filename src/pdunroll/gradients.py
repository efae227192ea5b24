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
stores nothing and runs b steps with the Jacobians, y and x̂ of the final iterate (DESIGN §4);
``"implicit"`` sums those steps to infinity by solving a linear system (DESIGN §6,
:mod:`pdunroll.implicit`). For a filter bank, the outer products are the operator's
``param_vjp``.

Checkpointing (full and truncated modes, ``checkpoints=c``): the forward pass stores only the
states (r, r̄, y) at the starts of c segments of ⌈b/c⌉ steps; the reverse pass recomputes one
segment at a time from its start, with its tape, and continues the recursion through it with the
adjoint state (ε_P, ε_D, δ_D, δ̄_D) carried over from the later segment. Same result, memory for
c states plus one segment's tape instead of b steps (c ≈ √b is best), one more forward pass.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from ._array import Array, array_size, check_count, check_finite, check_flag, namespace, xp_of
from .implicit import solve_adjoint
from .krylov import SolveInfo
from .model import AnalysisModel, StepSizes, check_model, step_sizes
from .solver import ergodic_weights, forward

__all__ = ["GradientResult", "MODES", "gradient"]

MODES = ("full", "truncated", "asymptotic", "implicit")

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
    w.r.t. ``model.f.params`` and ``model.g.params`` (``()`` for functions without any);
    ``info``: how the linear solve of mode="implicit" ended (:class:`~pdunroll.krylov.SolveInfo`:
    iterations, residual, status), ``None`` for the other modes."""

    loss: float
    operator: Array
    x_tilde: Array
    x: Array
    steps: StepSizes
    mode: str
    f: Array | tuple = ()
    g: Array | tuple = ()
    info: SolveInfo | None = None

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
        name = "the loss gradient"
        xp = namespace(("x_hat", x_hat), (name, grad))
        if tuple(grad.shape) != tuple(x_hat.shape):
            raise ValueError(f"{name} must have the shape of x_hat {tuple(x_hat.shape)}, got "
                             f"{tuple(grad.shape)}")
        if grad.dtype != x_hat.dtype:
            raise TypeError(f"{name} has dtype {grad.dtype} but x_hat has {x_hat.dtype}")
        check_finite(xp, **{name: grad})
        return value, grad

    return checked


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
    checkpoints: int | None = None,
    solver: str | None = None,
    tol: float | None = None,
    maxiter: int | None = None,
    strict: bool = True,
) -> GradientResult:
    """Loss and gradients of ℓ(A_L(K, x̃)) w.r.t. the operator's parameters and x̃.

    Parameters
    ----------
    x_tilde, x_true : arrays of shape (batch, *in_shape)
        Degraded and clean signals; the default loss is ½ Σ ‖x̂ − x†‖².
    iterations : int
        L, the number of unrolled Chambolle-Pock steps.
    mode : "full", "truncated", "asymptotic" or "implicit"
        Exact backpropagation through all L steps; through the last ``b`` steps
        (1 ≤ b ≤ L); ``b`` backward steps at the final iterates, storing nothing (b ≥ 1,
        may exceed L); or the fixed-point gradient, the limit b → ∞ of "asymptotic", from a
        linear solve (needs L large enough that the forward pass sits at a fixed point).
    b : int, optional
        Backward steps of the truncated and asymptotic modes (default 1); must be left out
        for "full" and "implicit".
    weights : None, "harmonic", "uniform" or L numbers summing to 1
        Ergodic unrolling: x̂ = x̃ + Σ α_k r^k (full and truncated modes).
    loss : callable, optional
        ``loss(x_hat) -> (value, gradient)`` replacing the squared loss (then ``x_true`` is
        unused and may be omitted); the gradient must be finite, with x̂'s shape, dtype and
        backend.
    relax_primal : bool
        Treat J_{prox τG} as the identity in the backward pass (the released code's
        ``eta_backward = 1``); an approximation, not the exact gradient.
    omega, sigma, tau, theta, op_norm
        Step sizes as in :func:`chambolle_pock`.
    checkpoints : int, optional
        Full and truncated modes: store the forward state at the starts of this many segments
        only and recompute each segment during the reverse pass (same gradient to rounding,
        memory O(checkpoints + b/checkpoints) steps instead of O(b); ≈ √b is best).
    solver, tol, maxiter, strict
        Implicit mode: ``"gmres"`` (default) or ``"neumann"`` (the asymptotic recursion run until
        it converges); relative residual tolerance per signal (default 1e−10 in float64, 1000 ε
        otherwise); at most ``maxiter`` iterations (default 1000). If the solve misses ``tol``
        (e.g. a singular system, DESIGN §6) ``strict=True`` raises
        :class:`~pdunroll.implicit.ConvergenceError`; ``strict=False`` warns with
        :class:`~pdunroll.implicit.ConvergenceWarning` and returns the unconverged gradient with
        ``info.converged`` False.
    """
    check_model(model)
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    iterations = check_count("iterations", iterations)
    relax_primal, strict = check_flag("relax_primal", relax_primal), check_flag("strict", strict)
    if loss is None:
        if x_true is None:
            raise ValueError("give x_true (for the squared loss) or loss=callable")
        model.check_signals(x_tilde=x_tilde, x_true=x_true)
        loss = squared_loss(x_true)
    else:
        if not callable(loss):
            raise TypeError(f"loss must be callable, loss(x_hat) -> (value, gradient); got "
                            f"{type(loss).__name__}")
        model.check_signals(x_tilde=x_tilde)
        loss = _checked_loss(loss)
    if mode != "implicit" and (solver, tol, maxiter) != (None, None, None):
        raise ValueError('solver, tol and maxiter are only used by mode="implicit"')
    if checkpoints is not None:
        if mode not in ("full", "truncated"):
            raise ValueError('checkpoints is only used by mode="full" and mode="truncated"')
        checkpoints = check_count("checkpoints", checkpoints)
    b = back_steps(mode, b, iterations)
    alphas = ergodic_weights(weights, iterations)
    if mode in ("asymptotic", "implicit") and alphas is not None:
        raise ValueError(f'weights cannot be combined with mode="{mode}": its backward steps '
                         "all sit at the final iterate; use mode='full' or 'truncated'")
    steps = step_sizes(model.operator, omega=omega, sigma=sigma, tau=tau, theta=theta,
                       op_norm=op_norm)
    keep = 1 if mode in ("asymptotic", "implicit") else (0 if checkpoints else b)
    save_at = range(iterations - b + 1, iterations + 1, math.ceil(b / checkpoints)) \
        if checkpoints else ()
    state = forward(model, x_tilde, steps, iterations, alphas=alphas, keep=keep, save_at=save_at)
    x_hat = x_tilde + (state.r if alphas is None else state.r_avg)
    value, g_out = loss(x_hat)
    info = None
    if mode == "asymptotic":
        grad_op, sum_d, grad_fg = _backward_asymptotic(model, steps, state, x_hat, g_out, b,
                                                       relax_primal)
    elif mode == "implicit":
        grad_op, sum_d, grad_fg, info = _backward_implicit(
            model, steps, state, x_hat, g_out, relax_primal,
            solver="gmres" if solver is None else solver, tol=tol, maxiter=maxiter, strict=strict)
    else:
        window = alphas[iterations - b:] if alphas is not None else None
        adj = _Adjoint(g_out if alphas is None else None, _ParamGrad(model.operator))
        if checkpoints:
            _backward_checkpointed(model, x_tilde, steps, state.starts, iterations, g_out, window,
                                   relax_primal, adj)
        else:
            _backward_unrolled(model, steps, state.tape, g_out, window, relax_primal, adj)
        grad_op, sum_d, grad_fg = adj.grad.flush(), adj.sum_d, adj.grad_fg
    op = model.operator
    grad_x = g_out if sum_d is None else g_out + steps.sigma * op.adjoint(sum_d)
    return GradientResult(value, grad_op, grad_x, x_hat, steps, mode, *grad_fg, info=info)


def back_steps(mode: str, b: int | None, iterations: int) -> int:
    """The number of backward steps: L for "full" and "implicit" (``b`` must be None), else
    ``b`` (default 1; at most L in "truncated" mode)."""
    if mode in ("full", "implicit"):
        if b is not None:
            raise ValueError('b is only used by mode="truncated" and mode="asymptotic"')
        return iterations
    b = check_count("b", 1 if b is None else b)
    if mode == "truncated" and b > iterations:
        raise ValueError(f"b must satisfy 1 <= b <= iterations ({iterations}) in truncated "
                         f"mode, got {b}")
    return b


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
    ``grad_fg`` (a two-item list; None skips them). Returns ε_P^k, δ_P^k, ε_D^k, δ_D^k and
    δ̄_D^k."""
    op, sigma, tau, theta = model.operator, steps.sigma, steps.tau, steps.theta
    e_p, d_p = (v, v) if relax_primal else model.g.prox_step_vjp(saved_p, v, tau)
    w = -tau * op.apply(d_p) if e_d is None else e_d - tau * op.apply(d_p)
    e_d_new, d_d_new = model.f.conj_prox_step_vjp(saved_d, w, sigma)
    if grad_fg is not None:
        for i, part in enumerate((model.f.conj_prox_step_param_vjp(saved_d, w, sigma),
                                  model.g.prox_step_param_vjp(saved_p, v, tau))):
            grad_fg[i] = part if grad_fg[i] is None else _tree_add(grad_fg[i], part)
    if d_d is None:  # δ_D^{k+1} = 0
        d_dbar = (1 + theta) * d_d_new
    else:
        d_dbar = d_d_new + theta * (d_d_new - d_d)
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
    op, sigma, tau = model.operator, steps.sigma, steps.tau
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
        acc.add(sigma * d_d, x_bar)
        acc.add(-tau * y, d_p)
    adj.e_p, adj.e_d, adj.d_d, adj.d_dbar, adj.sum_d = e_p, e_d, d_d, d_dbar, sum_d


def _backward_checkpointed(model, x_tilde, steps, starts, last, g_out, alphas, relax_primal, adj):
    """The recursion over steps starts[0][0]..``last`` from checkpoints (k, r, r̄, y): each
    segment, last first, is recomputed from its start with its tape and reversed with the carried
    state ``adj``; checkpoints and tapes are freed as they are used."""
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
    """b backward steps with the final step's Jacobians, y^L and x̂ (DESIGN §4)."""
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
    return _fixed_point_param_grad(op, steps, sum_d, sum_p, x_hat, y), sum_d, tuple(grad_fg)


def _fixed_point_param_grad(op, steps, sum_d, sum_p, x_hat, y):
    """∇_K = σ (Σ δ_D) x̂ᵀ − τ y (Σ δ_P)ᵀ: every backward step at the final iterate, so one
    product pair for all of them."""
    acc = _ParamGrad(op)
    acc.add(steps.sigma * sum_d, x_hat)
    acc.add(-steps.tau * y, sum_p)
    return acc.flush()


def _backward_implicit(model, steps, state, x_hat, g_out, relax_primal, **solve):
    """The fixed-point gradient (DESIGN §6): u = Σ_{j≥0} N^j (g, 0, 0) from
    :func:`pdunroll.implicit.solve_adjoint`, then one reverse step at u gives Σ δ_P, Σ δ_D and
    the F, G parameter gradients of all steps (the step is linear), with the final step's
    Jacobians, y^L and x̂ as in the asymptotic mode."""
    op, sigma = model.operator, steps.sigma
    _, y, saved_d, saved_p = state.tape[-1]

    def step(v, e_d, d_d, grad_fg=None):
        return _reverse_step(model, steps, saved_d, saved_p, v, e_d, d_d, relax_primal, grad_fg)

    u, info = solve_adjoint(step, op.adjoint, sigma, g_out, y, **solve)
    grad_fg = [None, None]
    _, sum_p, _, sum_d, _ = step(*u, grad_fg)
    return _fixed_point_param_grad(op, steps, sum_d, sum_p, x_hat, y), sum_d, tuple(grad_fg), info
