"""pu.Implicit() (Mathematics §6): on problems whose prox derivatives settle and whose fixed-point
system is nonsingular it equals the full gradient for large L, torch.autograd of a long unrolled
loop, the asymptotic gradient for large b (exactly: b Neumann terms are b asymptotic steps) and
finite differences of the converged solution map; a singular system raises or warns."""

import warnings

import numpy as np
import pytest
from conftest import relative_error
from oracles import directional_fd, random_direction, torch_unrolled
from problems import speech_like

import pdunroll as pu

OMEGA = 3.0
LONG = 400  # forward steps after which the test problems sit at their fixed point (≈ 1e−14)


def _steps(problem):
    norm = float(np.linalg.norm(problem.K, 2))
    return pu.step_sizes(pu.DenseOperator(problem.K), omega=OMEGA, op_norm=norm)


def _run(backend, problem, method, *, iterations=LONG, dtype="float64", **kw):
    xt, xd = problem.signals(backend, dtype)
    return pu.gradient(problem.model(backend, dtype), xt, xd, iterations=iterations,
                       method=method, steps=_steps(problem), **kw)


def _close(backend, got, want, rtol):
    for a, b in ((got.operator, want.operator), (got.x_tilde, want.x_tilde)):
        assert relative_error(backend.to_numpy(a), backend.to_numpy(b)) <= rtol


@pytest.mark.parametrize("solver", ["gmres", "neumann"])
@pytest.mark.parametrize("g_kind", ["squared", "l2ball"])
def test_implicit_equals_full_gradient_for_large_L(backend, g_kind, solver):
    problem = speech_like(g_kind)
    full = _run(backend, problem, pu.Full())
    imp = _run(backend, problem, pu.Implicit(solver=solver))
    assert imp.method == pu.Implicit(solver=solver)
    assert imp.info.converged and imp.info.method == solver
    assert 0 < imp.info.iterations < 200 and imp.info.residual <= 1e-10
    assert imp.loss == full.loss
    _close(backend, imp, full, 1e-8)


@pytest.mark.parametrize("g_kind", ["squared", "l2ball"])
def test_implicit_matches_torch_autograd_of_long_unrolling(torch_backend, g_kind):
    problem = speech_like(g_kind)
    imp = _run(torch_backend, problem, pu.Implicit())
    s = imp.steps
    _, gK, gx = torch_unrolled(problem.K, problem.x_tilde, problem.x_true, iterations=LONG,
                               sigma=s.sigma, tau=s.tau, theta=s.theta, f="l1", g=g_kind,
                               radius=problem.radius)
    assert relative_error(torch_backend.to_numpy(imp.operator), gK) <= 1e-8
    assert relative_error(torch_backend.to_numpy(imp.x_tilde), gx) <= 1e-8


@pytest.mark.parametrize("g_kind", ["squared", "l2ball", "linf"])
def test_implicit_equals_asymptotic_with_large_b(numpy_backend, g_kind):
    """Also for the ℓ∞ box, where the full gradient has not settled at this L but the fixed-point
    system at the final iterate is nonsingular."""
    problem = speech_like(g_kind)
    asym = _run(numpy_backend, problem, pu.Asymptotic(5000))
    imp = _run(numpy_backend, problem, pu.Implicit())
    assert imp.info.converged
    _close(numpy_backend, imp, asym, 1e-8)


@pytest.mark.parametrize("g_kind,relax_primal", [("l2ball", False), ("linf", False),
                                                 ("linf", True)])
def test_neumann_with_b_terms_is_asymptotic_with_b_steps(backend, g_kind, relax_primal):
    """The identity behind Mathematics §6 of the docs: b Neumann terms at the fixed point are the
    b backward steps
    of Asymptotic(b). An unconverged solve with strict=False warns and says so in info."""
    problem = speech_like(g_kind)
    b = 7
    asym = _run(backend, problem, pu.Asymptotic(b, relax_primal=relax_primal), iterations=30)
    with pytest.warns(pu.ConvergenceWarning, match="neumann"):
        imp = _run(backend, problem, pu.Implicit("neumann", tol=1e-300, maxiter=b, strict=False,
                                                 relax_primal=relax_primal), iterations=30)
    assert imp.info.iterations == b and imp.info.status == "maxiter"
    assert not imp.info.converged and imp.info.residual > 1e-300
    _close(backend, imp, asym, 1e-12)


@pytest.mark.parametrize("g_kind", ["squared", "l2ball"])
def test_implicit_matches_finite_differences_of_the_solution_map(numpy_backend, g_kind):
    """⟨∇, V⟩ against central differences of ℓ(x*(K, x̃)), x* the converged CP solution."""
    problem = speech_like(g_kind)
    imp = _run(numpy_backend, problem, pu.Implicit())
    s = imp.steps

    def loss_of(K, xt):
        model = problem.model(numpy_backend, K=K)
        x = pu.chambolle_pock(model, xt, iterations=2 * LONG, steps=s).x
        return 0.5 * float(np.sum((x - problem.x_true) ** 2))

    V = random_direction(problem.K.shape)
    fd = directional_fd(lambda K: loss_of(K, problem.x_tilde), problem.K, V)
    assert np.sum(imp.operator * V) == pytest.approx(fd, rel=1e-6)
    W = random_direction(problem.x_tilde.shape, seed=2)
    fd = directional_fd(lambda xt: loss_of(problem.K, xt), problem.x_tilde, W)
    assert np.sum(imp.x_tilde * W) == pytest.approx(fd, rel=1e-6)


def _singular_problem():
    """F = ‖·‖₁, G = ℓ∞ box and a zero column j of K: x_j is free inside its box (the lower-level
    solution is not unique), (e_j, 0) is a fixed vector of the adjoint map on both sides, and
    ∂ℓ/∂x_j ≠ 0 puts the right-hand side off the range of I − ∂T: no solution."""
    problem = speech_like("linf")
    problem.K[:, 3] = 0.0
    return problem


@pytest.mark.parametrize("solver", ["gmres", "neumann"])
def test_singular_system_raises(backend, solver):
    problem = _singular_problem()
    with pytest.raises(pu.ConvergenceError, match="singular") as err:
        _run(backend, problem, pu.Implicit(solver=solver, maxiter=300))
    info = err.value.info
    assert not info.converged and info.residual > 1e-3
    assert info.status == ("stagnated" if solver == "gmres" else "maxiter")


def test_singular_system_warns_when_not_strict(numpy_backend):
    problem = _singular_problem()
    with pytest.warns(pu.ConvergenceWarning, match="strict=False"):
        res = _run(numpy_backend, problem, pu.Implicit(strict=False))
    assert not res.info.converged and res.info.residual > 1e-3
    assert np.all(np.isfinite(res.operator))


def test_nonsingular_problem_does_not_warn(numpy_backend):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = _run(numpy_backend, speech_like("l2ball"), pu.Implicit(strict=False))
    assert res.info.converged


def test_same_result_on_every_backend_and_dtype(backend, dtype, tol):
    """float32 uses the default tolerance 1000 ε; results agree with NumPy float64."""
    from conftest import _make

    problem = speech_like("l2ball")
    ref = _run(_make("numpy"), problem, pu.Implicit())
    res = _run(backend, problem, pu.Implicit(), dtype=dtype)
    assert res.info.converged and res.info.tol == (1e-10 if dtype == "float64" else
                                                   pytest.approx(1000 * 2.0**-23))
    scale = {"float64": 100.0, "float32": 50.0}[dtype]
    for got, want in ((res.operator, ref.operator), (res.x_tilde, ref.x_tilde)):
        np.testing.assert_allclose(backend.to_numpy(got), want, rtol=tol["rtol"] * scale,
                                   atol=tol["atol"] * scale * 10)
    assert str(backend.to_numpy(res.operator).dtype) == dtype


@pytest.mark.parametrize("method", [pu.Full(), pu.Truncated(3), pu.Asymptotic(3)])
def test_info_is_none_for_other_methods(numpy_backend, method):
    assert _run(numpy_backend, speech_like("l2ball"), method, iterations=5).info is None


@pytest.mark.parametrize("settings,error,match", [
    (dict(solver="cg"), ValueError, "solver must be one of"),
    (dict(tol=-1.0), ValueError, "tol must be a positive finite number"),
    (dict(tol=0.0), ValueError, "tol must be a positive finite number"),
    (dict(tol="small"), TypeError, "tol must be a positive number"),
    (dict(maxiter=0), ValueError, "maxiter must be an integer >= 1"),
    (dict(maxiter=2.5), TypeError, "maxiter must be an integer >= 1"),
    (dict(strict="no"), TypeError, "strict must be True or False"),
    # Implicit runs no fixed number of backward steps and stores no segments
    (dict(b=3), TypeError, "unexpected keyword argument 'b'"),
    (dict(segments=2), TypeError, "unexpected keyword argument 'segments'"),
])
def test_implicit_refuses_bad_settings(settings, error, match):
    with pytest.raises(error, match=match):
        pu.Implicit(**settings)


@pytest.mark.parametrize("cls,settings", [(pu.Full, dict(solver="gmres")),
                                          (pu.Full, dict(tol=1e-8)),
                                          (pu.Asymptotic, dict(b=3, tol=1e-8)),
                                          (pu.Truncated, dict(b=3, maxiter=10))])
def test_solver_settings_belong_to_implicit_only(cls, settings):
    """The linear solver's settings (solver, tol, maxiter) belong to Implicit alone."""
    with pytest.raises(TypeError, match="unexpected keyword argument"):
        cls(**settings)


def test_implicit_refuses_weights(numpy_backend):
    problem = speech_like("l2ball")
    with pytest.raises(ValueError, match="weights cannot be combined with Implicit"):
        _run(numpy_backend, problem, pu.Implicit(), iterations=5, weights="harmonic")


def _cost_model(backend, problem, c_f, c_g, K=None):
    """F = ⟨c_f, ·⟩ + ‖·‖₁ and G = ⟨c_g, ·⟩ + the problem's G: learnable costs in both."""
    base = problem.function_g()
    K = problem.K if K is None else K
    return pu.AnalysisModel(pu.DenseOperator(backend.asarray(K)),
                            pu.LinearTerm(backend.asarray(c_f), pu.L1Norm()),
                            pu.LinearTerm(backend.asarray(c_g), base))


def _costs(problem):
    rng = np.random.default_rng(7)
    return 0.1 * rng.standard_normal(problem.K.shape[0]), 0.1 * rng.standard_normal(
        problem.x_tilde.shape)


def _run_costs(backend, problem, c_f, c_g, method, iterations=LONG):
    xt, xd = problem.signals(backend)
    return pu.gradient(_cost_model(backend, problem, c_f, c_g), xt, xd, iterations=iterations,
                       method=method, steps=_steps(problem))


def test_function_parameter_gradients_neumann_b_terms_are_asymptotic(backend):
    """F and G parameter gradients come from one reverse step at the summed inputs u (the step
    is linear): b Neumann terms reproduce the b asymptotic steps' sums to rounding."""
    problem = speech_like("l2ball")
    c_f, c_g = _costs(problem)
    asym = _run_costs(backend, problem, c_f, c_g, pu.Asymptotic(6), iterations=30)
    with pytest.warns(pu.ConvergenceWarning):
        imp = _run_costs(backend, problem, c_f, c_g,
                         pu.Implicit("neumann", tol=1e-300, maxiter=6, strict=False),
                         iterations=30)
    for got, want in ((imp.f, asym.f), (imp.g, asym.g), (imp.operator, asym.operator)):
        assert relative_error(backend.to_numpy(got), backend.to_numpy(want)) <= 1e-12


def test_function_parameter_gradients_match_finite_differences(numpy_backend):
    """∇_{c_f}, ∇_{c_g} of ℓ(x*(c_f, c_g)) at the converged solution, SquaredL2 G."""
    problem = speech_like("squared")
    c_f, c_g = _costs(problem)
    imp = _run_costs(numpy_backend, problem, c_f, c_g, pu.Implicit())
    assert imp.info.converged
    s = imp.steps

    def loss_of(cf, cg):
        model = _cost_model(numpy_backend, problem, cf, cg)
        x = pu.chambolle_pock(model, problem.x_tilde, iterations=2 * LONG, steps=s).x
        return 0.5 * float(np.sum((x - problem.x_true) ** 2))

    V, W = random_direction(c_f.shape, seed=4), random_direction(c_g.shape, seed=5)
    fd_f = directional_fd(lambda cf: loss_of(cf, c_g), c_f, V)
    fd_g = directional_fd(lambda cg: loss_of(c_f, cg), c_g, W)
    assert abs(fd_f) > 1e-4 and abs(fd_g) > 1e-4  # not vacuous
    assert np.sum(imp.f * V) == pytest.approx(fd_f, rel=1e-6)
    assert np.sum(imp.g * W) == pytest.approx(fd_g, rel=1e-6)


def _bregman_run(backend, problem, method, iterations=LONG):
    """F = ‖·‖₁ with the box-Bregman (tanh) dual step, G of the problem."""
    model = pu.AnalysisModel(pu.DenseOperator(backend.asarray(problem.K)),
                             pu.BoxBregmanL1Norm(), problem.function_g())
    xt, xd = problem.signals(backend)
    return pu.gradient(model, xt, xd, iterations=iterations, method=method,
                       steps=_steps(problem))


def test_implicit_with_bregman_dual_step_equals_full(backend):
    """A Bregman step depends on the previous iterate outside z (ε ≠ δ): the fixed-point state
    carries ε_D and δ_D separately."""
    problem = speech_like("squared")
    full = _bregman_run(backend, problem, pu.Full())
    imp = _bregman_run(backend, problem, pu.Implicit())
    assert imp.info.converged
    _close(backend, imp, full, 1e-8)


def test_implicit_with_bregman_dual_step_neumann_b_terms_are_asymptotic(numpy_backend):
    problem = speech_like("l2ball")
    asym = _bregman_run(numpy_backend, problem, pu.Asymptotic(5), iterations=30)
    with pytest.warns(pu.ConvergenceWarning):
        imp = _bregman_run(numpy_backend, problem,
                           pu.Implicit("neumann", tol=1e-300, maxiter=5, strict=False),
                           iterations=30)
    _close(numpy_backend, imp, asym, 1e-12)


def test_implicit_with_a_filter_bank_equals_full(numpy_backend):
    """Operator-agnostic: a 1-D filter bank (dual of shape (batch, filters, n)); NumPy only, the
    backend matrix is covered above."""
    backend = numpy_backend
    rng = np.random.default_rng(0)
    n = 24
    filters = backend.asarray(0.5 * rng.standard_normal((3, 5)))
    x = np.sin(np.linspace(0, 6, n))[None] * np.ones((2, 1)) + 0.1 * rng.standard_normal((2, n))
    xt, xd = backend.asarray(x + 0.2 * rng.standard_normal(x.shape)), backend.asarray(x)
    model = pu.AnalysisModel(pu.Conv1dFilterBank(filters, n), pu.L1Norm(0.1), pu.SquaredL2())
    full = pu.gradient(model, xt, xd, iterations=LONG, omega=1.0)
    imp = pu.gradient(model, xt, xd, iterations=LONG, omega=1.0, method=pu.Implicit())
    assert imp.info.converged
    _close(backend, imp, full, 1e-8)
