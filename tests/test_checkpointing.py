"""Checkpointed backpropagation (``checkpoints=c``): the exact full / truncated gradient, with
and without ergodic weights, to rounding on every backend, from c stored states and recomputed
segments; and less memory than storing every step."""

import tracemalloc

import numpy as np
import pytest
from problems import speech_like

import pdunroll as pu

L = 23  # not a multiple of most segment counts: the last segment is shorter
CASES = [("full", None, None), ("full", None, "harmonic"), ("truncated", 9, None),
         ("truncated", 7, "uniform")]


def _run(backend, problem, mode, b, weights, dtype="float64", iterations=L, **kw):
    norm = float(np.linalg.norm(problem.K, 2))
    steps = pu.step_sizes(pu.DenseOperator(problem.K), omega=3.0, op_norm=norm)
    xt, xd = problem.signals(backend, dtype)
    return pu.gradient(problem.model(backend, dtype), xt, xd, iterations=iterations, mode=mode,
                       b=b, weights=weights, sigma=steps.sigma, tau=steps.tau, op_norm=norm, **kw)


@pytest.mark.parametrize("checkpoints", [1, 2, 5, L, 40])
@pytest.mark.parametrize("mode,b,weights", CASES)
def test_checkpointed_equals_stored(backend, mode, b, weights, checkpoints):
    problem = speech_like("l2ball")
    ref = _run(backend, problem, mode, b, weights)
    res = _run(backend, problem, mode, b, weights, checkpoints=checkpoints)
    assert res.loss == ref.loss
    for got, want in ((res.operator, ref.operator), (res.x_tilde, ref.x_tilde), (res.x, ref.x)):
        np.testing.assert_allclose(backend.to_numpy(got), backend.to_numpy(want), rtol=1e-12,
                                   atol=1e-15)


def test_checkpointed_equals_stored_float32_linf(backend):
    problem = speech_like("linf")
    ref = _run(backend, problem, "full", None, "harmonic", dtype="float32")
    res = _run(backend, problem, "full", None, "harmonic", dtype="float32", checkpoints=4)
    np.testing.assert_allclose(backend.to_numpy(res.operator), backend.to_numpy(ref.operator),
                               rtol=1e-5, atol=1e-7)
    assert str(backend.to_numpy(res.operator).dtype) == "float32"


def _peak_bytes(fun):
    tracemalloc.start()
    try:
        fun()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_checkpointing_lowers_peak_memory(numpy_backend):
    """L = 400 steps of a batch of 8 signals, n = m = 64: storing every step needs far more
    memory than √L checkpoints plus one √L-step segment."""
    problem = speech_like("linf", n=64, batch=8)
    iterations = 400

    def run(**kw):
        return _run(numpy_backend, problem, "full", None, None, iterations=iterations, **kw)

    full = _peak_bytes(run)
    checkpointed = _peak_bytes(lambda: run(checkpoints=20))
    step_bytes = 8 * 8 * (2 * 64 + 2 * 64 / 8)  # x̄ and y, float64; two boolean masks
    assert full > 0.8 * iterations * step_bytes
    assert checkpointed < 0.25 * full


@pytest.mark.parametrize("kw,error,match", [
    (dict(method=pu.Asymptotic(3), checkpoints=2), ValueError, "checkpoints is only used"),
    (dict(method=pu.Implicit(), checkpoints=2), ValueError, "checkpoints is only used"),
    (dict(method=pu.Full(), checkpoints=0), ValueError, "checkpoints must be an integer >= 1"),
    (dict(method=pu.Full(), checkpoints=2.0), TypeError, "checkpoints must be an integer"),
])
def test_bad_arguments(numpy_backend, kw, error, match):
    problem = speech_like("l2ball")
    mode = kw.pop("mode")
    with pytest.raises(error, match=match):
        _run(numpy_backend, problem, mode, kw.pop("b", None), None, iterations=5, **kw)


@pytest.mark.parametrize("mode,b,weights", [("full", None, "harmonic"), ("truncated", 9, None)])
def test_checkpointed_function_parameter_gradients(backend, mode, b, weights):
    """The F and G parameter gradients (learnable costs c_f, c_g) too."""
    problem = speech_like("l2ball")
    rng = np.random.default_rng(3)
    c_f = backend.asarray(0.1 * rng.standard_normal(problem.K.shape[0]))
    c_g = backend.asarray(0.1 * rng.standard_normal(problem.x_tilde.shape))
    model = pu.AnalysisModel(pu.DenseOperator(backend.asarray(problem.K)),
                             pu.LinearTerm(c_f, pu.L1Norm()),
                             pu.LinearTerm(c_g, problem.function_g()))
    xt, xd = problem.signals(backend)
    kw = dict(iterations=L, mode=mode, b=b, weights=weights, omega=3.0)
    ref = pu.gradient(model, xt, xd, **kw)
    res = pu.gradient(model, xt, xd, checkpoints=4, **kw)
    for got, want in ((res.f, ref.f), (res.g, ref.g), (res.operator, ref.operator)):
        np.testing.assert_allclose(backend.to_numpy(got), backend.to_numpy(want), rtol=1e-12,
                                   atol=1e-15)


def test_checkpointed_bregman_steps(backend):
    """Box-Bregman (tanh) primal and dual steps: the carried state has ε_P, ε_D ≠ δ_P, δ_D."""
    problem = speech_like("linf")
    model = pu.AnalysisModel(pu.DenseOperator(backend.asarray(problem.K)),
                             pu.BoxBregmanL1Norm(), pu.BoxBregmanLinfBall(problem.radius))
    xt, xd = problem.signals(backend)
    kw = dict(iterations=L, weights="harmonic", omega=3.0)
    ref = pu.gradient(model, xt, xd, **kw)
    res = pu.gradient(model, xt, xd, checkpoints=3, **kw)
    for got, want in ((res.operator, ref.operator), (res.x_tilde, ref.x_tilde)):
        np.testing.assert_allclose(backend.to_numpy(got), backend.to_numpy(want), rtol=1e-12,
                                   atol=1e-15)
