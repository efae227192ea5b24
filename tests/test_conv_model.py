"""The image-denoising model of the Brauer & Lorenz poster (docs, Mathematics §1): F = ‖·‖₁ of
filter-bank responses, G = indicator of the ℓ2 ball ‖r‖ ≤ s·√(#pixels). Exact gradient checks of
every method on small images (finite differences, torch.autograd) and the published size (48
filters 7×7, 256×256) end to end."""

import numpy as np
import pytest
from conftest import relative_error
from oracles import directional_fd, random_direction
from unrolled_oracles import asymptotic_grads, unrolled_loss

import pdunroll as pu

NOISE = 0.1


def dct_filters(k: int) -> np.ndarray:
    """The k²−1 separable 2-D DCT-II filters of size k×k without the constant one."""
    c = pu.dct_matrix(k)
    bank = np.einsum("ai,bj->abij", c, c).reshape(k * k, k, k)
    return bank[1:]


def test_dct_filters_shape():
    assert dct_filters(7).shape == (48, 7, 7)


def _image(size, seed=0):
    """A piecewise-smooth test image in [0, 1] and a noisy copy."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 1, size)
    img = 0.5 + 0.3 * np.sign(np.sin(5 * t[:, None] + 3 * t[None, :] ** 2))
    img = img + 0.15 * np.cos(7 * t[None, :])
    return img[None], img[None] + NOISE * rng.standard_normal((1, size, size))


def _model(backend, filters, size, boundary="periodic", dtype="float64"):
    op = pu.Conv2dFilterBank(backend.asarray(filters, dtype), (size, size), boundary)
    return pu.AnalysisModel(op, pu.L1Norm(), pu.L2Ball(NOISE * size))


# ---- small images: every method exact -----------------------------------------------------

SMALL, L = 12, 6
SMALL_FILTERS = (0.5 * dct_filters(3)[[0, 2, 4, 7]]
                 + 0.05 * np.random.default_rng(3).standard_normal((4, 3, 3)))
METHODS = [(pu.Full(), None), (pu.Truncated(3), None), (pu.Full(), "harmonic"),
           (pu.Truncated(2), "uniform"), (pu.Asymptotic(1), None), (pu.Asymptotic(4), None)]


def _small_steps(boundary):
    op = pu.Conv2dFilterBank(SMALL_FILTERS, (SMALL, SMALL), boundary)
    return pu.step_sizes(op, omega=2.0)


@pytest.mark.parametrize("boundary", ["periodic", "zero"])
@pytest.mark.parametrize("method,weights", METHODS)
def test_small_conv_model_matches_torch_autograd(torch_backend, boundary, method, weights):
    import torch

    x_true, x_tilde = _image(SMALL)
    steps = _small_steps(boundary)
    res = pu.gradient(_model(torch_backend, SMALL_FILTERS, SMALL, boundary),
                      torch_backend.asarray(x_tilde), torch_backend.asarray(x_true),
                      iterations=L, method=method, weights=weights, steps=steps)
    h = torch.tensor(SMALL_FILTERS, requires_grad=True)
    model = pu.AnalysisModel(pu.Conv2dFilterBank(h, (SMALL, SMALL), boundary), pu.L1Norm(),
                             pu.L2Ball(NOISE * SMALL))
    xt = torch.tensor(x_tilde, requires_grad=True)
    xd = torch.tensor(x_true)
    if isinstance(method, pu.Asymptotic):
        detached = pu.Conv2dFilterBank(h.detach(), (SMALL, SMALL), boundary)
        loss, gx, (gh,) = asymptotic_grads(model, xt, xd, steps, L, method.b, [h], detached)
    else:
        out = unrolled_loss(model, xt, xd, steps, L, alphas=pu.ergodic_weights(weights, L),
                            window=method.b if isinstance(method, pu.Truncated) else None)
        loss = float(out.detach())
        gh, gx = torch.autograd.grad(out, (h, xt))
    assert res.loss == pytest.approx(loss, rel=1e-12)
    assert relative_error(torch_backend.to_numpy(res.operator), gh.detach().numpy()) <= 1e-10
    assert relative_error(torch_backend.to_numpy(res.x_tilde), gx.detach().numpy()) <= 1e-10


@pytest.mark.parametrize("weights", [None, "harmonic"])
def test_small_conv_model_matches_finite_differences(backend, weights):
    x_true, x_tilde = _image(SMALL)
    steps = _small_steps("periodic")
    kw = dict(iterations=L, weights=weights, steps=steps)
    xt, xd = backend.asarray(x_tilde), backend.asarray(x_true)
    res = pu.gradient(_model(backend, SMALL_FILTERS, SMALL), xt, xd, **kw)
    V = random_direction(SMALL_FILTERS.shape, seed=4)
    fd = directional_fd(lambda h: pu.gradient(_model(backend, h, SMALL), xt, xd, **kw).loss,
                        SMALL_FILTERS, V)
    assert abs(fd) > 1e-3  # the check is not vacuous
    assert np.sum(backend.to_numpy(res.operator) * V) == pytest.approx(fd, rel=1e-6)
    W = random_direction(x_tilde.shape, seed=5)
    fd_x = directional_fd(
        lambda x: pu.gradient(_model(backend, SMALL_FILTERS, SMALL), backend.asarray(x), xd,
                              **kw).loss, x_tilde, W)
    assert np.sum(backend.to_numpy(res.x_tilde) * W) == pytest.approx(fd_x, rel=1e-6)


# ---- the published size: 48 filters 7×7 on a 256×256 image --------------------------------

BIG, BIG_L = 256, 3


@pytest.mark.slow
@pytest.mark.parametrize("name", ["numpy", "torch"])
def test_published_size_runs_every_method(name, numpy_backend, torch_backend):
    backend = numpy_backend if name == "numpy" else torch_backend
    filters = 0.1 * dct_filters(7)
    x_true, x_tilde = _image(BIG)
    model = _model(backend, filters, BIG)
    xt, xd = backend.asarray(x_tilde), backend.asarray(x_true)
    op_norm = model.operator.norm()
    # the 49 DCT filters are an orthonormal basis: Σ_c |ĥ_c(ω)|² = 49 − |ĥ_DC(ω)|² ≤ 49
    assert 0.1 * 6.9 < op_norm <= 0.1 * 7 * (1 + 1e-12)
    result = pu.chambolle_pock(model, xt, iterations=BIG_L, omega=10.0)
    x = backend.to_numpy(result.x)
    assert x.shape == (1, BIG, BIG) and np.all(np.isfinite(x))
    assert np.linalg.norm(x - x_tilde) <= NOISE * BIG * (1 + 1e-12)  # inside the ℓ2 ball
    assert np.linalg.norm(x - x_true) < np.linalg.norm(x_tilde - x_true)  # it denoises
    kw = dict(iterations=BIG_L, steps=pu.step_sizes(model.operator, omega=10.0, op_norm=op_norm))
    runs = {
        "full": pu.gradient(model, xt, xd, **kw),
        "truncated": pu.gradient(model, xt, xd, method=pu.Truncated(2), **kw),
        "asymptotic": pu.gradient(model, xt, xd, method=pu.Asymptotic(2), **kw),
        "ergodic": pu.gradient(model, xt, xd, weights="harmonic", **kw),
    }
    for res in runs.values():
        g = backend.to_numpy(res.operator)
        assert g.shape == (48, 7, 7) and np.all(np.isfinite(g)) and np.linalg.norm(g) > 0
        assert backend.to_numpy(res.x_tilde).shape == (1, BIG, BIG)
    full = backend.to_numpy(runs["full"].operator)
    # exact at this size too (each step's parameter-VJP is its own product here, unlike on small
    # images): one directional finite difference
    V = random_direction(filters.shape, seed=6)
    fd = directional_fd(lambda h: pu.gradient(_model(backend, h, BIG), xt, xd, **kw).loss,
                        filters, V, eps=1e-5)
    assert np.sum(full * V) == pytest.approx(fd, rel=1e-5)
