"""The command line end to end with tiny settings."""

import json
import os
import platform
import subprocess
import sys

import numpy as np
import pytest
from scipy.io import wavfile

import pdunroll as pu
from pdunroll import cli
from pdunroll.data.speech import synthetic_speech

TINY = ["--signals", "6", "--seconds", "0.25", "--n", "32", "--iterations", "4",
        "--epochs", "2", "--batch-size", "16", "--quiet"]
WAV_TINY = TINY[4:]  # --signals and --seconds describe the synthetic speech only


def _learned_row(results):
    """The name of a run's result in its table: "learned operator" only if an epoch improved
    on the start."""
    return "learned operator" if results["improved"] else "start (no epoch improved)"


def test_train_speech_synthetic_then_evaluate(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(["train", "speech", "--out", str(out), *TINY]) == 0
    text = capsys.readouterr().out
    results = json.loads((out / "results.json").read_text())
    for row in ("quantized input", "DCT start", _learned_row(results)):
        assert row in text
    assert {p.name for p in out.iterdir()} >= {"operator.npz", "checkpoint.npz", "curves.png",
                                               "results.json"}
    assert [r["method"] for r in results["test"]] == ["quantized input", "DCT start",
                                                      _learned_row(results)]
    model, settings = pu.load_operator(out / "operator.npz")
    assert model.operator.matrix.shape == (32, 32)
    assert settings["solver"]["iterations"] == 4 and settings["metadata"]["bitrate"] == 4
    assert isinstance(model.g, pu.LinfBall) and model.g.radius == 1 / 16

    assert cli.main(["evaluate", str(out / "operator.npz"), "--json",
                     str(tmp_path / "eval.json")]) == 0
    table = capsys.readouterr().out
    learned = [line for line in table.splitlines() if _learned_row(results) in line][0]
    assert float(learned.split()[-2]) == pytest.approx(results["test"][-1]["mse"], rel=1e-4)
    record = json.loads((tmp_path / "eval.json").read_text())
    assert record["rows"][-1]["mse"] == pytest.approx(float(learned.split()[-2]), rel=1e-4)
    assert record["iterations"] == 4 and record["dtype"] == "float64"

    # resuming a finished run changes nothing
    assert cli.main(["train", "speech", "--out", str(out), "--resume", *TINY]) == 0
    np.testing.assert_array_equal(pu.load_operator(out / "operator.npz")[0].operator.matrix,
                                  model.operator.matrix)


def test_evaluate_runs_the_saved_step_rule_and_takes_omega(tmp_path, capsys):
    """``evaluate`` scores every row with the model's own step rule (its norm and θ too, as
    ``LearnedModel.reconstruct`` runs it), and ``--omega`` replaces only that rule's ω."""
    from pdunroll.tasks import speech

    out = tmp_path / "run"
    assert cli.main(["train", "speech", "--out", str(out), *TINY]) == 0
    trained = pu.load_model(out / "operator.npz")
    rule = pu.StepRule(omega=5.0, norm="frobenius", theta=0.5)
    saved = pu.LearnedModel(trained.model, trained.iterations, rule, metadata=trained.metadata,
                            data=trained.data).save(tmp_path / "frobenius.npz")
    (x_tilde, x_true), _, _ = speech.evaluation_set(str(saved), trained.metadata, 32)
    for extra, want in (([], rule), (["--omega", "50"],
                                      pu.StepRule(omega=50.0, norm="frobenius", theta=0.5))):
        capsys.readouterr()
        assert cli.main(["evaluate", str(saved), "--json", str(tmp_path / "eval.json"),
                         *extra]) == 0
        record = json.loads((tmp_path / "eval.json").read_text())
        model = pu.LearnedModel(trained.model, trained.iterations, want)
        assert record["rows"][-1]["mse"] == pytest.approx(
            pu.mse(model.reconstruct(x_tilde), x_true), rel=1e-6)  # BLAS threads differ
        assert record["steps"] == want.settings()
        assert f"ω = {want.omega:g}" in capsys.readouterr().out
    spectral = pu.LearnedModel(trained.model, trained.iterations, omega=50.0)
    assert record["rows"][-1]["mse"] != pytest.approx(
        pu.mse(spectral.reconstruct(x_tilde), x_true), rel=1e-3)


def test_train_speech_overcomplete_m(tmp_path, capsys):
    """--m 48 > n = 32: the start is the 48×32 DCT frame, the table also has the n×n DCT, the
    operator is 48×32 and evaluate scores the same rows; --m below --n is refused first."""
    out = tmp_path / "run"
    # ω = 30: at these tiny sizes the default ω = 40 improves on the start in no epoch
    assert cli.main(["train", "speech", "--out", str(out), "--m", "48", "--omega", "30",
                     *TINY]) == 0
    results = json.loads((out / "results.json").read_text())
    assert [r["method"] for r in results["test"]] == [
        "quantized input", "DCT", "DCT frame start (48×32)", "learned operator"]
    assert results["m"] == 48
    model, _ = pu.load_operator(out / "operator.npz")
    assert model.operator.matrix.shape == (48, 32)
    dct, frame = results["test"][1]["mse"], results["test"][2]["mse"]
    assert dct != frame  # two different baselines, not one row twice
    capsys.readouterr()
    assert cli.main(["evaluate", str(out / "operator.npz")]) == 0
    table = capsys.readouterr().out
    assert "DCT frame start (48×32)" in table
    assert cli.main(["train", "speech", "--out", str(tmp_path / "bad"), "--m", "16", *TINY]) == 2
    assert "--m must be at least --n (32)" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


def test_train_from_an_earlier_operator(tmp_path, capsys):
    """--init starts from a saved operator instead of the DCT: the DCT itself as the init gives
    the DCT run's start, a perturbed one another start; the DCT stays the baseline row and the
    init file's digest is recorded. A wrong shape or a missing file is refused before any data
    are read."""
    dct_run = tmp_path / "dct"
    assert cli.main(["train", "speech", "--out", str(dct_run), *TINY]) == 0
    ref = json.loads((dct_run / "results.json").read_text())
    model, _ = pu.load_operator(dct_run / "operator.npz")
    noise = 0.02 * np.random.default_rng(0).standard_normal((32, 32))
    starts = {}
    for name, k in (("same", pu.dct_matrix(32)), ("perturbed", pu.dct_matrix(32) + noise)):
        op = pu.save_operator(tmp_path / f"{name}.npz", model.with_params(k), iterations=4,
                              omega=10.0)
        out = tmp_path / name
        assert cli.main(["train", "speech", "--out", str(out), "--init", str(op), *TINY]) == 0
        got = json.loads((out / "results.json").read_text())
        starts[name] = got["start_val_loss"]
        assert got["test"][1] == ref["test"][1]  # the DCT row
        assert got["init"]["path"] == str(op.resolve()) and len(got["init"]["sha256"]) == 64
    assert starts["same"] == pytest.approx(ref["start_val_loss"], rel=1e-6)
    assert starts["perturbed"] != pytest.approx(ref["start_val_loss"], rel=1e-3)
    capsys.readouterr()
    for extra, message in ((["--m", "48"], "shape (32, 32), but --n and --m give (48, 32)"),
                           ([], "no such operator file")):
        init = str(op if extra else tmp_path / "none.npz")
        assert cli.main(["train", "speech", "--out", str(tmp_path / "bad"), "--init", init,
                         *extra, *TINY]) == 2
        assert message in capsys.readouterr().err
        assert not (tmp_path / "bad").exists()


def _wav_folder(tmp_path):
    """Five 0.2 s synthetic recordings as 16-bit wav files in tmp_path/wavs."""
    data = tmp_path / "wavs"
    data.mkdir()
    for i, s in enumerate(synthetic_speech(5, seconds=0.2, seed=1)):
        wavfile.write(data / f"s{i}.wav", 16000, (s * 20000).astype(np.int16))
    return data


def test_train_speech_on_a_wav_folder(tmp_path, capsys):
    data = _wav_folder(tmp_path)
    out = tmp_path / "run"
    assert cli.main(["train", "speech", "--data", str(data), "--out", str(out), *WAV_TINY]) == 0
    assert "files split 70/15/15)" in capsys.readouterr().out
    assert (out / "operator.npz").exists()


def test_bad_data_folder_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    code = cli.main(["train", "speech", "--data", str(tmp_path / "empty"),
                     "--out", str(tmp_path / "run"), *WAV_TINY])
    assert code == 2
    assert "is empty" in capsys.readouterr().err


def test_ctrl_c_saves_and_says_how_to_resume(tmp_path, capsys, interrupt_training):
    interrupt_training(3)
    out = tmp_path / "run"
    assert cli.main(["train", "speech", "--out", str(out), *TINY]) == 130
    assert "--resume" in capsys.readouterr().err
    state, _ = pu.load_checkpoint(out / "checkpoint.npz", np.zeros((32, 32)))
    assert state.step == 3
    interrupt_training(None)
    assert cli.main(["train", "speech", "--out", str(out), "--resume", *TINY]) == 0


def test_train_denoise_then_evaluate(tmp_path, capsys):
    pytest.importorskip("skimage", reason="scikit-image is not installed")
    out = tmp_path / "dn"
    argv = ["train", "denoise", "--out", str(out), "--images", "camera", "--test-images", "page",
            "--patch", "12", "--kernel", "3", "--max-patches", "24", "--iterations", "3",
            "--epochs", "1", "--quiet"]
    assert cli.main(argv) == 0
    text = capsys.readouterr().out
    assert "8 filters 3×3" in text and "PSNR [dB]" in text and "noisy input" in text
    model, settings = pu.load_operator(out / "operator.npz")
    assert isinstance(model.operator, pu.Conv2dFilterBank)
    assert model.operator.filters.shape == (8, 3, 3) and model.operator.in_shape == (12, 12)
    assert isinstance(model.g, pu.NoiseL2Ball) and model.g.radius_of_size(144) == pytest.approx(1.2)
    results = json.loads((out / "results.json").read_text())
    assert cli.main(["evaluate", str(out / "operator.npz")]) == 0
    learned = [ln for ln in capsys.readouterr().out.splitlines()
               if _learned_row(results) in ln][0]
    assert float(learned.split()[-2]) == pytest.approx(results["test"][-1]["mse"], rel=1e-4)


def test_cli_thread_default_precedes_numpy():
    """``--threads`` works through OMP_NUM_THREADS & co., read when numpy loads: importing
    pdunroll.cli must not load numpy (nor matplotlib, scipy, tqdm)."""
    code = ("import sys, pdunroll.cli; print(','.join(m for m in ('numpy', 'scipy', 'matplotlib',"
            " 'tqdm') if m in sys.modules))")
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env=env)
    assert out.stdout.strip() == ""


def test_cli_asks_torch_for_huge_pages(monkeypatch):
    """The command line sets THP_MEM_ALLOC_ENABLE=1 before torch is imported (torch reads it at
    its first tensor), and keeps a value the user set."""
    monkeypatch.delenv("THP_MEM_ALLOC_ENABLE", raising=False)
    cli._memory_settings()
    assert os.environ["THP_MEM_ALLOC_ENABLE"] == "1"
    monkeypatch.setenv("THP_MEM_ALLOC_ENABLE", "0")
    cli._memory_settings()
    assert os.environ["THP_MEM_ALLOC_ENABLE"] == "0"


FAULTS = """
import resource, sys
import numpy as np
import pdunroll as pu
from pdunroll import cli
from pdunroll.tasks.speech import speech_model
if sys.argv[1] == "keep":
    cli._memory_settings()
rng = np.random.default_rng(0)
model = speech_model(320, 0.0625)
x = rng.standard_normal((32, 320)) * 0.1
xt = np.round(x / 0.0625) * 0.0625
steps = pu.StepRule().sizes(model.operator)
faults = []
for _ in range(3):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    pu.gradient(model, xt, x, iterations=30, steps=steps)
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(min(faults[1:]))
"""


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                    reason="glibc's mallopt: Linux with glibc only")
def test_cli_keeps_freed_memory():
    """After ``_memory_settings`` a repeated gradient pages nothing in again; by default
    glibc returns the tape's memory and the next call faults it in (hundreds of pages)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    got = {mode: int(subprocess.run([sys.executable, "-c", FAULTS, mode], capture_output=True,
                                    text=True, check=True, env=env).stdout)
           for mode in ("default", "keep")}
    assert got["default"] > 200 and got["keep"] < 20, got


def _learned_mse(text):
    """The test MSE of the result's row ("learned operator", or its start when no epoch
    improved)."""
    return float([ln for ln in text.splitlines()
                  if "learned operator" in ln or "no epoch improved" in ln][0].split()[-2])


def test_evaluate_defaults_to_the_training_data(tmp_path, capsys):
    """``evaluate`` without data options scores the training run's own test set: the same
    synthetic signals and seed, or the same wav folder (not the default synthetic speech)."""
    out = tmp_path / "run"
    assert cli.main(["train", "speech", "--out", str(out), "--seed", "3", *TINY]) == 0
    results = json.loads((out / "results.json").read_text())
    capsys.readouterr()
    assert cli.main(["evaluate", str(out / "operator.npz")]) == 0
    text = capsys.readouterr().out
    assert "6 × 0.25 s, seed 3" in text
    assert _learned_mse(text) == pytest.approx(results["test"][-1]["mse"], rel=1e-4)

    data = _wav_folder(tmp_path)
    out = tmp_path / "wav-run"
    assert cli.main(["train", "speech", "--data", str(data), "--out", str(out), *WAV_TINY]) == 0
    results = json.loads((out / "results.json").read_text())
    capsys.readouterr()
    assert cli.main(["evaluate", str(out / "operator.npz")]) == 0
    text = capsys.readouterr().out
    assert str(data) in text
    assert _learned_mse(text) == pytest.approx(results["test"][-1]["mse"], rel=1e-4)


def test_output_folder_is_checked_before_training(tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("")
    assert cli.main(["train", "speech", "--out", str(afile), *TINY]) == 2
    err = capsys.readouterr().err
    assert "--out" in err and "is a file, expected a folder" in err
    assert cli.main(["train", "speech", "--out", str(tmp_path / "new"), "--resume", *TINY]) == 2
    assert "--resume: there is no" in capsys.readouterr().err


def test_a_new_run_does_not_overwrite_an_earlier_one(tmp_path, capsys):
    """Forgetting --resume (or reusing the default --out) must not throw away a run."""
    out = tmp_path / "run"
    assert cli.main(["train", "speech", "--out", str(out), *TINY]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert cli.main(["train", "speech", "--out", str(out), "--lr", "0.1", *TINY]) == 2
    err = capsys.readouterr().err
    assert "earlier run" in err and "--resume" in err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_ctrl_c_before_the_first_step_says_nothing_was_saved(tmp_path, capsys, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(pu.StepRule, "initial_norm", interrupted)  # ‖K‖ of the start
    out = tmp_path / "run"
    assert cli.main(["train", "speech", "--out", str(out), *TINY]) == 130
    err = capsys.readouterr().err
    assert "nothing to resume" in err and "--resume" not in err
    assert not (out / "checkpoint.npz").exists()


@pytest.mark.skipif(os.name != "posix", reason="POSIX signals")
def test_sigterm_saves_like_ctrl_c(tmp_path, capsys, interrupt_training):
    """``kill PID`` (or a batch scheduler's SIGTERM) keeps the state of the last step."""
    import signal

    interrupt_training(3, lambda: os.kill(os.getpid(), signal.SIGTERM))
    before = signal.getsignal(signal.SIGTERM)
    out = tmp_path / "run"
    assert cli.main(["train", "speech", "--out", str(out), *TINY]) == 128 + signal.SIGTERM
    assert "--resume" in capsys.readouterr().err
    assert pu.load_checkpoint(out / "checkpoint.npz", np.zeros((32, 32)))[0].step == 3
    assert signal.getsignal(signal.SIGTERM) is before


def test_zero_is_not_taken_for_the_default(tmp_path, capsys):
    """``evaluate -L 0`` and ``--threads 0`` are errors, not silently the default."""
    out = tmp_path / "run"
    assert cli.main(["train", "speech", "--out", str(out), *TINY]) == 0
    capsys.readouterr()
    assert cli.main(["evaluate", str(out / "operator.npz"), "-L", "0"]) == 2
    assert "iterations must be an integer >= 1, got 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["evaluate", str(out / "operator.npz"), "--threads", "0"])
    assert "--threads: expected an integer >= 1, got '0'" in capsys.readouterr().err


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_divergence_is_a_clear_error(tmp_path, capsys, dtype):
    """In float32 the step overflows to inf in the parameters, in float64 the loss blows up:
    both are reported as divergence, not as a bad argument."""
    out = tmp_path / "run"
    code = cli.main(["train", "speech", "--out", str(out), "--optimizer", "sgd",
                     "--lr", "1e300", "--dtype", dtype, *TINY])
    assert code == 2
    assert "training diverged" in capsys.readouterr().err


def test_resume_reads_the_settings_back(tmp_path, capsys, interrupt_training):
    """``--resume`` continues with the settings the run was started with: none retyped, and the
    training configuration read back from the checkpoint is the one given; an option given
    again that differs is refused, naming it."""
    from pdunroll.learning.config import TrainConfig

    interrupt_training(3)
    out = tmp_path / "run"
    given = ["--m", "48", "--lr", "5e-4", "--schedule", "constant", "--seed", "2",
             "--bitrate", "5", "--omega", "12"]
    assert cli.main(["train", "speech", "--out", str(out), *TINY, *given]) == 130
    config = TrainConfig.from_checkpoint(out / "checkpoint.npz")
    assert (config.lr.initial, config.lr.schedule, config.omega, config.seed) == \
        (5e-4, "constant", 12.0, 2)
    assert (config.iterations, config.epochs, config.batch_size) == (4, 2, 16)
    interrupt_training(None)
    capsys.readouterr()
    assert cli.main(["train", "speech", "--out", str(out), "--resume", "--quiet"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert (results["m"], results["bitrate"], results["seed"]) == (48, 5, 2)
    assert results["settings"]["lr"] == 5e-4 and results["settings"]["omega"] == 12
    assert results["steps"] == 2 * -(-results["data"]["frames"]["train"] // 16)
    assert cli.main(["train", "speech", "--out", str(out), "--resume", "--epochs", "3"]) == 2
    assert "epochs: checkpoint 2, now 3" in capsys.readouterr().err


def test_a_run_no_epoch_improved_says_so(tmp_path, capsys):
    """A rate far too large makes every epoch worse than the start: the console, train.log and
    results.json say so, and neither table calls the start "learned"."""
    out = tmp_path / "run"
    assert cli.main(["train", "speech", "--out", str(out), *TINY, "--lr", "0.3",
                     "--schedule", "constant"]) == 0
    text = capsys.readouterr().out
    results = json.loads((out / "results.json").read_text())
    assert results["best_epoch"] == 0 and results["improved"] is False
    assert results["test"][-1]["method"] == "start (no epoch improved)"
    assert "learned operator" not in text and "no epoch improved on the start" in text
    assert "(none improved on the start)" in text
    log = (out / "train.log").read_text()
    assert "no epoch improved on the start, the result is the starting operator" in log
    assert pu.load_operator(out / "operator.npz")[1]["metadata"]["improved"] is False
    assert cli.main(["evaluate", str(out / "operator.npz")]) == 0
    table = capsys.readouterr().out
    assert "start (no epoch improved)" in table and "learned operator" not in table


def test_load_model_reproduces_the_table_of_the_run(tmp_path):
    """A run's operator.npz is the whole learned model: pu.load_model(...).reconstruct with no
    setting passed (ω = 40 of the command line, L, float32) gives the test MSE of its table."""
    from pdunroll.tasks.speech import evaluation_set

    out = tmp_path / "run"
    assert cli.main(["train", "speech", "--out", str(out), *TINY]) == 0
    results = json.loads((out / "results.json").read_text())
    learned = pu.load_model(out / "operator.npz")
    assert (learned.iterations, learned.steps.omega, str(learned.dtype)) == (4, 40.0, "float32")
    (x_tilde, x_true), _, _ = evaluation_set("run", learned.metadata, 32)
    x_hat = learned.reconstruct(x_tilde)
    assert x_hat.dtype == x_tilde.dtype == np.float64
    assert pu.mse(x_hat, x_true) == pytest.approx(results["test"][-1]["mse"], rel=1e-4)
    assert pu.mse(pu.reconstruct(learned.model, x_tilde.astype(np.float32), iterations=4,
                                 omega=10.0), x_true) != \
        pytest.approx(results["test"][-1]["mse"], rel=1e-4)  # ω matters: 10 is another model


def test_arguments_a_run_would_ignore_are_refused(tmp_path, capsys, monkeypatch):
    """Each used to be accepted silently (docs, "Reliability"): --out '' (the current folder),
    --signals/--seconds with --data, --init with --resume, --m changed on resume, the same
    image for training and test, --relax-primal with --method implicit (a singular system: a
    raw ConvergenceError after training started) and too few synthetic signals."""
    out = tmp_path / "run"
    with pytest.raises(SystemExit):
        cli.main(["train", "speech", "--out", "", *TINY])
    assert "--out: must name a folder" in capsys.readouterr().err
    wavs = tmp_path / "wavs"
    wavs.mkdir()
    for i, s in enumerate(synthetic_speech(4, seconds=0.25, seed=1)):
        wavfile.write(wavs / f"s{i}.wav", 16000, (s * 20000).astype(np.int16))
    cases = [
        (["--data", str(wavs)], "--seconds and --signals describe the synthetic speech"),
        (["--relax-primal", "--method", "implicit"], "--relax-primal does not go with --method "
                                                     "implicit"),
        (["--signals", "2"], "--signals must be at least 3"),
    ]
    for extra, message in cases:
        assert cli.main(["train", "speech", "--out", str(out), *TINY, *extra]) == 2, extra
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, err
        assert not out.exists()
    assert cli.main(["train", "speech", "--out", str(out), *TINY]) == 0
    capsys.readouterr()
    assert cli.main(["train", "speech", "--out", str(out), "--resume", "--init",
                     str(out / "operator.npz"), *TINY]) == 2
    assert "--init is not used with --resume" in capsys.readouterr().err
    assert cli.main(["train", "speech", "--out", str(out), "--resume", "--m", "64", *TINY]) == 2
    assert "--m 64: the run in" in capsys.readouterr().err
    assert cli.main(["train", "denoise", "--images", "camera", "--test-images", "camera",
                     "--out", str(tmp_path / "d")]) == 2
    assert "--images and --test-images share camera" in capsys.readouterr().err


def test_a_device_the_machine_lacks_is_one_line(tmp_path, capsys):
    """torch without CUDA (or without that GPU) raised an AssertionError or dumped its
    dispatcher table; now one line names --device, before any training."""
    pytest.importorskip("torch")
    import torch

    if torch.cuda.device_count() > 5:
        pytest.skip("this machine has a GPU cuda:5")
    assert cli.main(["train", "speech", "--out", str(tmp_path / "r"), *TINY, "--backend",
                     "torch", "--device", "cuda:5"]) == 2
    err = capsys.readouterr().err
    assert "--backend torch --device cuda:5: this machine cannot run there" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "r").exists()
