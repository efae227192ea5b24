"""Denoising on the user's own images: ``train denoise --data FOLDER`` (a folder split by file,
or train/ and dev/), ``--images`` with image files, and ``evaluate --data FOLDER`` on whole
images with PSNR and SSIM per image and their mean."""

import json

import numpy as np
import pytest

import pdunroll as pu
from pdunroll import cli

skimage = pytest.importorskip("skimage", reason="scikit-image is not installed")

SMALL = ["--patch", "12", "--kernel", "3", "--max-patches", "40", "--iterations", "3",
         "--epochs", "1", "--quiet"]


def _pngs(folder, count, *, offset=0, colour=False):
    """``count`` 8-bit grey crops of scikit-image's camera (and a colour one) as png files."""
    from skimage import data, io

    folder.mkdir(parents=True, exist_ok=True)
    cam = data.camera()
    for i in range(count):
        r = 30 * (i + offset) % 400
        io.imsave(folder / f"im{i}.png", cam[r:r + 36, 150:190], check_contrast=False)
    if colour:
        io.imsave(folder / "colour.png", data.astronaut()[100:136, 200:240],
                  check_contrast=False)
    return folder


def test_train_on_a_folder_and_evaluate_whole_images(tmp_path, capsys):
    data = _pngs(tmp_path / "imgs", 8, colour=True)
    out = tmp_path / "run"
    assert cli.main(["train", "denoise", "--data", str(data), "--out", str(out), "--sigma",
                     "0.08", "--seed", "4", *SMALL]) == 0
    text = capsys.readouterr().out
    assert f"of {data} (9 images, files split 70/15/15) with noise σ = 0.08" in text
    results = json.loads((out / "results.json").read_text())
    assert results["data"]["files"] == {"train": 7, "validation": 1, "test": 1}
    assert results["sigma"] == 0.08 and results["seed"] == 4
    assert len(results["fingerprint"]["files"]) == 8  # training and validation files
    test_file = next(iter(results["test_set"]["files"]))

    # the run's own test images, whole: the noisy row is the noise level's PSNR
    assert cli.main(["evaluate", str(out / "operator.npz")]) == 0
    text = capsys.readouterr().out
    assert f"1 image of {data}" in text and test_file in text
    noisy = float([ln for ln in text.splitlines() if ln.strip().startswith(test_file)][0]
                  .split()[1])
    assert noisy == pytest.approx(-20 * np.log10(0.08), abs=0.3)

    other = _pngs(tmp_path / "set", 3, offset=5)
    assert cli.main(["evaluate", str(out / "operator.npz"), "--data", str(other),
                     "--sigma", "0.1", "--json", str(tmp_path / "eval" / "set.json")]) == 0
    lines = capsys.readouterr().out.splitlines()
    record = json.loads((tmp_path / "eval" / "set.json").read_text())
    assert record["iterations"] == results["settings"]["iterations"]
    assert [e["image"] for e in record["rows"]] == ["im0.png", "im1.png", "im2.png", "mean"]
    printed = [ln for ln in lines if ln.startswith("  mean")][0].split()
    assert float(printed[1]) == round(record["rows"][-1]["noisy input"]["psnr_db"], 2)
    rows = {ln.split()[0]: [float(v) for v in ln.split()[1:] if v != "/"]
            for ln in lines if ln.startswith(("  im0", "  im1", "  im2", "  mean"))}
    assert set(rows) == {"im0.png", "im1.png", "im2.png", "mean"}
    per_image = np.array([rows[f"im{i}.png"] for i in range(3)])
    np.testing.assert_allclose(rows["mean"], per_image.mean(axis=0), atol=0.006)  # 2 digits
    psnr, ssim = per_image[:, 0::2], per_image[:, 1::2]
    assert np.all(psnr[:, 1:] > psnr[:, :1]) and np.all(ssim[:, 1:] > ssim[:, :1])  # denoised
    assert np.all((0 < ssim) & (ssim <= 1))
    assert cli.main(["evaluate", str(out / "operator.npz"), "--bitrate", "4"]) == 2
    assert "--rate and --bitrate are for speech" in capsys.readouterr().err


def test_train_and_dev_subfolders_and_image_files(tmp_path, capsys):
    root = tmp_path / "corpus"
    _pngs(root / "train", 6)
    _pngs(root / "dev", 2, offset=7)
    out = tmp_path / "run"
    assert cli.main(["train", "denoise", "--data", str(root), "--out", str(out), *SMALL]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["data"]["split"] == "train/ split 85/15 by file, dev/ as test"
    assert results["data"]["files"]["test"] == 2
    # --images: files as well as scikit-image's names
    files = [str(p) for p in sorted((root / "train").iterdir())[:3]]
    out2 = tmp_path / "files"
    assert cli.main(["train", "denoise", "--images", *files, "--test-images", "camera",
                     "--out", str(out2), *SMALL]) == 0
    meta = pu.load_operator(out2 / "operator.npz")[1]["metadata"]
    assert meta["images"] == files
    assert cli.main(["train", "denoise", "--images", "my.png", "--out",
                     str(tmp_path / "bad"), *SMALL]) == 2
    err = capsys.readouterr().err
    assert "unknown image 'my.png': neither an image file nor one of scikit-image's" in err


def test_radius_factor_and_the_tv_row(tmp_path, capsys):
    """``--radius-factor c`` is the data term's c (kept in the model file); ``evaluate`` adds a
    TV row with the same ball, equal to total variation solved here by hand."""
    from pdunroll.tasks import denoise

    data, out = _pngs(tmp_path / "imgs", 6), tmp_path / "run"
    assert cli.main(["train", "denoise", "--data", str(data), "--out", str(out), "--sigma",
                     "0.1", "--radius-factor", "0.8", *SMALL]) == 0
    capsys.readouterr()
    learned = pu.load_model(out / "operator.npz")
    assert (learned.model.g.sigma, learned.model.g.c) == (0.1, 0.8)
    other = _pngs(tmp_path / "set", 2, offset=7)
    assert cli.main(["evaluate", str(out / "operator.npz"), "--data", str(other)]) == 0
    lines = capsys.readouterr().out.splitlines()
    header = next(ln for ln in lines if ln.strip().startswith("image"))
    assert header.split()[1:5] == ["noisy", "input", "TV", "DCT"]
    printed = {ln.split()[0]: float(ln.split()[4]) for ln in lines
               if ln.startswith(("  im0", "  im1"))}  # the TV column's PSNR
    images, sigma, _ = denoise.evaluation_images(str(out / "operator.npz"), learned.metadata,
                                                 data=other)
    from skimage.metrics import peak_signal_noise_ratio

    for name, noisy, clean in images:
        tv = pu.AnalysisModel(pu.Gradient2d(noisy.shape), pu.L21Norm(group_axis=1),
                              pu.L2Ball(0.8 * 0.1 * np.sqrt(noisy.size)))
        x = pu.chambolle_pock(tv, noisy[None], iterations=3, omega=10.0).x[0]
        assert np.linalg.norm(x - noisy) <= 0.8 * 0.1 * np.sqrt(noisy.size) * (1 + 1e-9)
        assert printed[name] == pytest.approx(
            peak_signal_noise_ratio(clean, x, data_range=1.0), abs=0.006)


def test_boundary_valid_is_kept_with_the_model_and_used_on_whole_images(tmp_path, capsys):
    """``--boundary valid``: the filters' responses only where their window lies inside the
    image, in training and (read from the saved filter bank, the one place it is kept for
    reconstruction) in ``evaluate``'s DCT and learned rows, equal to the valid-boundary model
    solved here by hand and not to the periodic one."""
    from skimage.metrics import peak_signal_noise_ratio

    from pdunroll.tasks import denoise

    data, out = _pngs(tmp_path / "imgs", 6), tmp_path / "run"
    assert cli.main(["train", "denoise", "--data", str(data), "--out", str(out), "--sigma",
                     "0.1", "--boundary", "valid", *SMALL]) == 0
    capsys.readouterr()
    learned = pu.load_model(out / "operator.npz")
    assert learned.model.operator.boundary == "valid"
    assert learned.model.operator.out_shape == (8, 10, 10)  # 3×3 filters on 12×12 patches
    # the run record's copy of the option is not what evaluate reads
    meta = {k: v for k, v in learned.metadata.items() if k != "boundary"}
    pu.LearnedModel(learned.model, learned.iterations, learned.steps, method=learned.method,
                    metadata=meta, data=learned.data).save(out / "operator.npz")
    other = _pngs(tmp_path / "set", 1, offset=7)
    assert cli.main(["evaluate", str(out / "operator.npz"), "--data", str(other), "-L",
                     "20"]) == 0
    lines = capsys.readouterr().out.splitlines()
    cells = next(ln for ln in lines if ln.startswith("  im0")).split()  # PSNR / SSIM per row
    dct, mine = cells[7], cells[10]
    [(_, noisy, clean)], sigma, _ = denoise.evaluation_images(
        str(out / "operator.npz"), learned.metadata, data=other)

    def psnr(filters, boundary):
        model = denoise.denoise_model(3, noisy.shape, sigma, filters, boundary=boundary)
        x = pu.chambolle_pock(model, noisy[None], iterations=20, omega=10.0).x[0]
        return peak_signal_noise_ratio(clean, x, data_range=1.0)

    filters = np.asarray(learned.model.operator.params, dtype=np.float64)
    assert float(mine) == pytest.approx(psnr(filters, "valid"), abs=0.006)
    assert float(dct) == pytest.approx(psnr(None, "valid"), abs=0.006)
    assert abs(psnr(None, "periodic") - psnr(None, "valid")) > 0.05
    with pytest.raises(ValueError, match="--boundary must be one of periodic, zero, valid"):
        denoise.DenoiseOptions(boundary="mirror").resolved()


def test_plot_filters_draws_a_bank_and_names_a_wrong_shape(tmp_path):
    from skimage import io

    from pdunroll.learning.plotting import plot_filters

    bank = np.random.default_rng(0).standard_normal((12, 5, 5))
    path = plot_filters(bank, tmp_path / "f" / "filters.png", title="twelve")
    image = io.imread(path)
    assert image.ndim == 3 and image.shape[1] > image.shape[0]  # 8 to a row: two rows, wide
    with pytest.raises(ValueError, match="filters must have shape"):
        plot_filters(bank[0], tmp_path / "bad.png")


def test_evaluate_radius_factor_sets_c_of_every_row(tmp_path, capsys):
    """``evaluate --radius-factor c``: TV, the DCT start and the learned filters each with the
    ℓ2 ball c σ √#pixels (solved here by hand), in place of the run's c; refused for speech."""
    from skimage.metrics import peak_signal_noise_ratio

    from pdunroll.tasks import denoise

    data, out = _pngs(tmp_path / "imgs", 6), tmp_path / "run"
    assert cli.main(["train", "denoise", "--data", str(data), "--out", str(out), "--sigma",
                     "0.1", *SMALL]) == 0
    learned = pu.load_model(out / "operator.npz")
    other = _pngs(tmp_path / "set", 1, offset=7)
    [(_, noisy, clean)], sigma, _ = denoise.evaluation_images(
        str(out / "operator.npz"), learned.metadata, data=other)
    filters = np.asarray(learned.model.operator.params, dtype=np.float64)

    def psnr(model):
        x = pu.chambolle_pock(model, noisy[None], iterations=3, omega=10.0).x[0]
        return peak_signal_noise_ratio(clean, x, data_range=1.0)

    printed = {}
    for c in (0.7, 1.2):
        capsys.readouterr()
        assert cli.main(["evaluate", str(out / "operator.npz"), "--data", str(other),
                         "--radius-factor", str(c)]) == 0
        cells = next(ln for ln in capsys.readouterr().out.splitlines()
                     if ln.startswith("  im0")).split()
        tv, dct, mine = float(cells[4]), float(cells[7]), float(cells[10])
        assert tv == pytest.approx(psnr(denoise.tv_model(noisy.shape, sigma, radius_factor=c)),
                                   abs=0.006)
        assert dct == pytest.approx(psnr(denoise.denoise_model(3, noisy.shape, sigma,
                                                               radius_factor=c)), abs=0.006)
        assert mine == pytest.approx(psnr(denoise.denoise_model(3, noisy.shape, sigma, filters,
                                                                radius_factor=c)), abs=0.006)
        printed[c] = mine
    assert abs(printed[0.7] - printed[1.2]) > 0.05
    speech_run = tmp_path / "speech"
    assert cli.main(["train", "speech", "--out", str(speech_run), "--signals", "4",
                     "--seconds", "0.25", "--n", "32", "--iterations", "2", "--epochs", "1",
                     "--quiet"]) == 0
    capsys.readouterr()
    assert cli.main(["evaluate", str(speech_run / "operator.npz"), "--radius-factor",
                     "0.9"]) == 2
    assert "--radius-factor is for denoising operators" in capsys.readouterr().err
