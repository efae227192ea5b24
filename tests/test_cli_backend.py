"""``--backend``, ``--dtype`` and ``--device`` of the command line: the same run on another
array library (or dtype) gives the same table to that dtype's rounding; bad choices fail with a
clear error naming the option."""

import json

import pytest

from pdunroll import cli

TINY = ["--signals", "6", "--seconds", "0.25", "--n", "32", "--iterations", "4",
        "--epochs", "2", "--batch-size", "16", "--quiet"]


def _table(tmp_path, name, *extra):
    out = tmp_path / name
    assert cli.main(["train", "speech", "--out", str(out), *TINY, *extra]) == 0
    return json.loads((out / "results.json").read_text())["test"]


def test_float32_and_torch_agree_with_numpy_float64(tmp_path):
    pytest.importorskip("torch")
    ref = _table(tmp_path, "f64", "--dtype", "float64")
    for name, extra in (("f32", ("--dtype", "float32")),
                        ("torch", ("--backend", "torch", "--dtype", "float64"))):
        got = _table(tmp_path, name, *extra)
        tol = 1e-9 if "float64" in extra else 1e-3
        for a, b in zip(got, ref, strict=True):
            assert a["method"] == b["method"]
            assert a["mse"] == pytest.approx(b["mse"], rel=tol)


def test_evaluate_on_another_backend(tmp_path, capsys):
    pytest.importorskip("torch")
    table = _table(tmp_path, "run", "--dtype", "float64")
    capsys.readouterr()
    assert cli.main(["evaluate", str(tmp_path / "run" / "operator.npz"),
                     "--backend", "torch"]) == 0
    learned = [ln for ln in capsys.readouterr().out.splitlines()
               if "learned operator" in ln or "no epoch improved" in ln][0]
    assert float(learned.split()[-2]) == pytest.approx(table[-1]["mse"], rel=1e-3)  # 4 digits


def test_bad_backend_device_dtype(tmp_path, capsys):
    assert cli.main(["train", "speech", "--out", str(tmp_path / "a"), *TINY,
                     "--device", "cuda"]) == 2
    assert "--device cuda" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["train", "speech", "--backend", "tensorflow", *TINY])
    assert "--backend" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["train", "speech", "--dtype", "float16", *TINY])
    assert "--dtype" in capsys.readouterr().err
