"""Learned operators and checkpoints on disk: round trips, atomic writes, clear errors."""

import json
import os
import stat

import numpy as np
import pytest

import pdunroll as pu


def _model(backend, dtype):
    K = np.random.default_rng(0).standard_normal((6, 5))
    return pu.AnalysisModel(pu.DenseOperator(backend.asarray(K, dtype)), f=pu.L1Norm(2.0),
                            g=pu.LinfBall(0.125))


def test_operator_round_trip(backend, dtype, tmp_path):
    model = _model(backend, dtype)
    path = pu.save_operator(tmp_path / "sub" / "op.npz", model, iterations=12, omega=3.0,
                            weights="harmonic", metadata={"bitrate": 3})
    assert path.exists() and not list(path.parent.glob("*.tmp"))
    loaded, settings = pu.load_operator(path, xp=backend.xp, device=backend.device)
    np.testing.assert_array_equal(backend.to_numpy(loaded.operator.matrix),
                                  backend.to_numpy(model.operator.matrix))
    assert loaded.operator.dtype == model.operator.dtype
    assert isinstance(loaded.f, pu.L1Norm) and loaded.f.weight == 2.0
    assert isinstance(loaded.g, pu.LinfBall) and loaded.g.radius == 0.125
    assert settings["solver"] == {"iterations": 12, "omega": 3.0, "weights": "harmonic"}
    assert settings["metadata"] == {"bitrate": 3}
    # the loaded model reconstructs exactly as the saved one
    x = backend.asarray(np.random.default_rng(1).standard_normal((3, 5)), dtype)
    a = pu.chambolle_pock(model, x, iterations=4, omega=3.0).x
    b = pu.chambolle_pock(loaded, x, iterations=4, omega=3.0).x
    np.testing.assert_array_equal(backend.to_numpy(a), backend.to_numpy(b))


def test_operator_defaults_to_numpy(numpy_backend, tmp_path):
    model = _model(numpy_backend, "float32")
    pu.save_operator(tmp_path / "op.npz", model, iterations=1, omega=1.0)
    loaded, _ = pu.load_operator(tmp_path / "op.npz")
    assert isinstance(loaded.operator.matrix, np.ndarray)
    assert loaded.operator.matrix.dtype == np.float32


def test_bad_files_give_clear_errors(numpy_backend, tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        pu.load_operator(tmp_path / "missing.npz")
    (tmp_path / "junk.npz").write_text("not a zip")
    with pytest.raises(ValueError, match="not a pdunroll .npz file"):
        pu.load_operator(tmp_path / "junk.npz")
    np.savez(tmp_path / "plain.npz", a=np.zeros(2))
    with pytest.raises(ValueError, match="no settings entry"):
        pu.load_operator(tmp_path / "plain.npz")
    np.savez(tmp_path / "ck.npz", settings=np.array(json.dumps({"format": "pdunroll-checkpoint"})))
    with pytest.raises(ValueError, match="expected 'pdunroll-operator'"):
        pu.load_operator(tmp_path / "ck.npz")


def test_unsupported_model_parts_are_named(numpy_backend, tmp_path):
    class Custom(pu.Zero):  # a user's own function, unknown to the checkpoint format
        pass

    model = pu.AnalysisModel(pu.DenseOperator(np.eye(3)), f=Custom(), g=pu.Zero())
    with pytest.raises(TypeError, match=r"model's f: cannot save .*Custom.*@pdunroll.saveable"):
        pu.save_operator(tmp_path / "op.npz", model, iterations=1, omega=1.0)


def test_failed_write_keeps_the_old_file(numpy_backend, tmp_path, monkeypatch):
    model = _model(numpy_backend, "float64")
    path = pu.save_operator(tmp_path / "op.npz", model, iterations=1, omega=1.0)
    before = path.read_bytes()

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez_compressed", broken)
    with pytest.raises(OSError, match="disk full"):
        pu.save_operator(path, model.with_params(np.zeros((6, 5))), iterations=1, omega=1.0)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["op.npz"]


def test_files_are_compressed(tmp_path):
    """A checkpoint's JSON settings (its step history) take a fraction of their size as NumPy
    text, 4 bytes a character; the file reads back the same."""
    from pdunroll.learning.checkpoint import read_npz, write_npz

    history = {"step_loss": [0.1 + 1e-6 * k for k in range(5000)]}
    text = len(json.dumps(history))
    path = write_npz(tmp_path / "c.npz", {"a": np.arange(6.0)}, {"format": "x", **history})
    assert path.stat().st_size < text  # NumPy's text alone is 4 × text
    arrays, settings = read_npz(path, "x")
    assert settings["step_loss"] == history["step_loss"]
    assert (arrays["a"] == np.arange(6.0)).all()


def test_filter_bank_round_trip(backend, tmp_path):
    filters = backend.asarray(pu.dct_filters(3), "float64")
    model = pu.AnalysisModel(pu.Conv2dFilterBank(filters, (6, 7), "zero"), f=pu.L1Norm(),
                             g=pu.L2Ball(0.5))
    pu.save_operator(tmp_path / "bank.npz", model, iterations=3, omega=1.0)
    loaded, _ = pu.load_operator(tmp_path / "bank.npz", xp=backend.xp, device=backend.device)
    op = loaded.operator
    assert isinstance(op, pu.Conv2dFilterBank)
    assert (op.in_shape, op.boundary) == ((6, 7), "zero")
    np.testing.assert_array_equal(backend.to_numpy(op.filters), backend.to_numpy(filters))


def test_damaged_files_give_clear_errors(numpy_backend, tmp_path):
    """Empty and truncated files (an interrupted copy), a .npy file and a settings entry that
    is not JSON are ValueErrors naming the file, not EOFError / BadZipFile / TypeError."""
    good = pu.save_operator(tmp_path / "op.npz", _model(numpy_backend, "float64"),
                            iterations=1, omega=1.0).read_bytes()
    (tmp_path / "empty.npz").write_bytes(b"")
    (tmp_path / "cut.npz").write_bytes(good[: len(good) // 2])
    np.save(tmp_path / "single.npy", np.zeros(3))
    np.savez(tmp_path / "text.npz", settings=np.array("{not json"))
    np.savez(tmp_path / "list.npz", settings=np.array("[1, 2]"))
    for name in ("empty.npz", "cut.npz", "single.npy", "text.npz", "list.npz"):
        with pytest.raises(ValueError, match=name):
            pu.load_operator(tmp_path / name)


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
def test_saved_files_follow_the_umask(numpy_backend, tmp_path):
    """The atomic write's temporary file is private (0600); the result must not be."""
    old = os.umask(0o022)
    try:
        path = pu.save_operator(tmp_path / "op.npz", _model(numpy_backend, "float64"),
                                iterations=1, omega=1.0)
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def _dead_pid() -> int:
    """The id of a process that has exited (a child that was waited for)."""
    import subprocess
    import sys

    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                           capture_output=True, text=True, check=True)
    return int(child.stdout)


def test_leftovers_of_a_killed_write_are_removed_on_the_next_save(numpy_backend, tmp_path):
    """A SIGKILL during a write leaves .<name>.<pid>.*.tmp behind (os.replace never ran); the
    next write of the same file removes those of dead processes and of older versions (no
    process id), and keeps those of a live writer and of other files."""
    from pdunroll.learning.checkpoint import write_npz

    path = tmp_path / "checkpoint.npz"
    dead = tmp_path / f".checkpoint.npz.{_dead_pid()}.abc123.tmp"
    old = tmp_path / ".checkpoint.npz.k2j4h1x.tmp"  # written before temporary names had a pid
    live = tmp_path / f".checkpoint.npz.{os.getppid()}.q9.tmp"
    other = tmp_path / f".op.npz.{_dead_pid()}.zz.tmp"
    for p in (dead, old, live, other):
        p.write_bytes(b"x" * 1000)
    write_npz(path, {"a": np.ones(3)}, {"format": "test"})
    assert path.exists() and not dead.exists() and not old.exists()
    assert live.exists() and other.exists()


def test_a_typo_in_a_path_creates_no_chain_of_folders(numpy_backend, tmp_path):
    """The file's own folder is created when its parent exists; a deeper missing chain is
    refused naming the path (it used to be created up to the file system's root)."""
    model = _model(numpy_backend, "float64")
    deep = tmp_path / "no" / "such" / "op.npz"
    with pytest.raises(FileNotFoundError, match=f"neither its folder {deep.parent} .*{deep}"):
        pu.save_operator(deep, model, iterations=3, omega=1.0)
    assert not (tmp_path / "no").exists()
    x = np.zeros((2, 5))
    with pytest.raises(FileNotFoundError, match="cannot write .*c.npz: neither its folder"):
        pu.train(model, x, x, epochs=1, progress=False, checkpoint=tmp_path / "a" / "b" / "c.npz")
    assert not (tmp_path / "a").exists()
    assert pu.save_operator(tmp_path / "new" / "op.npz", model, iterations=3, omega=1.0).exists()


@pytest.mark.parametrize("call, error, match", [
    (lambda m, s: pu.load_operator(3), TypeError, "path must be a file path"),
    (lambda m, s: pu.save_operator(3, m, iterations=3, omega=1.0), TypeError, "path must be"),
    (lambda m, s: pu.save_operator("", m, iterations=3, omega=1.0), TypeError, "path must be"),
    (lambda m, s: pu.load_checkpoint(s, pu.dct_matrix(6)), ValueError,
     r"holds operator parameters of shapes \[\(6, 5\)\], but like .* \[\(6, 6\)\]"),
    (lambda m, s: pu.load_checkpoint(s, ()), TypeError, "like must be the operator parameters"),
    (lambda m, s: pu.save_checkpoint(
        "x.npz", pu.load_checkpoint(s, m.operator.params)[0], config={}, optimizer={},
        model=pu.AnalysisModel(pu.DenseOperator(pu.dct_matrix(5)), m.f, m.g)),
     ValueError, r"the state's parameters have shapes \[\(6, 5\)\] but the model's operator"),
    (lambda m, s: pu.save_checkpoint("x.npz", 3, model=m, config={}, optimizer={}), TypeError,
     "state must be a TrainState"),
])
def test_files_and_models_that_do_not_fit_are_named(numpy_backend, tmp_path, monkeypatch,
                                                    call, error, match):
    monkeypatch.chdir(tmp_path)
    model = _model(numpy_backend, "float64")
    x = np.zeros((2, 5))

    def stop(info):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        pu.train(model, x, x, epochs=1, batch_size=1, progress=False, checkpoint="ck.npz",
                 callback=stop)
    with pytest.raises(error, match=match):
        call(model, tmp_path / "ck.npz")
