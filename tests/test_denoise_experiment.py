"""experiments/denoise_filters.py end to end with tiny settings (scikit-image's bundled images,
no data files needed)."""

import csv
import importlib
import sys
from pathlib import Path

import pytest

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
pytest.importorskip("skimage")


def test_denoise_filters_tiny(tmp_path, monkeypatch):
    sys.path.insert(0, str(EXPERIMENTS))
    try:
        script = importlib.import_module("denoise_filters")
    finally:
        sys.path.remove(str(EXPERIMENTS))
    monkeypatch.setattr(script, "TEST", ("coins",))
    monkeypatch.setattr(script, "FACTORS", (0.9, 1.0))
    argv = ["--sigma", "25", "--steps", "2", "--L", "3", "--patch", "16", "--val-patches", "2",
            "--out", str(tmp_path), "--quiet"]
    assert script.main(argv) == 0
    with open(tmp_path / "denoise.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["model"] for r in rows] == ["noisy input", "TV", "DCT filters", "learned filters"]
    noisy = float(rows[0]["psnr_mean"])
    assert noisy == pytest.approx(20.2, abs=0.3)  # σ = 25/255 on [0, 1]: 20.17 dB
    assert all(float(r["psnr_mean"]) > noisy for r in rows[1:])  # every model denoises
    assert all(r["factor"] in ("0.9", "1.0") for r in rows[1:])
    assert (tmp_path / "filters_sigma25.npy").exists() and (tmp_path / "denoise.png").exists()
    before = (tmp_path / "denoise.csv").read_text()
    assert script.main(argv) == 0  # a rerun skips the σ already done
    assert (tmp_path / "denoise.csv").read_text() == before
