"""Every gradient method against finite differences (float64, every backend), torch.autograd of a
plain torch unrolled loop (≤ 1e-10), and the identities between methods (docs,
Mathematics §3–§5)."""

import numpy as np
import pytest
from conftest import relative_error
from oracles import directional_fd, random_direction, torch_unrolled
from problems import speech_like

import pdunroll as pu

L = 12
OMEGA = 3.0
METHODS = [(pu.Full(), None), (pu.Truncated(5), None), (pu.Full(), "harmonic"),
           (pu.Truncated(4), "uniform")]


def _steps(problem):
    norm = float(np.linalg.norm(problem.K, 2))
    return pu.step_sizes(pu.DenseOperator(problem.K), omega=OMEGA, op_norm=norm)


def _run(backend, problem, method, weights, dtype="float64", iterations=L, **kw):
    model = problem.model(backend, dtype)
    xt, xd = problem.signals(backend, dtype)
    return pu.gradient(model, xt, xd, iterations=iterations, method=method, weights=weights,
                       steps=_steps(problem), **kw)


@pytest.mark.parametrize("g_kind", ["linf", "l2ball"])
@pytest.mark.parametrize("method,weights", METHODS)
def test_matches_torch_autograd(torch_backend, g_kind, method, weights):
    problem = speech_like(g_kind)
    res = _run(torch_backend, problem, method, weights)
    steps = res.steps
    alphas = pu.ergodic_weights(weights, L)
    loss, gK, gx = torch_unrolled(problem.K, problem.x_tilde, problem.x_true, iterations=L,
                                  sigma=steps.sigma, tau=steps.tau, theta=steps.theta, f="l1",
                                  g=g_kind, radius=problem.radius, weights=alphas,
                                  window=method.b if isinstance(method, pu.Truncated) else None)
    assert res.loss == pytest.approx(loss, rel=1e-12)
    assert relative_error(torch_backend.to_numpy(res.operator), gK) <= 1e-10
    assert relative_error(torch_backend.to_numpy(res.x_tilde), gx) <= 1e-10


@pytest.mark.parametrize("g_kind", ["linf", "l2ball"])
@pytest.mark.parametrize("method,weights", [m for m in METHODS if isinstance(m[0], pu.Full)])
def test_matches_finite_differences(backend, g_kind, method, weights):
    """Exact methods: ⟨∇, V⟩ equals the central difference of the loss along V (w.r.t. K and x̃)."""
    problem = speech_like(g_kind)
    res = _run(backend, problem, method, weights)
    steps = res.steps

    def loss_of(K, xt):
        r = pu.gradient(problem.model(backend, K=K), backend.asarray(xt),
                        backend.asarray(problem.x_true), iterations=L, weights=weights,
                        steps=steps)
        return r.loss

    V = random_direction(problem.K.shape)
    fd_K = directional_fd(lambda K: loss_of(K, problem.x_tilde), problem.K, V)
    assert np.sum(backend.to_numpy(res.operator) * V) == pytest.approx(fd_K, rel=1e-6)
    W = random_direction(problem.x_tilde.shape, seed=2)
    fd_x = directional_fd(lambda xt: loss_of(problem.K, xt), problem.x_tilde, W)
    assert np.sum(backend.to_numpy(res.x_tilde) * W) == pytest.approx(fd_x, rel=1e-6)


def test_truncated_with_b_equal_L_is_full(backend):
    problem = speech_like("l2ball")
    full = _run(backend, problem, pu.Full(), None)
    trunc = _run(backend, problem, pu.Truncated(L), None)
    np.testing.assert_allclose(backend.to_numpy(trunc.operator), backend.to_numpy(full.operator),
                               rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(backend.to_numpy(trunc.x_tilde), backend.to_numpy(full.x_tilde),
                               rtol=1e-12, atol=1e-14)


def test_ergodic_with_last_unit_weight_is_plain(backend):
    problem = speech_like("linf")
    plain = _run(backend, problem, pu.Full(), None)
    e_L = [0.0] * (L - 1) + [1.0]
    ergodic = _run(backend, problem, pu.Full(), e_L)
    assert ergodic.loss == pytest.approx(plain.loss, rel=1e-14)
    np.testing.assert_allclose(backend.to_numpy(ergodic.operator),
                               backend.to_numpy(plain.operator), rtol=1e-12, atol=1e-14)


def test_truncated_differs_from_full_for_small_b(numpy_backend):
    """Guards the truncation itself: b < L must drop the earlier steps' contributions."""
    problem = speech_like("l2ball")
    full = _run(numpy_backend, problem, pu.Full(), None)
    trunc = _run(numpy_backend, problem, pu.Truncated(2), None)
    assert relative_error(trunc.operator, full.operator) > 1e-3


@pytest.mark.parametrize("g_kind,lengths,b,reached", [("squared", (20, 50, 200), 500, 1e-9),
                                                     ("linf", (200, 800, 3200), 4000, 1e-4)])
def test_full_gradient_approaches_asymptotic_gradient(numpy_backend, g_kind, lengths, b, reached):
    """Limit theorem (docs, Mathematics §4): once the prox derivatives settle, the full gradient
    for growing L approaches the asymptotic gradient (b backward steps at the final iterate, b
    large)."""
    problem = speech_like(g_kind)
    errors = []
    for iterations in lengths:
        full = _run(numpy_backend, problem, pu.Full(), None, iterations=iterations)
        asym = _run(numpy_backend, problem, pu.Asymptotic(b), None, iterations=iterations)
        errors.append(relative_error(full.operator, asym.operator))
    assert errors[0] > errors[1] > errors[2]
    assert errors[-1] < reached


def test_asymptotic_with_one_step_is_the_b1_formula(numpy_backend):
    """b = 1: ∇_K = σ δ_D x̂ᵀ − τ y^L δ_Pᵀ with δ_P = J_Pᵀ g, δ_D = −τ J_Dᵀ K δ_P at the final
    iterate: one backward step already gives a training direction."""
    problem = speech_like("linf")
    res = _run(numpy_backend, problem, pu.Asymptotic(1), None)
    steps = res.steps
    model = problem.model(numpy_backend)
    sol = pu.chambolle_pock(model, problem.x_tilde, iterations=L, steps=steps)
    K = problem.K
    g = sol.x - problem.x_true
    # the final step's z_P and z_D: recompute them from iterate L−1
    prev = pu.chambolle_pock(model, problem.x_tilde, iterations=L - 1, steps=steps)
    prev2 = pu.chambolle_pock(model, problem.x_tilde, iterations=L - 2, steps=steps)
    r_bar = 2 * prev.r - prev2.r
    z_d = prev.y + steps.sigma * (problem.x_tilde + r_bar) @ K.T
    z_p = prev.r - steps.tau * sol.y @ K
    d_p = np.where(np.abs(z_p) <= problem.radius, g, 0.0)
    d_d = np.where(np.abs(z_d) <= 1.0, -steps.tau * d_p @ K.T, 0.0)
    expected = steps.sigma * d_d.T @ sol.x - steps.tau * sol.y.T @ d_p
    np.testing.assert_allclose(res.operator, expected, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(res.x_tilde, g + steps.sigma * d_d @ K, rtol=1e-12, atol=1e-14)


def test_theorem2_early_adjoints_vanish_into_kernel(numpy_backend):
    """Theorem 2 (Brauer & Lorenz, "Ergodic bilevel optimization"): with 0/1 prox derivatives
    that settle, δ_D^{k0} → ker Kᵀ as L → ∞.
    Observable: the early steps' share of ∇_x̃, σ Kᵀ Σ_{k≤k0} δ_D^k = ∇_x̃(full) − ∇_x̃(truncated,
    b = L − k0), vanishes, here for a tall K whose ker Kᵀ is not {0}."""
    problem = speech_like("linf", n=12, m=20)
    k0 = 5
    shares = []
    for iterations in (40, 640, 2560):
        full = _run(numpy_backend, problem, pu.Full(), None, iterations=iterations)
        trunc = _run(numpy_backend, problem, pu.Truncated(iterations - k0), None,
                     iterations=iterations)
        shares.append(np.linalg.norm(full.x_tilde - trunc.x_tilde))
    assert shares[-1] < 1e-6 * max(shares[0], 1e-300) or shares[-1] < 1e-12
    assert shares[0] > 1e-8  # the early steps did matter for short unrolling


def test_relax_primal_treats_primal_prox_as_identity(numpy_backend):
    """relax_primal=True is autograd of the unrolled loop whose primal clip keeps its forward
    value but has the identity as Jacobian (a straight-through clip, written in torch), and
    differs from the exact gradient, whose masks the clip does switch off."""
    pytest.importorskip("torch")
    problem = speech_like("linf")
    exact = _run(numpy_backend, problem, pu.Full(), None)
    relaxed = _run(numpy_backend, problem, pu.Full(relax_primal=True), None)
    steps = relaxed.steps
    loss, gK, gx = torch_unrolled(problem.K, problem.x_tilde, problem.x_true, iterations=L,
                                  sigma=steps.sigma, tau=steps.tau, theta=steps.theta, f="l1",
                                  g="linf_identity_jacobian", radius=problem.radius)
    assert relaxed.loss == pytest.approx(loss, rel=1e-12)
    assert relative_error(relaxed.operator, gK) <= 1e-10
    assert relative_error(relaxed.x_tilde, gx) <= 1e-10
    assert relative_error(relaxed.operator, exact.operator) > 1e-3  # the clip was active


def test_custom_loss_gradient(backend):
    """loss=callable: ℓ(x̂) = Σ w ⊙ x̂ gives the same recursion with g = w."""
    problem = speech_like("l2ball")
    w = np.random.default_rng(5).standard_normal(problem.x_tilde.shape)
    wb = backend.asarray(w)
    steps = _steps(problem)
    model = problem.model(backend)
    xt, xd = problem.signals(backend)

    def linear_loss(x_hat):
        return float(backend.xp.sum(wb * x_hat)), wb

    res = pu.gradient(model, xt, loss=linear_loss, iterations=L, steps=steps)

    def loss_of(K):
        sol = pu.chambolle_pock(problem.model(backend, K=K), xt, iterations=L, steps=steps)
        return float(np.sum(w * backend.to_numpy(sol.x)))

    V = random_direction(problem.K.shape)
    fd = directional_fd(loss_of, problem.K, V)
    assert np.sum(backend.to_numpy(res.operator) * V) == pytest.approx(fd, rel=1e-6)


@pytest.mark.parametrize("method,weights", METHODS + [(pu.Asymptotic(7), None)])
def test_same_result_on_every_backend(backend, dtype, tol, method, weights):
    """Cross-backend consistency: each backend and dtype reproduces the NumPy float64 result."""
    import array_api_compat.numpy as np_xp  # noqa: F401 - the reference backend
    from conftest import _make

    problem = speech_like("l2ball")
    ref = _run(_make("numpy"), problem, method, weights)
    res = _run(backend, problem, method, weights, dtype=dtype)
    scale = {"float64": 1.0, "float32": 50.0}[dtype]  # L steps amplify float32 rounding
    for got, want in ((res.operator, ref.operator), (res.x_tilde, ref.x_tilde), (res.x, ref.x)):
        np.testing.assert_allclose(backend.to_numpy(got), want, rtol=tol["rtol"] * scale,
                                   atol=tol["atol"] * scale * 10)
    assert str(backend.to_numpy(res.operator).dtype) == dtype


@pytest.mark.parametrize("method,weights", METHODS + [(pu.Asymptotic(7), None),
                                                      (pu.Full(segments=3), None)])
def test_skipping_the_x_tilde_cotangent_changes_nothing_else(backend, method, weights):
    """Without ∇_x̃ (the training loop's steps: x_wanted=False) the sum Σ δ_D is skipped and the
    pullback's x_tilde is None; the operator gradient is the same to the bit, and with ∇_x̃ it is
    pu.gradient's (checked against autograd and finite differences above)."""
    from pdunroll.unroll.gradient import vjp_unchecked
    from pdunroll.unroll.plan import make_plan

    problem = speech_like("linf")
    model = problem.model(backend)
    xt, xd = problem.signals(backend)
    steps = _steps(problem)
    ref = pu.gradient(model, xt, xd, iterations=L, method=method, weights=weights, steps=steps)
    for wanted in (True, False):
        plan = make_plan(method, L, weights, steps, x_wanted=wanted)
        x_hat, pull = vjp_unchecked(model, xt, plan)
        c = pull(x_hat - xd)
        np.testing.assert_array_equal(backend.to_numpy(c.operator), backend.to_numpy(ref.operator))
        if wanted:
            np.testing.assert_array_equal(backend.to_numpy(c.x_tilde),
                                          backend.to_numpy(ref.x_tilde))
        else:
            assert c.x_tilde is None
