"""pdunroll inside JAX: x̂ = A_L(K, x̃), L unrolled Chambolle-Pock steps, as a ``jax.custom_vjp``
function whose VJP is pdunroll's hand-written reverse recursion (docs, Mathematics: "Full reverse
mode"; Brauer & Lorenz, EUSIPCO 2023), not ``jax.grad`` of the loop.

:func:`unrolled` works eagerly, under ``jax.jit`` and under ``jax.vmap`` (over an extra leading
axis of x̃ and the parameters: the solver sees one batch at a time). Under ``jax.jit`` the step
sizes cannot come from a power iteration with host round trips: give ``steps=``
(:func:`pdunroll.step_sizes` outside the jitted function, e.g. once per training step) or
:func:`step_sizes` of this module (a fixed number of power iterations, traced, no host round
trip), or :func:`warm_step_sizes`, which warm-starts those iterations from the vector of the
previous call (a state the caller passes on, as the torch layer keeps its ``norm_vector``).
The reverse pass of :class:`~pdunroll.Implicit` checks its linear solve on the host and runs
eagerly only. Importing this module imports jax; ``import pdunroll`` does not.
"""

from __future__ import annotations

import numbers
from collections import deque

import jax

from . import tree
from ._array import check_count
from .model import AnalysisModel, StepRule, StepSizes, check_model, resolve_steps, step_rule
from .operators.base import LinearOperator, start_vector
from .unroll.forward import ForwardState, forward
from .unroll.methods import GradientMethod
from .unroll.plan import make_plan
from .unroll.reverse import forward_model, reverse

__all__ = ["step_sizes", "unrolled", "warm_step_sizes"]


def step_sizes(operator: LinearOperator, *, omega: float | None = None,
               steps: StepRule | None = None, iterations: int = 100) -> StepSizes:
    """The :class:`~pdunroll.StepRule` ``steps`` (``omega=w`` is shorthand for
    ``StepRule(omega=w)``) with ‖K‖ from ``iterations`` power iterations on KᵀK: a fixed
    count, no convergence test, hence no host round trip; usable under ``jax.jit``. σ, τ and
    ‖K‖ are 0-d arrays; the estimate approaches ‖K‖ from below (the rule's margin covers that);
    the gradient is stopped (the steps are constants for differentiation)."""
    return warm_step_sizes(operator, None, omega=omega, steps=steps, iterations=iterations)[0]


def warm_step_sizes(operator: LinearOperator, vector=None, *, omega: float | None = None,
                    steps: StepRule | None = None, iterations: int | None = None):
    """(step sizes, vector): :func:`step_sizes` with the power iterations warm-started from
    ``vector``, the vector this function returned for the operator of the previous call (K
    changed by a training step): the rule's own warm start (:meth:`~pdunroll.StepRule.refresh`),
    as the torch layer runs it between calls. ``vector=None`` starts cold, from the fixed start
    vector. ``iterations``: 10 warm-started (the torch layer's ``norm_iterations``), 100 cold.

    Functional, as JAX wants it: the caller keeps the returned vector (shape (1, *in_shape),
    unit norm) and passes it to the next call, e.g. as part of a jitted training step's state.
    No host round trip; gradients are stopped for both outputs."""
    if not isinstance(operator, LinearOperator):
        raise TypeError(f"operator must be a LinearOperator, got {type(operator).__name__}")
    rule = step_rule(omega, steps)
    if not isinstance(rule, StepRule):
        raise TypeError("steps must be a pdunroll.StepRule here (fixed StepSizes need no "
                        "power iteration)")
    if rule.norm != "spectral":
        raise ValueError("pdunroll.jax.step_sizes estimates the spectral norm: give a rule "
                         "with norm='spectral', or StepSizes computed outside the jitted "
                         "function")
    if vector is None:
        vector = start_vector(operator)
        iterations = 100 if iterations is None else iterations
    else:
        want = (1, *operator.in_shape)
        if tuple(getattr(vector, "shape", ())) != want:
            raise ValueError(f"vector must be the vector a previous call returned, of shape "
                             f"{want} for this operator, got "
                             f"{tuple(getattr(vector, 'shape', ())) or type(vector).__name__}")
        iterations = 10 if iterations is None else iterations
    iterations = check_count("iterations", iterations)
    norm, vector = rule.refresh(operator, vector, iterations)
    return rule.for_norm(jax.lax.stop_gradient(norm)), jax.lax.stop_gradient(vector)


def _split(state: ForwardState):
    """The forward state as (JAX arrays, what rebuilds it): residuals must be JAX arrays, the
    tape's step numbers and structure stay Python values."""
    flat, treedef = jax.tree_util.tree_flatten(
        (state.r, state.y, state.r_prev, state.y_prev, state.r_avg, state.y_avg,
         list(state.tape), state.starts))
    is_array = [isinstance(a, jax.Array) for a in flat]
    arrays = [a for a, keep in zip(flat, is_array, strict=True) if keep]
    static = [None if keep else a for a, keep in zip(flat, is_array, strict=True)]
    return arrays, (treedef, is_array, static)


def _join(arrays, how) -> ForwardState:
    treedef, is_array, static = how
    it = iter(arrays)
    flat = [next(it) if keep else s for keep, s in zip(is_array, static, strict=True)]
    r, y, r_prev, y_prev, r_avg, y_avg, tape, starts = jax.tree_util.tree_unflatten(treedef, flat)
    return ForwardState(r, y, r_prev, y_prev, r_avg, y_avg, deque(tape),
                        list(starts))


def _traced(steps: StepSizes) -> bool:
    """σ, τ are arrays (from :func:`step_sizes`, possibly traced), not numbers."""
    return not isinstance(steps.sigma, numbers.Real)


def _resolve(model: AnalysisModel, omega, steps):
    """The step sizes; under jax.jit only given ones (their ‖K‖ bound check needs values)."""
    if isinstance(steps, StepSizes) and _traced(steps):
        step_rule(omega, steps)  # omega and steps both given is refused
        return steps
    try:
        return resolve_steps(model.operator, omega, steps)
    except jax.errors.ConcretizationTypeError as err:
        if not isinstance(steps, StepSizes):
            raise ValueError(
                "under jax.jit the step sizes cannot come from a power iteration with host "
                "round trips: give steps=pdunroll.step_sizes(...) computed outside the jitted "
                "function, or steps=pdunroll.jax.step_sizes(operator, omega=...)") from err
        return steps  # traced operator: the lower-bound check of ‖K‖ needs values; skipped


def unrolled(
    model: AnalysisModel,
    x_tilde,
    *,
    iterations: int,
    method: GradientMethod | str = "full",
    weights=None,
    omega: float | None = None,
    steps: StepRule | StepSizes | None = None,
):
    """x̂ = A_L(K, x̃) for a model whose parameters are JAX arrays, differentiable (reverse mode:
    ``jax.grad``, ``jax.vjp``) w.r.t. x̃ and the parameters of the operator, F and G; the VJP
    is the pullback of :func:`pdunroll.vjp` with ``method``. Arguments as in
    :func:`pdunroll.vjp`; see the module docstring for ``jax.jit``. Forward-mode
    differentiation (``jax.jvp``, ``jax.jacfwd``) is not defined (``custom_vjp``)."""
    check_model(model)
    plan = make_plan(method, iterations, weights)
    model.check_signals(x_tilde=x_tilde)
    steps = _resolve(model, omega, steps)
    ops, fs, gs = (tree.flatten(p) for p in (model.operator.params, model.f.params,
                                              model.g.params))
    counts = (len(ops), len(fs))
    keep, save_at = plan.method.keeps(plan.iterations)
    held = {}
    # traced σ, τ enter as arguments (a custom_vjp function may not close over tracers); their
    # cotangents are zero: step sizes are constants for differentiation
    traced = _traced(steps)
    st_args = (steps.sigma, steps.tau, steps.op_norm) if traced else ()

    def steps_of(st):
        return StepSizes._on_device(st[0], st[1], steps.theta, st[2]) if traced else steps

    def model_of(x_tilde, leaves):
        return forward_model(plan.method, model.with_leaves(leaves, counts), x_tilde)

    def run(x_tilde, leaves, st):
        state = forward(model_of(x_tilde, leaves), x_tilde, steps_of(st), plan.iterations,
                        alphas=plan.alphas, keep=keep, save_at=save_at)
        return state, x_tilde + (state.r if plan.alphas is None else state.r_avg)

    @jax.custom_vjp
    def solve(x_tilde, leaves, st):
        return run(x_tilde, leaves, st)[1]

    def solve_fwd(x_tilde, leaves, st):
        state, x_hat = run(x_tilde, leaves, st)
        arrays, held["how"] = _split(state)
        return x_hat, (x_tilde, leaves, st, x_hat, arrays)

    def solve_bwd(res, v):
        x_tilde, leaves, st, x_hat, arrays = res
        state = _join(arrays, held["how"])
        grad_op, grad_x, f_grad, g_grad, _ = reverse(plan.with_steps(steps_of(st)),
                                                     model_of(x_tilde, leaves), x_tilde, state,
                                                     x_hat, v)
        grads = [*tree.flatten(grad_op), *tree.flatten(f_grad), *tree.flatten(g_grad)]
        return grad_x, grads, tuple(a * 0 for a in st)

    solve.defvjp(solve_fwd, solve_bwd)
    return solve(x_tilde, [*ops, *fs, *gs], st_args)
