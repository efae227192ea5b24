"""A learned model is one object: it reconstructs as it was trained (L, step rule, output
weights, dtype) without any setting passed, after a save and a load, from files of every format
version; filter-bank models apply to any signal size."""

from pathlib import Path

import numpy as np
import pytest

import pdunroll as pu

DATA = Path(__file__).parent / "data"


def _speech(n=16, frames=48, seed=0):
    signals = pu.synthetic_speech(2, seconds=0.1, seed=seed)
    f = pu.speech_frames(signals, n=n, bitrate=4)
    return f.x_tilde[:frames], f.x_true[:frames], f.eta


def test_trained_speech_model_reconstructs_as_trained_after_a_load(numpy_backend, tmp_path):
    """Trained through the API with ω = 30, L = 6 and harmonic weights: the loaded model's
    reconstruct (no setting passed) equals the reconstruction with the training settings bit
    for bit, and differs from one at another ω (the settings matter)."""
    x_tilde, x_true, eta = _speech()
    start = pu.AnalysisModel(pu.DenseOperator(pu.dct_matrix(16)), pu.L1Norm(), pu.LinfBall(eta))
    config = {"iterations": 6, "omega": 30.0, "weights": "harmonic", "epochs": 1,
              "batch_size": 16, "method": pu.Truncated(3)}
    res = pu.train(start, x_tilde[:32], x_true[:32], validation=(x_tilde[32:], x_true[32:]),
                   progress=False, **config)
    learned = pu.LearnedModel.from_training(res, config, metadata={"task": "speech", "n": 16},
                                            data={"kind": "synthetic"})
    path = learned.save(tmp_path / "speech.npz")
    loaded = pu.load_model(path)
    assert (loaded.iterations, loaded.steps.omega, loaded.weights) == (6, 30.0, "harmonic")
    assert loaded.method == pu.Truncated(3) and loaded.metadata["n"] == 16
    assert loaded.data == {"kind": "synthetic"} and loaded.settings == learned.settings
    expected = pu.reconstruct(res.model, x_tilde, iterations=6, omega=30.0, weights="harmonic")
    np.testing.assert_array_equal(loaded.reconstruct(x_tilde), expected)
    other = pu.reconstruct(res.model, x_tilde, iterations=6, omega=10.0, weights="harmonic")
    assert not np.array_equal(loaded.reconstruct(x_tilde), other)
    # batches and a single frame: the same up to the rounding of BLAS products of other sizes
    np.testing.assert_allclose(loaded.reconstruct(x_tilde, batch_size=5), expected,
                               rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(loaded.reconstruct(x_tilde[3]), expected[3], rtol=1e-12,
                               atol=1e-15)
    with pytest.raises(ValueError, match="weights"):  # explicit weights must fit L
        pu.LearnedModel(res.model, 3, weights=[0.5, 0.5])
    np.testing.assert_array_equal(
        loaded.reconstruct(x_tilde, iterations=9),
        pu.reconstruct(res.model, x_tilde, iterations=9, omega=30.0, weights="harmonic"))


def test_old_operator_files_reconstruct_with_their_settings(numpy_backend):
    """A format version 1 file of save_operator: L = 7, ω = 30, harmonic weights, float32."""
    learned = pu.load_model(DATA / "v1_speech_operator.npz")
    model, _ = pu.load_operator(DATA / "v1_speech_operator.npz")
    assert (learned.iterations, learned.steps.omega, learned.weights) == (7, 30.0, "harmonic")
    assert learned.dtype == np.float32 and learned.metadata["bitrate"] == 4
    x = pu.quantize(np.sin(np.arange(40, dtype=np.float32) / 3).reshape(5, 8) * 0.8, 4)
    np.testing.assert_array_equal(
        learned.reconstruct(x),
        pu.reconstruct(model, x, iterations=7, omega=30.0, weights="harmonic"))


def test_dtype_follows_the_model(backend, tmp_path):
    """A float32 model given float64 data computes in float32 and returns float64 (before:
    an unclear TypeError); integers are refused naming x_tilde."""
    K = backend.asarray(pu.dct_matrix(8), "float32")
    learned = pu.LearnedModel(pu.AnalysisModel(pu.DenseOperator(K), pu.L1Norm(),
                                               pu.LinfBall(0.1)), 5, omega=3.0)
    x64 = backend.asarray(np.random.default_rng(0).uniform(-1, 1, (4, 8)), "float64")
    out = learned.reconstruct(x64)
    assert out.dtype == x64.dtype and tuple(out.shape) == (4, 8)
    x32 = backend.xp.astype(x64, backend.xp.float32)
    np.testing.assert_array_equal(backend.to_numpy(out),
                                  backend.to_numpy(learned.reconstruct(x32)).astype(np.float64))
    with pytest.raises(TypeError, match="x_tilde must have a real floating dtype"):
        learned.reconstruct(backend.asarray(np.ones((2, 8), dtype=np.int16)))


def test_filter_bank_model_applies_to_any_image_size(backend, dtype, tmp_path):
    """Trained shape 8×8; applied to a 13×11 image: equal to the model rebuilt by hand at that
    size (same filters, NoiseL2Ball radius c σ √(13·11), the step rule for that operator)."""
    rng = np.random.default_rng(1)
    h = backend.asarray(pu.dct_filters(3) + 0.05 * rng.standard_normal((8, 3, 3)), dtype)
    model = pu.AnalysisModel(pu.Conv2dFilterBank(h, (8, 8)), pu.L1Norm(),
                             pu.NoiseL2Ball(0.1, c=0.9))
    learned = pu.LearnedModel(model, 4, omega=5.0)
    path = learned.save(tmp_path / "bank.npz")
    loaded = pu.load_model(path, xp=backend.xp, device=backend.device)
    image = backend.asarray(rng.uniform(0, 1, (13, 11)), dtype)
    by_hand = pu.AnalysisModel(pu.Conv2dFilterBank(h, (13, 11)), pu.L1Norm(),
                               pu.L2Ball(0.9 * 0.1 * np.sqrt(13 * 11)))
    expected = pu.chambolle_pock(by_hand, backend.xp.reshape(image, (1, 13, 11)), iterations=4,
                                 omega=5.0).x[0, ...]
    np.testing.assert_allclose(backend.to_numpy(loaded.reconstruct(image)),
                               backend.to_numpy(expected), rtol=1e-12 if dtype == "float64"
                               else 1e-5, atol=1e-12 if dtype == "float64" else 1e-6)
    resized = loaded.at_shape((13, 11))
    assert tuple(resized.operator.in_shape) == (13, 11)
    # the step rule at the new size: σ τ ‖K‖² < 1 against ‖K‖ of the operator's dense matrix
    steps = resized.step_sizes()
    basis = backend.asarray(np.eye(13 * 11).reshape(13 * 11, 13, 11), dtype)
    dense = backend.to_numpy(resized.operator.apply(basis)).reshape(13 * 11, -1)
    assert steps.sigma * steps.tau * np.linalg.norm(dense.astype(np.float64), 2) ** 2 < 1


def test_old_denoising_files_follow_the_image_size(numpy_backend):
    """A version 1 denoising file has G = L2Ball(σ·patch); loaded, G is NoiseL2Ball(σ) with the
    same radius on its patches, so it applies to other sizes too."""
    learned = pu.load_model(DATA / "v1_denoise_operator.npz")
    model, _ = pu.load_operator(DATA / "v1_denoise_operator.npz")
    assert isinstance(learned.model.g, pu.NoiseL2Ball) and learned.model.g.sigma == 0.1
    patches = np.random.default_rng(2).uniform(0, 1, (3, 10, 10))
    np.testing.assert_array_equal(learned.reconstruct(patches),
                                  pu.reconstruct(model, patches, iterations=5, omega=10.0))
    assert learned.reconstruct(np.ones((17, 12))).shape == (17, 12)


def test_sizes_a_model_cannot_take_are_refused(numpy_backend):
    dense = pu.LearnedModel(pu.AnalysisModel(pu.DenseOperator(np.eye(4)), pu.L1Norm(),
                                             pu.LinfBall(0.1)), 3)
    with pytest.raises(ValueError, match=r"DenseOperator acts on signals of shape \(4,\) only"):
        dense.reconstruct(np.zeros((2, 5)))
    fixed = pu.LearnedModel(pu.AnalysisModel(pu.Conv2dFilterBank(pu.dct_filters(3), (6, 6)),
                                             pu.L1Norm(), pu.L2Ball(0.6)), 3)
    with pytest.raises(ValueError, match="L2Ball of fixed radius 0.6.*NoiseL2Ball"):
        fixed.reconstruct(np.zeros((7, 7)))
    with pytest.raises(ValueError, match="x_tilde must be one signal of 2 axes or a batch"):
        fixed.reconstruct(np.zeros((1, 1, 6, 6)))


def test_gradient_and_composites_resize(numpy_backend):
    grad = pu.Gradient2d((4, 5))
    tv = pu.Stack(grad, pu.Conv2dFilterBank(pu.dct_filters(2), (4, 5)))
    big = tv.at_shape((6, 7))
    assert big.in_shape == (6, 7) and big.out_shape == (2 * 42 + 3 * 42,)
    assert grad.at_shape((6, 7)).norm() == pu.Gradient2d((6, 7)).norm()
    with pytest.raises(ValueError, match="Diagonal acts on signals of shape"):
        pu.Composition(grad, pu.Diagonal(np.ones((4, 5)))).at_shape((6, 7))


def test_gradient2d_takes_the_backend_of_its_dtype(torch_backend):
    import torch

    op = pu.Gradient2d((4, 5), dtype=torch.float32)
    assert op.dtype == torch.float32 and isinstance(op.apply(torch.ones(2, 4, 5)), torch.Tensor)


def test_learned_model_checks_its_settings(numpy_backend):
    model = pu.AnalysisModel(pu.DenseOperator(np.eye(3)), pu.L1Norm(), pu.LinfBall(0.1))
    with pytest.raises(ValueError, match="omega must be a positive"):
        pu.LearnedModel(model, 3, omega=0.0)
    with pytest.raises(ValueError, match="give omega or steps, not both"):
        pu.LearnedModel(model, 3, pu.StepRule(), omega=3.0)
    with pytest.raises(TypeError, match="steps must be a pdunroll.StepRule"):
        pu.LearnedModel(model, 3, pu.step_sizes(model.operator))
    with pytest.raises(TypeError, match="steps must be a pdunroll.StepRule"):
        pu.LearnedModel(model, 3, 30.0)
    with pytest.raises(TypeError, match="metadata must hold JSON values"):
        pu.LearnedModel(model, 3, metadata={"x": object()})
    with pytest.raises(TypeError, match="model must be an AnalysisModel"):
        pu.LearnedModel(np.eye(3), 3)


def test_run_records_of_earlier_command_lines_are_read(numpy_backend, tmp_path):
    """Operator files of pdunroll train before LearnedModel kept the gradient method and the
    data fingerprint in their metadata: load_model finds them there."""
    model = pu.AnalysisModel(pu.DenseOperator(pu.dct_matrix(4)), pu.L1Norm(), pu.LinfBall(0.1))
    meta = {"task": "speech", "settings": {"method": pu.Truncated(2).settings()},
            "fingerprint": {"kind": "wav", "files": {"a.wav": "00"}}}
    path = pu.save_operator(tmp_path / "op.npz", model, iterations=3, omega=30.0, metadata=meta)
    learned = pu.load_model(path)
    assert learned.method == pu.Truncated(2)
    assert learned.data == {"kind": "wav", "files": {"a.wav": "00"}}
    assert learned.steps == pu.StepRule(omega=30.0)


def test_step_sizes_are_made_once_per_shape(numpy_backend, monkeypatch):
    """Applying a model to many files computes ‖K‖ once per signal shape, not per call."""
    bank = pu.Conv2dFilterBank(pu.dct_filters(3), (6, 6))
    learned = pu.LearnedModel(pu.AnalysisModel(bank, pu.L1Norm(), pu.NoiseL2Ball(0.1)), 2)
    calls = []
    norm = pu.Conv2dFilterBank.norm
    monkeypatch.setattr(pu.Conv2dFilterBank, "norm",
                        lambda self, **kw: calls.append(self.in_shape) or norm(self, **kw))
    for shape in [(6, 6), (9, 7), (6, 6), (9, 7)]:
        learned.reconstruct(np.ones(shape))
    assert calls == [(6, 6), (9, 7)]


def test_a_checkpoint_loads_as_its_best_model(numpy_backend, tmp_path):
    """A run stopped after its first epoch: load_model of its checkpoint is the best model so
    far with the run's L, ω, weights and method."""
    x_tilde, x_true, eta = _speech()
    start = pu.AnalysisModel(pu.DenseOperator(pu.dct_matrix(16)), pu.L1Norm(), pu.LinfBall(eta))
    path = tmp_path / "checkpoint.npz"

    def stop(info):
        if info["step"] == 3:  # the first step of epoch 2
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        pu.train(start, x_tilde[:32], x_true[:32], validation=(x_tilde[32:], x_true[32:]),
                 iterations=4, omega=20.0, weights="uniform", method=pu.Truncated(2),
                 epochs=3, batch_size=16, lr=1e-2, progress=False, checkpoint=path,
                 callback=stop)
    learned = pu.load_model(path)
    state, _ = pu.load_checkpoint(path, start.operator.params)
    np.testing.assert_array_equal(learned.operator.matrix, state.best_params)
    assert (learned.iterations, learned.steps, learned.weights) == \
        (4, pu.StepRule(omega=20.0), "uniform")
    assert learned.method == pu.Truncated(2)
    np.testing.assert_array_equal(
        learned.reconstruct(x_tilde),
        pu.reconstruct(start.with_params(state.best_params), x_tilde, iterations=4,
                       omega=20.0, weights="uniform"))


def test_the_step_rule_is_kept(numpy_backend, tmp_path):
    """A model of the released code's conventions (Frobenius norm, θ = 0.5, margin 0.9) saves,
    loads and reconstructs with that rule, as chambolle_pock with the same StepRule."""
    model = pu.AnalysisModel(pu.DenseOperator(pu.dct_matrix(8, 12)), pu.L1Norm(),
                             pu.LinfBall(0.1))
    rule = pu.StepRule(omega=3.0, norm="frobenius", theta=0.5, margin=0.9)
    learned = pu.LearnedModel(model, 5, rule)
    assert learned.steps is rule
    loaded = pu.load_model(learned.save(tmp_path / "m.npz"))
    assert loaded.steps == rule and loaded.settings["solver"]["margin"] == 0.9
    assert loaded.at_shape((8,)).steps == rule
    x = np.sin(np.arange(24.0)).reshape(3, 8)
    np.testing.assert_array_equal(loaded.reconstruct(x),
                                  pu.chambolle_pock(model, x, iterations=5, steps=rule).x)


def test_a_checkpoint_keeps_the_runs_step_rule(numpy_backend, tmp_path):
    x_tilde, x_true, eta = _speech(frames=16)
    start = pu.AnalysisModel(pu.DenseOperator(pu.dct_matrix(16)), pu.L1Norm(), pu.LinfBall(eta))
    rule = pu.StepRule(omega=5.0, norm="frobenius", theta=0.5)
    pu.train(start, x_tilde, x_true, iterations=3, steps=rule, epochs=1, batch_size=8,
             progress=False, checkpoint=tmp_path / "checkpoint.npz")
    assert pu.load_model(tmp_path / "checkpoint.npz").steps == rule


def test_a_file_with_the_rule_as_loose_entries_loads_as_one_rule(numpy_backend, tmp_path):
    """Model files keep the rule as the solver entries omega, norm, theta (margin since it
    exists): a file written before the margin loads with the margin 0.99 it was made with."""
    from pdunroll.learning.checkpoint import write_model_file

    model = pu.AnalysisModel(pu.DenseOperator(pu.dct_matrix(6)), pu.L1Norm(), pu.LinfBall(0.1))
    path = write_model_file(tmp_path / "old.npz", model,
                            {"solver": {"iterations": 4, "omega": 3.0, "norm": "frobenius",
                                        "theta": 0.5, "weights": None}, "metadata": {}})
    learned = pu.load_model(path)
    assert learned.steps == pu.StepRule(omega=3.0, norm="frobenius", theta=0.5, margin=0.99)
    assert learned.settings["solver"] == {"iterations": 4, "omega": 3.0, "norm": "frobenius",
                                          "theta": 0.5, "margin": 0.99, "weights": None}
