"""The per-label TV segmentation model (Ochs et al., §8): its value, the gradient w.r.t. the costs c
(ergodic entropic primal-dual) against torch.autograd of pdunroll.unroll.forward.forward and against
finite differences, the cross-entropy loss, and the CNN pipeline of experiments/segmentation.py
(one training step lowers the loss; a tiny run writes its outputs)."""

import csv
import importlib
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import relative_error

import pdunroll as pu
from pdunroll.unroll.forward import forward

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
SHAPE = (2, 3, 5, 6)  # batch, labels, H, W
LAM, L = 0.3, 8


def _data(seed=0):
    rng = np.random.default_rng(seed)
    costs = rng.standard_normal(SHAPE)
    labels = rng.integers(0, SHAPE[1], (SHAPE[0], *SHAPE[2:]))
    onehot = (labels[:, None] == np.arange(SHAPE[1])[None, :, None, None]).astype(np.float64)
    return costs, onehot


def _gradient(backend, dtype, costs, onehot, *, entropic=True, weights="uniform", **kw):
    c = backend.asarray(costs, dtype)
    model = pu.segmentation_model(c, LAM, entropic=entropic)
    return pu.gradient(model, c * 0, iterations=L, weights=weights,
                       loss=pu.segmentation_loss(backend.asarray(onehot, dtype)), **kw)


def test_model_value_is_costs_plus_per_label_tv():
    """P(u) = ⟨c, u⟩ + λ Σ_l Σ_pixels ‖(D u_l)(pixel)‖₂ at a point of the simplex, x̃ = 0."""
    costs, _ = _data()
    rng = np.random.default_rng(1)
    u = rng.uniform(0.1, 1, SHAPE)
    u /= u.sum(axis=1, keepdims=True)
    model = pu.segmentation_model(costs, LAM)
    assert model.operator.out_shape == (3, 2, 5, 6)
    dr = np.concatenate([np.diff(u, axis=2), np.zeros((2, 3, 1, 6))], axis=2)
    dc = np.concatenate([np.diff(u, axis=3), np.zeros((2, 3, 5, 1))], axis=3)
    want = (np.sum(costs * u, axis=(1, 2, 3))
            + LAM * np.sum(np.sqrt(dr**2 + dc**2), axis=(1, 2, 3)))
    got = model.f.value(model.operator.apply(u)) + model.g.value(u)
    np.testing.assert_allclose(got, want, rtol=1e-13)


@pytest.mark.parametrize("entropic", [True, False])
def test_solution_lies_on_the_simplex_and_smooths(backend, entropic):
    """u = x̂ on the pixelwise simplex; with λ large the labels are constant over each image
    (the label of least total cost); with λ tiny, u picks argmin c per pixel."""
    costs, _ = _data()
    c = backend.asarray(costs)
    for lam, want in ((50.0, np.broadcast_to(costs.sum(axis=(2, 3)).argmin(axis=1)[:, None, None],
                                             (2, 5, 6))),
                      (1e-4, costs.argmin(axis=1))):
        res = pu.chambolle_pock(pu.segmentation_model(c, lam, entropic=entropic), c * 0,
                                iterations=200, weights="uniform")
        u = backend.to_numpy(res.x)
        np.testing.assert_allclose(u.sum(axis=1), 1, atol=1e-12)
        assert u.min() >= 0
        np.testing.assert_array_equal(u.argmax(axis=1), want)


@pytest.mark.parametrize("entropic", [True, False])
@pytest.mark.parametrize("weights", ["uniform", None])
def test_cost_gradient_matches_autograd_of_forward(backend, entropic, weights):
    """res.g (∇ℓ w.r.t. c, hand-written) = torch.autograd of the same unrolled loop."""
    torch = pytest.importorskip("torch", reason="torch is not installed (the oracle)")
    import array_api_compat.torch  # noqa: F401 - the namespace of torch tensors

    costs, onehot = _data()
    res = _gradient(backend, "float64", costs, onehot, entropic=entropic, weights=weights)
    c = torch.tensor(costs, requires_grad=True)
    model = pu.segmentation_model(c, LAM, entropic=entropic)
    alphas = pu.ergodic_weights(weights, L)
    state = forward(model, torch.zeros_like(c), res.steps, L, alphas=alphas)
    u = state.r if alphas is None else state.r_avg
    loss = -torch.sum(torch.tensor(onehot) * torch.log(u + 1e-6)) / (2 * 5 * 6)
    (want,) = torch.autograd.grad(loss, c)
    assert res.loss == pytest.approx(float(loss.detach()), rel=1e-12)
    assert relative_error(backend.to_numpy(res.g), want.numpy()) <= 1e-10
    np.testing.assert_allclose(backend.to_numpy(res.x), u.detach().numpy(), rtol=1e-12,
                               atol=1e-14)


def test_cost_gradient_float32(backend):
    costs, onehot = _data()
    want = _gradient(backend, "float64", costs, onehot).g
    got = _gradient(backend, "float32", costs, onehot).g
    assert relative_error(backend.to_numpy(got), backend.to_numpy(want)) <= 1e-4


def test_cost_gradient_matches_finite_differences(numpy_backend):
    costs, onehot = _data()
    res = _gradient(numpy_backend, "float64", costs, onehot)
    direction = np.random.default_rng(3).standard_normal(SHAPE)
    eps = 1e-6

    def loss(c):
        return _gradient(numpy_backend, "float64", c, onehot).loss

    fd = (loss(costs + eps * direction) - loss(costs - eps * direction)) / (2 * eps)
    assert np.sum(res.g * direction) == pytest.approx(fd, rel=1e-7)


def test_segmentation_loss_value_and_gradient(backend):
    rng = np.random.default_rng(4)
    u = rng.uniform(0.05, 1, SHAPE)
    _, onehot = _data()
    value, grad = pu.segmentation_loss(backend.asarray(onehot), eps=1e-3)(backend.asarray(u))
    assert value == pytest.approx(-np.sum(onehot * np.log(u + 1e-3)) / 60, rel=1e-13)
    np.testing.assert_allclose(backend.to_numpy(grad), -onehot / (60 * (u + 1e-3)), rtol=1e-13)


def test_bad_input():
    costs, onehot = _data()
    with pytest.raises(ValueError, match="costs must have shape"):
        pu.segmentation_model(costs[0], LAM)
    with pytest.raises(ValueError, match="at least 2 labels"):
        pu.segmentation_model(costs[:, :1], LAM)
    with pytest.raises(ValueError, match="tv_weight"):
        pu.segmentation_model(costs, -1.0)
    with pytest.raises(TypeError, match="costs must be an array"):
        pu.segmentation_model(costs.tolist(), LAM)
    with pytest.raises(ValueError, match="onehot must have shape"):
        pu.segmentation_loss(onehot[0])
    with pytest.raises(ValueError, match="u has shape"):
        pu.segmentation_loss(onehot)(costs[:, :2])


def _script():
    pytest.importorskip("torch", reason="torch is not installed (the example's CNN needs it)")
    sys.path.insert(0, str(EXPERIMENTS))
    try:
        return importlib.import_module("segmentation")
    finally:
        sys.path.remove(str(EXPERIMENTS))


def test_one_training_step_lowers_the_loss():
    """tv_step: CNN costs → the torch layer → cross-entropy → backward → Adam; the CNN's
    gradients are those of pu.gradient's ∇_c pushed in by hand (c.backward(res.g)), and the
    same batch's loss drops."""
    seg = _script()
    import torch

    images, labels = seg.synthetic_images(4, 12, 0.5, np.random.default_rng(0))
    images = torch.from_numpy(images).double()
    target = torch.from_numpy(seg.onehot(labels)).double()
    net = seg.make_cnn(width=4).double()
    costs = net(images)
    model = pu.segmentation_model(costs.detach(), 0.5)
    res = pu.gradient(model, torch.zeros_like(costs), iterations=10, weights="uniform",
                      loss=pu.segmentation_loss(target))
    costs.backward(res.g)
    by_hand = [p.grad.clone() for p in net.parameters()]
    net.zero_grad()

    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    layer = seg.tv_layer(torch.zeros_like(costs), tv_weight=0.5, iterations=10)
    before = seg.tv_step(net, opt, layer, images, target)
    assert before == pytest.approx(res.loss, rel=1e-12)
    for p, want in zip(net.parameters(), by_hand, strict=True):
        assert relative_error(p.grad, want) <= 1e-10
    after = seg.tv_step(net, opt, layer, images, target)
    assert after < before


def test_script_writes_outputs(tmp_path):
    seg = _script()
    argv = ["--out", str(tmp_path), "--size", "10", "--train", "8", "--test", "4", "--steps",
            "3", "--batch", "4", "--L", "4", "--quiet"]
    assert seg.main(argv) == 0
    with open(tmp_path / "accuracy.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["prediction"] for r in rows] == ["argmin c", "argmax u", "argmin c", "argmax u"]
    assert all(0 <= float(r["pixel_accuracy"]) <= 1 and 0 <= float(r["mean_iou"]) <= 1
               for r in rows)
    with open(tmp_path / "training.csv") as fh:
        assert len(list(csv.DictReader(fh))) == 3
    assert (tmp_path / "segmentation.png").stat().st_size > 0


def test_non_finite_costs_and_labels_name_the_argument():
    """NaN costs were reported as 'c contains non-finite values' (LinearTerm's name), NaN
    labels not at all."""
    costs = np.zeros((1, 2, 3, 3))
    costs[0, 1, 2, 2] = np.nan
    with pytest.raises(ValueError, match="costs contains non-finite"):
        pu.segmentation_model(costs, 0.1)
    with pytest.raises(ValueError, match="onehot contains non-finite"):
        pu.segmentation_loss(costs)
