"""Deblurring and inpainting from the command line (``pdunroll train deblur`` / ``inpaint``,
``evaluate``, ``apply``) on tiny generated images: the saved model carries its forward
operator, evaluate scores whole images, apply restores images of other sizes exactly as the
model F(Kx) + ½‖Ax − f‖² solved independently does, bad arguments are named, and a run
resumes."""

import json
from pathlib import Path

import numpy as np
import pytest

import pdunroll as pu
from pdunroll import cli
from pdunroll.tasks.base import recorded_files

skimage = pytest.importorskip("skimage", reason="scikit-image is not installed")

TINY = ["--patch", "16", "--kernel", "3", "--max-patches", "12", "--iterations", "3",
        "--epochs", "1", "--batch-size", "4", "--quiet"]


def _pngs(folder, count, *, offset=0, size=(28, 32)):
    """``count`` 8-bit grey crops of scikit-image's camera as png files."""
    from skimage import data, io

    folder.mkdir(parents=True, exist_ok=True)
    cam = data.camera()
    for i in range(count):
        r = 40 * (i + offset) % 400
        io.imsave(folder / f"im{i}.png", cam[r:r + size[0], 150:150 + size[1]],
                  check_contrast=False)
    return folder


def _folder(tmp_path):
    root = tmp_path / "images"
    _pngs(root / "train", 4)
    _pngs(root / "dev", 2, offset=6)
    return root


def _table(text, first):
    """The rows of a PSNR / SSIM table: {image: [psnr, ssim, psnr, ssim, ...]}."""
    return {ln.split()[0]: [float(v) for v in ln.split()[1:] if v != "/"]
            for ln in text.splitlines() if ln.startswith("  ") and not ln.split()[0] == first}


def _solved(model, x_tilde, learned):
    """The reconstruction of the model as written from the mathematics: Chambolle-Pock with the
    model's ω and L from x̃, ‖[K; A]‖ by the bound √(‖K‖² + ‖A‖²) the task states."""
    K, A = model.operator.operators
    k1, k2 = K.kernel_shape
    grid = (K.in_shape[0] + k1 - 1, K.in_shape[1] + k2 - 1)
    bound = np.hypot(pu.Conv2dFilterBank(K.params, grid, "periodic").norm(), A.norm())
    steps = pu.step_sizes(model.operator, omega=learned.steps.omega, op_norm=float(bound))
    return pu.chambolle_pock(model, x_tilde, iterations=learned.iterations, steps=steps).x


def test_deblur_trains_saves_evaluates_and_applies(tmp_path, capsys):
    from skimage import io

    data, out = _folder(tmp_path), tmp_path / "run"
    assert cli.main(["train", "deblur", "--data", str(data), "--out", str(out), *TINY,
                     "--dtype", "float64"]) == 0
    text = capsys.readouterr().out
    assert "Gaussian blur σ_blur = 1.6 (11×11, valid), noise σ = 0.01" in text
    assert "degraded input" in text and "DCT start" in text
    results = json.loads((out / "results.json").read_text())
    assert results["task"] == "deblur" and results["weight"] == pytest.approx(0.01)
    assert results["data"]["files"]["test"] == 2

    learned = pu.load_model(out / "operator.npz")
    K, A = learned.model.operator.operators
    assert isinstance(K, pu.Conv2dFilterBank) and K.params.shape == (8, 3, 3)
    assert io.imread(out / "filters.png").ndim == 3  # the learned bank drawn (RGBA PNG)
    assert isinstance(A, pu.Blur) and A.boundary == "valid"
    np.testing.assert_allclose(A.kernel, pu.gaussian_kernel(1.6))
    data_term = learned.model.f.parts[1]
    assert data_term.data.shape == (1, 6, 6) and not np.any(data_term.data)  # no training data

    # evaluate: the run's test images, whole, each with its own noise
    assert cli.main(["evaluate", str(out / "operator.npz")]) == 0
    text = capsys.readouterr().out
    header = [ln for ln in text.splitlines() if "degraded input" in ln][0]
    for name in ("TV", "DCT start"):
        assert name in header
    rows = _table(text, "image")
    assert set(rows) == {"im0.png", "im1.png", "mean"}
    assert all(len(v) == 8 for v in rows.values())  # 4 methods × (PSNR, SSIM)
    # the ball's radius factor belongs to denoising: refused, not ignored
    assert cli.main(["evaluate", str(out / "operator.npz"), "--radius-factor", "0.9"]) == 2
    assert "--radius-factor is for denoising operators" in capsys.readouterr().err

    # apply: a blurred image of another size, restored at its size as the model says
    rng = np.random.default_rng(0)
    clean = skimage.data.camera()[200:241, 100:137] / 255.0
    blur = pu.Blur(pu.gaussian_kernel(1.6), clean.shape, "valid")
    f = blur.apply(clean[None])[0] + 0.01 * rng.standard_normal((31, 27))
    np.save(tmp_path / "blurred.npy", f)
    assert cli.main(["apply", str(out / "operator.npz"), str(tmp_path / "blurred.npy"),
                     "--out", str(tmp_path / "restored"), "--quiet"]) == 0
    x_hat = np.load(tmp_path / "restored" / "blurred.npy")
    assert x_hat.shape == f.shape
    big = (31 + 10, 27 + 10)
    model = pu.inverse_problem(K.at_shape(big), pu.Blur(A.kernel, big, "valid"), f[None])
    x_tilde = np.pad(f, 5, mode="edge")[None]
    np.testing.assert_allclose(x_hat, _solved(model, x_tilde, learned)[0, 5:-5, 5:-5],
                               atol=1e-10)
    assert not np.allclose(x_hat, f, atol=1e-3)
    io.imsave(tmp_path / "b.png", (np.clip(f, 0, 1) * 255).astype(np.uint8))
    assert cli.main(["apply", str(out / "operator.npz"), str(tmp_path / "b.png"), "--out",
                     str(tmp_path / "restored"), "--quiet"]) == 0
    assert io.imread(tmp_path / "restored" / "b.png").shape == f.shape
    assert cli.main(["apply", str(out / "operator.npz"), str(tmp_path / "b.png"), "--out",
                     str(tmp_path / "r2"), "--mask", str(tmp_path / "b.png")]) == 2
    assert "--mask) is for inpainting models; this one deblurs" in capsys.readouterr().err


def test_inpaint_applies_with_a_mask_file(tmp_path, capsys):
    from skimage import io

    data, out = _folder(tmp_path), tmp_path / "run"
    assert cli.main(["train", "inpaint", "--data", str(data), "--out", str(out), *TINY,
                     "--missing", "0.4", "--dtype", "float64"]) == 0
    assert "40% of the pixels missing" in capsys.readouterr().out
    learned = pu.load_model(out / "operator.npz")
    assert isinstance(learned.model.operator.operators[1], pu.Mask)
    assert cli.main(["evaluate", str(out / "operator.npz"), "--data",
                     str(data / "dev"), "--no-baseline"]) == 0
    assert set(_table(capsys.readouterr().out, "image")) == {"im0.png", "im1.png", "mean"}

    rng = np.random.default_rng(1)
    clean = skimage.data.camera()[50:83, 60:100] / 255.0
    mask = (rng.random(clean.shape) > 0.4).astype(np.float64)
    damaged = mask * (clean + 0.01 * rng.standard_normal(clean.shape))
    np.save(tmp_path / "damaged.npy", damaged)
    io.imsave(tmp_path / "mask.png", (mask * 255).astype(np.uint8), check_contrast=False)
    assert cli.main(["apply", str(out / "operator.npz"), str(tmp_path / "damaged.npy"),
                     "--out", str(tmp_path / "restored"), "--mask", str(tmp_path / "mask.png"),
                     "--quiet"]) == 0
    x_hat = np.load(tmp_path / "restored" / "damaged.npy")
    K = learned.model.operator.operators[0]
    model = pu.inverse_problem(K.at_shape(clean.shape), pu.Mask(mask), damaged[None])
    from scipy.ndimage import gaussian_filter

    fill = gaussian_filter(damaged, 2.0) / gaussian_filter(mask, 2.0)
    x_tilde = (mask * damaged + (1 - mask) * fill)[None]
    np.testing.assert_allclose(x_hat, _solved(model, x_tilde, learned)[0], atol=1e-10)

    assert cli.main(["apply", str(out / "operator.npz"), str(tmp_path / "damaged.npy"),
                     "--out", str(tmp_path / "r2")]) == 2
    assert "needs the mask of the observed pixels" in capsys.readouterr().err
    io.imsave(tmp_path / "small.png", np.full((5, 5), 255, np.uint8), check_contrast=False)
    assert cli.main(["apply", str(out / "operator.npz"), str(tmp_path / "damaged.npy"),
                     "--out", str(tmp_path / "r2"), "--mask", str(tmp_path / "small.png")]) == 2
    assert "the mask has shape (5, 5) but the image (33, 40)" in capsys.readouterr().err

    # --init: the filters of this run start a deblurring run (only K of [K; A] is taken)
    assert cli.main(["train", "deblur", "--data", str(data), "--out", str(tmp_path / "d"), *TINY,
                     "--init", str(out / "operator.npz"), "--epochs", "1", "--lr", "1e-12"]) == 0
    init = pu.load_model(tmp_path / "d" / "operator.npz").model.operator.operators[0].params
    np.testing.assert_allclose(init, np.asarray(K.params), rtol=1e-6)


def test_scikit_image_defaults_and_bad_arguments(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(["train", "deblur", "--out", str(out), *TINY, "--max-patches", "8"]) == 0
    text = capsys.readouterr().out
    assert "camera, coins, moon, astronaut, brick, grass with Gaussian blur" in text
    for argv, message in (
            (["--blur-sigma", "4", "--patch", "20"], "--blur-sigma 4 makes a 25×25 kernel: "
                                                     "--patch must be larger than 25"),
            (["--kernel", "9", "--patch", "8", "--blur-sigma", "0.5"],
             "--kernel 9 is larger than --patch 8"),
            (["--data", str(tmp_path / "none")], "is not a folder")):
        assert cli.main(["train", "deblur", "--out", str(tmp_path / "bad"), *argv]) == 2
        assert message in capsys.readouterr().err
    for argv, message in ((["deblur", "--missing", "0.5"], "unrecognized arguments: --missing"),
                          (["inpaint", "--missing", "1"], "--missing: expected a fraction"),
                          (["inpaint", "--noise", "-1"], "--noise: expected a positive")):
        with pytest.raises(SystemExit):
            cli.main(["train", *argv])
        assert message in capsys.readouterr().err
    assert cli.main(["train", "inpaint", "--out", str(tmp_path / "bad"), "--workers", "2"]) == 2
    assert "--workers and --scheduler shard the training pairs" in capsys.readouterr().err
    assert cli.main(["evaluate", str(out / "operator.npz"), "--rate", "8000"]) == 2
    assert "--rate and --bitrate are for speech" in capsys.readouterr().err


def test_resume_continues_an_interrupted_run(tmp_path, capsys, interrupt_training):
    data, out = _folder(tmp_path), tmp_path / "run"
    argv = ["train", "inpaint", "--data", str(data), "--out", str(out), *TINY,
            "--epochs", "2", "--missing", "0.3", "--seed", "3"]
    interrupt_training(2)
    assert cli.main(argv) == 130
    assert "pdunroll train inpaint --resume" in capsys.readouterr().err
    interrupt_training(None)
    assert cli.main(["train", "inpaint", "--out", str(out), "--resume", "--quiet"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert (results["missing"], results["seed"], results["epochs_run"]) == (0.3, 3, 2)
    assert cli.main(["train", "inpaint", "--out", str(out), "--resume", "--missing",
                     "0.5"]) == 2
    assert "--missing 0.5: the run in" in capsys.readouterr().err


def test_recorded_test_files_are_checked(tmp_path):
    folder = _pngs(tmp_path / "set", 2)
    from pdunroll.data.fingerprint import file_digests

    test = {"folder": str(folder), "files": file_digests(sorted(folder.iterdir()), folder)}
    assert [p.name for p in recorded_files("op.npz", test, "test images", "again")] == \
        ["im0.png", "im1.png"]
    (folder / "im1.png").write_bytes((folder / "im0.png").read_bytes())
    with pytest.raises(ValueError, match="the test images of op.npz in .* have changed since "
                                         "training"):
        recorded_files("op.npz", test, "test images", "again")
    (folder / "im1.png").unlink()
    with pytest.raises(ValueError, match=r"the test images of op.npz are gone: .*im1.png "
                                         r"\(again\)"):
        recorded_files("op.npz", test, "test images", "again")


def test_reconstruct_in_chunks_takes_each_chunks_measurements(monkeypatch):
    """The test tables reconstruct in chunks of signals; the measurements of an inverse problem
    (per-signal data of F) follow their chunk."""
    import pdunroll.learning.evaluation as evaluation

    rng = np.random.default_rng(2)
    A = pu.Blur(pu.gaussian_kernel(0.8), (8, 8), "valid")
    f = rng.standard_normal((7, *A.out_shape))
    model = pu.inverse_problem(pu.Conv2dFilterBank(0.1 * pu.dct_filters(3), (8, 8), "zero"),
                               A, f)
    x_tilde = rng.standard_normal((7, 8, 8))
    whole = pu.chambolle_pock(model, x_tilde, iterations=6, omega=1.0).x
    monkeypatch.setattr(evaluation, "_EVAL_CHUNK", 3)
    chunked = evaluation.reconstruct(model, x_tilde, iterations=6, omega=1.0)
    np.testing.assert_allclose(chunked, whole, atol=1e-12)


def test_dask_workers_are_refused_for_per_signal_measurements():
    """The Dask minibatch gradient shards the pairs, not F's measurements: refused, named."""
    rng = np.random.default_rng(3)
    A = pu.Mask((rng.random((6, 6)) > 0.5).astype(float))
    f = rng.standard_normal((4, 6, 6))
    model = pu.inverse_problem(pu.Conv2dFilterBank(0.1 * pu.dct_filters(3), (6, 6), "zero"),
                               A, f)
    with pytest.raises(ValueError, match="do not take a model's per-signal data"):
        pu.train(model, f, f, iterations=2, epochs=1, client="tcp://127.0.0.1:8786",
                 progress=False)


def test_test_files_behind_a_symbolic_link_are_found_again(tmp_path, monkeypatch):
    """A data folder whose dev/ is a link to another folder (as experiments/long_runs.sh makes
    for train400 and Set12), given as a relative path: the run records dev/'s files by their
    path through the link, and evaluate finds them again."""
    from pdunroll.tasks.base import split_files

    _pngs(tmp_path / "elsewhere" / "train", 3)
    _pngs(tmp_path / "elsewhere" / "set", 2, offset=5)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train").symlink_to(tmp_path / "elsewhere" / "train")
    (tmp_path / "data" / "dev").symlink_to(tmp_path / "elsewhere" / "set")
    monkeypatch.chdir(tmp_path)

    def read(folder):
        files = sorted(folder.glob("*.png"))
        return files, files, None

    # the folder given directly, and through a linked folder above it (a linked runs/)
    (tmp_path / "runs").symlink_to(tmp_path)
    for given in (Path("data"), Path("runs/data")):
        split = split_files(given, read, seed=0)
        assert sorted(split.digests[2]) == ["dev/im0.png", "dev/im1.png"]
        test = {"folder": str(split.root), "files": split.digests[2]}
        assert [p.name for p in recorded_files("op.npz", test, "test images", "again")] == \
            ["im0.png", "im1.png"]
