"""experiments/denoise_filters.py end to end with tiny settings (scikit-image's bundled images,
no data files needed)."""

import numpy as np
import pytest
from experiment_scripts import csv_rows, experiment

pytest.importorskip("skimage")


@pytest.fixture
def script():
    return experiment("denoise_filters")


def test_denoise_filters_tiny(script, tmp_path, monkeypatch):
    monkeypatch.setattr(script, "TEST", ("coins",))
    monkeypatch.setattr(script, "FACTORS", (0.9, 1.0))
    argv = ["--sigma", "25", "--steps", "2", "--L", "3", "--patch", "16", "--val-patches", "2",
            "--out", str(tmp_path), "--quiet"]
    assert script.main(argv) == 0
    rows = csv_rows(tmp_path / "denoise.csv")
    assert [r["model"] for r in rows] == ["noisy input", "TV", "DCT filters", "learned filters"]
    noisy = float(rows[0]["psnr_mean"])
    assert noisy == pytest.approx(20.2, abs=0.3)  # σ = 25/255 on [0, 1]: 20.17 dB
    assert all(float(r["psnr_mean"]) > noisy for r in rows[1:])  # every model denoises
    assert all(r["factor"] in ("0.9", "1.0") for r in rows[1:])
    assert (tmp_path / "filters_sigma25.npy").exists() and (tmp_path / "denoise.png").exists()
    before = (tmp_path / "denoise.csv").read_text()
    assert script.main(argv) == 0  # a rerun skips the σ already done
    assert (tmp_path / "denoise.csv").read_text() == before


def test_denoise_filters_valid_boundary_whole_validation_images(script, tmp_path, monkeypatch):
    monkeypatch.setattr(script, "TEST", ("coins",))
    monkeypatch.setattr(script, "VALIDATION", ("clock",))
    monkeypatch.setattr(script, "FACTORS", (0.9, 1.0))
    argv = ["--sigma", "25", "--steps", "2", "--L", "3", "--patch", "16", "--val-patches", "0",
            "--boundary", "valid", "--out", str(tmp_path), "--quiet"]
    assert script.main(argv) == 0
    rows = csv_rows(tmp_path / "denoise.csv")
    assert {(r["boundary"], r["validation"]) for r in rows} == {("valid", "images")}
    assert all(float(r["psnr_mean"]) > float(rows[0]["psnr_mean"]) for r in rows[1:])
    # the boundary reaches the solver: zero extension and valid responses denoise differently
    img = script.di.load_images(("coins",))[0][:64, :64]
    zero, valid = (script.denoise("dct", [img], 25 / 255, 1.0, 3, 1.0, boundary=b)[0]
                   for b in ("zero", "valid"))
    assert zero.shape == valid.shape == img.shape
    assert float(np.abs(zero - valid).max()) > 1e-3
