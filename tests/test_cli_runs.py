"""The command line on a user's own wav folder: evaluate a whole folder, defaults, epoch lines,
records, arguments first, locked and numbered run folders, data fingerprints, periodic
checkpoints that survive SIGKILL, damaged files and unwritable paths (issues 13 and 15)."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from scipy.io import wavfile

import pdunroll as pu
from pdunroll import cli
from pdunroll.data.speech import synthetic_speech

FAST = ["--iterations", "3", "--epochs", "2", "--batch-size", "16", "--quiet"]


def _wavs(folder, count=5, seconds=0.2, seed=1, rate=16000):
    """``count`` synthetic recordings as 16-bit mono wav files in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, s in enumerate(synthetic_speech(count, seconds=seconds, seed=seed)):
        wavfile.write(folder / f"s{i}.wav", rate, (s * 20000).astype(np.int16))
    return folder


def _train(tmp_path, data, *extra, out="run"):
    return cli.main(["train", "speech", "--data", str(data), "--out", str(tmp_path / out),
                     "--n", "32", *FAST, *extra])


def _rows(text):
    """The table's rows by name; the result's row as "learned operator" (its name when no
    epoch improved on the start is "start (no epoch improved)")."""
    return {ln.split("  ")[1].strip().replace("start (no epoch improved)", "learned operator"):
            float(ln.split()[-2]) for ln in text.splitlines()
            if ln.startswith("  ") and ("operator" in ln or "DCT" in ln or "input" in ln
                                        or "no epoch improved" in ln)}


# ---------------------------------------------------------------- issue 15


def test_evaluate_scores_every_file_of_a_folder(tmp_path, capsys):
    data = _wavs(tmp_path / "wavs")
    assert _train(tmp_path, data) == 0
    other = _wavs(tmp_path / "other", count=4, seconds=0.15, seed=7)
    capsys.readouterr()
    op = str(tmp_path / "run" / "operator.npz")
    assert cli.main(["evaluate", op, "--data", str(other)]) == 0
    text = capsys.readouterr().out
    frames = sum(len(wavfile.read(p)[1]) // 32 for p in sorted(other.iterdir()))
    assert f"all 4 wav files at 16000 Hz, {frames} frames of n=32" in text
    assert "  DCT  " in text and "DCT frame start (64×32)" in text  # m = 2n with --data
    assert cli.main(["evaluate", op, "--data", str(other), "--no-baseline"]) == 0
    text = capsys.readouterr().out
    assert "DCT" not in text and ("learned operator" in text or "no epoch improved" in text)
    corpus = tmp_path / "corpus"
    _wavs(corpus / "train")
    _wavs(corpus / "dev", count=2)
    assert cli.main(["evaluate", op, "--data", str(corpus)]) == 2
    assert f"score the test set with --data {corpus / 'dev'}" in capsys.readouterr().err
    for gone in (["--max-frames", "5"], ["--seed", "3"], ["--signals", "4"]):
        with pytest.raises(SystemExit):
            cli.main(["evaluate", op, *gone])
    assert "unrecognized arguments" in capsys.readouterr().err


def test_evaluate_reads_only_the_recorded_test_files(tmp_path, capsys):
    data = _wavs(tmp_path / "wavs", count=7)
    assert _train(tmp_path, data) == 0
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    test_files = set(results["test_set"]["files"])
    for p in data.iterdir():  # the training and validation files are not needed any more
        if p.name not in test_files:
            p.unlink()
    capsys.readouterr()
    assert cli.main(["evaluate", str(tmp_path / "run" / "operator.npz")]) == 0
    text = capsys.readouterr().out
    assert f"{len(test_files)} wav files of {data}" in text
    assert _rows(text)["learned operator"] == pytest.approx(results["test"][-1]["mse"], rel=1e-4)


def test_wav_defaults_are_the_papers_and_stated(tmp_path, capsys):
    with pytest.raises(SystemExit):
        cli.main(["train", "speech", "--help"])
    helptext = " ".join(capsys.readouterr().out.split())
    assert "default 320 with --data" in helptext and "128 for the synthetic speech" in helptext
    assert "default 2n with --data" in helptext and "ω (default 40)" in helptext
    data = _wavs(tmp_path / "wavs", seconds=0.25)
    assert cli.main(["train", "speech", "--data", str(data), "--out", str(tmp_path / "run"),
                     *FAST]) == 0
    model, settings = pu.load_operator(tmp_path / "run" / "operator.npz")
    assert model.operator.matrix.shape == (640, 320) and settings["metadata"]["n"] == 320
    assert settings["metadata"]["m"] == 640 and settings["solver"]["omega"] == 40
    # no hidden b: asymptotic without --b is refused before anything is written
    assert cli.main(["train", "speech", "--data", str(data), "--out", str(tmp_path / "b"),
                     "--method", "asymptotic", *FAST]) == 2
    assert "needs --b" in capsys.readouterr().err and not (tmp_path / "b").exists()


def test_one_line_per_epoch_and_a_summary(tmp_path, capsys):
    data = _wavs(tmp_path / "wavs")
    argv = ["train", "speech", "--data", str(data), "--out", str(tmp_path / "run"), "--n", "32",
            "--iterations", "3", "--epochs", "2", "--batch-size", "16"]
    assert cli.main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    epochs = [ln for ln in lines if ln.startswith("epoch ")]
    assert [ln.split(":")[0] for ln in epochs] == ["epoch 1/2", "epoch 2/2"]
    for ln in epochs:
        assert "train loss" in ln and "validation loss" in ln and "dB)" in ln
        assert "start " in ln and ln.endswith(" s")
    # the steps and the best epoch once (the training loop's line), the wall time once
    assert sum(ln.startswith("finished: ") and "steps" in ln and "best epoch 2" in ln
               for ln in lines) == 1
    assert sum(ln.startswith("wall time") for ln in lines) == 1
    assert sum("best epoch" in ln for ln in lines) == 2  # that line and the table's title
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert [e["epoch"] for e in results["epochs"]] == [1, 2]
    h = results["epochs"][1]
    assert f"validation loss {h['val_loss']:.4e} (SNR {h['val_snr_db']:.2f} dB)" in epochs[1]
    assert results["steps"] == 2 * -(-results["data"]["frames"]["train"] // 16)
    assert results["wall_seconds"] > 0 and results["best_epoch"] in (0, 1, 2)
    assert results["start_val_loss"] > 0 and h["val_snr_db"] > 0


def test_records_describe_the_wav_run(tmp_path):
    data = _wavs(tmp_path / "wavs")
    assert _train(tmp_path, data, "--bitrate", "5", "--seed", "2") == 0
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    meta = pu.load_operator(tmp_path / "run" / "operator.npz")[1]["metadata"]
    for record in (results, meta):
        # nothing of the synthetic generator's settings
        assert not {"signals", "seconds"} & (set(record) | set(record["data"]))
        assert "synthetic" not in json.dumps(record)
        assert record["data"]["kind"] == "wav" and record["data"]["folder"] == str(data)
        assert sum(record["data"]["files"].values()) == 5
        assert record["data"]["sample_rate"] == 16000
        assert set(record["data"]["frames"]) == {"train", "validation", "test"}
        assert record["n"] == 32 and record["bitrate"] == 5 and record["seed"] == 2
        assert record["settings"]["iterations"] == 3 and record["settings"]["method"]
        assert record["versions"]["pdunroll"] and record["versions"]["backend"]["name"] == "numpy"
    assert results["command"][:3] == ["pdunroll", "train", "speech"]


def test_arguments_are_checked_before_any_work(tmp_path, capsys):
    """An invalid combination fails at once and leaves no --out; the corrected command runs."""
    data = _wavs(tmp_path / "wavs")
    out = tmp_path / "run"
    bad = [["--method", "asymptotic", "--b", "2", "--weights", "harmonic"],
           ["--method", "truncated", "--b", "9"], ["--method", "full", "--b", "2"]]
    for extra in bad:
        assert _train(tmp_path, data, *extra) == 2
        text = capsys.readouterr()
        assert "data:" not in text.out and not out.exists()  # before reading any data
        assert "pdunroll: error: " in text.err
    _train(tmp_path, data, *bad[0])
    assert "weights cannot be combined" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # a non-positive number is refused by the parser
        _train(tmp_path, data, "--lr", "0")
    assert cli.main(["train", "speech", "--rate", "8000", "--out", str(out), *FAST]) == 2
    assert "needs --data" in capsys.readouterr().err and not out.exists()
    assert _train(tmp_path, data, "--method", "asymptotic", "--b", "2") == 0


def test_a_run_that_fails_before_its_first_step_leaves_nothing(tmp_path, capsys, monkeypatch):
    def broken(*args, **kwargs):
        raise ValueError("broken before the first step")

    monkeypatch.setattr(pu.StepRule, "initial_norm", broken)  # ‖K‖ of the start
    data = _wavs(tmp_path / "wavs")
    assert _train(tmp_path, data, out="a/b/run") == 2
    assert "broken before the first step" in capsys.readouterr().err
    assert not (tmp_path / "a").exists()
    monkeypatch.undo()
    assert _train(tmp_path, data, out="a/b/run") == 0  # not refused as an "earlier run"


# ---------------------------------------------------------------- issue 13


def _cli_process(args, cwd):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    return subprocess.Popen([sys.executable, "-c", "import sys; from pdunroll.cli import main; "
                             "sys.exit(main(sys.argv[1:]))", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(predicate, proc, timeout=120.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        if proc.poll() is not None:
            raise AssertionError(f"the process ended first: {proc.communicate()}")
        time.sleep(0.02)
    proc.kill()
    raise AssertionError("timed out")


def _like(path):
    """Zeros of the operator's shape in the checkpoint (the wav defaults make K 2n × n)."""
    with np.load(path) as f:
        return np.zeros_like(f["params.0"])


def _step(path):
    try:
        return pu.load_checkpoint(path, _like(path))[0].step
    except (ValueError, OSError, KeyError):
        return -1


@pytest.mark.skipif(os.name != "posix", reason="POSIX signals and flock")
def test_lock_refuses_a_second_run_and_sigkill_loses_at_most_the_interval(tmp_path, capsys,
                                                                          interrupt_training):
    """A real second process holds --out: another run and a resume are refused, naming it.
    After its SIGKILL the stale lock is detected, and the periodic checkpoint (every 3 steps,
    within the epoch) is exactly the state an uninterrupted run has at that step."""
    data = _wavs(tmp_path / "wavs", count=6, seconds=0.5)
    out = tmp_path / "run"
    argv = ["train", "speech", "--data", str(data), "--out", str(out), "--n", "32",
            "--iterations", "40", "--epochs", "400", "--batch-size", "4", "--quiet"]
    proc = _cli_process([*argv, "--checkpoint-steps", "3"], tmp_path)
    try:
        ckpt = out / "checkpoint.npz"
        _wait_for(lambda: _step(ckpt) >= 6, proc)
        assert cli.main(argv) == 2
        err = capsys.readouterr().err
        assert f"is in use by process {proc.pid}" in err
        assert cli.main([*argv, "--resume"]) == 2
        assert f"in use by process {proc.pid}" in capsys.readouterr().err
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    killed_state, _ = pu.load_checkpoint(ckpt, _like(ckpt))
    k = killed_state.step
    per_epoch = -(-json.loads(_settings(ckpt))["config"]["n_train"] // 4)
    assert k % 3 == 0 and k < per_epoch  # saved within the first epoch, not at its end

    interrupt_training(k)
    ref = tmp_path / "ref"
    ref_argv = [a if a != str(out) else str(ref) for a in argv]
    assert cli.main(ref_argv) == 130
    ref_state, _ = pu.load_checkpoint(ref / "checkpoint.npz", _like(ref / "checkpoint.npz"))
    np.testing.assert_array_equal(killed_state.params, ref_state.params)
    for a, b in zip(killed_state.opt_state["m"], ref_state.opt_state["m"], strict=True):
        np.testing.assert_array_equal(a, b)
    assert killed_state.step == ref_state.step and killed_state.batch == ref_state.batch
    interrupt_training(None)
    capsys.readouterr()
    # the dead process's lock is stale: a resume takes it over and says so (this one is then
    # refused for its other --epochs, naming it)
    assert (out / ".lock").exists()
    short = [a if a != "400" else "1" for a in argv]
    assert cli.main([*short, "--resume"]) == 2
    text = capsys.readouterr()
    assert f"stale lock {out / '.lock'} of process {proc.pid}" in text.out
    assert "epochs: checkpoint 400, now 1" in text.err
    assert not (out / ".lock").exists()


def _settings(path):
    with np.load(path) as f:
        return str(f["settings"])


@pytest.mark.skipif(os.name != "posix", reason="POSIX flock")
def test_a_stale_lock_of_a_dead_process_is_taken_over(tmp_path, capsys):
    data = _wavs(tmp_path / "wavs")
    out = tmp_path / "run"
    out.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    pid = int(dead.stdout)
    import socket

    (out / ".lock").write_text(json.dumps({"pid": pid, "host": socket.gethostname(),
                                           "since": "earlier"}))
    assert _train(tmp_path, data) == 0
    text = capsys.readouterr().out
    assert f"stale lock {out / '.lock'} of process {pid}" in text
    assert not (out / ".lock").exists()  # released at the end


def test_resume_and_evaluate_refuse_other_data(tmp_path, capsys, interrupt_training):
    data = _wavs(tmp_path / "wavs", count=6)
    interrupt_training(2)
    assert _train(tmp_path, data) == 130
    interrupt_training(None)
    meta = json.loads(_settings(tmp_path / "run" / "checkpoint.npz"))["config"]["data"]
    name = sorted(meta["files"])[0]
    # other recordings of the same size and count
    rate, x = wavfile.read(data / name)
    wavfile.write(data / name, rate, (-x).astype(np.int16))
    capsys.readouterr()
    assert _train(tmp_path, data, "--resume") == 2
    err = capsys.readouterr().err
    assert "training data: 1 file(s) with other contents (SHA-256): " + name in err
    wavfile.write(data / name, rate, x)  # restored: resumes
    assert _train(tmp_path, data, "--resume") == 0
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    test_name = sorted(results["test_set"]["files"])[0]
    rate, x = wavfile.read(data / test_name)
    wavfile.write(data / test_name, rate, (x // 2).astype(np.int16))
    assert cli.main(["evaluate", str(tmp_path / "run" / "operator.npz")]) == 2
    err = capsys.readouterr().err
    assert "have changed since training" in err and test_name in err


def test_damaged_mixed_and_short_wav_files_are_named(tmp_path, capsys):
    data = _wavs(tmp_path / "wavs")
    damaged = data / "s2.wav"
    damaged.write_bytes(damaged.read_bytes()[:30])  # the header cut in the fmt chunk
    assert _train(tmp_path, data) == 2
    err = capsys.readouterr().err
    assert f"{damaged} is not a readable wav file" in err and "Traceback" not in err
    _wavs(data)  # repaired
    x = (synthetic_speech(1, seconds=0.2, seed=5)[0] * 20000).astype(np.int16)
    wavfile.write(data / "s9.wav", 8000, x)
    assert _train(tmp_path, data) == 2
    err = capsys.readouterr().err
    assert "mixes sample rates (8000 Hz: s9.wav; 16000 Hz: s0.wav" in err and "--rate" in err
    assert _train(tmp_path, data, "--rate", "16000") == 0
    assert "6 wav files at 16000 Hz (resampled)" in capsys.readouterr().out
    wavfile.write(data / "s9.wav", 16000, x[1000:1020])  # shorter than one frame of 32
    for seed in ("0", "1", "2"):
        assert _train(tmp_path, data, "--seed", seed, out=f"r{seed}") == 2
        assert "s9.wav (20 samples)" in capsys.readouterr().err


def test_an_unwritable_out_fails_before_any_work(tmp_path, capsys):
    """A path under a file fails for root too; an immutable folder (chattr +i, or a read-only
    one for other users) is what a read-only --out really is."""
    data = _wavs(tmp_path / "wavs")
    afile = tmp_path / "afile"
    afile.write_text("")
    assert _train(tmp_path, data, out="afile/run") == 2
    text = capsys.readouterr()
    assert str(afile / "run") in text.err and afile.read_text() == ""
    assert "data:" not in text.out
    ro = tmp_path / "ro"
    ro.mkdir()
    if os.geteuid() == 0:
        if shutil.which("chattr") is None or \
                subprocess.run(["chattr", "+i", str(ro)], capture_output=True).returncode:
            pytest.skip("root, and chattr +i is not available: no read-only folder to test")
    else:
        ro.chmod(0o500)
    try:
        assert _train(tmp_path, data, out="ro") == 2
        text = capsys.readouterr()
        assert "data:" not in text.out  # refused before the data were read
        assert f"--out {ro}" in text.err
        assert "ermission" in text.err or "not permitted" in text.err
    finally:
        if os.geteuid() == 0:
            subprocess.run(["chattr", "-i", str(ro)], check=True)
        else:
            ro.chmod(0o700)
    assert list(ro.iterdir()) == []


def test_the_default_out_is_a_new_numbered_folder(tmp_path, capsys, monkeypatch):
    """The README's first command, run twice, works twice and keeps the first run."""
    monkeypatch.chdir(tmp_path)
    tiny = ["--signals", "6", "--seconds", "0.25", "--n", "32", *FAST]
    assert cli.main(["train", "speech", *tiny]) == 0
    first = {p.name: p.read_bytes() for p in (tmp_path / "runs" / "speech").iterdir()}
    assert cli.main(["train", "speech", *tiny]) == 0
    assert "output folder: runs/speech-2" in capsys.readouterr().out
    assert {p.name: p.read_bytes() for p in (tmp_path / "runs" / "speech").iterdir()} == first
    assert (tmp_path / "runs" / "speech-2" / "operator.npz").is_file()
    assert cli.main(["train", "speech", "--resume", *tiny]) == 0  # the newest run
    assert "output folder: runs/speech-2 (resumed)" in capsys.readouterr().out


def test_version_and_logs(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.startswith("pdunroll ")
    assert (Path(pu.__file__).parent / "py.typed").is_file()  # PEP 561: typed package
    data = _wavs(tmp_path / "wavs")
    assert _train(tmp_path, data) == 0  # --quiet: no epoch lines on the console
    assert "epoch 1/2" not in capsys.readouterr().out
    log = (tmp_path / "run" / "train.log").read_text()
    assert "epoch 1/2: train loss" in log and "epoch 2/2" in log and "wall time" in log


@pytest.mark.skipif(os.name != "posix", reason="POSIX flock")
def test_folder_lock_and_numbered_folders(tmp_path):
    from pdunroll.learning.runfolder import FolderInUse, FolderLock, latest_folder, numbered_folder

    with FolderLock(tmp_path) as lock:
        assert lock.stale is None
        assert json.loads((tmp_path / ".lock").read_text())["pid"] == os.getpid()
        with pytest.raises(FolderInUse, match=f"in use by process {os.getpid()}"):
            FolderLock(tmp_path).acquire()  # another open file description: refused too
        with pytest.raises(FolderInUse):
            FolderLock(tmp_path).check_free()
    assert not (tmp_path / ".lock").exists()
    FolderLock(tmp_path).check_free()
    base = tmp_path / "runs" / "speech"
    assert numbered_folder(base) == base and latest_folder(base) is None
    base.mkdir(parents=True)
    assert numbered_folder(base) == base  # empty: used
    (base / "checkpoint.npz").write_bytes(b"")
    assert numbered_folder(base) == base.with_name("speech-2")
    base.with_name("speech-2").mkdir()
    (base.with_name("speech-2") / "checkpoint.npz").write_bytes(b"")
    assert numbered_folder(base) == base.with_name("speech-3")
    assert latest_folder(base) == base.with_name("speech-2")


def test_resume_refuses_a_changed_test_set(tmp_path, capsys, interrupt_training):
    """The checkpoint's fingerprint covers the test files too: a test file deleted between the
    interruption and the resume is named, not silently scored on fewer frames."""
    data = _wavs(tmp_path / "wavs", count=8)
    interrupt_training(2)
    assert _train(tmp_path, data) == 130
    interrupt_training(None)
    test_files = json.loads(_settings(tmp_path / "run" / "checkpoint.npz"))["config"]["data"][
        "test_files"]
    name = sorted(test_files)[0]
    kept = (data / name).read_bytes()
    (data / name).unlink()
    capsys.readouterr()
    assert _train(tmp_path, data, "--resume") == 2
    err = capsys.readouterr().err
    assert f"1 file(s) of the test set missing now: {name}" in err and "Traceback" not in err
    (data / name).write_bytes(kept)
    assert _train(tmp_path, data, "--resume") == 0
