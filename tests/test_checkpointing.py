"""Checkpointed backpropagation (``Full(segments=c)``, ``Truncated(b, segments=c)``): the exact
full / truncated gradient, with and without ergodic weights, to rounding on every backend, from c
stored states and recomputed segments; and less memory than storing every step."""

import dataclasses
import tracemalloc

import numpy as np
import pytest
from problems import speech_like

import pdunroll as pu

L = 23  # not a multiple of most segment counts: the last segment is shorter
CASES = [(pu.Full(), None), (pu.Full(), "harmonic"), (pu.Truncated(9), None),
         (pu.Truncated(7), "uniform")]


def _segmented(method, segments):
    """``method`` with ``segments`` (the constructor checks it again)."""
    return dataclasses.replace(method, segments=segments)


def _run(backend, problem, method, weights, dtype="float64", iterations=L):
    norm = float(np.linalg.norm(problem.K, 2))
    steps = pu.step_sizes(pu.DenseOperator(problem.K), omega=3.0, op_norm=norm)
    xt, xd = problem.signals(backend, dtype)
    return pu.gradient(problem.model(backend, dtype), xt, xd, iterations=iterations,
                       method=method, weights=weights, steps=steps)


@pytest.mark.parametrize("segments", [1, 2, 5, L, 40])
@pytest.mark.parametrize("method,weights", CASES)
def test_checkpointed_equals_stored(backend, method, weights, segments):
    problem = speech_like("l2ball")
    ref = _run(backend, problem, method, weights)
    res = _run(backend, problem, _segmented(method, segments), weights)
    assert res.method.segments == segments and ref.method.segments is None
    assert res.loss == ref.loss
    for got, want in ((res.operator, ref.operator), (res.x_tilde, ref.x_tilde), (res.x, ref.x)):
        np.testing.assert_allclose(backend.to_numpy(got), backend.to_numpy(want), rtol=1e-12,
                                   atol=1e-15)


def test_checkpointed_equals_stored_float32_linf(backend):
    problem = speech_like("linf")
    ref = _run(backend, problem, pu.Full(), "harmonic", dtype="float32")
    res = _run(backend, problem, pu.Full(segments=4), "harmonic", dtype="float32")
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

    def run(method):
        return _run(numpy_backend, problem, method, None, iterations=iterations)

    full = _peak_bytes(lambda: run(pu.Full()))
    checkpointed = _peak_bytes(lambda: run(pu.Full(segments=20)))
    step_bytes = 8 * 8 * (2 * 64 + 2 * 64 / 8)  # x̄ and y, float64; two boolean masks
    assert full > 0.8 * iterations * step_bytes
    assert checkpointed < 0.25 * full


@pytest.mark.parametrize("make,error,match", [
    (lambda: pu.Full(segments=0), ValueError, "segments must be an integer >= 1, got 0"),
    (lambda: pu.Full(segments=-2), ValueError, "segments must be an integer >= 1"),
    (lambda: pu.Full(segments=2.0), TypeError, "segments must be an integer >= 1, got 2.0"),
    (lambda: pu.Full(segments=True), TypeError, "segments must be an integer"),
    (lambda: pu.Truncated(3, segments=0), ValueError, "segments must be an integer >= 1"),
    (lambda: pu.Truncated(3, segments="2"), TypeError, "segments must be an integer"),
    (lambda: dataclasses.replace(pu.Full(segments=2), segments=0), ValueError,
     "segments must be an integer >= 1"),
    # the methods that store no steps have no segments to choose
    (lambda: pu.Asymptotic(3, segments=2), TypeError, "unexpected keyword argument 'segments'"),
    (lambda: pu.Implicit(segments=2), TypeError, "unexpected keyword argument 'segments'"),
])
def test_methods_refuse_bad_segments(make, error, match):
    with pytest.raises(error, match=match):
        make()


@pytest.mark.parametrize("method,weights", [(pu.Full(), "harmonic"), (pu.Truncated(9), None)])
def test_checkpointed_function_parameter_gradients(backend, method, weights):
    """The F and G parameter gradients (learnable costs c_f, c_g) too."""
    problem = speech_like("l2ball")
    rng = np.random.default_rng(3)
    c_f = backend.asarray(0.1 * rng.standard_normal(problem.K.shape[0]))
    c_g = backend.asarray(0.1 * rng.standard_normal(problem.x_tilde.shape))
    model = pu.AnalysisModel(pu.DenseOperator(backend.asarray(problem.K)),
                             pu.LinearTerm(c_f, pu.L1Norm()),
                             pu.LinearTerm(c_g, problem.function_g()))
    xt, xd = problem.signals(backend)
    kw = dict(iterations=L, weights=weights, omega=3.0)
    ref = pu.gradient(model, xt, xd, method=method, **kw)
    res = pu.gradient(model, xt, xd, method=_segmented(method, 4), **kw)
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
    res = pu.gradient(model, xt, xd, method=pu.Full(segments=3), **kw)
    for got, want in ((res.operator, ref.operator), (res.x_tilde, ref.x_tilde)):
        np.testing.assert_allclose(backend.to_numpy(got), backend.to_numpy(want), rtol=1e-12,
                                   atol=1e-15)
