"""The JAX layer (pdunroll.jax): check_grads (reverse mode, float64) for every gradient method,
the same gradients as pu.gradient and as jax.grad of the unrolled loop, jax.jit (given and traced
step sizes), jax.vmap, training an operator, and the errors."""

import numpy as np
import pytest
from conftest import relative_error

jax = pytest.importorskip("jax", reason="jax is not installed (pip install jax)")
jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
from jax.test_util import check_grads  # noqa: E402

import pdunroll as pu  # noqa: E402
from pdunroll.jax import step_sizes, unrolled  # noqa: E402
from pdunroll.unroll.forward import forward  # noqa: E402

N, M, B = 4, 5, 2
# L = 300 with a smooth strongly convex G: the truncated, asymptotic and implicit gradients
# equal the exact one to check_grads' tolerance on this problem
METHODS = [(300, pu.Full()), (300, pu.Truncated(100)), (300, pu.Asymptotic(200)),
           (300, pu.Implicit(tol=1e-12, maxiter=1000)), (20, pu.Full(segments=3)),
           (20, pu.Truncated(20, segments=4))]


def _data(seed=0):
    rng = np.random.default_rng(seed)
    K = np.eye(M, N) + 0.3 * rng.standard_normal((M, N))
    xt = 2 * rng.standard_normal((B, N))
    c = 0.1 * rng.standard_normal((B, N))
    return K, xt, c


def _model(K, c):
    return pu.AnalysisModel(pu.DenseOperator(K), pu.L1Norm(), pu.LinearTerm(c, pu.SquaredL2()))


@pytest.mark.parametrize("iterations,method", METHODS, ids=lambda m: repr(m))
def test_check_grads_every_method(iterations, method):
    K, xt, c = (jnp.asarray(a) for a in _data())
    # ω = 1: on this problem 200 steps with it converge far enough for the truncation
    steps = pu.step_sizes(pu.DenseOperator(K), omega=1.0)

    def layer(K, xt, c):
        return unrolled(_model(K, c), xt, iterations=iterations, method=method, steps=steps)

    check_grads(layer, (K, xt, c), order=1, modes=["rev"])


def _loss(K, xt, c, x_true, steps, iterations=15, method="full"):
    x_hat = unrolled(_model(K, c), xt, iterations=iterations, method=method, steps=steps)
    return 0.5 * jnp.sum((x_hat - x_true) ** 2)


def test_same_gradients_as_pu_gradient_and_jax_grad_of_the_loop():
    K, xt, c = _data(1)
    x_true = np.random.default_rng(9).standard_normal(xt.shape)
    steps = pu.step_sizes(pu.DenseOperator(K), omega=2.0)
    ref = pu.gradient(_model(K, c), xt, x_true, iterations=15, steps=steps)
    args = [jnp.asarray(a) for a in (K, xt, c)]
    got = jax.grad(_loss, argnums=(0, 1, 2))(*args, jnp.asarray(x_true), steps)
    for g, want in zip(got, (ref.operator, ref.x_tilde, ref.g), strict=True):
        assert relative_error(g, want) <= 1e-12

    def loop_loss(K, xt, c):  # jax.grad of the library's own forward loop: the oracle
        x_hat = xt + forward(_model(K, c), xt, steps, 15).r
        return 0.5 * jnp.sum((x_hat - x_true) ** 2)

    auto = jax.grad(loop_loss, argnums=(0, 1, 2))(*args)
    for g, want in zip(got, auto, strict=True):
        assert relative_error(g, want) <= 1e-10


@pytest.mark.parametrize("method", [pu.Full(), pu.Truncated(5), pu.Asymptotic(8),
                                    pu.Full(segments=3)], ids=repr)
def test_jit_equals_eager(method):
    K, xt, c = (jnp.asarray(a) for a in _data(2))
    x_true = jnp.zeros_like(xt)
    steps = pu.step_sizes(pu.DenseOperator(K))
    grad = jax.grad(_loss, argnums=(0, 1, 2))
    eager = grad(K, xt, c, x_true, steps, 15, method)
    jitted = jax.jit(grad, static_argnums=(4, 5, 6))(K, xt, c, x_true, steps, 15, method)
    for a, b in zip(eager, jitted, strict=True):
        assert relative_error(a, b) <= 1e-12


def test_traced_step_sizes_under_jit():
    K, xt, c = (jnp.asarray(a) for a in _data(3))

    @jax.jit
    def loss(K):
        op = pu.DenseOperator(K)
        steps = step_sizes(op, omega=2.0)
        x_hat = unrolled(pu.AnalysisModel(op, pu.L1Norm(), pu.SquaredL2()), xt, iterations=12,
                         steps=steps)
        return jnp.sum(x_hat**2), steps.op_norm

    (value, norm), g = jax.jit(jax.value_and_grad(loss, has_aux=True))(K)
    assert float(norm) == pytest.approx(float(np.linalg.norm(np.asarray(K), 2)), rel=1e-6)
    ref = pu.gradient(pu.AnalysisModel(pu.DenseOperator(np.asarray(K)), pu.L1Norm(),
                                       pu.SquaredL2()), np.asarray(xt),
                      loss=lambda x: (float(np.sum(x**2)), 2 * x), iterations=12,
                      steps=pu.step_sizes(pu.DenseOperator(np.asarray(K)), omega=2.0,
                                          op_norm=float(norm)))
    assert relative_error(g, ref.operator) <= 1e-10


def test_jit_without_step_sizes_raises_a_clear_error():
    K, xt, c = (jnp.asarray(a) for a in _data())

    @jax.jit
    def f(K):
        return unrolled(_model(K, c), xt, iterations=3)

    with pytest.raises(ValueError, match="under jax.jit .* give steps="):
        f(K)


def test_vmap_over_an_extra_axis_equals_a_loop():
    K, xt, c = (jnp.asarray(a) for a in _data(4))
    steps = pu.step_sizes(pu.DenseOperator(K))
    X = jnp.stack([xt, -0.5 * xt, 2 * xt])
    T = jnp.ones_like(X)

    def loss(K, x, t):
        return _loss(K, x, c, t, steps, 10)

    batched = jax.grad(lambda K: jnp.sum(jax.vmap(loss, in_axes=(None, 0, 0))(K, X, T)))(K)
    looped = sum(jax.grad(loss)(K, x, t) for x, t in zip(X, T, strict=True))
    assert relative_error(batched, looped) <= 1e-12


def test_trains_an_operator_by_gradient_descent():
    """K learned from a perturbed DCT on quantized signals: the loss falls by a fifth or more."""
    rng = np.random.default_rng(0)
    n, batch = 16, 8
    t = np.linspace(0, 1, n)
    x = np.stack([0.6 * np.sin(2 * np.pi * (2 + i % 5) * t + i) for i in range(batch)])
    x_true, x_tilde = jnp.asarray(x), jnp.asarray(pu.quantize(x, 3))
    K = jnp.asarray(pu.dct_matrix(n) + 0.2 * rng.standard_normal((n, n)))

    def loss(K):
        op = pu.DenseOperator(K)
        model = pu.AnalysisModel(op, pu.L1Norm(), pu.LinfBall(1 / 8))
        # ‖K‖ changes as K trains: step sizes from a traced power iteration, one compilation
        x_hat = unrolled(model, x_tilde, iterations=20, steps=step_sizes(op, omega=3.0))
        return 0.5 * jnp.sum((x_hat - x_true) ** 2)

    step = jax.jit(jax.value_and_grad(loss))
    losses = []
    for _ in range(60):
        value, g = step(K)
        K = K - 0.05 * g
        losses.append(float(value))
    assert losses[-1] < 0.8 * losses[0]


def test_warm_started_step_sizes_use_the_previous_vector():
    """The vector of a call warm-starts the next call's power iterations (the operator changed a
    little, as in a training step): its 10 iterations give ‖K‖ to 1e-9, 10 cold ones only to
    1e-5, and the layer's output equals the one with the exact ‖K‖ (SVD)."""
    from pdunroll.jax import warm_step_sizes

    K, xt, c = _data(4)
    op = pu.DenseOperator(jnp.asarray(K))
    first, vector = warm_step_sizes(op, omega=2.0)
    assert float(first.op_norm) == pytest.approx(np.linalg.norm(K, 2), rel=1e-10)
    assert float(jnp.linalg.norm(vector)) == pytest.approx(1.0, rel=1e-12)
    K1 = K + 1e-3 * np.random.default_rng(5).standard_normal(K.shape)
    op1 = pu.DenseOperator(jnp.asarray(K1))
    exact = np.linalg.norm(K1, 2)
    warm, vector1 = warm_step_sizes(op1, vector, omega=2.0)
    cold, _ = warm_step_sizes(op1, omega=2.0, iterations=10)
    assert abs(float(warm.op_norm) - exact) <= 1e-9 * exact
    assert abs(float(cold.op_norm) - exact) > 1e3 * abs(float(warm.op_norm) - exact)
    model = _model(jnp.asarray(K1), jnp.asarray(c))
    got = unrolled(model, jnp.asarray(xt), iterations=15, steps=warm)
    want = unrolled(model, jnp.asarray(xt), iterations=15,
                    steps=pu.StepRule(omega=2.0).for_norm(exact))
    np.testing.assert_allclose(got, want, rtol=1e-8, atol=1e-10)

    @jax.jit
    def train_step(K, v):  # the vector as part of a jitted step's state
        sizes, v = warm_step_sizes(pu.DenseOperator(K), v, omega=2.0)
        x_hat = unrolled(_model(K, jnp.asarray(c)), jnp.asarray(xt), iterations=15, steps=sizes)
        return x_hat, sizes.op_norm, v

    x_hat, norm, v = train_step(jnp.asarray(K1), vector)
    assert float(norm) == pytest.approx(float(warm.op_norm), rel=1e-12)
    np.testing.assert_allclose(x_hat, want, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(jnp.abs(v), jnp.abs(vector1), atol=1e-8)
    with pytest.raises(ValueError, match="vector must be the vector a previous call returned"):
        warm_step_sizes(op1, jnp.ones((N,)))
