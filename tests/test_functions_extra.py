"""L21Norm, Simplex, NonNegative and LinearTerm: prox results against closed forms, optimality
conditions and scipy brute force; every VJP (w.r.t. z and w.r.t. the costs c) against finite
differences; the Moreau identity; and the gradient w.r.t. c through unrolled Chambolle-Pock
against finite differences and torch.autograd with every gradient method."""

import numpy as np
import pytest
import scipy.optimize
from conftest import relative_error
from oracles import directional_fd, random_direction
from unrolled_oracles import asymptotic_grads, unrolled_loss

import pdunroll as pu

T, S = 0.7, 1.3  # prox step t and conjugate step s


def _z(shape=(2, 3, 4, 2), seed=0, scale=1.0):
    return scale * np.random.default_rng(seed).standard_normal(shape)


def _functions(backend):
    c = backend.asarray(_z((3, 4, 2), seed=5, scale=0.5))
    c_batch = backend.asarray(_z((2, 3, 4, 2), seed=6, scale=0.5))
    return {
        "l21": pu.L21Norm(0.8),
        "l21-axis2": pu.L21Norm(1.1, group_axis=2),
        "simplex": pu.Simplex(axis=1),
        "nonnegative": pu.NonNegative(),
        "linear": pu.LinearTerm(c),
        "linear-simplex": pu.LinearTerm(c, pu.Simplex(axis=1)),
        "linear-l21-batch": pu.LinearTerm(c_batch, pu.L21Norm(0.5)),
    }


NAMES = ["l21", "l21-axis2", "simplex", "nonnegative", "linear", "linear-simplex",
         "linear-l21-batch"]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("conj", [False, True])
def test_prox_vjp_matches_finite_differences(backend, name, conj):
    f = _functions(backend)[name]
    z, v, d = _z(), _z(seed=1), random_direction((2, 3, 4, 2), seed=2)

    def prox(zz):
        zz = backend.asarray(zz)
        return backend.to_numpy(f.conj_prox(zz, S) if conj else f.prox(zz, T))

    save, vjp = (f.conj_prox_save, f.conj_prox_vjp) if conj else (f.prox_save, f.prox_vjp)
    step = S if conj else T
    _, saved = save(backend.asarray(z), step)
    got = backend.to_numpy(vjp(saved, backend.asarray(v), step))
    fd = directional_fd(lambda zz: float(np.sum(v * prox(zz))), z, d)
    assert np.sum(got * d) == pytest.approx(fd, rel=1e-7, abs=1e-9)


@pytest.mark.parametrize("name", ["linear", "linear-simplex", "linear-l21-batch"])
@pytest.mark.parametrize("conj", [False, True])
def test_linear_term_param_vjp_matches_finite_differences(backend, name, conj):
    f = _functions(backend)[name]
    c0 = backend.to_numpy(f.c)
    z, v = _z(), _z(seed=1)
    d = random_direction(c0.shape, seed=3)

    def value(c):
        g = f.with_params(backend.asarray(c))
        out = g.conj_prox(backend.asarray(z), S) if conj else g.prox(backend.asarray(z), T)
        return float(np.sum(v * backend.to_numpy(out)))

    if conj:
        _, saved = f.conj_prox_save(backend.asarray(z), S)
        got = f.conj_prox_param_vjp(saved, backend.asarray(v), S)
    else:
        _, saved = f.prox_save(backend.asarray(z), T)
        got = f.prox_param_vjp(saved, backend.asarray(v), T)
    got = backend.to_numpy(got)
    assert got.shape == c0.shape
    assert np.sum(got * d) == pytest.approx(directional_fd(value, c0, d), rel=1e-7, abs=1e-9)


@pytest.mark.parametrize("name", NAMES)
def test_moreau_identity(backend, name):
    """prox_{sf*}(z) + s prox_{f/s}(z/s) = z."""
    f = _functions(backend)[name]
    z = backend.asarray(_z())
    lhs = backend.to_numpy(f.conj_prox(z, S)) + S * backend.to_numpy(f.prox(z / S, 1 / S))
    np.testing.assert_allclose(lhs, backend.to_numpy(z), rtol=1e-12, atol=1e-12)


def test_parameter_free_functions_have_empty_param_vjps(numpy_backend):
    for f in (pu.L21Norm(), pu.Simplex(), pu.NonNegative(), pu.L1Norm()):
        z = _z()
        _, saved = f.prox_save(z, T)
        assert f.params == () and f.prox_param_vjp(saved, z, T) == ()
        _, saved = f.conj_prox_save(z, S)
        assert f.conj_prox_param_vjp(saved, z, S) == ()


def test_l21_prox_closed_form_and_optimality(backend):
    """Group soft threshold, and 0 ∈ u − z + t w ∂‖u_g‖ group by group."""
    w, z = 0.8, _z(scale=0.7)
    u = backend.to_numpy(pu.L21Norm(w).prox(backend.asarray(z), T))
    norms = np.linalg.norm(z, axis=1, keepdims=True)
    expected = z * np.maximum(0, 1 - T * w / norms)
    np.testing.assert_allclose(u, expected, rtol=1e-12, atol=1e-14)
    un = np.linalg.norm(u, axis=1, keepdims=True)
    active = un[:, 0] > 0
    resid = (z - u) / T
    np.testing.assert_allclose(np.moveaxis(resid, 1, -1)[active],
                               np.moveaxis(w * u / np.where(un > 0, un, 1), 1, -1)[active],
                               rtol=1e-10, atol=1e-12)
    assert np.all(np.linalg.norm(resid, axis=1)[~active] <= w * (1 + 1e-12))
    assert 0 < active.sum() < active.size  # both cases occur


def test_l21_conj_prox_is_group_projection(backend):
    w, z = 0.8, _z()
    y = backend.to_numpy(pu.L21Norm(w).conj_prox(backend.asarray(z), S))
    norms = np.linalg.norm(z, axis=1, keepdims=True)
    np.testing.assert_allclose(y, z * np.minimum(1, w / norms), rtol=1e-12, atol=1e-14)


def test_l21_values(backend):
    f, x = pu.L21Norm(0.8), _z()
    np.testing.assert_allclose(backend.to_numpy(f.value(backend.asarray(x))),
                               0.8 * np.linalg.norm(x, axis=1).sum(axis=(1, 2)), rtol=1e-12)
    y = _z() * 0.1
    assert np.all(backend.to_numpy(f.conj_value(backend.asarray(y))) == 0)
    assert np.all(np.isinf(backend.to_numpy(f.conj_value(backend.asarray(10 * y)))))


def _simplex_bisection(z, axis):
    """Reference projection: θ with Σ max(z − θ, 0) = 1 found by bisection (no sorting)."""
    lo = np.min(z, axis=axis, keepdims=True) - 1
    hi = np.max(z, axis=axis, keepdims=True)
    for _ in range(200):
        mid = (lo + hi) / 2
        too_big = np.sum(np.maximum(z - mid, 0), axis=axis, keepdims=True) > 1
        lo, hi = np.where(too_big, mid, lo), np.where(too_big, hi, mid)
    return np.maximum(z - (lo + hi) / 2, 0)


@pytest.mark.parametrize("axis", [1, 2])
def test_simplex_projection(backend, dtype, tol, axis):
    z = _z(seed=4)
    u = backend.to_numpy(pu.Simplex(axis).prox(backend.asarray(z, dtype), T)).astype(np.float64)
    assert np.all(u >= 0)
    np.testing.assert_allclose(u.sum(axis=axis), 1.0, rtol=tol["rtol"], atol=10 * tol["atol"])
    np.testing.assert_allclose(u, _simplex_bisection(z, axis), rtol=tol["rtol"],
                               atol=10 * tol["atol"])
    assert np.all(np.isfinite(backend.to_numpy(pu.Simplex(axis).value(backend.asarray(u, dtype)))))


def test_simplex_projection_matches_scipy_brute_force(numpy_backend):
    rng = np.random.default_rng(8)
    for _ in range(5):
        z = rng.standard_normal(5)
        res = scipy.optimize.minimize(lambda u, z=z: 0.5 * np.sum((u - z) ** 2), np.full(5, 0.2),
                                      jac=lambda u, z=z: u - z, method="SLSQP",
                                      bounds=[(0, None)] * 5, tol=1e-14,
                                      constraints=[{"type": "eq", "fun": lambda u: u.sum() - 1}])
        got = pu.Simplex(axis=1).prox(z[None], T)[0]
        np.testing.assert_allclose(got, res.x, atol=1e-7)


def test_simplex_and_nonnegative_values(backend):
    y = _z()
    sup = backend.to_numpy(pu.Simplex(1).conj_value(backend.asarray(y)))
    np.testing.assert_allclose(sup, y.max(axis=1).sum(axis=(1, 2)), rtol=1e-12)
    assert np.all(np.isinf(backend.to_numpy(pu.Simplex(1).value(backend.asarray(y)))))
    nn = pu.NonNegative()
    x = np.abs(y)
    np.testing.assert_array_equal(backend.to_numpy(nn.value(backend.asarray(x))), [0, 0])
    assert np.all(np.isinf(backend.to_numpy(nn.value(backend.asarray(y)))))
    np.testing.assert_array_equal(backend.to_numpy(nn.prox(backend.asarray(y), T)),
                                  np.maximum(y, 0))
    np.testing.assert_allclose(backend.to_numpy(nn.conj_prox(backend.asarray(y), S)),
                               np.minimum(y, 0), rtol=1e-15, atol=1e-15)


def test_linear_term_values_and_prox(backend):
    c = _z((3, 4, 2), seed=5)
    f = pu.LinearTerm(backend.asarray(c), pu.NonNegative())
    x = np.abs(_z())
    np.testing.assert_allclose(backend.to_numpy(f.value(backend.asarray(x))),
                               np.sum(c * x, axis=(1, 2, 3)), rtol=1e-12)
    z = _z(seed=2)
    np.testing.assert_allclose(backend.to_numpy(f.prox(backend.asarray(z), T)),
                               np.maximum(z - T * c, 0), rtol=1e-12, atol=1e-15)


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="group_axis"):
        pu.L21Norm(group_axis=0)
    with pytest.raises(ValueError, match="group_axis=3"):
        pu.L21Norm(group_axis=3).prox(np.ones((2, 3, 4)), 1.0)
    with pytest.raises(ValueError, match="axis"):
        pu.Simplex(axis=0)
    with pytest.raises(ValueError, match="without parameters"):
        pu.LinearTerm(np.ones(3), pu.LinearTerm(np.ones(3)))
    with pytest.raises(TypeError, match="base"):
        pu.LinearTerm(np.ones(3), "l1")
    with pytest.raises(TypeError, match="c must be an array"):
        pu.LinearTerm([1.0, 2.0])


# ---- the gradient w.r.t. the costs c through unrolled Chambolle-Pock -----------------------

L = 8


def _lp_problem():
    """A small labeling-like problem: x (batch, 4) on the simplex with costs c (G), a dense
    K and F = ⟨c_f, ·⟩ + ‖·‖₁ on Kx."""
    rng = np.random.default_rng(11)
    K = rng.standard_normal((5, 4))
    x_tilde = np.zeros((3, 4))
    x_true = np.array([[0.7, 0.3, 0.0, 0.0], [0.0, 0.5, 0.5, 0.0], [0.25, 0.25, 0.25, 0.25]])
    c_g = 0.5 * rng.standard_normal((3, 4))
    c_f = 0.3 * rng.standard_normal(5)
    return K, x_tilde, x_true, c_g, c_f


def _lp_model(backend, K, c_g, c_f):
    return pu.AnalysisModel(pu.DenseOperator(backend.asarray(K)),
                            pu.LinearTerm(backend.asarray(c_f), pu.L1Norm(0.7)),
                            pu.LinearTerm(backend.asarray(c_g), pu.Simplex(axis=1)))


def _lp_steps(K):
    return pu.step_sizes(pu.DenseOperator(K), omega=1.5)


GRAD_MODES = [pytest.param(pu.Full(), None, id="full"),
              pytest.param(pu.Truncated(3), None, id="truncated3"),
              pytest.param(pu.Full(), "harmonic", id="full-harmonic"),
              pytest.param(pu.Truncated(3), "uniform", id="truncated3-uniform"),
              pytest.param(pu.Asymptotic(1), None, id="asymptotic1"),
              pytest.param(pu.Asymptotic(6), None, id="asymptotic6")]


def _window(method):
    """The truncation window of the autograd oracle: b for Truncated(b), None (all steps) else."""
    return method.b if isinstance(method, pu.Truncated) else None


@pytest.mark.parametrize("method,weights", GRAD_MODES)
def test_cost_gradient_matches_torch_autograd(torch_backend, method, weights):
    import torch

    K, xt, xd, c_g, c_f = _lp_problem()
    steps = _lp_steps(K)
    res = pu.gradient(_lp_model(torch_backend, K, c_g, c_f), torch_backend.asarray(xt),
                      torch_backend.asarray(xd), iterations=L, method=method, weights=weights,
                      steps=steps)
    leaves = [torch.tensor(a, requires_grad=True) for a in (K, c_g, c_f)]
    model = pu.AnalysisModel(pu.DenseOperator(leaves[0]), pu.LinearTerm(leaves[2], pu.L1Norm(0.7)),
                             pu.LinearTerm(leaves[1], pu.Simplex(axis=1)))
    xt_t = torch.tensor(xt, requires_grad=True)
    xd_t = torch.tensor(xd)
    if isinstance(method, pu.Asymptotic):
        detached = pu.DenseOperator(leaves[0].detach())
        loss, gx, (gK, gcg, gcf) = asymptotic_grads(model, xt_t, xd_t, steps, L, method.b,
                                                    leaves, detached)
    else:
        alphas = pu.ergodic_weights(weights, L)
        out = unrolled_loss(model, xt_t, xd_t, steps, L, alphas=alphas,
                            window=_window(method))
        loss = float(out.detach())
        gK, gcg, gcf, gx = torch.autograd.grad(out, (*leaves, xt_t))
    assert res.loss == pytest.approx(loss, rel=1e-12)
    for ours, ref in ((res.g, gcg), (res.f, gcf), (res.operator, gK), (res.x_tilde, gx)):
        assert relative_error(torch_backend.to_numpy(ours), ref.detach().numpy()) <= 1e-10


def test_cost_gradient_matches_finite_differences(backend):
    K, xt, xd, c_g, c_f = _lp_problem()
    steps = _lp_steps(K)
    kw = dict(iterations=L, steps=steps)

    def loss(cg, cf):
        return pu.gradient(_lp_model(backend, K, cg, cf), backend.asarray(xt),
                           backend.asarray(xd), **kw).loss

    res = pu.gradient(_lp_model(backend, K, c_g, c_f), backend.asarray(xt), backend.asarray(xd),
                      **kw)
    V, W = random_direction(c_g.shape, seed=4), random_direction(c_f.shape, seed=5)
    fd_g = directional_fd(lambda cg: loss(cg, c_f), c_g, V)
    fd_f = directional_fd(lambda cf: loss(c_g, cf), c_f, W)
    assert np.sum(backend.to_numpy(res.g) * V) == pytest.approx(fd_g, rel=1e-6, abs=1e-10)
    assert np.sum(backend.to_numpy(res.f) * W) == pytest.approx(fd_f, rel=1e-6, abs=1e-10)
    assert abs(fd_g) > 1e-4 and abs(fd_f) > 1e-4  # the check is not vacuous


def test_models_without_function_params_report_empty_gradients(numpy_backend):
    K, xt, xd, *_ = _lp_problem()
    model = pu.AnalysisModel(pu.DenseOperator(K), pu.L1Norm(), pu.Simplex(axis=1))
    res = pu.gradient(model, xt, xd, iterations=3)
    assert res.f == () and res.g == ()


@pytest.mark.parametrize("method", [pu.Full(), pu.Truncated(3), pu.Asymptotic(2)], ids=repr)
def test_isotropic_tv_model_matches_torch_autograd(torch_backend, method):
    """min_x ‖∇x‖_{2,1} + ½‖x − x̃‖²: L21Norm's non-diagonal conjugate-prox Jacobian inside the
    reverse recursion."""
    import torch

    rng = np.random.default_rng(12)
    x_true = np.kron(np.eye(2), np.ones((3, 4)))[None]
    x_tilde = x_true + 0.3 * rng.standard_normal(x_true.shape)

    def model_for(xp):
        grad = pu.Gradient2d((6, 8), xp=xp, dtype=xp.float64)
        return pu.AnalysisModel(grad, pu.L21Norm(0.2), pu.SquaredL2())

    steps = pu.step_sizes(model_for(np).operator, omega=1.0)
    res = pu.gradient(model_for(torch_backend.xp), torch_backend.asarray(x_tilde),
                      torch_backend.asarray(x_true), iterations=L, method=method, steps=steps)
    assert res.operator == ()
    model = model_for(torch)
    xt, xd = torch.tensor(x_tilde, requires_grad=True), torch.tensor(x_true)
    if isinstance(method, pu.Asymptotic):
        loss, gx, _ = asymptotic_grads(model, xt, xd, steps, L, method.b, [], model.operator)
    else:
        out = unrolled_loss(model, xt, xd, steps, L, window=_window(method))
        loss, (gx,) = float(out.detach()), torch.autograd.grad(out, (xt,))
    assert res.loss == pytest.approx(loss, rel=1e-12)
    assert relative_error(torch_backend.to_numpy(res.x_tilde), gx.detach().numpy()) <= 1e-10
