"""Forward-backward splitting with Euclidean and Bregman steps (Ochs et al. 2016, Algorithm 2): the
forward pass against NNLS solutions, every gradient method against torch.autograd of the same
loop, central finite differences (float64) and the implicit-function-theorem derivative."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import relative_error
from oracles import directional_fd, random_direction
from scipy.optimize import nnls

import pdunroll as pu

L = 15
N, M, BATCH = 4, 6, 2
LAM, MU = 1.0, 0.5


def _data(seed=0, interior=False):
    """A (M×N), b (BATCH×M), x⁰ > 0, x†. ``interior``: b = A x₀ with x₀ > 0 (plus a little
    noise), so the nonnegative optimum lies inside the orthant."""
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((M, N)) / np.sqrt(M) + np.eye(M, N)
    if interior:
        b = (1.0 + rng.uniform(size=(BATCH, N))) @ A.T + 0.01 * rng.standard_normal((BATCH, M))
    else:
        b = rng.standard_normal((BATCH, M))
    return A, b, np.full((BATCH, N), 0.7), rng.standard_normal((BATCH, N))


def _g(kind):
    return {"proj": pu.NonNegative(), "entropic": pu.EntropicOrthant(),
            "box": pu.BoxBregmanLinfBall(1.5)}[kind]


def _step(A):
    return 1.0 / (LAM * np.linalg.norm(A, 2) ** 2 + MU)


def _grad(backend, kind, method, *, A=None, dtype="float64", iterations=L, data=None):
    A0, bb, x0, xd = _data() if data is None else data
    A = A0 if A is None else A
    smooth = pu.LeastSquares(pu.DenseOperator(backend.asarray(A, dtype)),
                             backend.asarray(bb, dtype), weight=LAM, ridge=MU)
    return pu.forward_backward_gradient(smooth, _g(kind), backend.asarray(x0, dtype),
                                        backend.asarray(xd, dtype), step=_step(A0),
                                        iterations=iterations, method=method)


def test_projected_gradient_reaches_nnls(backend):
    """Proj.GD: min (λ/2)‖Ax − b‖² + (μ/2)‖x‖² over x ≥ 0 = NNLS of the stacked system."""
    A, b, x0, _ = _data()
    smooth = pu.LeastSquares(pu.DenseOperator(backend.asarray(A)), backend.asarray(b),
                             weight=LAM, ridge=MU)
    res = pu.forward_backward(smooth, pu.NonNegative(), backend.asarray(x0), step=_step(A),
                              iterations=500)
    stacked = np.vstack([np.sqrt(LAM) * A, np.sqrt(MU) * np.eye(N)])
    want = np.stack([nnls(stacked, np.concatenate([np.sqrt(LAM) * bi, np.zeros(N)]))[0]
                     for bi in b])
    assert np.any(want == 0) and np.any(want > 0)  # active and inactive constraints
    np.testing.assert_allclose(backend.to_numpy(res.x), want, atol=1e-12)
    assert np.all(backend.to_numpy(res.residual) < 1e-10)


@pytest.mark.parametrize("kind", ["entropic", "proj"])
def test_bregman_and_projected_reach_the_interior_optimum(backend, kind):
    A, b, x0, _ = _data(interior=True)
    smooth = pu.LeastSquares(pu.DenseOperator(backend.asarray(A)), backend.asarray(b),
                             weight=LAM, ridge=MU)
    res = pu.forward_backward(smooth, _g(kind), backend.asarray(x0), step=_step(A),
                              iterations=400)
    want = np.linalg.solve(LAM * A.T @ A + MU * np.eye(N), LAM * A.T @ b.T).T
    assert want.min() > 0.1
    np.testing.assert_allclose(backend.to_numpy(res.x), want, atol=1e-10)


def _window(method):
    """The truncation window of the torch oracle: b for Truncated(b), None (all steps) else."""
    return method.b if isinstance(method, pu.Truncated) else None


def _torch_loop(kind, A0, bb, x0, xd, step, iterations, window=None):
    """The unrolled loop in plain torch (no pdunroll code) and autograd of ½‖x^L − x†‖² w.r.t. A;
    ``window=b`` detaches x before the last b steps."""
    import torch

    A = torch.tensor(A0, requires_grad=True)
    b, x, xd = torch.tensor(bb), torch.tensor(x0), torch.tensor(xd)
    for k in range(1, iterations + 1):
        if window is not None and k == iterations - window + 1:
            x = x.detach()
        grad = LAM * (x @ A.T - b) @ A + MU * x
        if kind == "proj":
            x = torch.clamp(x - step * grad, min=0.0)
        elif kind == "entropic":
            x = x * torch.exp(-step * grad)
        else:
            x = 1.5 * torch.tanh(torch.atanh(x / 1.5) - step * grad / 1.5)
    loss = 0.5 * torch.sum((x - xd) ** 2)
    return float(loss.detach()), torch.autograd.grad(loss, A)[0].numpy()


@pytest.mark.parametrize("kind", ["proj", "entropic", "box"])
@pytest.mark.parametrize("method", [pu.Full(), pu.Truncated(6)], ids=repr)
def test_gradient_matches_torch_loop(torch_backend, kind, method):
    A, bb, x0, xd = _data()
    res = _grad(torch_backend, kind, method)
    loss, gA = _torch_loop(kind, A, bb, x0, xd, _step(A), L, window=_window(method))
    assert res.loss == pytest.approx(loss, rel=1e-12)
    assert relative_error(torch_backend.to_numpy(res.params), gA) <= 1e-10


@pytest.mark.parametrize("kind", ["proj", "entropic", "box"])
def test_gradient_matches_autograd_of_forward(torch_backend, kind):
    """The same loop: pdunroll.forward_backward on torch tensors with requires_grad=True."""
    import torch

    A0, bb, x0, xd = _data()
    res = _grad(torch_backend, kind, pu.Full())
    A = torch.tensor(A0, requires_grad=True)
    smooth = pu.LeastSquares(pu.DenseOperator(A), torch.tensor(bb), weight=LAM, ridge=MU)
    out = pu.forward_backward(smooth, _g(kind), torch.tensor(x0), step=_step(A0), iterations=L)
    loss = 0.5 * torch.sum((out.x - torch.tensor(xd)) ** 2)
    (gA,) = torch.autograd.grad(loss, A)
    assert relative_error(res.params.detach().numpy(), gA.numpy()) <= 1e-10


@pytest.mark.parametrize("kind", ["proj", "entropic", "box"])
def test_gradient_matches_finite_differences(backend, kind):
    A0 = _data()[0]
    res = _grad(backend, kind, pu.Full())
    V = random_direction(A0.shape)
    fd = directional_fd(lambda A: _grad(backend, kind, pu.Full(), A=A).loss, A0, V)
    assert np.sum(backend.to_numpy(res.params) * V) == pytest.approx(fd, rel=1e-6)


def _ift_gradient(data):
    """dℓ/dA of ℓ = ½‖x*(A) − x†‖², x* = (λAᵀA + μI)⁻¹ λAᵀb (the interior optimum), by central
    differences of the closed form."""
    A0, bb, _, xd = data

    def loss(A):
        x = np.linalg.solve(LAM * A.T @ A + MU * np.eye(N), LAM * A.T @ bb.T).T
        return 0.5 * np.sum((x - xd) ** 2)

    out = np.zeros_like(A0)
    for i in range(M):
        for j in range(N):
            E = np.zeros_like(A0)
            E[i, j] = 1.0
            out[i, j] = directional_fd(loss, A0, E, eps=1e-5)
    return out


@pytest.mark.parametrize("kind", ["proj", "entropic"])
def test_implicit_asymptotic_and_long_unrolling_reach_the_ift_gradient(backend, kind):
    """Interior optimum: Implicit(), Asymptotic(b) with b large and full unrolling (L large) all
    give the implicit-function-theorem derivative of x*(A)."""
    data = _data(interior=True)
    want = _ift_gradient(data)
    impl = _grad(backend, kind, pu.Implicit(), iterations=400, data=data)
    assert impl.info.converged and impl.info.iterations > 0
    assert relative_error(backend.to_numpy(impl.params), want) < 1e-8
    asym = _grad(backend, kind, pu.Asymptotic(400), iterations=400, data=data)
    assert relative_error(backend.to_numpy(asym.params), want) < 1e-8
    full = _grad(backend, kind, pu.Full(), iterations=400, data=data)
    assert relative_error(backend.to_numpy(full.params), want) < 1e-8
    short = _grad(backend, kind, pu.Asymptotic(2), iterations=400, data=data)
    assert relative_error(backend.to_numpy(short.params), want) > 1e-3  # b matters


def test_same_result_on_every_backend(backend, dtype, tol):
    from conftest import _make

    implicit = pu.Implicit(tol=1e-6 if dtype == "float32" else 1e-12)
    for kind, method in [("entropic", pu.Full()), ("box", pu.Truncated(5)),
                         ("entropic", pu.Asymptotic(20)), ("entropic", implicit)]:
        ref = _grad(_make("numpy"), kind, method, data=_data(interior=True), iterations=200)
        res = _grad(backend, kind, method, dtype=dtype, data=_data(interior=True),
                    iterations=200)
        scale = {"float64": 10.0, "float32": 50.0}[dtype]
        np.testing.assert_allclose(backend.to_numpy(res.params), ref.params,
                                   rtol=tol["rtol"] * scale, atol=tol["atol"] * scale * 10)
        assert str(backend.to_numpy(res.params).dtype) == dtype


def test_implicit_reports_a_singular_system(numpy_backend):
    """f ≡ 0 (A = 0, μ = 0): every step is the identity, I − T_x = 0: no garbage, an error."""
    smooth = pu.LeastSquares(pu.DenseOperator(np.zeros((3, 2))), np.ones((1, 3)))
    with pytest.raises(pu.ConvergenceError, match="singular") as err:
        pu.forward_backward_gradient(smooth, pu.NonNegative(), np.ones((1, 2)),
                                     np.zeros((1, 2)), step=0.5, iterations=3,
                                     method=pu.Implicit())
    assert isinstance(err.value, RuntimeError) and not err.value.info.converged
    with pytest.warns(pu.ConvergenceWarning, match="singular"):
        res = pu.forward_backward_gradient(smooth, pu.NonNegative(), np.ones((1, 2)),
                                           np.zeros((1, 2)), step=0.5, iterations=3,
                                           method=pu.Implicit(strict=False))
    assert not res.info.converged


def test_bad_input_raises_clearly(numpy_backend):
    A, bb, x0, xd = _data()
    smooth = pu.LeastSquares(pu.DenseOperator(A), bb)
    g = pu.NonNegative()
    with pytest.raises(ValueError, match="step"):
        pu.forward_backward(smooth, g, x0, step=0.0, iterations=3)
    with pytest.raises(TypeError, match="method must be"):
        pu.forward_backward_gradient(smooth, g, x0, xd, step=0.1, iterations=3, method="exact")
    with pytest.raises(ValueError, match=r"Truncated\(b=4\) needs b <= iterations \(3\)"):
        pu.forward_backward_gradient(smooth, g, x0, xd, step=0.1, iterations=3,
                                     method=pu.Truncated(4))
    # no b is chosen silently (was: b given to a mode without one); CP-only options refused
    with pytest.raises(ValueError, match="needs the number of backward steps"):
        pu.forward_backward_gradient(smooth, g, x0, xd, step=0.1, iterations=3,
                                     method="asymptotic")
    with pytest.raises(ValueError, match="takes no segments and no relax_primal"):
        pu.forward_backward_gradient(smooth, g, x0, xd, step=0.1, iterations=3,
                                     method=pu.Full(segments=2))
    with pytest.raises(ValueError, match="takes no segments and no relax_primal"):
        pu.forward_backward_gradient(smooth, g, x0, xd, step=0.1, iterations=3,
                                     method=pu.Asymptotic(2, relax_primal=True))
    with pytest.raises(TypeError, match="smooth"):
        pu.forward_backward(A, g, x0, step=0.1, iterations=3)
    with pytest.raises(TypeError, match="g must"):
        pu.forward_backward(smooth, pu.SquaredL2, x0, step=0.1, iterations=3)
    with pytest.raises(ValueError, match="x_true"):
        pu.forward_backward_gradient(smooth, g, x0, step=0.1, iterations=3)
    with pytest.raises(ValueError, match="ridge"):
        pu.LeastSquares(pu.DenseOperator(A), bb, ridge=-1.0)


@pytest.mark.parametrize("base", ["proj", "entropic"])
@pytest.mark.parametrize("method", [pu.Full(), pu.Truncated(6)], ids=repr)
def test_cost_gradient_matches_torch_loop(torch_backend, base, method):
    """g = LinearTerm(c, NonNegative | EntropicOrthant): steps along ∇f + c; FBGradient.g is
    ∇ℓ w.r.t. c, against autograd of the plain torch loop."""
    import torch

    A0, bb, x0, xd = _data()
    c0 = 0.3 * np.random.default_rng(9).standard_normal(N)  # one cost shared by the batch
    smooth = pu.LeastSquares(pu.DenseOperator(torch_backend.asarray(A0)),
                             torch_backend.asarray(bb), weight=LAM, ridge=MU)
    g = pu.LinearTerm(torch_backend.asarray(c0), _g(base))
    res = pu.forward_backward_gradient(smooth, g, torch_backend.asarray(x0),
                                       torch_backend.asarray(xd), step=_step(A0), iterations=L,
                                       method=method)
    b = _window(method)
    A, c = torch.tensor(A0, requires_grad=True), torch.tensor(c0, requires_grad=True)
    x = torch.tensor(x0)
    for k in range(1, L + 1):
        if b is not None and k == L - b + 1:
            x = x.detach()
        grad = LAM * (x @ A.T - torch.tensor(bb)) @ A + MU * x + c
        step = _step(A0)
        x = torch.clamp(x - step * grad, min=0.0) if base == "proj" else x * torch.exp(-step * grad)
    loss = 0.5 * torch.sum((x - torch.tensor(xd)) ** 2)
    gA, gc = torch.autograd.grad(loss, (A, c))
    assert relative_error(torch_backend.to_numpy(res.params), gA.numpy()) <= 1e-10
    assert relative_error(torch_backend.to_numpy(res.g), gc.numpy()) <= 1e-10


def test_cost_gradient_of_fixed_point_methods(numpy_backend):
    """Interior optimum, entropic steps: implicit and asymptotic (b large) ∇_c equal the full
    gradient of a long unrolling, which equals −(λAᵀA + μI)⁻¹ (x* − x†) summed over the batch."""
    A, bb, x0, xd = _data(interior=True)
    c0 = 0.01 * np.ones(N)
    smooth = pu.LeastSquares(pu.DenseOperator(A), bb, weight=LAM, ridge=MU)
    g = pu.LinearTerm(c0, pu.EntropicOrthant())
    kw = {"step": _step(A), "iterations": 400}
    full = pu.forward_backward_gradient(smooth, g, x0, xd, **kw)
    impl = pu.forward_backward_gradient(smooth, g, x0, xd, method=pu.Implicit(), **kw)
    asym = pu.forward_backward_gradient(smooth, g, x0, xd, method=pu.Asymptotic(400), **kw)
    H = LAM * A.T @ A + MU * np.eye(N)
    assert full.x.min() > 0.1
    want = -np.linalg.solve(H, (full.x - xd).T).sum(axis=1)
    for res in (full, impl, asym):
        assert relative_error(res.g, want) < 1e-9


def test_composite_operator_with_a_fixed_part(backend):
    """A = diag(w)·∇ (params = (w, ())): LeastSquares.param_vjp and forward_backward_gradient
    walk the nested parameter tuple; the gradient w.r.t. w matches finite differences."""
    rng = np.random.default_rng(11)
    shape = (4, 3)
    w0 = 1.0 + 0.2 * rng.standard_normal((2, *shape))
    bb, x0 = rng.standard_normal((2, 2, *shape)), np.full((2, *shape), 0.5)
    xd = rng.standard_normal((2, *shape))

    def run(w):
        grad = pu.Gradient2d(shape, xp=backend.xp, dtype=backend.dtype("float64"),
                             device=backend.device)
        op = pu.Composition(pu.Diagonal(backend.asarray(w)), grad)
        smooth = pu.LeastSquares(op, backend.asarray(bb), ridge=1.0)
        return pu.forward_backward_gradient(smooth, pu.NonNegative(), backend.asarray(x0),
                                            backend.asarray(xd), step=0.05, iterations=6)

    res = run(w0)
    grad_w, grad_fixed = res.params
    assert grad_fixed == ()
    V = random_direction(w0.shape)
    fd = directional_fd(lambda w: run(w).loss, w0, V)
    assert np.sum(backend.to_numpy(grad_w) * V) == pytest.approx(fd, rel=1e-6)


def test_bad_data_raises_naming_the_argument(numpy_backend, torch_backend):
    """Non-finite x0 / b / x_true used to run to NaN results; b of another backend or of a
    wrong size, and x_true of another batch, failed (or broadcast) deep inside the loop."""
    A, bb, x0, xd = _data()
    op, g = pu.DenseOperator(A), pu.NonNegative()
    smooth = pu.LeastSquares(op, bb)
    with pytest.raises(ValueError, match="x0 contains non-finite"):
        pu.forward_backward(smooth, g, np.full_like(x0, np.nan), step=0.1, iterations=3)
    with pytest.raises(ValueError, match="b contains non-finite"):
        pu.LeastSquares(op, np.full_like(bb, np.inf))
    with pytest.raises(ValueError, match=rf"b must have shape \(batch, {M}\) or broadcast"):
        pu.LeastSquares(op, np.ones((BATCH, M + 1)))
    with pytest.raises(TypeError, match="one backend"):
        pu.LeastSquares(op, torch_backend.asarray(bb))
    with pytest.raises(ValueError, match="x_true has shape"):
        pu.forward_backward_gradient(smooth, g, x0, xd[:1], step=0.1, iterations=3)
    bad = xd.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="x_true contains non-finite"):
        pu.forward_backward_gradient(smooth, g, x0, bad, step=0.1, iterations=3)
    with pytest.raises(ValueError, match="tol must be a positive"):  # was: "residual 0 > -1"
        pu.Implicit(tol=-1.0)
    with pytest.raises(ValueError, match="solver must be one of"):
        pu.Implicit(solver="bicgstab")
    pu.LeastSquares(op, bb[:1])  # one b for the whole batch still broadcasts
    pu.LeastSquares(op, bb[0])
