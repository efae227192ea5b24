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


def test_block_functions_pass_check_function(backend, dtype):
    data = backend.asarray(np.random.default_rng(0).standard_normal((3, 2, 3)), dtype)
    example = backend.asarray(np.zeros((3, 4 + 6)), dtype)
    many = backend.name == "numpy"  # the others: one H (eager JAX is slow)
    for h in (pu.L2Ball(1.5), pu.SquaredL2(2.0), pu.L1Norm(0.5), pu.LinfBall(0.3))[:4 if many
                                                                                 else 1]:
        dual = pu.BlockSeparable((pu.L1Norm(0.7), pu.Translated(h, data)), ((4,), (2, 3)))
        assert pu.check_function(dual, example).ok
    assert pu.check_function(pu.Translated(pu.L2Ball(1.0), data),
                             backend.asarray(np.zeros((3, 2, 3)), dtype)).ok


def test_solution_satisfies_the_optimality_condition():
    """F = L1Norm(λ) on K x, H = ½‖A x − f‖², G = 0: Aᵀ(A x̂ − f) + Kᵀ y₁ = 0 with
    y₁ ∈ λ ∂‖·‖₁(K x̂), i.e. |y₁| ≤ λ and y₁ = λ sign(K x̂) where K x̂ ≠ 0."""
    x_true, h, data, filters = _problem(4)
    model = _model(filters, h, data)
    K, A = model.operator.operators
    sol = pu.chambolle_pock(model, A.adjoint(data), iterations=4000, omega=2.0)
    m1 = int(np.prod(K.out_shape))
    y1 = sol.y[:, :m1].reshape(2, *K.out_shape)
    stationarity = A.adjoint(A.apply(sol.x) - data) + K.adjoint(y1)
    assert np.abs(stationarity).max() < 1e-8
    kx = K.apply(sol.x)
    assert np.abs(y1).max() <= LAM * (1 + 1e-12)
    on = np.abs(kx) > 1e-8
    np.testing.assert_allclose(y1[on], LAM * np.sign(kx[on]), atol=1e-8)
    np.testing.assert_allclose(sol.y[:, m1:].reshape(data.shape), A.apply(sol.x) - data,
                               atol=1e-8)  # y₂ = ∇H(A x̂ − f)


def _deblurring(n=6, shape=(10, 10), seed=0):
    rng = np.random.default_rng(seed)
    # piecewise constant images: what TV-like filters reconstruct well
    x_true = np.zeros((n, *shape))
    for i in range(n):
        r, c = rng.integers(2, 7, size=2)
        x_true[i, r:, :] += rng.standard_normal()
        x_true[i, :, c:] += rng.standard_normal()
    h = pu.gaussian_kernel(1.0, 5)
    data = pu.Blur(h, shape, "zero").apply(x_true) + 0.01 * rng.standard_normal((n, *shape))
    filters = 0.5 * rng.standard_normal((4, 3, 3))
    return x_true, h, data, filters


def test_train_learns_a_deblurring_operator_and_takes_a_custom_loss():
    x_true, h, data, filters = _deblurring()
    shape = x_true.shape[1:]
    K = pu.Conv2dFilterBank(filters, shape, "zero")
    A = pu.Blur(h, shape, "zero")
    model = pu.inverse_problem(K, A, data, f=pu.L1Norm(0.05))
    x0 = A.adjoint(data)
    kw = dict(iterations=15, omega=1.0, optimizer="sgd", lr=0.02, epochs=6, batch_size=3,
              progress=False)
    res = pu.train(model, x0, x_true, **kw)
    losses = res.history.step_loss
    assert losses[-1] < 0.8 * losses[0]
    # the measurements stay with their signals: the learned model reconstructs them better
    before = pu.chambolle_pock(model, x0, iterations=15, omega=1.0).x
    after = pu.chambolle_pock(res.final_model, x0, iterations=15, omega=1.0).x
    assert np.sum((after - x_true) ** 2) < np.sum((before - x_true) ** 2)

    def sum_squares(x_hat, target):  # the default loss, written as a custom one
        d = x_hat - target
        return 0.5 * float(np.sum(d * d)), d

    custom = pu.train(model, x0, x_true, loss=sum_squares, **kw)
    np.testing.assert_allclose(custom.history.step_loss, losses, rtol=1e-12)

    def weighted(x_hat, target):  # a different loss changes the steps
        d = x_hat - target
        return float(np.sum(np.abs(d) ** 3)) / 3, np.abs(d) * d

    other = pu.train(model, x0, x_true, loss=weighted, **kw)
    assert other.history.step_loss[-1] < other.history.step_loss[0]
    assert not np.allclose(other.final_model.operator.params[0],
                           res.final_model.operator.params[0])


def test_train_validates_with_the_held_out_signals_measurements():
    """validation=(x̃, x†, model of the held-out signals): the validation loss is that of the
    held-out measurements with the operator being trained, at every epoch."""
    x_true, h, data, filters = _deblurring(n=8)
    shape = x_true.shape[1:]
    A = pu.Blur(h, shape, "zero")
    K = pu.Conv2dFilterBank(filters, shape, "zero")
    train_m = pu.inverse_problem(K, A, data[:5], f=pu.L1Norm(0.05))
    val_m = pu.inverse_problem(K, A, data[5:], f=pu.L1Norm(0.05))
    x0 = A.adjoint(data)
    res = pu.train(train_m, x0[:5], x_true[:5], validation=(x0[5:], x_true[5:], val_m),
                   iterations=8, omega=1.0, optimizer="sgd", lr=0.02, epochs=3, batch_size=5,
                   progress=False)
    assert len(res.history.epoch_val_loss) == 3
    # the last epoch's validation loss is the held-out loss of the final operator (up to the
    # warm-started ‖M‖ of the training loop's step sizes)
    final = pu.inverse_problem(res.final_model.operator.operators[0], A, data[5:],
                               f=pu.L1Norm(0.05))
    steps = pu.step_sizes(final.operator, omega=1.0)
    x_hat = pu.chambolle_pock(final, x0[5:], iterations=8, steps=steps).x
    want = 0.5 * float(np.sum((x_hat - x_true[5:]) ** 2)) / 3
    assert res.history.epoch_val_loss[-1] == pytest.approx(want, rel=1e-3)


def test_train_refuses_validation_for_per_signal_measurements_and_a_bad_loss():
    x_true, h, data, filters = _deblurring(n=4)
    shape = x_true.shape[1:]
    model = pu.inverse_problem(pu.Conv2dFilterBank(filters, shape, "zero"),
                               pu.Blur(h, shape, "zero"), data)
    x0 = np.zeros_like(x_true)
    with pytest.raises(ValueError, match="needs the model of the validation signals"):
        pu.train(model, x0, x_true, validation=(x0, x_true), progress=False)
    with pytest.raises(TypeError, match="third entry of validation must be the AnalysisModel"):
        pu.train(model, x0, x_true, validation=(x0, x_true, "model"), progress=False)
    with pytest.raises(TypeError, match="loss must be callable"):
        pu.train(model, x0, x_true, loss="l1", progress=False)
    with pytest.raises(ValueError, match="the data of f block 1 must have shape"):
        pu.chambolle_pock(model, x0[:2], iterations=3)


def test_torch_layer_trains_a_deblurring_model_like_pu_train():
    """UnrolledCP with the measurements passed as F's parameters for each minibatch, full
    batch SGD: the same steps as pu.train with SGD at the same step sizes."""
    from pdunroll.torch import UnrolledCP

    x_true, h, data, filters = _deblurring(n=4)
    shape = x_true.shape[1:]
    t = lambda a: torch.tensor(a, dtype=torch.float64)  # noqa: E731
    A = pu.Blur(t(h), shape, "zero")
    model = pu.inverse_problem(pu.Conv2dFilterBank(t(filters), shape, "zero"), A, t(data),
                               f=pu.L1Norm(0.05))
    x0 = A.adjoint(t(data))
    norm = float(model.operator.norm())
    steps = pu.step_sizes(model.operator, omega=1.0, op_norm=2 * norm)  # fixed for both
    layer = UnrolledCP(model, iterations=12, steps=steps)
    opt = torch.optim.SGD(layer.parameters(), lr=0.05)
    losses = []
    for _ in range(8):
        opt.zero_grad()
        x_hat = layer(x0, f=((), t(data)))
        loss = 0.5 * ((x_hat - t(x_true)) ** 2).sum() / 4
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.8 * losses[0]
    # the same steps by hand with pu.gradient (what pu.train does at these step sizes)
    m = pu.inverse_problem(pu.Conv2dFilterBank(filters, shape, "zero"), pu.Blur(h, shape, "zero"),
                           data, f=pu.L1Norm(0.05))
    ref_steps = pu.StepSizes(steps.sigma, steps.tau, steps.theta, steps.op_norm)
    params = filters
    for i in range(8):
        res = pu.gradient(m.with_params((params, ())), np.asarray(x0), x_true, iterations=12,
                          steps=ref_steps)
        assert res.loss / 4 == pytest.approx(losses[i], rel=1e-10)
        params = params - 0.05 * res.operator[0] / 4
    np.testing.assert_allclose(layer.operator_params[0].detach().numpy(), params, rtol=1e-9)
    # the gradient reaches the measurements through the layer (e.g. from a network that makes f)
    f_leaf = t(data).requires_grad_(True)
    x_hat = layer(x0, f=((), f_leaf))
    (0.5 * ((x_hat - t(x_true)) ** 2).sum()).backward()
    res = pu.gradient(m.with_params((params, ())), np.asarray(x0), x_true, iterations=12,
                      steps=ref_steps)
    np.testing.assert_allclose(f_leaf.grad.numpy(), res.f[1], rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("forward", ["blur", "mask", "subsample", "tomography"])
def test_inverse_problem_models_save_and_load(tmp_path, forward):
    rng = np.random.default_rng(0)
    n = 6
    A = {"blur": pu.Blur(pu.gaussian_kernel(0.7, 3), (n, n), "valid"),
         "mask": pu.Mask((rng.random((n, n)) < 0.5).astype(float)),
         "subsample": pu.Composition(pu.Subsample((n, n), 2), pu.Blur(np.ones((2, 2)) / 4,
                                                                       (n, n), "zero")),
         "tomography": pu.ParallelBeam(n, 5)}[forward]
    x_true = rng.standard_normal((2, n, n))
    data = A.apply(x_true)
    K = pu.Conv2dFilterBank(rng.standard_normal((2, 3, 3)), (n, n), "zero")
    model = pu.inverse_problem(K, A, data, h=pu.L2Ball(0.1), f=pu.L21Norm(0.3, group_axis=1))
    path = pu.save_operator(tmp_path / "m.npz", model, iterations=7, omega=1.0)
    loaded, settings = pu.load_operator(path)
    x0 = A.adjoint(data)
    want = pu.chambolle_pock(model, x0, iterations=7, omega=1.0).x
    got = pu.chambolle_pock(loaded, x0, iterations=7, omega=1.0).x
    np.testing.assert_array_equal(got, want)
    assert repr(loaded.f) == repr(model.f) and repr(loaded.operator) == repr(model.operator)


def test_training_an_inverse_problem_resumes_from_its_checkpoint(tmp_path):
    x_true, h, data, filters = _deblurring(n=4)
    shape = x_true.shape[1:]
    model = pu.inverse_problem(pu.Conv2dFilterBank(filters, shape, "zero"),
                               pu.Blur(h, shape, "zero"), data, f=pu.L1Norm(0.05))
    x0 = np.zeros_like(x_true)
    kw = dict(iterations=5, omega=1.0, lr=1e-3, batch_size=2, progress=False)
    whole = pu.train(model, x0, x_true, epochs=2, **kw)
    ck = tmp_path / "ck.npz"

    def stop(info):
        if info["step"] == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        pu.train(model, x0, x_true, epochs=2, checkpoint=ck, callback=stop, **kw)
    resumed = pu.train(model, x0, x_true, epochs=2, checkpoint=ck, resume=True, **kw)
    np.testing.assert_array_equal(resumed.final_model.operator.params[0],
                                  whole.final_model.operator.params[0])


def test_jax_layer_gives_the_same_gradients_of_k_and_the_measurements():
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    from pdunroll.jax import unrolled

    x_true, h, data, filters = _problem(6, shape=(5, 4))
    filters = filters[:2]
    model = _model(filters, h, data, shape=(5, 4))
    x0 = np.zeros_like(x_true)
    res = pu.gradient(model, x0, x_true, iterations=6, omega=1.0)

    def loss(fl, d):
        m = pu.inverse_problem(pu.Conv2dFilterBank(fl, (5, 4), "zero"),
                               pu.Blur(jnp.asarray(h), (5, 4), "zero"), d, f=pu.L1Norm(LAM))
        x_hat = unrolled(m, jnp.asarray(x0), iterations=6, steps=res.steps)
        return 0.5 * jnp.sum((x_hat - x_true) ** 2)

    gk, gf = jax.grad(loss, argnums=(0, 1))(jnp.asarray(filters), jnp.asarray(data))
    np.testing.assert_allclose(np.asarray(gk), res.operator[0], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(np.asarray(gf), res.f[1], rtol=1e-12, atol=1e-14)
