"""``pdunroll apply MODEL INPUT... --out DIR``: a speech model restores a folder of wav files
and a denoising model a folder of images of other sizes than it was trained on, each output
with the input's name, rate or size and sample or pixel type, the same as the library's
LearnedModel.reconstruct gives; bad inputs are named before any work."""

import numpy as np
import pytest
from scipy.io import wavfile

import pdunroll as pu
from pdunroll import cli
from pdunroll.data.speech import synthetic_speech
from pdunroll.learning.apply import reconstruct_signal

TINY = ["--signals", "6", "--seconds", "0.25", "--n", "32", "--iterations", "4",
        "--epochs", "1", "--batch-size", "16", "--quiet"]


def test_apply_restores_a_folder_of_wav_files(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(["train", "speech", "--out", str(out), *TINY]) == 0
    wavs = tmp_path / "quantized"
    (wavs / "sub").mkdir(parents=True)
    signals = synthetic_speech(2, seconds=0.25, seed=5)
    lengths = (1601, 45)  # a tail shorter than a frame; a file of two frames and a bit
    for name, s, length in zip(("a.wav", "sub/b.wav"), signals, lengths, strict=True):
        part = s[1000:1000 + length]
        x = pu.quantize(part / np.abs(part).max(), 4)
        wavfile.write(wavs / name, 8000, np.round(x * 2 ** 15 * 0.999).astype(np.int16))
    capsys.readouterr()
    assert cli.main(["apply", str(out / "operator.npz"), str(wavs), "--out",
                     str(tmp_path / "restored"), "--quiet"]) == 0
    assert "wrote 2 files" in capsys.readouterr().out
    learned = pu.load_model(out / "operator.npz")
    for name, length in (("a.wav", 1601), ("sub/b.wav", 45)):
        rate, y = wavfile.read(tmp_path / "restored" / name)
        _, x = wavfile.read(wavs / name)
        assert rate == 8000 and y.dtype == np.int16 and y.shape == (length,)
        want = reconstruct_signal(learned, x / 2 ** 15)
        np.testing.assert_allclose(y / 2 ** 15, want, atol=1 / 2 ** 15)
        assert np.abs(y.astype(float) - x).max() > 0  # it did change the signal


def test_apply_denoises_whole_images_as_the_library_does(tmp_path, capsys):
    pytest.importorskip("skimage", reason="scikit-image is not installed")
    from skimage import data, io

    out = tmp_path / "run"
    assert cli.main(["train", "denoise", "--out", str(out), "--images", "camera",
                     "--test-images", "page", "--patch", "12", "--kernel", "3",
                     "--max-patches", "24", "--iterations", "3", "--epochs", "1",
                     "--quiet"]) == 0
    noisy = tmp_path / "noisy"
    noisy.mkdir()
    rng = np.random.default_rng(0)
    clean = data.camera()[100:140, 200:248] / 255.0  # 40×48: not the trained 12×12
    x = np.clip(clean + 0.1 * rng.standard_normal(clean.shape), 0, 1)
    io.imsave(noisy / "n.png", np.rint(x * 255).astype(np.uint8), check_contrast=False)
    np.save(noisy / "n64.npy", x)
    capsys.readouterr()
    assert cli.main(["apply", str(out / "operator.npz"), str(noisy / "n.png"),
                     str(noisy / "n64.npy"), "--out", str(tmp_path / "den"), "--quiet"]) == 0
    learned = pu.load_model(out / "operator.npz")
    got = np.load(tmp_path / "den" / "n64.npy")
    assert got.shape == (40, 48) and got.dtype == np.float64
    np.testing.assert_array_equal(got, learned.reconstruct(x))  # the API's, bit for bit
    png = io.imread(tmp_path / "den" / "n.png")
    assert png.shape == (40, 48) and png.dtype == np.uint8
    want = learned.reconstruct(io.imread(noisy / "n.png") / 255.0)
    np.testing.assert_array_equal(png, np.rint(np.clip(want, 0, 1) * 255).astype(np.uint8))
    psnr = lambda y: 10 * np.log10(1 / np.mean((y - clean) ** 2))  # noqa: E731
    assert psnr(got) > psnr(x) + 3  # denoised


def test_apply_names_bad_inputs_before_any_work(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(["train", "speech", "--out", str(out), *TINY]) == 0
    (tmp_path / "notes.txt").write_text("")
    for bad, message in ((tmp_path / "missing.wav", "missing.wav"),
                         (tmp_path / "notes.txt", "notes.txt")):
        capsys.readouterr()
        assert cli.main(["apply", str(out / "operator.npz"), str(bad), "--out",
                         str(tmp_path / "o")]) == 2
        err = capsys.readouterr().err
        assert "pdunroll: error:" in err and message in err
    assert not (tmp_path / "o").exists()
    with pytest.raises(SystemExit):
        cli.main(["apply", str(out / "operator.npz"), str(tmp_path / "x.wav")])  # no --out
    assert "--out" in capsys.readouterr().err
