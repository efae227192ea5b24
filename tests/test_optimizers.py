"""Optimizers and learning-rate schedules against NumPy transcriptions of their formulas."""

import numpy as np
import pytest

import pdunroll as pu
from pdunroll.tree import flatten


def _reference_adam(p, grads, lr, b1=0.9, b2=0.999, eps=1e-8):
    m = np.zeros_like(p)
    v = np.zeros_like(p)
    for t, g in enumerate(grads, start=1):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        p = p - lr * (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps)
    return p


def test_adam_matches_formula(backend, dtype, tol):
    rng = np.random.default_rng(0)
    p0 = rng.standard_normal((4, 3))
    grads = [rng.standard_normal((4, 3)) for _ in range(5)]
    opt = pu.Adam()
    p = backend.asarray(p0, dtype)
    state = opt.init(p)
    for g in grads:
        p, state = opt.update(p, backend.asarray(g, dtype), state, 0.01)
    assert state["step"] == 5
    np.testing.assert_allclose(backend.to_numpy(p), _reference_adam(p0, grads, 0.01), **tol)


def test_sgd_momentum_and_tuple_params(backend, dtype, tol):
    rng = np.random.default_rng(1)
    a0, b0 = rng.standard_normal((3, 3)), rng.standard_normal(5)
    grads = [(rng.standard_normal((3, 3)), rng.standard_normal(5)) for _ in range(3)]
    opt = pu.SGD(momentum=0.5)
    params = (backend.asarray(a0, dtype), backend.asarray(b0, dtype))
    state = opt.init(params)
    for g in grads:
        params, state = opt.update(params, tuple(backend.asarray(x, dtype) for x in g), state, 0.1)
    assert isinstance(params, tuple)
    ref = []
    for k, p0 in enumerate((a0, b0)):
        vel, p = np.zeros_like(p0), p0
        for g in grads:
            vel = 0.5 * vel + g[k]
            p = p - 0.1 * vel
        ref.append(p)
    for got, want in zip(flatten(params), ref, strict=True):
        np.testing.assert_allclose(backend.to_numpy(got), want, **tol)


def test_grad_norm_is_frobenius_over_leaves(numpy_backend):
    a, b = np.arange(6.0).reshape(2, 3), np.array([3.0, 4.0])
    assert pu.grad_norm((a, b)) == pytest.approx(np.sqrt(np.sum(a * a) + 25.0))


def test_learning_rate_schedules():
    assert pu.LearningRate(0.1)(7, 10) == 0.1
    lin = pu.LearningRate(1e-3, "linear", final=1e-6)
    assert lin(0, 11) == pytest.approx(1e-3)
    assert lin(10, 11) == pytest.approx(1e-6)
    assert lin(5, 11) == pytest.approx((1e-3 + 1e-6) / 2)
    poly = pu.LearningRate(1.0, "polynomial", final=0.0, power=2.0)
    assert poly(5, 11) == pytest.approx(0.25)
    inv = pu.LearningRate(1.0, "inverse")
    assert [inv(k, 100) for k in range(3)] == pytest.approx([1.0, 0.5, 1 / 3])
    assert pu.LearningRate(2.0, "linear")(9, 10) == pytest.approx(2e-3)  # final = initial/1000
    # a linear warm-up over the first ⌈0.2 · 21⌉ = 5 steps, then the schedule itself
    warm = pu.LearningRate(1e-3, "linear", final=1e-6, warmup=0.2)
    plain = pu.LearningRate(1e-3, "linear", final=1e-6)
    assert [warm(k, 21) for k in range(5)] == pytest.approx(
        [plain(k, 21) * (k + 1) / 5 for k in range(5)])
    assert [warm(k, 21) for k in range(5, 21)] == [plain(k, 21) for k in range(5, 21)]
    assert pu.LearningRate(**warm.settings()) == warm
    assert "warmup" not in plain.settings()  # a run without it records what it always did


@pytest.mark.parametrize("kwargs, match", [
    ({"initial": -1.0}, "initial learning rate"),
    ({"initial": 1.0, "schedule": "cosine"}, "schedule"),
    ({"initial": 1.0, "schedule": "linear", "final": 2.0}, "final learning rate"),
    ({"initial": 1.0, "warmup": 1.0}, "warmup must be a fraction"),
    ({"initial": 1.0, "warmup": -0.1}, "warmup must be a fraction"),
])
def test_learning_rate_rejects_bad_settings(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        pu.LearningRate(**kwargs)


def test_make_optimizer():
    assert isinstance(pu.make_optimizer("adam"), pu.Adam)
    assert pu.make_optimizer({"name": "sgd", "momentum": 0.9}).momentum == 0.9
    with pytest.raises(ValueError, match="optimizer"):
        pu.make_optimizer("rmsprop")
    with pytest.raises(ValueError, match="beta1"):
        pu.Adam(beta1=1.0)
    with pytest.raises(ValueError, match="momentum"):
        pu.SGD(momentum=-0.1)
