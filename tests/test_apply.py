"""Applying a learned model to files: wav and image folders round trip with their names,
lengths, sizes, rates and sample types, and equal the model's reconstruct on the same data; a
filter bank trained on 32×32 patches denoises a whole image as the model rebuilt by hand."""

from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED
from scipy.io import wavfile

import pdunroll as pu
from pdunroll.learning.apply import apply_files, reconstruct_signal

N = 16


@pytest.fixture
def speech_model():
    model = pu.AnalysisModel(pu.DenseOperator(pu.dct_matrix(N)), pu.L1Norm(),
                             pu.LinfBall(pu.quantization_radius(4)))
    return pu.LearnedModel(model, 6, omega=30.0, metadata={"task": "speech", "n": N})


def _quantized(length, seed):
    t = np.arange(length)
    x = 0.7 * np.sin(t / 3.0 + seed) + 0.2 * np.sin(t / 1.3)
    return pu.quantize(x, 4)


def test_wav_folder_round_trip(speech_model, tmp_path):
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    x16 = _quantized(6 * N, 0)
    wavfile.write(src / "a.wav", 16000, np.rint(x16 * 2 ** 15).astype(np.int16))
    x32 = np.stack([_quantized(3 * N + 5, 1), _quantized(3 * N + 5, 2)], axis=1)
    wavfile.write(src / "sub" / "b.wav", 8000, np.rint(x32 * 2 ** 31).astype(np.int32))
    xf = _quantized(N - 6, 3).astype(np.float32)
    wavfile.write(src / "c.wav", 22050, xf)
    (src / "notes.txt").write_text("not audio")  # other files of the folder are left alone

    written = apply_files(speech_model, [src], tmp_path / "out", progress=False)
    assert [p.relative_to(tmp_path / "out") for p in written] == [
        Path("a.wav"), Path("c.wav"), Path("sub/b.wav")]

    rate, y16 = wavfile.read(tmp_path / "out" / "a.wav")
    assert rate == 16000 and y16.dtype == np.int16 and y16.shape == (6 * N,)
    frames = np.rint(x16 * 2 ** 15).astype(np.int16).astype(np.float64).reshape(-1, N) / 2 ** 15
    expected = speech_model.reconstruct(frames).reshape(-1)
    np.testing.assert_array_equal(y16, np.clip(np.rint(expected * 2 ** 15), -2 ** 15,
                                               2 ** 15 - 1).astype(np.int16))
    assert not np.array_equal(y16, np.rint(x16 * 2 ** 15))  # it did something

    rate, y32 = wavfile.read(tmp_path / "out" / "sub" / "b.wav")
    assert rate == 8000 and y32.dtype == np.int32 and y32.shape == (3 * N + 5, 2)
    channel = np.rint(x32 * 2 ** 31).astype(np.int32)[:, 1].astype(np.float64) / 2 ** 31
    full = speech_model.reconstruct(channel[:3 * N].reshape(3, N)).reshape(-1)
    tail = speech_model.reconstruct(channel[-N:])[-5:]  # the last n samples, their new 5
    np.testing.assert_allclose(y32[:, 1] / 2 ** 31, np.concatenate([full, tail]),
                               atol=2 ** -31)

    rate, yf = wavfile.read(tmp_path / "out" / "c.wav")
    assert rate == 22050 and yf.dtype == np.float32 and yf.shape == (N - 6,)
    np.testing.assert_array_equal(yf, reconstruct_signal(speech_model, xf).astype(np.float32))


def _bank_model(shape=(8, 8), sigma=0.1):
    rng = np.random.default_rng(0)
    h = pu.dct_filters(3) + 0.02 * rng.standard_normal((8, 3, 3))
    model = pu.AnalysisModel(pu.Conv2dFilterBank(h, shape), pu.L1Norm(), pu.NoiseL2Ball(sigma))
    return pu.LearnedModel(model, 5, omega=10.0, metadata={"task": "denoise", "sigma": sigma})


def test_image_folder_round_trip(tmp_path):
    io = pytest.importorskip("skimage.io", reason="scikit-image is not installed")
    model = _bank_model()
    rng = np.random.default_rng(1)
    src = tmp_path / "in"
    src.mkdir()
    grey8 = rng.integers(0, 256, (20, 17)).astype(np.uint8)
    io.imsave(src / "grey.png", grey8, check_contrast=False)
    grey16 = rng.integers(0, 65536, (12, 12)).astype(np.uint16)
    io.imsave(src / "deep.tif", grey16, check_contrast=False)
    colour = rng.integers(0, 256, (10, 9, 4)).astype(np.uint8)  # RGBA
    io.imsave(src / "colour.png", colour, check_contrast=False)
    floats = rng.uniform(0, 1, (11, 13)).astype(np.float32)
    np.save(src / "raw.npy", floats)

    out = tmp_path / "out"
    written = apply_files(model, [src], out, progress=False)
    assert sorted(p.name for p in written) == ["colour.png", "deep.tif", "grey.png", "raw.npy"]

    y = io.imread(out / "grey.png")
    assert y.dtype == np.uint8 and y.shape == (20, 17)
    expected = model.reconstruct(grey8 / 255.0)
    np.testing.assert_array_equal(y, np.rint(np.clip(expected, 0, 1) * 255).astype(np.uint8))
    y = io.imread(out / "deep.tif")
    assert y.dtype == np.uint16 and y.shape == (12, 12)
    expected = model.reconstruct(grey16 / 65535.0)
    np.testing.assert_array_equal(y, np.rint(np.clip(expected, 0, 1) * 65535).astype(np.uint16))
    y = io.imread(out / "colour.png")
    assert y.dtype == np.uint8 and y.shape == (10, 9, 4)
    np.testing.assert_array_equal(y[..., 3], colour[..., 3])
    red = model.reconstruct(colour[..., 0] / 255.0)
    np.testing.assert_array_equal(y[..., 0], np.rint(np.clip(red, 0, 1) * 255).astype(np.uint8))
    y = np.load(out / "raw.npy")
    assert y.dtype == np.float32 and y.shape == (11, 13)
    np.testing.assert_array_equal(y, model.reconstruct(floats.astype(np.float64))
                                  .astype(np.float32))


def test_bad_inputs_are_named(speech_model, tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "x.png").write_bytes(b"")
    (tmp_path / "broken.wav").write_bytes(b"RIFF0000WAVE")
    with pytest.raises(ValueError, match="missing.wav does not exist"):
        apply_files(speech_model, [tmp_path / "missing.wav"], tmp_path / "out")
    with pytest.raises(ValueError, match=r"x.png is not a .wav file"):
        apply_files(speech_model, [tmp_path / "x.png"], tmp_path / "out")
    with pytest.raises(ValueError, match="empty holds no .wav files"):
        apply_files(speech_model, [tmp_path / "empty"], tmp_path / "out")
    with pytest.raises(ValueError, match="would overwrite it"):
        apply_files(speech_model, [tmp_path / "broken.wav"], tmp_path)
    with pytest.raises(ValueError, match="broken.wav is not a readable wav file"):
        apply_files(speech_model, [tmp_path / "broken.wav"], tmp_path / "out", progress=False)
    with pytest.raises(TypeError, match="model must be a pdunroll LearnedModel"):
        apply_files(speech_model.model, [tmp_path / "broken.wav"], tmp_path / "out")


def _whole_image():
    """A 180×180 grey image of train400 where the shared data are, else scikit-image's camera
    cut to 180×180; float64 in [0, 1]."""
    folder = SHARED / "data" / "images" / "train400"
    io = pytest.importorskip("skimage.io", reason="scikit-image is not installed")
    if folder.is_dir():
        return io.imread(sorted(folder.glob("*.png"))[0]) / 255.0
    from skimage import data

    return data.camera()[100:280, 150:330] / 255.0


def test_bank_trained_on_patches_denoises_a_whole_image(tmp_path):
    """Trained on 32×32 patches, saved, loaded: reconstruct on a whole 180×180 image equals the
    model rebuilt by hand at 180×180 (same filters, radius σ·180, the step rule's ‖K‖ there)."""
    image = _whole_image()
    assert image.shape == (180, 180)
    sigma = 0.1
    noisy = image + sigma * np.random.default_rng(0).standard_normal(image.shape)
    patches = pu.extract_patches(image, 32, stride=37)[:16]
    noisy_patches = patches + sigma * np.random.default_rng(1).standard_normal(patches.shape)
    start = pu.AnalysisModel(pu.Conv2dFilterBank(pu.dct_filters(3), (32, 32)), pu.L1Norm(),
                             pu.NoiseL2Ball(sigma))
    res = pu.train(start, noisy_patches, patches, iterations=4, omega=10.0, epochs=1,
                   batch_size=8, lr=1e-2, progress=False)
    learned = pu.LearnedModel.from_training(res, {"iterations": 4, "omega": 10.0},
                                            metadata={"task": "denoise", "sigma": sigma})
    loaded = pu.load_model(learned.save(tmp_path / "bank.npz"))
    x_hat = loaded.reconstruct(noisy)

    h = res.model.operator.filters
    by_hand = pu.AnalysisModel(pu.Conv2dFilterBank(h, (180, 180)), pu.L1Norm(),
                               pu.L2Ball(sigma * 180))
    expected = pu.chambolle_pock(by_hand, noisy[None], iterations=4, omega=10.0).x[0]
    np.testing.assert_array_equal(x_hat, expected)
    assert pu.mse(x_hat[None], image[None]) < pu.mse(noisy[None], image[None])
