"""experiments/inverse_problems.py runs end to end on train400 and Set12 (the --quick setting)
and resumes: a second run keeps the rows and the learned filters of the first."""

import os
from pathlib import Path

import pytest
from conftest import SHARED
from experiment_scripts import csv_rows, experiment

IMAGES = Path(os.environ.get("PDUNROLL_IMAGES_DIR", SHARED / "data" / "images"))

pytestmark = pytest.mark.skipif(
    not (IMAGES / "train400").is_dir() or not (IMAGES / "set12").is_dir(),
    reason=f"train400/set12 images not found at {IMAGES} (set PDUNROLL_IMAGES_DIR)")


def test_inverse_problems_quick_and_resume(tmp_path):
    script = experiment("inverse_problems")
    argv = ["--quick", "--images", str(IMAGES), "--out", str(tmp_path), "--quiet"]
    assert script.main(argv) == 0
    rows = csv_rows(tmp_path / "inverse_problems.csv")
    models = ["start x̃", "TV", "DCT filters", "learned filters"]
    assert [(r["problem"], r["model"]) for r in rows] == [
        (p, m) for p in ("deblur", "inpaint") for m in models]
    for r in rows:
        assert 5 < float(r["psnr_mean"]) < 60 and 0 < float(r["ssim_mean"]) <= 1
    by = {(r["problem"], r["model"]): r for r in rows}
    # the solver improves on its start with the chosen TV weight
    for p in ("deblur", "inpaint"):
        assert float(by[p, "TV"]["psnr_mean"]) > float(by[p, "start x̃"]["psnr_mean"])
        assert by[p, "learned filters"]["train_steps"] == "3"
    filters = (tmp_path / "filters_deblur.npy").read_bytes()
    assert (tmp_path / "filters_inpaint.png").read_bytes()[:4] == b"\x89PNG"
    assert script.main(argv) == 0  # everything done: nothing is recomputed or changed
    assert csv_rows(tmp_path / "inverse_problems.csv") == rows
    assert (tmp_path / "filters_deblur.npy").read_bytes() == filters
