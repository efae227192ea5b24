"""Bregman proximal steps (docs, Mathematics §7): the step maps and their two-cotangent VJPs, the
Chambolle-Pock solver and every gradient method with Bregman steps against central finite
differences (float64), torch.autograd of a plain torch loop and of
pdunroll.unroll.forward.forward run on torch tensors, and the optimum of the Bregman solver
against the Euclidean one."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import relative_error
from oracles import directional_fd, random_direction

import pdunroll as pu
from pdunroll.unroll.forward import forward

STEP = 0.6


# ---------------------------------------------------------------------------------------------
# the step maps
# ---------------------------------------------------------------------------------------------


def _step_case(name, backend, dtype="float64"):
    """(function, kind, prev, direction, cost or None) for one Bregman step, built in NumPy."""
    rng = np.random.default_rng(7)
    if name == "box_conj":
        return pu.BoxBregmanL1Norm(0.7), "conj", 0.7 * np.tanh(rng.standard_normal((3, 5))), \
            rng.standard_normal((3, 5)), None
    if name == "box_primal":
        return pu.BoxBregmanLinfBall(0.3), "primal", 0.3 * np.tanh(rng.standard_normal((3, 5))), \
            rng.standard_normal((3, 5)), None
    if name == "orthant":
        cost = rng.standard_normal((3, 5))
        return pu.LinearTerm(backend.asarray(cost, dtype), pu.EntropicOrthant()), "primal", \
            np.exp(rng.standard_normal((3, 5))), rng.standard_normal((3, 5)), cost
    if name == "simplex":
        prev = np.exp(rng.standard_normal((2, 4, 3)))
        prev = prev / prev.sum(axis=1, keepdims=True)
        cost = rng.standard_normal((2, 4, 3))
        f = pu.LinearTerm(backend.asarray(cost, dtype), pu.EntropicSimplex(axis=1))
        return f, "primal", prev, rng.standard_normal((2, 4, 3)), cost
    raise ValueError(name)


STEP_CASES = ["box_conj", "box_primal", "orthant", "simplex"]


def _call(f, kind, save, prev, d):
    """The step along ascent d (dual: a = s·d) or grad d (primal: a = −t·d)."""
    if kind == "conj":
        a = STEP * d
        return f.conj_prox_step_save(prev, a, STEP) if save else f.conj_prox_step(prev, a, STEP)
    a = -STEP * d
    return f.prox_step_save(prev, a, STEP) if save else f.prox_step(prev, a, STEP)


def _vjp(f, kind, saved, v):
    if kind == "conj":
        return f.conj_prox_step_vjp(saved, v, STEP)
    return f.prox_step_vjp(saved, v, STEP)


@pytest.mark.parametrize("name", STEP_CASES)
def test_step_vjps_match_finite_differences(backend, name):
    """Both cotangents: ⟨ε, w⟩ = ⟨v, ∂u/∂prev w⟩ and ⟨δ, w⟩·(−t | s) = ⟨v, ∂u/∂d w⟩ (δ the
    cotangent of the scaled direction a = −t·d | s·d)."""
    f, kind, prev, d, _ = _step_case(name, backend)
    v, w = random_direction(prev.shape, seed=3), random_direction(prev.shape, seed=4)
    u, saved = _call(f, kind, True, backend.asarray(prev), backend.asarray(d))
    eps_, delta = (backend.to_numpy(a) for a in _vjp(f, kind, saved, backend.asarray(v)))

    def u_of(p, dd):
        return backend.to_numpy(_call(f, kind, False, backend.asarray(p), backend.asarray(dd)))

    np.testing.assert_allclose(backend.to_numpy(u), u_of(prev, d), rtol=1e-14, atol=1e-15)
    fd_prev = directional_fd(lambda p: np.sum(v * u_of(p, d)), prev, w)
    assert np.sum(eps_ * w) == pytest.approx(fd_prev, rel=1e-7, abs=1e-10)
    fd_dir = directional_fd(lambda dd: np.sum(v * u_of(prev, dd)), d, w)
    scale = STEP if kind == "conj" else -STEP
    assert scale * np.sum(delta * w) == pytest.approx(fd_dir, rel=1e-7, abs=1e-10)


@pytest.mark.parametrize("name", STEP_CASES)
def test_step_solves_the_mirror_equation(backend, dtype, tol, name):
    """∇ψ(u) = ∇ψ(prev) + a with a = s·d (dual) or −t(d + c) (primal), u feasible (interior)."""
    f, kind, prev, d, cost = _step_case(name, backend, dtype)
    u = backend.to_numpy(_call(f, kind, False, backend.asarray(prev, dtype),
                               backend.asarray(d, dtype))).astype(np.float64)
    a = STEP * d if kind == "conj" else -STEP * (d if cost is None else d + cost)
    rtol, atol = 100 * tol["rtol"], 100 * tol["atol"]
    if name.startswith("box"):
        rho = f.weight if kind == "conj" else f.radius
        assert np.all(np.abs(u) < rho)
        np.testing.assert_allclose(rho * np.arctanh(u / rho), rho * np.arctanh(prev / rho) + a,
                                   rtol=rtol, atol=atol * 10)
    elif name == "orthant":
        assert np.all(u > 0)
        np.testing.assert_allclose(np.log(u), np.log(prev) + a, rtol=rtol, atol=atol)
    else:
        assert np.all(u > 0)
        np.testing.assert_allclose(u.sum(axis=1), 1.0, rtol=rtol, atol=atol)
        shift = np.log(u) - np.log(prev) - a  # constant along the class axis (a multiplier)
        np.testing.assert_allclose(shift, np.broadcast_to(shift[:, :1], shift.shape),
                                   rtol=rtol, atol=atol)


def test_box_step_saturates_without_nan(backend, dtype):
    """Huge ascents: tanh would round to ±1 and atanh(±1) = ∞; the clipped mirror variable
    keeps |u| < ρ, zero Jacobians there, and a finite step back."""
    f = pu.BoxBregmanL1Norm(2.0)
    prev = backend.asarray(np.zeros((2, 3)), dtype)
    big = backend.asarray(np.array([[1e3, -1e3, 0.5], [1e6, -1e6, -0.5]]), dtype)
    u, saved = f.conj_prox_step_save(prev, big, 1.0)
    un = backend.to_numpy(u)
    assert np.all(np.isfinite(un)) and np.all(np.abs(un) < 2.0)
    assert np.all(np.abs(un[:, :2]) > 2.0 * (1 - 1e-5))
    e, dlt = (backend.to_numpy(a) for a in f.conj_prox_step_vjp(saved, prev + 1, 1.0))
    assert np.all(e[:, :2] == 0) and np.all(dlt[:, :2] == 0) and np.all(dlt[:, 2] > 0)
    back = backend.to_numpy(f.conj_prox_step(u, -big, 1.0))
    assert np.all(np.isfinite(back)) and np.all(np.abs(back[:, :2]) < 2.0)


@pytest.mark.parametrize("f", [pu.L1Norm(0.7), pu.LinfBall(0.3), pu.SquaredL2(2.0),
                               pu.NonNegative()], ids=repr)
def test_euclidean_steps_are_proxes_at_z(backend, f):
    """Default steps: prox_{tf}(prev + a), prox_{sf*}(prev + a); one cotangent."""
    rng = np.random.default_rng(2)
    prev, d, v = (backend.asarray(rng.standard_normal((3, 4))) for _ in range(3))
    np.testing.assert_array_equal(backend.to_numpy(f.prox_step(prev, d, STEP)),
                                  backend.to_numpy(f.prox(prev + d, STEP)))
    np.testing.assert_array_equal(backend.to_numpy(f.conj_prox_step(prev, d, STEP)),
                                  backend.to_numpy(f.conj_prox(prev + d, STEP)))
    _, saved = f.prox_step_save(prev, d, STEP)
    e, dlt = f.prox_step_vjp(saved, v, STEP)
    assert e is dlt
    _, saved = f.prox_save(prev + d, STEP)
    np.testing.assert_array_equal(backend.to_numpy(e), backend.to_numpy(f.prox_vjp(saved, v,
                                                                                     STEP)))


def test_entropic_start_points(numpy_backend):
    zeros = np.zeros((2, 4, 3))
    np.testing.assert_allclose(pu.EntropicSimplex(axis=1).start(zeros), 0.25)
    np.testing.assert_allclose(pu.EntropicSimplex(axis=2).start(zeros), 1 / 3)
    np.testing.assert_allclose(pu.EntropicOrthant(start_value=0.5).start(zeros), 0.5)


def test_bad_input_raises_clearly(numpy_backend):
    with pytest.raises(ValueError, match="axis"):
        pu.EntropicSimplex(axis=0)
    with pytest.raises(ValueError, match="start_value"):
        pu.EntropicOrthant(start_value=-1.0)
    with pytest.raises(ValueError, match="axis=3"):
        pu.EntropicSimplex(axis=3).prox_step(np.ones((2, 3)), np.ones((2, 3)), 1.0)


# ---------------------------------------------------------------------------------------------
# Chambolle-Pock with Bregman steps: gradients
# ---------------------------------------------------------------------------------------------

L = 10
N, M, BATCH = 6, 7, 2


def _problem(kind, seed=0):
    """(K, x̃, x†, F spec, G spec): small problems whose Bregman iterates stay well inside their
    sets for L steps (so torch's tanh/atanh derivatives, 1 − y² and 1/(1 − p²), are accurate)."""
    rng = np.random.default_rng(seed)
    K = rng.standard_normal((M, N)) / np.sqrt(N)
    x_true = rng.standard_normal((BATCH, N))
    if kind == "box_box":
        return K, 0.5 * rng.standard_normal((BATCH, N)), x_true, ("box", 3.0), ("box", 3.0)
    if kind == "box_squared":
        return K, rng.standard_normal((BATCH, N)), x_true, ("box", 2.0), ("squared",)
    if kind == "l1_orthant":
        cost = 0.3 * rng.standard_normal((BATCH, N))
        return K, np.zeros((BATCH, N)), x_true, ("l1", 0.5), ("orthant", cost)
    if kind == "box_simplex":
        cost = 0.5 * rng.standard_normal((BATCH, N))
        return K, np.zeros((BATCH, N)), x_true, ("box", 2.0), ("simplex", cost)
    raise ValueError(kind)


KINDS = ["box_box", "box_squared", "l1_orthant", "box_simplex"]


def _functions(spec_f, spec_g, backend, dtype="float64"):
    f = pu.BoxBregmanL1Norm(spec_f[1]) if spec_f[0] == "box" else pu.L1Norm(spec_f[1])
    if spec_g[0] == "box":
        g = pu.BoxBregmanLinfBall(spec_g[1])
    elif spec_g[0] == "squared":
        g = pu.SquaredL2()
    elif spec_g[0] == "orthant":
        g = pu.LinearTerm(backend.asarray(spec_g[1], dtype), pu.EntropicOrthant())
    else:
        g = pu.LinearTerm(backend.asarray(spec_g[1], dtype), pu.EntropicSimplex())
    return f, g


def _steps(K):
    # ω = 1: the balance these problems (iterates away from the boundary, fixed points within
    # the iterations used) were built for
    return pu.step_sizes(pu.DenseOperator(K), omega=1.0, op_norm=float(np.linalg.norm(K, 2)))


def _gradient(backend, kind, method, weights=None, *, dtype="float64", K=None, x_tilde=None,
              iterations=L):
    K0, xt, xd, sf, sg = _problem(kind)
    K = K0 if K is None else K
    xt = xt if x_tilde is None else x_tilde
    f, g = _functions(sf, sg, backend, dtype)
    steps = _steps(K0)
    model = pu.AnalysisModel(pu.DenseOperator(backend.asarray(K, dtype)), f, g)
    return pu.gradient(model, backend.asarray(xt, dtype), backend.asarray(xd, dtype),
                       iterations=iterations, method=method, weights=weights, steps=steps)


def _torch_box(prev, a, rho):
    import torch

    zmax = 0.5 * math.log((2 - 4 * np.finfo(np.float64).eps) / (4 * np.finfo(np.float64).eps))
    return rho * torch.tanh(torch.clamp(torch.atanh(prev / rho) + a / rho, -zmax, zmax))


def torch_bregman_loop(kind, *, iterations, steps, weights=None, window=None, start=None):
    """ℓ = ½‖x̂ − x†‖² after L CP steps with Bregman steps written directly in torch (no pdunroll
    code) and its autograd gradients w.r.t. K and x̃. ``window=b`` detaches the state before the
    last b steps; ``start=(r0, y0)`` starts from that (constant) state with r̄⁰ = r0."""
    import torch

    K0, xt0, xd0, sf, sg = _problem(kind)
    K = torch.tensor(K0, requires_grad=True)
    xt = torch.tensor(xt0, requires_grad=True)
    cost = torch.tensor(sg[1], requires_grad=True) if sg[0] in ("orthant", "simplex") else None
    sigma, tau, theta = steps.sigma, steps.tau, steps.theta
    if start is not None:
        r, y = (torch.tensor(a) for a in start)
    else:
        r = torch.zeros_like(xt)
        if sg[0] == "simplex":
            r = r + 1.0 / N
        elif sg[0] == "orthant":
            r = r + 1.0
        y = torch.zeros(BATCH, M, dtype=torch.float64)
    r_bar, out = r, 0
    for k in range(1, iterations + 1):
        if window is not None and k == iterations - window + 1:
            r, r_bar, y = r.detach(), r_bar.detach(), y.detach()
            out = out.detach() if weights is not None and k > 1 else out
        ascent = (xt + r_bar) @ K.T
        if sf[0] == "box":
            y = _torch_box(y, sigma * ascent, sf[1])
        else:
            y = torch.clamp(y + sigma * ascent, -sf[1], sf[1])
        grad = y @ K
        if sg[0] == "box":
            r_new = _torch_box(r, -tau * grad, sg[1])
        elif sg[0] == "squared":
            r_new = (r - tau * grad) / (1 + tau)
        elif sg[0] == "orthant":
            r_new = r * torch.exp(-tau * (grad + cost))
        else:
            q = r * torch.exp(-tau * (grad + cost))
            r_new = q / q.sum(dim=1, keepdim=True)
        r_bar = r_new + theta * (r_new - r)
        r = r_new
        if weights is not None:
            out = out + weights[k - 1] * r
    x_hat = xt + (r if weights is None else out)
    loss = 0.5 * torch.sum((x_hat - torch.tensor(xd0)) ** 2)
    leaves = (K, xt) if cost is None else (K, xt, cost)
    grads = torch.autograd.grad(loss, leaves)
    return float(loss.detach()), *(a.numpy() for a in grads), *((None,) if cost is None else ())


GRAD_MODES = [pytest.param(pu.Full(), None, id="full"),
              pytest.param(pu.Truncated(4), None, id="truncated4"),
              pytest.param(pu.Full(), "harmonic", id="full-harmonic"),
              pytest.param(pu.Truncated(3), "uniform", id="truncated3-uniform")]


def _window(method):
    """The truncation window of the torch oracle: b for Truncated(b), None (all steps) else."""
    return method.b if isinstance(method, pu.Truncated) else None


@pytest.mark.parametrize("kind", KINDS)
def test_iterates_stay_inside(numpy_backend, kind):
    """Guards the test problems: no Bregman iterate comes near its boundary in L steps."""
    K, xt, _, sf, sg = _problem(kind)
    f, g = _functions(sf, sg, numpy_backend)
    model = pu.AnalysisModel(pu.DenseOperator(K), f, g)
    state = forward(model, xt, _steps(K), L, keep=L)
    for _, y, _, _ in state.tape:
        if sf[0] == "box":
            assert np.abs(np.arctanh(y / sf[1])).max() < 5
    r = state.r
    if sg[0] == "box":
        assert np.abs(np.arctanh(r / sg[1])).max() < 5
    if sg[0] in ("orthant", "simplex"):
        assert r.min() > 1e-6


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("method,weights", GRAD_MODES)
def test_gradient_matches_torch_loop(torch_backend, kind, method, weights):
    res = _gradient(torch_backend, kind, method, weights)
    loss, gK, gx, gc = torch_bregman_loop(kind, iterations=L, steps=res.steps,
                                          weights=pu.ergodic_weights(weights, L),
                                          window=_window(method))
    assert res.loss == pytest.approx(loss, rel=1e-12)
    assert relative_error(torch_backend.to_numpy(res.operator), gK) <= 1e-10
    assert relative_error(torch_backend.to_numpy(res.x_tilde), gx) <= 1e-10
    if gc is not None:  # the costs c of LinearTerm(c, entropic G): GradientResult.g
        assert relative_error(torch_backend.to_numpy(res.g), gc) <= 1e-10


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("weights", [None, "harmonic"])
def test_gradient_matches_autograd_of_forward(torch_backend, kind, weights):
    """The same loop: pdunroll.unroll.forward.forward on torch tensors with requires_grad=True."""
    import torch

    K0, xt0, xd0, sf, sg = _problem(kind)
    res = _gradient(torch_backend, kind, pu.Full(), weights)
    K = torch.tensor(K0, requires_grad=True)
    xt = torch.tensor(xt0, requires_grad=True)
    f, g = _functions(sf, sg, torch_backend)
    alphas = pu.ergodic_weights(weights, L)
    state = forward(pu.AnalysisModel(pu.DenseOperator(K), f, g), xt, res.steps, L, alphas=alphas)
    x_hat = xt + (state.r if alphas is None else state.r_avg)
    loss = 0.5 * torch.sum((x_hat - torch.tensor(xd0)) ** 2)
    gK, gx = torch.autograd.grad(loss, (K, xt))
    assert relative_error(res.operator.detach().numpy(), gK.numpy()) <= 1e-10
    assert relative_error(res.x_tilde.detach().numpy(), gx.numpy()) <= 1e-10


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("weights", [None, "harmonic"])
def test_gradient_matches_finite_differences(backend, kind, weights):
    K0, xt0, _, _, _ = _problem(kind)
    res = _gradient(backend, kind, pu.Full(), weights)
    V = random_direction(K0.shape)
    fd_K = directional_fd(lambda K: _gradient(backend, kind, pu.Full(), weights, K=K).loss,
                          K0, V)
    assert np.sum(backend.to_numpy(res.operator) * V) == pytest.approx(fd_K, rel=1e-6)
    if kind in ("box_box", "box_squared"):  # x̃ is part of the problem only there
        W = random_direction(xt0.shape, seed=2)
        fd_x = directional_fd(
            lambda xt: _gradient(backend, kind, pu.Full(), weights, x_tilde=xt).loss, xt0, W)
        assert np.sum(backend.to_numpy(res.x_tilde) * W) == pytest.approx(fd_x, rel=1e-6)


def test_bregman_recursion_differs_from_euclidean_shortcut(numpy_backend):
    """Guards the ε terms: dropping them (ε := δ, the Euclidean recursion) changes ∇_K."""
    res = _gradient(numpy_backend, "box_squared", pu.Full())
    f = pu.BoxBregmanL1Norm(2.0)

    class Shortcut(pu.BoxBregmanL1Norm):
        def conj_prox_step_vjp(self, saved, v, s):
            return (f.conj_prox_step_vjp(saved, v, s)[1],) * 2

    K, xt, xd, _, _ = _problem("box_squared")
    steps = _steps(K)
    wrong = pu.gradient(pu.AnalysisModel(pu.DenseOperator(K), Shortcut(2.0), pu.SquaredL2()), xt,
                        xd, iterations=L, steps=steps)
    assert wrong.loss == res.loss
    assert relative_error(wrong.operator, res.operator) > 1e-2


def _fixed_point_problem(backend, dtype="float64"):
    """min_x 2‖Kx‖₁ + ½‖x − x̃‖² for a wide K (4×6) and x̃ = Kᵀy* + n with |y*| < 2, K n = 0:
    its saddle point x* = n, y* lies inside the box, so the Bregman iterates converge to an
    interior fixed point where x* = (I − K⁺K) x̃ depends smoothly on K."""
    rng = np.random.default_rng(3)
    K = rng.standard_normal((4, N)) / np.sqrt(N)
    y_star = rng.uniform(-1.5, 1.5, (BATCH, 4))
    kernel_part = rng.standard_normal((BATCH, N)) @ (np.eye(N) - np.linalg.pinv(K) @ K)
    x_tilde = y_star @ K + kernel_part
    x_true = rng.standard_normal((BATCH, N))
    model = pu.AnalysisModel(pu.DenseOperator(backend.asarray(K, dtype)), pu.BoxBregmanL1Norm(2.0),
                             pu.SquaredL2())
    return K, x_tilde, x_true, model


def test_asymptotic_mode_at_the_fixed_point(backend, dtype):
    """At a fixed point the asymptotic gradient (b backward steps at the final iterate) is the
    exact gradient of b CP steps started at that (constant) point: autograd of the torch loop."""
    pytest.importorskip("torch", reason="torch is the oracle")
    import torch

    K, xt, xd, model = _fixed_point_problem(backend, dtype)
    steps = _steps(K)
    b = 15
    res = pu.gradient(model, backend.asarray(xt, dtype), backend.asarray(xd, dtype),
                      iterations=600, method=pu.Asymptotic(b), steps=steps)
    state = forward(pu.AnalysisModel(pu.DenseOperator(K), pu.BoxBregmanL1Norm(2.0),
                                     pu.SquaredL2()), xt, steps, 600)
    assert np.abs(state.r - state.r_prev).max() < 1e-13  # converged: a fixed point
    Kt = torch.tensor(K, requires_grad=True)
    xtt = torch.tensor(xt, requires_grad=True)
    r, y = torch.tensor(state.r), torch.tensor(state.y)
    r_bar = r
    for _ in range(b):
        y = _torch_box(y, steps.sigma * ((xtt + r_bar) @ Kt.T), 2.0)
        r_new = (r - steps.tau * y @ Kt) / (1 + steps.tau)
        r_bar, r = 2 * r_new - r, r_new
    loss = 0.5 * torch.sum((xtt + r - torch.tensor(xd)) ** 2)
    gK, gx = torch.autograd.grad(loss, (Kt, xtt))
    rtol = 1e-9 if dtype == "float64" else 1e-3
    assert relative_error(backend.to_numpy(res.operator), gK.numpy()) <= rtol
    assert relative_error(backend.to_numpy(res.x_tilde), gx.numpy()) <= rtol
    assert str(backend.to_numpy(res.operator).dtype) == dtype


def test_full_gradient_approaches_asymptotic_at_interior_fixed_point(numpy_backend):
    """With smooth (Bregman) steps and an interior fixed point, the full gradient for growing L
    tends to the asymptotic gradient with many backward steps (the implicit gradient)."""
    K, xt, xd, model = _fixed_point_problem(numpy_backend)
    steps = _steps(K)
    kw = {"steps": steps}
    errors = []
    for iterations in (50, 150, 400):
        full = pu.gradient(model, xt, xd, iterations=iterations, **kw)
        asym = pu.gradient(model, xt, xd, iterations=iterations, method=pu.Asymptotic(1000), **kw)
        errors.append(relative_error(full.operator, asym.operator))
    assert errors[0] > errors[1] > errors[2]
    assert errors[-1] < 1e-12


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("method,weights", GRAD_MODES + [pytest.param(pu.Asymptotic(6), None,
                                                                     id="asymptotic6")])
def test_same_result_on_every_backend(backend, dtype, tol, kind, method, weights):
    """Each backend and dtype reproduces the NumPy float64 result."""
    from conftest import _make

    ref = _gradient(_make("numpy"), kind, method, weights)
    res = _gradient(backend, kind, method, weights, dtype=dtype)
    scale = {"float64": 1.0, "float32": 50.0}[dtype]
    for got, want in ((res.operator, ref.operator), (res.x_tilde, ref.x_tilde), (res.x, ref.x)):
        np.testing.assert_allclose(backend.to_numpy(got), want, rtol=tol["rtol"] * scale,
                                   atol=tol["atol"] * scale * 10)
    assert str(backend.to_numpy(res.operator).dtype) == dtype


# ---------------------------------------------------------------------------------------------
# Chambolle-Pock with Bregman steps: the optimum
# ---------------------------------------------------------------------------------------------


def test_bregman_solver_reaches_euclidean_optimum(backend, dtype):
    """min_x 0.4‖Kx‖₁ + ½‖x − x̃‖²: the box-Bregman dual step converges to the same x* (and a
    zero primal-dual gap) as the Euclidean clip."""
    rng = np.random.default_rng(0)
    K = rng.standard_normal((8, 6))
    xt = rng.standard_normal((2, 6))
    op = pu.DenseOperator(backend.asarray(K, dtype))
    kw = {"iterations": 600,
          "steps": pu.step_sizes(op, omega=1.0, op_norm=float(np.linalg.norm(K, 2)))}
    xtb = backend.asarray(xt, dtype)
    euclid = pu.chambolle_pock(pu.AnalysisModel(op, pu.L1Norm(0.4), pu.SquaredL2()), xtb, **kw)
    breg = pu.chambolle_pock(pu.AnalysisModel(op, pu.BoxBregmanL1Norm(0.4), pu.SquaredL2()), xtb,
                             **kw)
    atol = 1e-10 if dtype == "float64" else 1e-4
    np.testing.assert_allclose(backend.to_numpy(breg.x), backend.to_numpy(euclid.x), atol=atol)
    assert np.all(np.abs(backend.to_numpy(breg.gap)) < atol)
    assert np.abs(backend.to_numpy(euclid.x)).max() > 0.1  # a nontrivial optimum
    assert np.abs(backend.to_numpy(breg.y)).max() < 0.4  # dual strictly inside its box
