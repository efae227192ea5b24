"""The released code's conventions (Brauer & Lorenz, EUSIPCO 2023) as explicit options: the
Frobenius-norm step sizes and the released primal mask; the exact defaults unchanged."""

import math

import numpy as np
import pytest

import pdunroll as pu
from pdunroll.model import frobenius_norm
from pdunroll.unroll.methods import method_from_settings


def _problem(n=12, batch=5, seed=0):
    rng = np.random.default_rng(seed)
    K = pu.dct_matrix(n) + 0.2 * rng.standard_normal((n, n))
    x = np.clip(rng.standard_normal((batch, n)) * 0.4, -1, 1)
    x_tilde = pu.quantize(x, 3)
    eta = pu.quantization_radius(3)
    return pu.AnalysisModel(pu.DenseOperator(K), pu.L1Norm(), pu.LinfBall(eta)), x_tilde, x, eta


def _reference_grad(K, x_tilde, x, eta, steps, L, mask_p, b=None, *, with_x=False):
    """∇_K of ½‖x̂ − x‖² by the reverse recursion written out in NumPy, with the primal mask
    ``mask_p(z_P)``; b=None: full backpropagation, else b steps at the final iterate.
    ``with_x``: (∇_K, ∇_x̃ = g + σ Kᵀ Σ δ_D)."""
    s, t, th = steps.sigma, steps.tau, steps.theta
    r = np.zeros_like(x_tilde)
    r_bar, y = r, np.zeros_like(x_tilde @ K.T)
    tape = []
    for _ in range(L):
        x_bar = x_tilde + r_bar
        z_d = y + s * x_bar @ K.T
        y = np.clip(z_d, -1, 1)
        z_p = r - t * y @ K
        r_new = np.clip(z_p, -eta, eta)
        r_bar, r = r_new + th * (r_new - r), r_new
        tape.append((x_bar, y, z_d, z_p))
    g = x_tilde + r - x
    if b is not None:
        tape = [tape[-1]] * b
    grad = np.zeros_like(K)
    d_p_carry, d_d, d_dbar = g, np.zeros_like(y), np.zeros_like(y)
    sum_d, sum_p = np.zeros_like(y), np.zeros_like(g)
    for x_bar, yk, z_d, z_p in reversed(tape):
        d_p = mask_p(z_p) * (d_p_carry + s * d_dbar @ K)
        d_d_new = (np.abs(z_d) <= 1) * (d_d - t * d_p @ K.T)
        d_dbar = d_d_new + th * (d_d_new - d_d)
        d_d, d_p_carry = d_d_new, d_p
        grad += s * d_d.T @ x_bar - t * yk.T @ d_p
        sum_d, sum_p = sum_d + d_d, sum_p + d_p
    if b is not None:  # the asymptotic gradient uses y^L and x̂ for every step
        x_hat = x_tilde + r
        grad = s * sum_d.T @ x_hat - t * tape[-1][1].T @ sum_p
    return (grad, g + s * sum_d @ K) if with_x else grad


@pytest.mark.parametrize("method, b", [(pu.Full(), None), (pu.Asymptotic(7), 7),
                                       (pu.Full(segments=3), None)])
def test_exact_default_is_the_jacobian_mask(method, b):
    model, xt, x, eta = _problem()
    steps = pu.step_sizes(model.operator, omega=2.0)
    got = pu.gradient(model, xt, x, iterations=15, method=method, steps=steps).operator
    want = _reference_grad(model.operator.matrix, xt, x, eta, steps, 15,
                           lambda z: np.abs(z) <= eta, b)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kind", ["full", "asymptotic", "segments", "truncated"])
@pytest.mark.parametrize("eta_backward", [1.0, 0.3])
def test_released_mask_is_the_released_definition(kind, eta_backward):
    model, xt, x, eta = _problem()
    steps = pu.step_sizes(model.operator, omega=2.0)
    method = {"full": pu.Full(released_mask=eta_backward),
              "asymptotic": pu.Asymptotic(7, released_mask=eta_backward),
              "segments": pu.Full(segments=4, released_mask=eta_backward),
              "truncated": pu.Truncated(15, released_mask=eta_backward)}[kind]
    res = pu.gradient(model, xt, x, iterations=15, method=method, steps=steps)
    got = res.operator
    released, released_x = _reference_grad(model.operator.matrix, xt, x, eta, steps, 15,
                                           lambda z: np.abs(z - xt) <= eta_backward,
                                           7 if kind == "asymptotic" else None, with_x=True)
    np.testing.assert_allclose(got, released, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(res.x_tilde, released_x, rtol=1e-10, atol=1e-12)
    exact = pu.gradient(model, xt, x, iterations=15, method=pu.Full() if kind != "asymptotic"
                        else pu.Asymptotic(7), steps=steps).operator
    assert np.linalg.norm(got - exact) > 1e-3 * np.linalg.norm(exact)  # not the Jacobian


class _CountingDense(pu.DenseOperator):
    """A dense K that counts its products K x (one per forward step, one per reverse step)."""

    products = 0

    def apply(self, x):
        type(self).products += 1
        return super().apply(x)


@pytest.mark.parametrize("released", [pu.Full(released_mask=1.0),
                                      pu.Truncated(6, released_mask=1.0),
                                      pu.Asymptotic(5, released_mask=1.0)], ids=repr)
def test_released_mask_runs_one_forward_pass(released):
    """The released mask is saved by the forward pass itself: as many products K x as the
    exact gradient of the same method (a second forward pass would add L), same x̂."""
    model, xt, x, _ = _problem()
    model = pu.AnalysisModel(_CountingDense(model.operator.matrix), model.f, model.g)
    steps = pu.step_sizes(model.operator, omega=2.0)
    exact = type(released)(*(() if isinstance(released, pu.Full) else (released.b,)))
    counts, results = [], []
    for method in (exact, released):
        _CountingDense.products = 0
        results.append(pu.gradient(model, xt, x, iterations=15, method=method, steps=steps))
        counts.append(_CountingDense.products)
    assert counts[0] == counts[1] > 0
    np.testing.assert_array_equal(results[0].x, results[1].x)


def test_released_mask_all_ones_is_relax_primal():
    model, xt, x, _ = _problem()
    a = pu.gradient(model, xt, x, iterations=10, method=pu.Full(released_mask=1e6), omega=2.0)
    b = pu.gradient(model, xt, x, iterations=10, method=pu.Full(relax_primal=True), omega=2.0)
    np.testing.assert_allclose(a.operator, b.operator, rtol=1e-12, atol=1e-14)


def test_released_mask_settings_round_trip_and_errors():
    m = pu.Asymptotic(30, released_mask=1.0)
    assert method_from_settings(m.settings()) == m
    with pytest.raises(ValueError, match="released_mask"):
        pu.Full(released_mask=-1.0)
    with pytest.raises(ValueError, match="relax_primal=True or released_mask"):
        pu.Full(relax_primal=True, released_mask=1.0)
    with pytest.raises(TypeError, match="released_mask"):
        pu.Full(released_mask="1")


def test_frobenius_step_sizes():
    n = 64
    op = pu.DenseOperator(pu.dct_matrix(n))
    spec = pu.step_sizes(op, omega=10.0)
    frob = pu.step_sizes(op, omega=10.0, norm="frobenius")
    assert frob.op_norm == pytest.approx(math.sqrt(n))
    assert spec.op_norm == pytest.approx(1.0, rel=1e-6)
    assert frob.sigma == pytest.approx(10 * 0.99 / math.sqrt(n))
    assert frob.tau == pytest.approx(0.99 / (10 * math.sqrt(n)))
    with pytest.raises(ValueError, match="norm must be one of"):
        pu.step_sizes(op, norm="fro")


def test_frobenius_norm_of_a_matrix_free_operator():
    op = pu.Gradient2d((5, 7))
    basis = np.eye(op.out_shape and int(np.prod(op.out_shape))).reshape(-1, *op.out_shape)
    dense_t = op.adjoint(basis).reshape(basis.shape[0], -1)  # rows: Kᵀ e_i, the matrix's rows
    assert frobenius_norm(op) == pytest.approx(np.linalg.norm(dense_t))


def _released_truncated_bp(K, x_tilde, x, eta, steps, L, b):
    """The released code's asymptotic ("truncated BP") gradient, its loop written out: it walks
    back over the L unrolled steps, stopping after b of them, with the final iterate's
    quantities at every step; the primal mask is 1{|z_P − x̃| ≤ 1}."""
    steps_walked = len(list(reversed(range(L)))[:b])  # the loop over k = L..1, cut after b
    return _reference_grad(K, x_tilde, x, eta, steps, L, lambda z: np.abs(z - x_tilde) <= 1.0,
                           steps_walked)


@pytest.mark.parametrize("L", [10, 40])
def test_released_convention_caps_the_asymptotic_steps_at_L(L):
    """At L < b the released gradient walks L steps back, not b (EUSIPCO Fig. 3's released
    rows at L_training < 30); at L ≥ b it walks b."""
    from experiment_scripts import experiment

    fig3 = experiment("eusipco_fig3")
    model, xt, x, eta = _problem(n=12, batch=4)
    steps = pu.step_sizes(model.operator, omega=2.0, norm="frobenius")
    method = fig3.with_convention(pu.Asymptotic(30), "released", L)
    assert method.back_steps(L) == min(L, 30)
    got = pu.gradient(model, xt, x, iterations=L, method=method, steps=steps).operator
    want = _released_truncated_bp(model.operator.matrix, xt, x, eta, steps, L, 30)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    if L < 30:  # b = 30 would be another gradient
        other = pu.gradient(model, xt, x, iterations=L, steps=steps,
                            method=pu.Asymptotic(30, released_mask=1.0)).operator
        assert np.linalg.norm(other - want) > 1e-2 * np.linalg.norm(want)
