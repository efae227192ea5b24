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


def test_denoise_radius_scores_each_row_on_validation_images_per_c(tmp_path):
    """experiments/denoise_radius.py: for each c, TV, the DCT start and the learned filters
    with the ball c σ √#pixels on the run's validation images (split as training split them),
    their mean PSNR as computed here by hand."""
    from skimage import data, io
    from skimage.metrics import peak_signal_noise_ratio

    import pdunroll as pu
    from pdunroll import cli
    from pdunroll.tasks import denoise
    from pdunroll.tasks.base import split_files

    cam = data.camera()
    for part, count in (("train", 8), ("dev", 2)):
        (tmp_path / "d" / part).mkdir(parents=True)
        for i in range(count):
            io.imsave(tmp_path / "d" / part / f"{part}{i}.png",
                      cam[40 * i:40 * i + 30, 100:130], check_contrast=False)
    run = tmp_path / "run"
    assert cli.main(["train", "denoise", "--data", str(tmp_path / "d"), "--out", str(run),
                     "--patch", "12", "--kernel", "3", "--max-patches", "40", "-L", "3",
                     "--epochs", "1", "--sigma", "0.1", "--quiet"]) == 0
    out = tmp_path / "radius.csv"
    assert experiment("denoise_radius").main(
        [str(run / "operator.npz"), "--factors", "0.7", "1.2", "-L", "3", "--omega", "5",
         "--backend", "numpy", "--dtype", "float64", "--out", str(out)]) == 0
    rows = csv_rows(out)
    learned = pu.load_model(run / "operator.npz")
    meta = learned.metadata
    split = split_files(tmp_path / "d", lambda f: (denoise.image_files(f),) * 2 + (None,),
                        seed=meta["seed"])
    paths = [p for _, p in split.parts[1]]
    rng = np.random.default_rng(meta["seed"] + 13)
    clean = denoise.read_images(paths)
    noisy = [img + 0.1 * rng.standard_normal(img.shape) for img in clean]
    filters = np.asarray(learned.operator.params, dtype=np.float64)
    assert [(r["model"], r["radius_factor"]) for r in rows] == [
        (m, c) for c in ("0.7", "1.2") for m in ("TV", "DCT start", "learned operator")]
    for r in rows:
        c = float(r["radius_factor"])
        psnrs = []
        for x, y in zip(noisy, clean, strict=True):
            model = {"TV": denoise.tv_model(x.shape, 0.1, radius_factor=c),
                     "DCT start": denoise.denoise_model(3, x.shape, 0.1, radius_factor=c),
                     "learned operator": denoise.denoise_model(3, x.shape, 0.1, filters,
                                                               radius_factor=c)}[r["model"]]
            x_hat = pu.chambolle_pock(model, x[None], iterations=3, omega=5.0).x[0]
            psnrs.append(peak_signal_noise_ratio(y, x_hat, data_range=1.0))
        assert float(r["psnr_db"]) == pytest.approx(np.mean(psnrs), abs=1e-3)
        assert int(r["images"]) == len(paths) >= 1
