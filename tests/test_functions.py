"""Proxes of F and G: optimality, the Moreau identity, and their VJPs against finite
differences, on every backend."""

import numpy as np
import pytest
from oracles import random_direction
from scipy.optimize import minimize

import pdunroll as pu

FUNCTIONS = [pu.L1Norm(), pu.L1Norm(0.7), pu.LinfBall(0.3), pu.L2Ball(0.9), pu.Zero(),
             pu.SquaredL2(2.0), pu.NoiseL2Ball(0.3, c=0.8)]
STEP = 0.6


def _z(shape=(3, 5), seed=0):
    return 1.2 * np.random.default_rng(seed).standard_normal(shape)


def _vjp_fd(backend, prox, vjp, z, eps=1e-6):
    """Compare ⟨v, J w⟩ (central differences) with ⟨Jᵀ v, w⟩ (the VJP)."""
    v, w = random_direction(z.shape, seed=3), random_direction(z.shape, seed=4)
    _, saved = prox(backend.asarray(z))
    jt_v = backend.to_numpy(vjp(saved, backend.asarray(v)))
    plus = backend.to_numpy(prox(backend.asarray(z + eps * w))[0])
    minus = backend.to_numpy(prox(backend.asarray(z - eps * w))[0])
    assert np.sum(jt_v * w) == pytest.approx(np.sum(v * (plus - minus) / (2 * eps)), rel=1e-6,
                                             abs=1e-9)


@pytest.mark.parametrize("f", FUNCTIONS, ids=repr)
def test_prox_vjp_matches_finite_differences(backend, f):
    _vjp_fd(backend, lambda z: f.prox_save(z, STEP), lambda s, v: f.prox_vjp(s, v, STEP), _z())


@pytest.mark.parametrize("f", FUNCTIONS, ids=repr)
def test_conj_prox_vjp_matches_finite_differences(backend, f):
    _vjp_fd(backend, lambda z: f.conj_prox_save(z, STEP),
            lambda s, v: f.conj_prox_vjp(s, v, STEP), _z(seed=1))


@pytest.mark.parametrize("f", FUNCTIONS, ids=repr)
def test_moreau_identity(backend, dtype, tol, f):
    """prox_{s f*}(z) + s prox_{f/s}(z/s) = z."""
    z = _z(seed=2)
    zb = backend.asarray(z, dtype)
    lhs = f.conj_prox(zb, STEP) + STEP * f.prox(zb / STEP, 1 / STEP)
    np.testing.assert_allclose(backend.to_numpy(lhs), z, rtol=10 * tol["rtol"],
                               atol=10 * tol["atol"])


@pytest.mark.parametrize("f", [pu.L1Norm(0.7), pu.SquaredL2(2.0), pu.L2Ball(0.9),
                               pu.LinfBall(0.3)], ids=repr)
def test_prox_minimises_its_objective(f):
    """prox_{t f}(z) = argmin_u f(u) + ‖u − z‖²/2t, checked against SciPy's minimiser from
    another start: the balls' sets as SciPy constraints written from their definitions
    (‖u‖₂ ≤ ρ, |u_i| ≤ ρ), not through the prox under test."""
    z = _z((1, 4), seed=5)
    p = np.asarray(f.prox(z, STEP)).ravel()
    kw = {"method": "Nelder-Mead", "options": {"xatol": 1e-10, "fatol": 1e-14,
                                               "maxiter": 20000}}
    if isinstance(f, pu.L2Ball):
        kw = {"method": "SLSQP", "options": {"ftol": 1e-14, "maxiter": 1000},
              "constraints": [{"type": "ineq", "fun": lambda u: f.radius ** 2 - u @ u}]}
    elif isinstance(f, pu.LinfBall):
        kw = {"method": "L-BFGS-B", "options": {"ftol": 1e-15, "gtol": 1e-12},
              "bounds": [(-f.radius, f.radius)] * p.size}
    indicator = isinstance(f, pu.L2Ball | pu.LinfBall)

    def objective(u):
        value = 0.0 if indicator else float(np.asarray(f.value(u.reshape(1, -1)))[0])
        return value + float(np.sum((u - z.ravel()) ** 2)) / (2 * STEP)

    best = minimize(objective, np.zeros(p.size), **kw)
    assert not indicator or float(np.asarray(f.value(p.reshape(1, -1)))[0]) == 0.0  # feasible
    np.testing.assert_allclose(p, best.x, atol=1e-5)
    assert objective(p) <= best.fun + 1e-9


def test_l2_ball_jacobian_is_not_diagonal(numpy_backend):
    """Outside the ball, J = (ρ/‖z‖)(I − u uᵀ): perturbing one coordinate moves the others."""
    f = pu.L2Ball(0.5)
    z = np.array([[1.0, 2.0, -1.0]])
    e0 = np.array([[1.0, 0.0, 0.0]])
    _, saved = f.prox_save(z, 1.0)
    row = f.prox_vjp(saved, e0, 1.0)
    nrm = np.linalg.norm(z)
    u = z / nrm
    np.testing.assert_allclose(row, 0.5 / nrm * (e0 - u * u[0, 0]), rtol=1e-13)
    assert np.count_nonzero(np.abs(row) > 1e-12) == 3


def test_balls_are_per_signal(numpy_backend):
    z = np.array([[3.0, 4.0], [0.3, 0.4]])
    np.testing.assert_allclose(pu.L2Ball(1.0).prox(z, 1.0), [[0.6, 0.8], [0.3, 0.4]])
    assert list(pu.L2Ball(1.0).value(z)) == [np.inf, 0.0]


def test_linf_ball_mask_includes_the_boundary(backend, dtype):
    """The clip's Jacobian mask is 1 where |z| ≤ ρ, the boundary included (read off the clip's
    output: u = z exactly there), 0 outside, on every backend."""
    rho = 0.5
    z = np.array([[-0.75, -0.5, -0.25, 0.0, 0.25, 0.5, 0.75, 1e-30]])
    f = pu.LinfBall(rho)
    u, mask = f.prox_save(backend.asarray(z, dtype), STEP)
    v = backend.asarray(np.arange(1.0, 9.0).reshape(1, 8), dtype)
    np.testing.assert_array_equal(backend.to_numpy(u), np.clip(z, -rho, rho).astype(dtype))
    np.testing.assert_array_equal(backend.to_numpy(f.prox_vjp(mask, v, STEP)),
                                  np.where(np.abs(z) <= rho, np.arange(1.0, 9.0), 0.0))


@pytest.mark.parametrize("weight", [0.3, 1.0, 3.0])
def test_l1_conjugate_vjp_is_the_strict_interior_mask(backend, dtype, weight):
    """The dual clip's VJP (a ceil of w − |y|, no bool array) is exactly v·1{|y| < w}: v at
    the values just inside the interval, 0 on its ends, and never a factor other than 0 or 1
    (w > 1 would give ceil(w − |y|) ≥ 2 without the clip)."""
    w = np.asarray(weight, dtype=dtype)
    inside = np.nextafter(w, np.asarray(0, dtype=dtype))
    y = np.array([[0.0, -0.0, weight, -weight, inside, -inside, 0.5 * weight, -1e-30]],
                 dtype=dtype)
    v = np.array([[1.5, -2.0, 3.0, 4.0, -5.0, 6.0, 7.0, 8.0]], dtype=dtype)
    got = pu.L1Norm(weight).conj_prox_vjp(backend.asarray(y, dtype), backend.asarray(v, dtype),
                                          0.5)
    np.testing.assert_array_equal(np.asarray(backend.to_numpy(got)),
                                  v * (np.abs(y) < w).astype(dtype))
