"""Inverse problems min_x F(K x) + H(A x − f) (+ G): the stacked model of pu.inverse_problem
against an independent torch loop of the stacked Chambolle-Pock iteration written from the
mathematics (docs, Mathematics: "A forward operator in the data term"), against finite
differences, and against the closed-form solution of a quadratic model for the L → ∞ gradients;
the block functions checked with pu.check_function; the solver against optimality conditions;
the torch layer and pu.train learning a deblurring operator."""

import numpy as np
import pytest

import pdunroll as pu

torch = pytest.importorskip("torch")
F_ = torch.nn.functional

SHAPE = (8, 7)
LAM = 0.1


def _problem(seed=0, batch=2, shape=SHAPE):
    rng = np.random.default_rng(seed)
    x_true = rng.standard_normal((batch, *shape))
    h = pu.gaussian_kernel(0.8, 3)
    blur = pu.Blur(h, shape, "zero")
    data = blur.apply(x_true) + 0.01 * rng.standard_normal((batch, *shape))
    filters = 0.3 * rng.standard_normal((3, 3, 3))
    return x_true, h, data, filters


def _model(filters, h, data, f=None, shape=SHAPE):
    K = pu.Conv2dFilterBank(filters, shape, "zero")
    A = pu.Blur(h, shape, "zero")
    return pu.inverse_problem(K, A, data, f=pu.L1Norm(LAM) if f is None else f)


def _torch_loop(filters, h, data, x0, x_true, steps, iterations, window=None):
    """The stacked iteration in torch, from the mathematics: K x and Kᵀ y by conv2d and
    conv_transpose2d (3×3, zero boundary: padding 1), A the blur likewise;
    y₁ ← clip(y₁ + σ K x̄, ±λ), y₂ ← (y₂ + σ A x̄ − σ f)/(1 + σ)   (prox of σ(½‖·‖²)*),
    r ← r − τ (Kᵀ y₁ + Aᵀ y₂)   (G = 0),   r̄ ← r + θ (r − r_prev).
    ``window=b`` detaches the state before the last b steps (the truncated gradient)."""
    s, t, th = steps.sigma, steps.tau, steps.theta
    kx = lambda x: F_.conv2d(x[:, None], filters[:, None], padding=1)  # noqa: E731
    kt = lambda y: F_.conv_transpose2d(y, filters[:, None], padding=1)[:, 0]  # noqa: E731
    hk = h[None, None]
    ax = lambda x: F_.conv2d(x[:, None], hk, padding=1)[:, 0]  # noqa: E731
    at = lambda y: F_.conv_transpose2d(y[:, None], hk, padding=1)[:, 0]  # noqa: E731
    r = torch.zeros_like(x0)
    r_bar = r
    y1 = torch.zeros_like(kx(x0))
    y2 = torch.zeros_like(data)
    for k in range(1, iterations + 1):
        if window is not None and k == iterations - window + 1:
            r, r_bar, y1, y2 = r.detach(), r_bar.detach(), y1.detach(), y2.detach()
        xb = x0 + r_bar
        y1 = torch.clamp(y1 + s * kx(xb), -LAM, LAM)
        y2 = (y2 + s * ax(xb) - s * data) / (1 + s)
        r_new = r - t * (kt(y1) + at(y2))
        r_bar = r_new + th * (r_new - r)
        r = r_new
    d = x0 + r - x_true
    return 0.5 * (d * d).sum()


def _leaf(a):
    return torch.tensor(np.asarray(a), dtype=torch.float64, requires_grad=True)


@pytest.mark.parametrize("method", [pu.Full(), pu.Truncated(4), pu.Full(segments=3)],
                         ids=["full", "truncated", "full-segments"])
def test_gradients_match_autograd_of_an_independent_torch_loop(method):
    x_true, h, data, filters = _problem()
    model = _model(filters, h, data)
    x0 = model.operator.operators[1].adjoint(data)
    L = 12
    res = pu.gradient(model, x0, x_true, iterations=L, method=method, omega=2.0)
    leaves = [_leaf(a) for a in (filters, h, data, x0)]
    fl, hl, dl, xl = leaves
    window = method.b if isinstance(method, pu.Truncated) else None
    loss = _torch_loop(fl, hl.detach(), dl, xl, torch.tensor(x_true), res.steps, L, window)
    loss.backward()
    assert res.loss == pytest.approx(float(loss.detach()), rel=1e-12)
    assert res.operator[1] == ()  # A is fixed
    np.testing.assert_allclose(res.operator[0], fl.grad.numpy(), rtol=1e-10, atol=1e-12)
    assert res.f[0] == ()
    np.testing.assert_allclose(res.f[1], dl.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(res.x_tilde, xl.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_full_gradient_matches_finite_differences():
    x_true, h, data, filters = _problem(1)
    model = _model(filters, h, data)
    x0 = model.operator.operators[1].adjoint(data)
    res = pu.gradient(model, x0, x_true, iterations=15, omega=2.0)
    rng = np.random.default_rng(5)
    d, e = rng.standard_normal(filters.shape), rng.standard_normal(data.shape)

    def loss(fl, da):
        m = _model(fl, h, da)
        return pu.gradient(m, x0, x_true, iterations=15, steps=res.steps).loss

    eps = 1e-6
    fd_k = (loss(filters + eps * d, data) - loss(filters - eps * d, data)) / (2 * eps)
    fd_f = (loss(filters, data + eps * e) - loss(filters, data - eps * e)) / (2 * eps)
    assert np.sum(res.operator[0] * d) == pytest.approx(fd_k, rel=1e-6)
    assert np.sum(res.f[1] * e) == pytest.approx(fd_f, rel=1e-6)


def _quadratic(seed=2):
    """F = (μ/2)‖·‖², H = ½‖·‖², G = 0: x* = (μ KᵀK + AᵀA)⁻¹ Aᵀ f in closed form."""
    x_true, h, data, filters = _problem(seed, batch=2, shape=(5, 4))
    mu = 0.5
    model = _model(filters, h, data, f=pu.SquaredL2(mu), shape=(5, 4))
    return x_true, h, data, filters, mu, model


def test_implicit_and_asymptotic_gradients_match_the_closed_form_fixed_point():
    x_true, h, data, filters, mu, model = _quadratic()
    x0 = np.zeros_like(x_true)
    fl, dl = _leaf(filters), _leaf(data)
    n = 20
    eye = torch.eye(n, dtype=torch.float64).reshape(n, 5, 4)
    kmat = F_.conv2d(eye[:, None], fl[:, None], padding=1).reshape(n, -1).T
    amat = F_.conv2d(eye[:, None], torch.tensor(h)[None, None], padding=1).reshape(n, -1).T
    rhs = dl.reshape(2, -1) @ amat
    x_star = torch.linalg.solve(mu * kmat.T @ kmat + amat.T @ amat, rhs.T).T
    loss = 0.5 * ((x_star - torch.tensor(x_true).reshape(2, -1)) ** 2).sum()
    loss.backward()
    for method in (pu.Implicit(), pu.Asymptotic(3000)):
        res = pu.gradient(model, x0, x_true, iterations=3000, method=method, omega=1.0)
        assert res.loss == pytest.approx(float(loss.detach()), rel=1e-9)
        np.testing.assert_allclose(res.operator[0], fl.grad.numpy(), rtol=1e-7, atol=1e-9)
        np.testing.assert_allclose(res.f[1], dl.grad.numpy(), rtol=1e-7, atol=1e-9)


def test_asymptotic_gradient_is_b_reverse_steps_at_the_final_iterate():
    """Asymptotic(b) by its definition: b autograd VJPs of one stacked step
    T: (r, r̄, y₁, y₂) ↦ (r', r̄', y₁', y₂') at the (converged) final iterate, starting from the
    cotangents (x̂ − x†, 0, 0, 0) and feeding the input cotangents back as the next output ones;
    the gradients w.r.t. K and f are the sums over the b VJPs."""
    x_true, h, data, filters = _problem(3)
    model = _model(filters, h, data)
    x0 = model.operator.operators[1].adjoint(data)
    L, b = 1500, 7
    res = pu.gradient(model, x0, x_true, iterations=L, method=pu.Asymptotic(b), omega=2.0)
    final = pu.chambolle_pock(model, x0, iterations=L, steps=res.steps)
    s, t = res.steps.sigma, res.steps.tau
    fl, dl = _leaf(filters), _leaf(data)
    hk = torch.tensor(h)[None, None]
    m1 = 3 * SHAPE[0] * SHAPE[1]
    y = torch.tensor(final.y)
    inputs = [torch.tensor(final.r, requires_grad=True), torch.tensor(final.r, requires_grad=True),
              y[:, :m1].reshape(2, 3, *SHAPE).clone().requires_grad_(True),
              y[:, m1:].reshape(2, *SHAPE).clone().requires_grad_(True)]
    r_in, rbar_in, y1_in, y2_in = inputs
    xb = torch.tensor(x0) + rbar_in
    y1 = torch.clamp(y1_in + s * F_.conv2d(xb[:, None], fl[:, None], padding=1), -LAM, LAM)
    y2 = (y2_in + s * F_.conv2d(xb[:, None], hk, padding=1)[:, 0] - s * dl) / (1 + s)
    r = r_in - t * (F_.conv_transpose2d(y1, fl[:, None], padding=1)[:, 0]
                    + F_.conv_transpose2d(y2[:, None], hk, padding=1)[:, 0])
    outputs = (r, r + (r - r_in), y1, y2)
    cot = (torch.tensor(res.x - x_true), *(torch.zeros_like(o) for o in outputs[1:]))
    total_k, total_f = 0, 0
    for _ in range(b):
        *cot, gk, gf = torch.autograd.grad(outputs, (*inputs, fl, dl), grad_outputs=cot,
                                           retain_graph=True)
        total_k, total_f = total_k + gk, total_f + gf
    np.testing.assert_allclose(res.operator[0], total_k.numpy(), rtol=1e-7, atol=1e-10)
    np.testing.assert_allclose(res.f[1], total_f.numpy(), rtol=1e-7, atol=1e-10)
