"""The Chambolle-Pock solver against independently solved problems and optimality conditions."""

import numpy as np
import pytest
from problems import speech_like
from scipy.optimize import linprog

import pdunroll as pu


def _lp_optimum(K, x_tilde, eta):
    """min_x ‖Kx‖₁ s.t. ‖x − x̃‖_∞ ≤ η as a linear program in (x, t): min Σ t, −t ≤ Kx ≤ t."""
    m, n = K.shape
    c = np.concatenate([np.zeros(n), np.ones(m)])
    A = np.block([[K, -np.eye(m)], [-K, -np.eye(m)]])
    bounds = [(xi - eta, xi + eta) for xi in x_tilde] + [(0, None)] * m
    res = linprog(c, A_ub=A, b_ub=np.zeros(2 * m), bounds=bounds, method="highs")
    assert res.status == 0
    return res.fun


def test_reaches_linprog_optimum_of_the_speech_model(backend):
    """ℓ1 analysis / ℓ∞ data term (speech dequantization): CP reaches the LP optimum."""
    problem = speech_like("linf", batch=2)
    model = problem.model(backend)
    sol = pu.chambolle_pock(model, backend.asarray(problem.x_tilde), iterations=20000, omega=3.0)
    x = backend.to_numpy(sol.x)
    for i in range(problem.x_tilde.shape[0]):
        optimum = _lp_optimum(problem.K, problem.x_tilde[i], problem.radius)
        assert np.max(np.abs(x[i] - problem.x_tilde[i])) <= problem.radius * (1 + 1e-12)
        assert np.abs(problem.K @ x[i]).sum() == pytest.approx(optimum, rel=1e-6)
    assert np.all(backend.to_numpy(sol.gap) < 1e-6)
    assert np.all(backend.to_numpy(sol.gap) > -1e-9)


def test_squared_data_term_meets_optimality_condition(backend):
    """min ‖Kx‖₁ + ½‖x − x̃‖²: at the optimum, x̃ − x = Kᵀy with y ∈ ∂‖·‖₁(Kx)."""
    problem = speech_like("squared", batch=2)
    model = problem.model(backend)
    sol = pu.chambolle_pock(model, backend.asarray(problem.x_tilde), iterations=3000)
    x, y = backend.to_numpy(sol.x), backend.to_numpy(sol.y)
    np.testing.assert_allclose(problem.x_tilde - x, y @ problem.K, atol=1e-8)
    kx = x @ problem.K.T
    assert np.all(np.abs(y) <= 1 + 1e-12)
    active = np.abs(kx) > 1e-8
    np.testing.assert_allclose(y[active], np.sign(kx[active]), atol=1e-8)
    assert np.all(np.abs(backend.to_numpy(sol.gap)) < 1e-8)


def test_l2ball_solution_is_feasible_and_gap_closes(backend, dtype):
    problem = speech_like("l2ball", batch=3)
    model = problem.model(backend, dtype)
    sol = pu.chambolle_pock(model, backend.asarray(problem.x_tilde, dtype), iterations=3000)
    r = backend.to_numpy(sol.r)
    tol = 1e-12 if dtype == "float64" else 1e-6
    assert np.all(np.linalg.norm(r, axis=1) <= problem.radius * (1 + tol))
    assert np.all(backend.to_numpy(sol.gap) < (1e-7 if dtype == "float64" else 1e-3))
    assert str(backend.to_numpy(sol.x).dtype) == dtype


def test_ergodic_average_equals_weighted_iterates(numpy_backend):
    """weights="uniform" returns x̃ + (1/L) Σ r^k, checked against the callback's iterates."""
    problem = speech_like("linf")
    model = problem.model(numpy_backend)
    seen = []
    sol = pu.chambolle_pock(model, problem.x_tilde, iterations=7, omega=3.0, weights="uniform",
                            callback=lambda k, x, y: seen.append((k, x)))
    assert [k for k, _ in seen] == list(range(1, 8))
    np.testing.assert_allclose(sol.x, np.mean([x for _, x in seen], axis=0), rtol=1e-12,
                               atol=1e-14)


def test_harmonic_weights():
    alphas = pu.ergodic_weights("harmonic", 4)
    h = 1 + 1 / 2 + 1 / 3 + 1 / 4
    assert alphas == pytest.approx([1 / h, 1 / (2 * h), 1 / (3 * h), 1 / (4 * h)])
    assert pu.ergodic_weights("harmonic", 1) == (1.0,)


def test_default_step_sizes_follow_omega():
    op = pu.DenseOperator(2.0 * pu.dct_matrix(8))
    steps = pu.step_sizes(op, omega=10.0)
    assert steps.op_norm == pytest.approx(2.0, rel=1e-9)
    assert steps.sigma == pytest.approx(10 * 0.99 / 2.0, rel=1e-9)
    assert steps.tau == pytest.approx(0.99 / (10 * 2.0), rel=1e-9)
    assert steps.sigma * steps.tau * steps.op_norm**2 < 1


def test_steps_of_a_result_reproduce_the_run(numpy_backend):
    """steps=res.steps reruns with exactly the step sizes that omega chose."""
    problem = speech_like("linf")
    model = problem.model(numpy_backend)
    sol = pu.chambolle_pock(model, problem.x_tilde, iterations=30, omega=3.0)
    assert sol.steps == pu.step_sizes(model.operator, omega=3.0)
    again = pu.chambolle_pock(model, problem.x_tilde, iterations=30, steps=sol.steps)
    np.testing.assert_array_equal(again.x, sol.x)
    assert again.steps == sol.steps
