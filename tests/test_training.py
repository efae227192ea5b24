"""The training loop: learning, validation, early stopping, reproducibility, exact resume."""

import itertools

import numpy as np
import pytest
from problems import sparse_quantized

import pdunroll as pu

N_SAMPLES = 8


def _data(n_signals, seed=0):
    return sparse_quantized(n_signals, N_SAMPLES, seed)


def _model(backend, dtype, eta):
    K = backend.asarray(pu.dct_matrix(N_SAMPLES), dtype)
    return pu.AnalysisModel(pu.DenseOperator(K), f=pu.L1Norm(), g=pu.LinfBall(eta))


def _setup(backend, dtype="float64", n_train=48, n_val=16):
    xt, x, eta = _data(n_train + n_val)
    a = lambda v: backend.asarray(v, dtype)  # noqa: E731
    train = (a(xt[:n_train]), a(x[:n_train]))
    val = (a(xt[n_train:]), a(x[n_train:]))
    return _model(backend, dtype, eta), train, val


OPTIONS = dict(iterations=5, omega=10.0, lr=pu.LearningRate(1e-2, "linear"), epochs=3,
               batch_size=16, progress=False)


def test_training_lowers_the_loss_on_every_backend(backend, dtype):
    model, (xt, x), val = _setup(backend, dtype, n_train=32)
    before = pu.unrolled_loss(model, xt, x, iterations=5, omega=10.0)
    res = pu.train(model, xt, x, validation=val, **{**OPTIONS, "epochs": 6})
    after = pu.unrolled_loss(res.final_model, xt, x, iterations=5, omega=10.0)
    assert after < before
    h = res.history
    assert len(h.step_loss) == len(h.step_grad_norm) == len(h.step_lr) == res.steps == 12
    assert len(h.epoch_train_loss) == len(h.epoch_val_loss) == 6
    assert h.step_lr[0] == pytest.approx(1e-2) and h.step_lr[-1] == pytest.approx(1e-5)
    # the first step's records are the starting model's loss and gradient on the first
    # minibatch: the first 16 of the seeded permutation (seed 0) of the 32 pairs
    first = np.random.Generator(np.random.PCG64(0)).permutation(32)[:16]
    idx = backend.asarray(first, "int64")
    xb, xbt = backend.xp.take(xt, idx, axis=0), backend.xp.take(x, idx, axis=0)
    rtol = 1e-9 if dtype == "float64" else 1e-4
    assert h.step_loss[0] == pytest.approx(
        pu.unrolled_loss(model, xb, xbt, iterations=5, omega=10.0), rel=rtol)
    g = backend.to_numpy(pu.gradient(model, xb, xbt, iterations=5, omega=10.0).operator) / 16
    assert h.step_grad_norm[0] == pytest.approx(float(np.linalg.norm(g)), rel=100 * rtol)
    # step sizes follow K: the recorded norm is the spectral norm of the updated operator
    K = backend.to_numpy(res.final_model.operator.matrix)
    assert h.step_op_norm[-1] == pytest.approx(np.linalg.norm(K, 2), rel=1e-5)
    assert min(h.epoch_val_loss + [h.initial_val_loss]) == pytest.approx(res.best_val_loss)


def test_torch_run_matches_numpy_run(numpy_backend, torch_backend):
    runs = []
    for be in (numpy_backend, torch_backend):
        model, (xt, x), val = _setup(be)
        res = pu.train(model, xt, x, validation=val, **OPTIONS)
        runs.append((be.to_numpy(res.final_model.operator.matrix), res.history.step_loss))
    np.testing.assert_allclose(runs[1][0], runs[0][0], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(runs[1][1], runs[0][1], rtol=1e-9)


@pytest.mark.parametrize("method,weights", [(pu.Truncated(2), None), (pu.Asymptotic(10), None),
                                            (pu.Full(), "harmonic"),
                                            (pu.Full(relax_primal=True), None)])
def test_every_gradient_method_trains(numpy_backend, method, weights):
    model, (xt, x), _ = _setup(numpy_backend)
    res = pu.train(model, xt, x, optimizer="sgd", method=method, weights=weights,
                   **{**OPTIONS, "lr": 0.5})
    before = pu.unrolled_loss(model, xt, x, iterations=5, weights=weights)
    assert pu.unrolled_loss(res.final_model, xt, x, iterations=5, weights=weights) < before


@pytest.mark.parametrize("stored,segmented", [(pu.Full(), pu.Full(segments=2)),
                                              (pu.Truncated(3), pu.Truncated(3, segments=2))])
def test_the_method_reaches_the_gradient(numpy_backend, stored, segmented):
    """method= is passed to the gradient: segmented training repeats stored training (and
    differs from training with another method, so the comparison is not vacuous); a method
    the gradient rejects fails before any step, naming itself."""
    model, (xt, x), _ = _setup(numpy_backend)
    ref = pu.train(model, xt, x, method=stored, **OPTIONS)
    res = pu.train(model, xt, x, method=segmented, **OPTIONS)
    np.testing.assert_allclose(res.final_model.operator.matrix, ref.final_model.operator.matrix,
                               rtol=1e-12, atol=1e-15)
    other = pu.train(model, xt, x, method=pu.Truncated(1), **OPTIONS)
    assert not np.allclose(other.final_model.operator.matrix, ref.final_model.operator.matrix,
                           rtol=1e-6, atol=0)
    steps = []
    with pytest.raises(ValueError, match=r"Truncated\(b=6\) needs b <= iterations \(5\)"):
        pu.train(model, xt, x, method=pu.Truncated(6, segments=2),
                 callback=lambda info: steps.append(info["step"]), **OPTIONS)
    with pytest.raises(ValueError, match="weights cannot be combined with Asymptotic"):
        pu.train(model, xt, x, method=pu.Asymptotic(3), weights="harmonic",
                 callback=lambda info: steps.append(info["step"]), **OPTIONS)
    assert steps == []


def test_same_seed_same_run_other_seed_other_run(numpy_backend):
    model, (xt, x), _ = _setup(numpy_backend)
    a = pu.train(model, xt, x, seed=3, **OPTIONS)
    b = pu.train(model, xt, x, seed=3, **OPTIONS)
    c = pu.train(model, xt, x, seed=4, **OPTIONS)
    assert a.history.step_loss == b.history.step_loss
    np.testing.assert_array_equal(a.final_model.operator.matrix, b.final_model.operator.matrix)
    assert a.history.step_loss != c.history.step_loss


def test_early_stopping_keeps_the_best_operator(numpy_backend):
    model, (xt, x), val = _setup(numpy_backend)
    # validation targets = the starting model's own reconstructions: its loss 0 is the optimum,
    # so every epoch is worse than the start
    target = pu.reconstruct(model, val[0], iterations=5, omega=10.0)
    res = pu.train(model, xt, x, validation=(val[0], target), patience=2,
                   **{**OPTIONS, "epochs": 6})
    assert res.stopped_early and res.epochs == 2
    assert res.best_epoch == 0
    np.testing.assert_array_equal(res.model.operator.matrix, model.operator.matrix)
    assert res.best_val_loss == res.history.initial_val_loss == 0.0
    assert all(v > 0 for v in res.history.epoch_val_loss)


def _stop_at(step):
    def callback(info):
        if info["step"] == step:
            raise KeyboardInterrupt
    return callback


@pytest.mark.parametrize("stop", [4, 3, 9], ids=["mid-epoch", "epoch-boundary", "last-step"])
def test_interrupted_and_resumed_equals_uninterrupted(numpy_backend, tmp_path, stop):
    model, (xt, x), val = _setup(numpy_backend)
    opts = dict(validation=val, seed=7, **OPTIONS)
    full = pu.train(model, xt, x, **opts)
    ck = tmp_path / "run" / "checkpoint.npz"
    with pytest.raises(KeyboardInterrupt):
        pu.train(model, xt, x, checkpoint=ck, callback=_stop_at(stop), **opts)
    state, _ = pu.load_checkpoint(ck, model.operator.params)
    assert state.step == stop  # Ctrl-C saved the state of the step it interrupted after
    resumed = pu.train(model, xt, x, checkpoint=ck, resume=True, **opts)
    np.testing.assert_array_equal(resumed.final_model.operator.matrix,
                                  full.final_model.operator.matrix)
    np.testing.assert_array_equal(resumed.model.operator.matrix, full.model.operator.matrix)
    for field in ("step_loss", "step_grad_norm", "step_lr", "step_op_norm", "epoch_train_loss",
                  "epoch_val_loss"):
        assert getattr(resumed.history, field) == getattr(full.history, field), field
    assert (resumed.best_epoch, resumed.best_val_loss) == (full.best_epoch, full.best_val_loss)
    assert not list(ck.parent.glob("*.tmp"))  # atomic writes leave no temporary files


def test_checkpoint_written_after_every_epoch(numpy_backend, tmp_path):
    model, (xt, x), _ = _setup(numpy_backend)
    ck = tmp_path / "ck.npz"
    seen = []

    def callback(info):
        if info["batch"] == 1 and ck.exists():
            seen.append(pu.load_checkpoint(ck, model.operator.params)[0].epoch)

    pu.train(model, xt, x, checkpoint=ck, callback=callback, **OPTIONS)
    assert seen == [1, 2]
    assert pu.load_checkpoint(ck, model.operator.params)[0].epoch == 3


def test_resume_checks_its_inputs(numpy_backend, tmp_path):
    model, (xt, x), _ = _setup(numpy_backend)
    ck = tmp_path / "ck.npz"
    with pytest.raises(ValueError, match="resume=True needs checkpoint"):
        pu.train(model, xt, x, resume=True, **OPTIONS)
    with pytest.raises(FileNotFoundError, match="no such file"):
        pu.train(model, xt, x, checkpoint=ck, resume=True, **OPTIONS)
    pu.train(model, xt, x, checkpoint=ck, **{**OPTIONS, "epochs": 1})
    with pytest.raises(ValueError, match="epochs: checkpoint 1, now 3"):
        pu.train(model, xt, x, checkpoint=ck, resume=True, **OPTIONS)
    with pytest.raises(ValueError, match="optimizer"):
        pu.train(model, xt, x, checkpoint=ck, resume=True, optimizer="sgd",
                 **{**OPTIONS, "epochs": 1})
    # the gradient method is part of the run: its settings are stored and compared
    with pytest.raises(ValueError, match=r"method: checkpoint \{'name': 'full'.*'segments': "
                                         r"None\}, now \{'name': 'full'.*'segments': 2\}"):
        pu.train(model, xt, x, checkpoint=ck, resume=True, method=pu.Full(segments=2),
                 **{**OPTIONS, "epochs": 1})


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(method="exact"), TypeError, "method must be pdunroll.Full()"),
    (dict(method="truncated"), ValueError, "needs the number of backward steps"),
    (dict(method="asymptotic"), ValueError, "needs the number of backward steps"),
    (dict(method=pu.Implicit(), weights="uniform"), ValueError, "weights cannot be combined"),
    (dict(epochs=0), ValueError, "epochs"),
    (dict(batch_size=2.5), TypeError, "batch_size"),
    (dict(patience=0), ValueError, "patience"),
    (dict(seed=-1), ValueError, "seed"),
    (dict(validation=(1, 2, 3)), TypeError, "validation"),
    (dict(validation=(np.zeros((0, N_SAMPLES)),) * 2), ValueError, "validation_x_tilde .*empty"),
])
def test_train_rejects_bad_arguments(numpy_backend, kwargs, error, match):
    model, (xt, x), _ = _setup(numpy_backend)
    with pytest.raises(error, match=match):
        pu.train(model, xt, x, **{**OPTIONS, **kwargs})


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_divergence_is_reported(numpy_backend):
    model, (xt, x), _ = _setup(numpy_backend)
    with pytest.raises(FloatingPointError, match="lower the learning rate"):
        pu.train(model, xt, x, optimizer="sgd", **{**OPTIONS, "lr": 1e300})


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_a_diverging_rate_with_finite_values_is_stopped(numpy_backend, optimizer):
    """lr = 1e6 keeps every number finite (the ℓ∞ ball bounds the loss, and the step sizes follow
    ‖K‖), but one update multiplies ‖K‖ by far more than DIVERGENCE_FACTOR: the run stops with
    the FloatingPointError the Reliability page promises instead of returning max|K| = 1e6."""
    model, (xt, x), _ = _setup(numpy_backend)
    with pytest.raises(FloatingPointError, match=r"multiplied ‖K‖ by .*lower the learning rate"):
        pu.train(model, xt, x, optimizer=optimizer, **{**OPTIONS, "lr": 1e6})
    from pdunroll.learning.training import DIVERGENCE_FACTOR

    ok = pu.train(model, xt, x, optimizer=optimizer, **{**OPTIONS, "lr": 1e-2})
    norms = [1.0, *ok.history.step_op_norm]
    assert max(b / a for a, b in itertools.pairwise(norms)) < DIVERGENCE_FACTOR


def test_learner_fit_predict_score(numpy_backend):
    _, (xt, x), (vt, v) = _setup(numpy_backend)
    learner = pu.OperatorLearner(eta=1 / 8, iterations=5, lr=1e-2, epochs=3, batch_size=16,
                                 progress=False)
    with pytest.raises(ValueError, match="not fitted"):  # a NotFittedError, as in scikit-learn
        learner.predict(vt)
    learner.fit(xt, x, validation=(vt, v))
    start = pu.OperatorLearner(eta=1 / 8, iterations=5, lr=1e-12, epochs=1, progress=False)
    assert learner.score(xt, x) > start.fit(xt, x).score(xt, x)
    assert learner.predict(vt).shape == vt.shape
    assert learner.history_ is learner.result_.history
    with pytest.raises(ValueError, match="eta"):  # checked by fit, as scikit-learn requires
        pu.OperatorLearner().fit(xt, x)


def test_resume_on_another_backend_continues(numpy_backend, torch_backend, tmp_path):
    model, (xt, x), _ = _setup(numpy_backend)
    ck = tmp_path / "ck.npz"
    full = pu.train(model, xt, x, **OPTIONS)
    with pytest.raises(KeyboardInterrupt):
        pu.train(model, xt, x, checkpoint=ck, callback=_stop_at(4), **OPTIONS)
    t_model, (t_xt, t_x), _ = _setup(torch_backend)
    resumed = pu.train(t_model, t_xt, t_x, checkpoint=ck, resume=True, **OPTIONS)
    np.testing.assert_allclose(torch_backend.to_numpy(resumed.final_model.operator.matrix),
                               full.final_model.operator.matrix, rtol=1e-9, atol=1e-12)
    with pytest.raises(ValueError, match="dtype: checkpoint 'float64', now 'float32'"):
        m32, (a, b), _ = _setup(numpy_backend, "float32")
        pu.train(m32, a, b, checkpoint=ck, resume=True, **OPTIONS)


def test_resume_with_another_model_is_refused(numpy_backend, tmp_path):
    """The checkpoint's F, G and operator must match: e.g. another bitrate changes η."""
    model, (xt, x), _ = _setup(numpy_backend)
    ck = tmp_path / "ck.npz"
    with pytest.raises(KeyboardInterrupt):
        pu.train(model, xt, x, checkpoint=ck, callback=_stop_at(2), **OPTIONS)
    other = pu.AnalysisModel(model.operator, f=model.f, g=pu.LinfBall(model.g.radius / 2))
    with pytest.raises(ValueError, match="model g: checkpoint .*'radius': 0.0625"):
        pu.train(other, xt, x, checkpoint=ck, resume=True, **OPTIONS)
    assert pu.train(model, xt, x, checkpoint=ck, resume=True, **OPTIONS).steps == 9


def test_unsaveable_model_fails_before_training(numpy_backend, tmp_path):
    """A checkpoint that could not be written is reported before the first step, not after
    an epoch of work."""
    _, (xt, x), _ = _setup(numpy_backend)

    class Weights(pu.Diagonal):  # a user's own operator, not registered as saveable
        pass

    model = pu.AnalysisModel(Weights(numpy_backend.asarray(np.ones(N_SAMPLES))),
                             f=pu.L1Norm(), g=pu.LinfBall(1 / 8))
    steps = []
    with pytest.raises(TypeError, match="cannot save the model's operator: cannot save .*Weights"):
        pu.train(model, xt, x, checkpoint=tmp_path / "ck.npz",
                 callback=lambda info: steps.append(info["step"]), **OPTIONS)
    assert steps == []
    assert pu.train(model, xt, x, **{**OPTIONS, "epochs": 1}).steps == 3


def test_learner_predict_rejects_zero_iterations(numpy_backend):
    _, (xt, x), _ = _setup(numpy_backend)
    learner = pu.OperatorLearner(eta=1 / 8, iterations=5, lr=1e-2, epochs=1, progress=False)
    learner.fit(xt, x)
    with pytest.raises(ValueError, match="iterations must be an integer >= 1, got 0"):
        learner.predict(xt, iterations=0)


def test_an_error_in_the_callback_keeps_the_last_step(numpy_backend, tmp_path):
    """Not only Ctrl-C: any exception mid-epoch leaves a checkpoint of the last whole step,
    and resuming gives the uninterrupted run."""
    model, (xt, x), val = _setup(numpy_backend)
    opts = dict(validation=val, seed=7, **OPTIONS)
    full = pu.train(model, xt, x, **opts)
    ck = tmp_path / "ck.npz"

    def broken(info):
        if info["step"] == 4:
            raise RuntimeError("logging failed")

    with pytest.raises(RuntimeError, match="logging failed"):
        pu.train(model, xt, x, checkpoint=ck, callback=broken, **opts)
    assert pu.load_checkpoint(ck, model.operator.params)[0].step == 4
    resumed = pu.train(model, xt, x, checkpoint=ck, resume=True, **opts)
    np.testing.assert_array_equal(resumed.final_model.operator.matrix,
                                  full.final_model.operator.matrix)
    assert resumed.history.step_loss == full.history.step_loss


def test_no_training_signals_is_a_clear_error(numpy_backend):
    model, _, _ = _setup(numpy_backend)
    empty = numpy_backend.asarray(np.zeros((0, N_SAMPLES)))
    with pytest.raises(ValueError, match="x_tilde has an empty batch"):
        pu.train(model, empty, empty, **OPTIONS)


def test_periodic_checkpoints_within_an_epoch_resume_exactly(numpy_backend, tmp_path):
    """CheckpointFile(every_steps=2) writes within an epoch (3 steps per epoch here); a
    checkpoint taken from the middle of an epoch resumes to the uninterrupted run bit for bit."""
    model, (xt, x), val = _setup(numpy_backend)
    opts = dict(validation=val, seed=7, **OPTIONS)
    full = pu.train(model, xt, x, **opts)
    ck = tmp_path / "ck.npz"
    seen = {}

    def copy(info):  # what a SIGKILL right after this step would leave on disk
        if ck.exists():
            seen[pu.load_checkpoint(ck, model.operator.params)[0].step] = ck.read_bytes()

    pu.train(model, xt, x, checkpoint=pu.CheckpointFile(ck, every_steps=2, every_minutes=None),
             callback=copy, **opts)
    # two steps after the last save: steps 2, 5, 8 (the epoch ends at 3, 6, 9 save too)
    assert {2, 5, 8} <= set(seen)
    ck.write_bytes(seen[5])  # 5 = epoch 2, batch 2
    state, _ = pu.load_checkpoint(ck, model.operator.params)
    assert (state.epoch, state.batch) == (1, 2)
    resumed = pu.train(model, xt, x, checkpoint=ck, resume=True, **opts)
    np.testing.assert_array_equal(resumed.final_model.operator.matrix,
                                  full.final_model.operator.matrix)
    assert resumed.history.step_loss == full.history.step_loss
    with pytest.raises(ValueError, match="every_minutes must be a positive"):
        pu.CheckpointFile(ck, every_minutes=0)
    with pytest.raises(TypeError, match="data must be a dict"):
        pu.CheckpointFile(ck, data="files")


def test_checkpoint_path_is_checked_before_the_first_step(numpy_backend, tmp_path):
    model, (xt, x), _ = _setup(numpy_backend)
    steps = []
    with pytest.raises(IsADirectoryError, match="is a folder"):
        pu.train(model, xt, x, checkpoint=tmp_path, callback=steps.append, **OPTIONS)
    assert steps == [] and list(tmp_path.iterdir()) == []  # no temporary file either
    afile = tmp_path / "afile"
    afile.write_text("")
    with pytest.raises(OSError, match=str(afile / "ck.npz")):
        pu.train(model, xt, x, checkpoint=afile / "ck.npz", callback=steps.append, **OPTIONS)
    assert steps == []


def test_a_full_disk_names_the_path(numpy_backend, tmp_path, monkeypatch):
    """ENOSPC while writing (os.fsync made to fail as on a full disk: a real full disk needs a
    small mounted file system) is an OSError naming the checkpoint, not a bare [Errno 28]."""
    import errno

    import pdunroll.learning.checkpoint as checkpoint

    model, (xt, x), _ = _setup(numpy_backend)

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint.os, "fsync", full)
    ck = tmp_path / "ck.npz"
    with pytest.raises(OSError, match=f"No space left on device.*{ck}") as err:
        pu.train(model, xt, x, checkpoint=ck, **OPTIONS)
    assert err.value.errno == errno.ENOSPC and not list(tmp_path.glob("*.tmp"))


def test_resume_with_other_data_is_refused(numpy_backend, tmp_path):
    model, (xt, x), _ = _setup(numpy_backend)
    ck = tmp_path / "ck.npz"
    data = {"kind": "wav", "files": {"a.wav": "1" * 64, "b.wav": "2" * 64}}
    with pytest.raises(KeyboardInterrupt):
        pu.train(model, xt, x, checkpoint=pu.CheckpointFile(ck, data=data),
                 callback=_stop_at(2), **OPTIONS)
    other = {"kind": "wav", "files": {"a.wav": "1" * 64, "c.wav": "2" * 64}}
    with pytest.raises(ValueError, match=r"training data: 1 file\(s\) of the saved data missing "
                                         r"now: b\.wav; 1 file\(s\) not in the saved data: c\.wav"):
        pu.train(model, xt, x, checkpoint=pu.CheckpointFile(ck, data=other), resume=True,
                 **OPTIONS)
    pu.train(model, xt, x, checkpoint=pu.CheckpointFile(ck, data=data), resume=True, **OPTIONS)


def test_a_failure_before_the_first_step_writes_no_checkpoint(numpy_backend, tmp_path):
    model, (xt, x), _ = _setup(numpy_backend)
    ck = tmp_path / "ck.npz"

    def broken(*args):
        raise RuntimeError("at once")

    with pytest.raises(RuntimeError):
        pu.train(model, xt, x, checkpoint=ck, minibatch_gradient=lambda *a: broken, **OPTIONS)
    assert not ck.exists()


def test_epoch_summaries_on_the_pdunroll_logger_and_short_reprs(numpy_backend, caplog):
    model, (xt, x), val = _setup(numpy_backend)
    with caplog.at_level("INFO", logger="pdunroll"):
        res = pu.train(model, xt, x, validation=val, **OPTIONS)
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("pdunroll")]
    assert [ln.split(":")[0] for ln in lines[:3]] == ["epoch 1/3", "epoch 2/3", "epoch 3/3"]
    v = res.history.epoch_val_loss[0]
    energy = float(np.sum(val[1] ** 2))
    snr = 10 * np.log10(energy / (2 * v * val[1].shape[0]))
    assert f"validation loss {v:.4e} (SNR {snr:.2f} dB)" in lines[0]
    assert f"start {res.history.initial_val_loss:.4e}" in lines[0]
    text = repr(res)
    assert text.startswith("TrainResult(epochs=3, steps=9, best_epoch=") and len(text) < 150
    assert repr(pu.Adam()) == "Adam(beta1=0.9, beta2=0.999, eps=1e-08)"
    assert repr(pu.SGD(0.5)) == "SGD(momentum=0.5)"


def test_training_runs_with_one_blas_thread_unless_told(numpy_backend):
    """The thread policy: train (and OperatorLearner) limit BLAS to ``threads`` (default 1)
    during the call and restore the setting after it, also after an error; threads=None
    leaves it."""
    from threadpoolctl import threadpool_info, threadpool_limits

    model, (xt, x), _ = _setup(numpy_backend)

    def blas_threads():
        return {p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"}

    seen = []
    record = lambda info: seen.append(blas_threads())  # noqa: E731
    learner = pu.OperatorLearner(model, callback=record, **OPTIONS)  # scikit-learn's BLAS too
    with threadpool_limits(2, user_api="blas"):
        outside = blas_threads()
        assert max(outside) == 2
        for threads, inside in ((1, {1}), (None, outside), (2, outside)):
            seen.clear()
            pu.train(model, xt, x, callback=record, threads=threads, **OPTIONS)
            assert seen and all(s == inside for s in seen), (threads, seen)
            assert blas_threads() == outside
        seen.clear()
        learner.fit(xt, x)
        assert all(s == {1} for s in seen) and blas_threads() == outside
        with pytest.raises(ValueError, match="threads must be an integer >= 1"):
            pu.train(model, xt, x, threads=0, **OPTIONS)
        assert blas_threads() == outside


def test_one_configuration_for_train_the_learner_and_a_resume(numpy_backend, tmp_path):
    """TrainConfig is train's settings as one object: train(**config.options()), the learner
    made from it and a resume that reads it back from the checkpoint give the same run."""
    from pdunroll.learning.config import TrainConfig

    model, (xt, x), val = _setup(numpy_backend)
    config = TrainConfig(iterations=5, omega=12.0, lr=pu.LearningRate(1e-2, "linear"),
                         epochs=3, batch_size=16, seed=4, method=pu.Truncated(3))
    ref = pu.train(model, xt, x, validation=val, progress=False, **config.options())
    learner = pu.OperatorLearner.from_config(config, model, progress=False).fit(
        xt, x, validation=val)
    np.testing.assert_array_equal(learner.model_.operator.params, ref.model.operator.params)

    path = tmp_path / "ck.npz"

    def stop(info):
        if info["step"] == 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        pu.train(model, xt, x, validation=val, progress=False, checkpoint=path, callback=stop,
                 **config.options())
    back = TrainConfig.from_checkpoint(path)
    assert back.method == config.method and back.lr == config.lr and back.seed == 4
    res = pu.train(model, xt, x, validation=val, progress=False, checkpoint=path, resume=True,
                   **back.options())
    np.testing.assert_array_equal(res.model.operator.params, ref.model.operator.params)
    with pytest.raises(TypeError, match="config must be a TrainConfig"):
        pu.OperatorLearner.from_config({"epochs": 2})
