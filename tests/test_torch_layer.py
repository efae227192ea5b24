"""The torch layer (pdunroll.torch): gradcheck in float64 for every gradient method, the same
gradients as pu.gradient and as torch.autograd of the unrolled loop, gradients of F's and G's
parameters, training with torch.optim, devices, torch.compile and the errors."""

import numpy as np
import pytest
from conftest import relative_error

torch = pytest.importorskip("torch", reason="torch is not installed (pip install torch)")

import pdunroll as pu  # noqa: E402
from pdunroll.torch import UnrolledCP, unrolled  # noqa: E402

N, M, B = 4, 5, 2
# long enough (L = 300) for the truncated, asymptotic and implicit gradients to equal the exact
# one to gradcheck's tolerance: the smooth, strongly convex G makes the iteration contract
METHODS = [(300, pu.Full()), (300, pu.Truncated(100)), (300, pu.Asymptotic(200)),
           (300, pu.Implicit(tol=1e-12, maxiter=1000)), (20, pu.Full(segments=3)),
           (20, pu.Truncated(20, segments=4))]


def _data(seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    K = torch.eye(M, N, dtype=dtype) + 0.3 * torch.randn(M, N, generator=g, dtype=dtype)
    xt = torch.randn(B, N, generator=g, dtype=dtype)
    c = 0.1 * torch.randn(B, N, generator=g, dtype=dtype)
    return K, xt, c


def _model(K, c):
    return pu.AnalysisModel(pu.DenseOperator(K), pu.L1Norm(), pu.LinearTerm(c, pu.SquaredL2()))


@pytest.mark.parametrize("iterations,method", METHODS, ids=lambda m: repr(m))
def test_gradcheck_every_method(iterations, method):
    K, xt, c = (t.requires_grad_() for t in _data())
    # ω = 1: on this problem 200 steps with it converge far enough for the truncation
    steps = pu.step_sizes(pu.DenseOperator(K.detach()), omega=1.0)

    def layer(K, xt, c):
        return unrolled(_model(K, c), xt, iterations=iterations, method=method, steps=steps)

    assert torch.autograd.gradcheck(layer, (K, xt, c))


def test_same_gradients_as_pu_gradient_and_autograd_of_the_loop():
    from unrolled_oracles import unrolled_loss

    K, xt, c = _data(1)
    x_true = torch.randn(B, N, generator=torch.Generator().manual_seed(5), dtype=K.dtype)
    steps = pu.step_sizes(pu.DenseOperator(K), omega=2.0)
    ref = pu.gradient(_model(K, c), xt, x_true, iterations=15, steps=steps)

    leaves = [t.clone().requires_grad_() for t in (K, xt, c)]
    x_hat = unrolled(_model(leaves[0], leaves[2]), leaves[1], iterations=15, steps=steps)
    (0.5 * ((x_hat - x_true) ** 2).sum()).backward()
    for got, want in zip(leaves, (ref.operator, ref.x_tilde, ref.g), strict=True):
        assert relative_error(got.grad, want) <= 1e-12

    auto = [t.clone().requires_grad_() for t in (K, xt, c)]
    unrolled_loss(_model(auto[0], auto[2]), auto[1], x_true, steps, 15).backward()
    for got, want in zip(leaves, auto, strict=True):
        assert relative_error(got.grad, want.grad) <= 1e-10


def test_module_trains_an_operator_with_torch_optim(tmp_path):
    """A dense K learned from a perturbed DCT: the training loss falls by a fifth or more;
    ``layer.model`` is then the trained model (before: the start), saved and loaded it
    reconstructs as the layer."""
    rng = np.random.default_rng(0)
    n, batch = 16, 8
    t = np.linspace(0, 1, n)
    x = np.stack([0.6 * np.sin(2 * np.pi * (2 + i % 5) * t + i) for i in range(batch)])
    x_true = torch.tensor(x)
    x_tilde = torch.tensor(pu.quantize(x, 3))
    K0 = torch.tensor(pu.dct_matrix(n) + 0.2 * rng.standard_normal((n, n)))
    model = pu.AnalysisModel(pu.DenseOperator(K0), pu.L1Norm(), pu.LinfBall(1 / 8))
    layer = UnrolledCP(model, iterations=20, omega=3.0)
    assert isinstance(layer.operator_params[0], torch.nn.Parameter)
    opt = torch.optim.Adam(layer.parameters(), lr=1e-2)
    losses = []
    for _ in range(40):
        opt.zero_grad()
        loss = 0.5 * ((layer(x_tilde) - x_true) ** 2).sum()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.8 * losses[0]
    assert not torch.equal(layer.operator_params[0].detach(), K0)  # the copy trained, not K0
    trained = layer.model
    assert torch.equal(trained.operator.matrix, layer.operator_params[0].detach())
    assert not trained.operator.matrix.requires_grad and trained.g is model.g
    loaded = pu.load_model(pu.LearnedModel(trained, 20, omega=3.0).save(tmp_path / "k.npz"),
                           xp=torch)
    with torch.no_grad():  # the layer's ‖K‖ is warm-started (10 power iterations a call), the
        # loaded model's converged: their step sizes agree to the estimate's accuracy
        assert relative_error(loaded.reconstruct(x_tilde), layer(x_tilde)) <= 1e-6
        layer.norm_vector = None  # ‖K‖ estimated to convergence again: the same step sizes
        assert relative_error(loaded.reconstruct(x_tilde), layer(x_tilde)) <= 1e-13


def test_module_takes_the_parameters_of_g_as_a_tensor():
    K, xt, c = _data(2)
    layer = UnrolledCP(_model(K, torch.zeros_like(c)), iterations=10, omega=1.0)
    with pytest.raises(ValueError, match=r"L1Norm has no parameters: params must be \(\)"):
        layer(xt, f=c)  # F = L1Norm() takes none (before: an AttributeError)
    c = c.clone().requires_grad_()
    x_hat = layer(xt, g=c)
    x_hat.sum().backward()
    ref = pu.vjp(_model(K, c.detach()), xt, iterations=10, omega=1.0)
    assert relative_error(x_hat.detach(), ref[0]) <= 1e-14
    cot = ref[1](torch.ones_like(xt))
    assert relative_error(c.grad, cot.g) <= 1e-12
    assert relative_error(layer.operator_params[0].grad, cot.operator) <= 1e-12


def test_float32_keeps_dtype_and_device():
    K, xt, c = _data(3, torch.float32)
    K.requires_grad_()
    x_hat = unrolled(_model(K, c), xt, iterations=5)
    assert x_hat.dtype == torch.float32 and x_hat.device == xt.device
    x_hat.sum().backward()
    assert K.grad.dtype == torch.float32 and K.grad.device == K.device


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")
def test_cuda_inputs_stay_on_cuda():
    K, xt, c = (t.cuda() for t in _data(3))
    K.requires_grad_()
    x_hat = unrolled(_model(K, c), xt, iterations=5)
    x_hat.sum().backward()
    assert x_hat.is_cuda and K.grad.is_cuda


def test_double_backward_raises_a_clear_error():
    K, xt, c = _data()
    K.requires_grad_()
    x_hat = unrolled(_model(K, c), xt, iterations=5)
    with pytest.raises(RuntimeError, match="double backward"):
        torch.autograd.grad(x_hat.sum(), K, create_graph=True)


def test_second_backward_through_a_retained_graph_gives_the_same_gradient():
    K, xt, c = _data()
    K.requires_grad_()
    x_hat = unrolled(_model(K, c), xt, iterations=8)
    (g1,) = torch.autograd.grad(x_hat.sum(), K, retain_graph=True)
    (g2,) = torch.autograd.grad(x_hat.sum(), K)
    assert torch.equal(g1, g2)


def test_backward_skips_the_x_tilde_cotangent_when_x_tilde_needs_no_gradient(monkeypatch):
    """x̃ without requires_grad: the layer's plan has x_wanted=False (the reverse pass skips
    Σ δ_D) and the gradient of K is the one with x̃ requiring grad, to the bit; a second
    backward through a retained graph keeps the choice."""
    import pdunroll.unroll.gradient as gradient_module

    wanted_by_call = []

    def spy(model, x_tilde, plan):
        wanted_by_call.append(plan.x_wanted)
        return gradient_module.forward_pass(model, x_tilde, plan)

    monkeypatch.setattr("pdunroll.torch.forward_pass", spy)
    K, xt, c = _data(2)
    grads = {}
    for wanted in (True, False):
        K_leaf, x_leaf = K.clone().requires_grad_(), xt.clone().requires_grad_(wanted)
        loss = 0.5 * (unrolled(_model(K_leaf, c), x_leaf, iterations=12) ** 2).sum()
        loss.backward(retain_graph=True)
        grads[wanted] = K_leaf.grad.clone()
        assert (x_leaf.grad is not None) == wanted
        loss.backward()  # reruns the forward pass
        assert torch.equal(K_leaf.grad, 2 * grads[wanted])
    assert wanted_by_call == [True, True, False, False]
    assert torch.equal(grads[True], grads[False])


def test_runs_under_torch_compile():
    """The layer is a graph break inside a compiled function: same values and gradients."""
    K, xt, c = _data(4)
    pre = torch.nn.Linear(N, N, dtype=torch.float64)
    layer = UnrolledCP(_model(K, c), iterations=10, omega=1.0)

    def net(x):
        return torch.tanh(layer(pre(x))).sum()

    compiled = torch.compile(net, backend="eager")
    eager = net(xt)
    eager.backward()
    want = [p.grad.clone() for p in (pre.weight, layer.operator_params[0])]
    for p in (pre.weight, layer.operator_params[0]):
        p.grad = None
    layer.norm_vector = None  # ‖K‖ from scratch again, as in the first call
    got = compiled(xt)
    got.backward()
    assert torch.allclose(got, eager, rtol=1e-12, atol=0)
    for p, w in zip((pre.weight, layer.operator_params[0]), want, strict=True):
        assert torch.allclose(p.grad, w, rtol=1e-12, atol=1e-14)
    # one break, at the layer (validation and model building included): two compiled graphs
    explained = torch._dynamo.explain(net)(xt)
    assert (explained.graph_count, explained.graph_break_count) == (2, 1)


def test_errors_name_the_argument():
    K, xt, c = _data()
    with pytest.raises(ValueError, match="x_tilde must have shape"):
        unrolled(_model(K, c), xt[:, :3], iterations=5)
    with pytest.raises(TypeError, match="torch tensors"):
        UnrolledCP(_model(K.numpy(), c.numpy()), iterations=5)
    with pytest.raises(ValueError, match="iterations"):
        UnrolledCP(_model(K, c), iterations=0)


def test_module_holds_a_filter_bank_as_parameter():
    """A Conv2dFilterBank's filters are the module's nn.Parameter; their gradient through the
    layer is pu.gradient's."""
    g = torch.Generator().manual_seed(7)
    filters = torch.tensor(pu.dct_filters(3)) + 0.05 * torch.randn(8, 3, 3, generator=g,
                                                                     dtype=torch.float64)
    x_true = torch.rand(2, 6, 6, generator=g, dtype=torch.float64)
    noisy = x_true + 0.1 * torch.randn(2, 6, 6, generator=g, dtype=torch.float64)
    model = pu.AnalysisModel(pu.Conv2dFilterBank(filters, (6, 6)), pu.L1Norm(), pu.L2Ball(0.6))
    layer = UnrolledCP(model, iterations=8)
    assert layer.operator_params[0].shape == (8, 3, 3)
    (0.5 * ((layer(noisy) - x_true) ** 2).sum()).backward()
    ref = pu.gradient(model, noisy, x_true, iterations=8)
    assert relative_error(layer.operator_params[0].grad, ref.operator) <= 1e-12


def test_module_products_take_the_fast_backend_check(monkeypatch):
    # UnrolledCP's operator holds nn.Parameter (a torch.Tensor subclass); the iterates are plain
    # tensors of the same backend: the products must not fall back to comparing namespaces
    # (array_namespace per product: ≈ 15 % of an L = 100 speech gradient)
    import pdunroll.operators.base as base

    K, xt, c = _data()
    layer = UnrolledCP(_model(K, c), iterations=5)
    layer(xt)  # the first call estimates ‖K‖ (its own checks)
    seen, namespace = [], base.namespace
    monkeypatch.setattr(base, "namespace", lambda *a: seen.append(a) or namespace(*a))
    x_hat = layer(xt)
    x_hat.sum().backward()
    per_product = [a for a in seen if a[0][0] in ("x", "y", "a", "b")]  # check_batch's
    assert seen and not per_product  # (the operator's own lookup, once per call, is fine)
    with pytest.raises(TypeError, match="x"):
        layer.operator.apply(np.ones((B, N)).tolist())
