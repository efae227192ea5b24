"""The core loop and recursions contain no host synchronisation: jax.jit of the unchecked vjp
(and of pu.gradient's pieces) traces, and torch.compile of it runs, with the same gradients as
the eager pu.gradient."""

import numpy as np
import pytest
from conftest import relative_error
from problems import speech_like

import pdunroll as pu
from pdunroll.unroll.gradient import vjp_unchecked
from pdunroll.unroll.plan import Plan, make_plan

L = 8  # short: torch.compile traces every step
METHODS = [pu.Full(), pu.Truncated(5), pu.Asymptotic(7), pu.Full(segments=3)]


def _core(steps, method, radius):
    plan = make_plan(method, L, None, steps)

    def core(K, xt, x_true):
        model = pu.AnalysisModel(pu.DenseOperator(K), pu.L1Norm(), pu.LinfBall(radius))
        x_hat, pull = vjp_unchecked(model, xt, plan)
        g = x_hat - x_true
        c = pull(g)
        return 0.5 * (g * g).sum(), c.operator, c.x_tilde

    return core


def _reference(problem, method, steps):
    model = pu.AnalysisModel(pu.DenseOperator(problem.K), pu.L1Norm(),
                             pu.LinfBall(problem.radius))
    return pu.gradient(model, problem.x_tilde, problem.x_true, iterations=L, method=method,
                       steps=steps)


@pytest.mark.parametrize("method", METHODS, ids=repr)
def test_jax_jit_of_the_unchecked_core(method):
    jax = pytest.importorskip("jax", reason="jax is not installed (pip install jax)")
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    problem = speech_like()
    steps = pu.step_sizes(pu.DenseOperator(problem.K), omega=3.0)
    ref = _reference(problem, method, steps)
    fn = jax.jit(_core(steps, method, problem.radius))
    loss, gK, gx = fn(*(jnp.asarray(a) for a in (problem.K, problem.x_tilde, problem.x_true)))
    assert float(loss) == pytest.approx(ref.loss, rel=1e-12)
    assert relative_error(np.asarray(gK), ref.operator) <= 1e-12
    assert relative_error(np.asarray(gx), ref.x_tilde) <= 1e-12


@pytest.mark.parametrize("method", METHODS, ids=repr)
def test_torch_compile_of_the_unchecked_core(method):
    torch = pytest.importorskip("torch", reason="torch is not installed (pip install torch)")
    problem = speech_like()
    steps = pu.step_sizes(pu.DenseOperator(problem.K), omega=3.0)
    ref = _reference(problem, method, steps)
    torch._dynamo.reset()
    fn = torch.compile(_core(steps, method, problem.radius), backend="eager")
    loss, gK, gx = fn(*(torch.from_numpy(a) for a in (problem.K, problem.x_tilde,
                                                      problem.x_true)))
    assert float(loss) == pytest.approx(ref.loss, rel=1e-12)
    assert relative_error(gK.numpy(), ref.operator) <= 1e-12
    assert relative_error(gx.numpy(), ref.x_tilde) <= 1e-12


def test_pu_gradient_itself_compiles_under_torch_compile():
    """The checked entry point: its validation syncs become graph breaks, not errors."""
    torch = pytest.importorskip("torch", reason="torch is not installed (pip install torch)")
    problem = speech_like()
    steps = pu.step_sizes(pu.DenseOperator(problem.K), omega=3.0)
    ref = _reference(problem, pu.Full(), steps)

    def grad(K, xt, x_true):
        model = pu.AnalysisModel(pu.DenseOperator(K), pu.L1Norm(), pu.LinfBall(problem.radius))
        res = pu.gradient(model, xt, x_true, iterations=L, steps=steps)
        return res.operator, res.x_tilde

    torch._dynamo.reset()
    gK, gx = torch.compile(grad, backend="eager")(
        *(torch.from_numpy(a) for a in (problem.K, problem.x_tilde, problem.x_true)))
    assert relative_error(gK.numpy(), ref.operator) <= 1e-12
    assert relative_error(gx.numpy(), ref.x_tilde) <= 1e-12


def test_torch_compile_with_a_changing_number_of_iterations():
    """A second L makes torch.compile treat it as a symbolic integer: the loop must not need a
    constant (it did: ``deque(maxlen=L)`` of the tape crashed there)."""
    torch = pytest.importorskip("torch", reason="torch is not installed (pip install torch)")
    problem = speech_like()
    steps = pu.step_sizes(pu.DenseOperator(problem.K), omega=3.0)

    def core(K, xt, iterations):
        model = pu.AnalysisModel(pu.DenseOperator(K), pu.L1Norm(), pu.LinfBall(problem.radius))
        x_hat, pull = vjp_unchecked(model, xt, Plan(pu.Full(), iterations, None, steps))
        return pull(x_hat).operator

    torch._dynamo.reset()
    fn = torch.compile(core, backend="eager")
    K, xt = torch.from_numpy(problem.K), torch.from_numpy(problem.x_tilde)
    for iterations in (5, 7):
        model = pu.AnalysisModel(pu.DenseOperator(problem.K), pu.L1Norm(),
                                 pu.LinfBall(problem.radius))
        ref = pu.gradient(model, problem.x_tilde, loss=lambda x: (0.0, x),
                          iterations=iterations, steps=steps)
        assert relative_error(fn(K, xt, iterations).numpy(), ref.operator) <= 1e-12
