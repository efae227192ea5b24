"""The benchmark suite compares pdunroll with reference implementations of the same gradient
(benchmarks/benchmarks/baselines.py, bench_images.py): check that they compute the same loss and
gradients as pdunroll.gradient, so the timings compare like with like."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

import pdunroll as pu

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from benchmarks import baselines as bl  # noqa: E402
from benchmarks import common  # noqa: E402

L = 12


@pytest.fixture(scope="module")
def problem():
    return common.speech_problem(batch=3, n=20, seed=1)


@pytest.fixture(scope="module")
def reference(problem):
    p = problem
    model = pu.AnalysisModel(pu.DenseOperator(p.K), pu.L1Norm(), pu.LinfBall(p.radius))
    steps = pu.step_sizes(model.operator, sigma=p.sigma, tau=p.tau, theta=p.theta,
                          op_norm=p.op_norm)
    return pu.gradient(model, p.x_tilde, p.x_true, iterations=L, steps=steps)


def _close(result, reference):
    loss, grad_k, grad_x = (np.asarray(a, dtype=np.float64) if i else a
                            for i, a in enumerate(result))
    assert loss == pytest.approx(reference.loss, rel=1e-12)
    np.testing.assert_allclose(grad_k, reference.operator, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(grad_x, reference.x_tilde, rtol=1e-10, atol=1e-13)


def test_problem_is_the_published_setting():
    p = common.speech_problem(batch=4, n=32)
    assert p.x_tilde.shape == (4, 32) and p.K.shape == (32, 32)
    assert p.radius == 1 / 16 and p.sigma * p.tau * p.op_norm**2 == pytest.approx(0.99**2)
    assert np.max(np.abs(p.x_tilde - p.x_true)) <= p.radius + 1e-12  # quantization error ≤ Δ/2


def test_benchmark_modes_are_the_published_methods():
    """The asv parameter "mode" names a gradient method: b = 30 (truncated: min(30, L))."""
    assert common.gradient_method("full", 100) == pu.Full()
    assert common.gradient_method("truncated", 100) == pu.Truncated(30)
    assert common.gradient_method("truncated", 10) == pu.Truncated(10)
    assert common.gradient_method("asymptotic", 10) == pu.Asymptotic(30)
    with pytest.raises(ValueError, match="unknown gradient method"):
        common.gradient_method("implicit-ish", 10)


def test_plain_numpy_matches_pdunroll(problem, reference):
    _close(bl.plain_numpy_gradient(problem.K, problem.x_tilde, problem.x_true, problem, L),
           reference)


def test_torch_references_match_pdunroll(problem, reference):
    torch = pytest.importorskip("torch", reason="torch is not installed")
    p = problem
    K, xt, x = (torch.tensor(a) for a in (p.K, p.x_tilde, p.x_true))
    _close(bl.plain_torch_gradient(K, xt, x, p, L), reference)
    K.requires_grad_(True)
    xt.requires_grad_(True)
    loss, gk, gx = bl.torch_autograd_gradient(K, xt, x, p, L)
    _close((loss, gk.detach(), gx.detach()), reference)
    saved = bl.torch_autograd_saved_bytes(K, xt, x, p, L)
    assert saved >= 4 * L * xt.numel() * 8  # x̄, z_D, y, z_P per step


def test_jax_reference_matches_pdunroll(problem, reference):
    jax = pytest.importorskip("jax", reason="jax is not installed")
    jax.config.update("jax_enable_x64", True)
    p = problem
    value, (gk, gx) = bl.jax_grad_function(p, L)(*(jax.numpy.asarray(a)
                                                    for a in (p.K, p.x_tilde, p.x_true)))
    _close((float(value), gk, gx), reference)


def test_floor_does_the_products_of_a_gradient(problem):
    p = problem
    y, stack_a, stack_b = bl.floor_arrays(np.concatenate, p.K, p.x_tilde, L)
    assert y.shape == (3, 20) and stack_a.shape[1] == 20 and stack_b.shape == stack_a.shape
    u, v, w = bl.floor_gradient(p.K, p.x_tilde, y, stack_a, stack_b, L)
    np.testing.assert_allclose(u, p.x_tilde @ p.K.T)
    np.testing.assert_allclose(w, stack_a.T @ stack_b)


def test_image_autograd_reference_matches_pdunroll(monkeypatch):
    pytest.importorskip("torch", reason="torch is not installed")
    from benchmarks import bench_images as bi

    monkeypatch.setattr(bi, "SIZE", 16)
    monkeypatch.setattr(bi, "FILTERS", 3)
    monkeypatch.setattr(bi, "ITER", 3)
    lib = bi.FilterBankGradient()
    lib.setup("numpy", "float64", "full")
    res = lib._run()
    ref = bi.FilterBankAutograd()
    ref.setup("cpu", "float64")
    gk, gx = ref.run()
    np.testing.assert_allclose(res.operator, gk.detach().numpy()[:, 0], rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(res.x_tilde, gx.detach().numpy()[:, 0], rtol=1e-10, atol=1e-13)
