"""Speech and image data: quantizer, wav folders (and their errors), frames, splits, synthetic
speech, images."""

import numpy as np
import pytest
from scipy.io import wavfile

import pdunroll as ds  # the data functions are all public


def test_quantize_matches_formula_and_bound(backend, dtype, tol):
    x = np.linspace(-1, 1, 41)
    for bitrate in (1, 4, 8):
        delta = 2 / 2**bitrate
        # mid-rise: a zero sample maps to +Δ/2 (x = 0 is in the grid), never to 0
        # and ±1 to the top level ±(1 − Δ/2): 2^b levels, no more
        cell = np.minimum(np.floor(np.abs(x) / delta), 2 ** (bitrate - 1) - 1)
        want = np.where(x >= 0, 1.0, -1.0) * delta * (cell + 0.5)
        got = backend.to_numpy(ds.quantize(backend.asarray(x, dtype), bitrate))
        np.testing.assert_allclose(got, want, **tol)
        assert got[20] == pytest.approx(delta / 2) and np.all(got != 0)
        assert got[0] == pytest.approx(-1 + delta / 2) and got[-1] == pytest.approx(1 - delta / 2)
        assert len(np.unique(got)) == min(2 ** bitrate, 41)
        assert np.max(np.abs(got - x)) <= ds.quantization_radius(bitrate) * (1 + 1e-6)
    assert ds.quantization_radius(4) == 1 / 16


@pytest.mark.parametrize("bitrate, error", [(0, ValueError), (25, ValueError),
                                            (4.0, TypeError), ("4", TypeError),
                                            (True, TypeError)])
def test_wrong_bitrate_is_rejected(bitrate, error):
    with pytest.raises(error, match="bitrate"):
        ds.quantize(np.zeros(3), bitrate)


def test_quantize_rejects_non_finite():
    with pytest.raises(ValueError, match="x contains non-finite"):
        ds.quantize(np.array([0.0, np.nan]), 4)


def _write(path, data, rate=16000):
    wavfile.write(path, rate, data)
    return path


def test_read_wav_folder_normalises_every_format(tmp_path):
    t = np.arange(800)
    _write(tmp_path / "a.wav", (3000 * np.sin(t / 5)).astype(np.int16))
    _write(tmp_path / "b.wav", (0.25 * np.sin(t / 7)).astype(np.float32))
    _write(tmp_path / "c.wav", (128 + 60 * np.sin(t / 3)).astype(np.uint8))
    (tmp_path / "notes.txt").write_text("ignored")
    signals, paths, rates = ds.read_wav_folder(tmp_path)
    assert [p.name for p in paths] == ["a.wav", "b.wav", "c.wav"]
    assert rates == [16000, 16000, 16000]
    for s, period in zip(signals, (5, 7, 3), strict=True):
        assert s.dtype == np.float64 and np.max(np.abs(s)) == pytest.approx(1.0)
        ref = np.sin(t / period)
        np.testing.assert_allclose(s, ref / np.max(np.abs(ref)), atol=0.02)


def test_read_wav_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ds.read_wav_folder(tmp_path / "nope")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="is empty"):
        ds.read_wav_folder(empty)
    other = tmp_path / "other"
    other.mkdir()
    (other / "a.mp3").write_bytes(b"ID3")
    with pytest.raises(ValueError, match=r"holds no \.wav files \(found: a\.mp3\)"):
        ds.read_wav_folder(other)
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "x.wav").write_text("this is not RIFF")
    with pytest.raises(ValueError, match="x.wav is not a readable wav file"):
        ds.read_wav_folder(fake)
    stereo = tmp_path / "stereo"
    stereo.mkdir()
    _write(stereo / "s.wav", np.ones((100, 2), dtype=np.int16))
    with pytest.raises(ValueError, match="s.wav has 2 channels: only mono"):
        ds.read_wav_folder(stereo)
    nan = tmp_path / "nan"
    nan.mkdir()
    _write(nan / "n.wav", np.array([0.1, np.nan, 0.2], dtype=np.float32))
    with pytest.raises(ValueError, match="n.wav contains non-finite samples"):
        ds.read_wav_folder(nan)
    silent = tmp_path / "silent"
    silent.mkdir()
    _write(silent / "z.wav", np.zeros(50, dtype=np.int16))
    with pytest.raises(ValueError, match="z.wav is silent"):
        ds.read_wav_folder(silent)


def test_frames_and_speech_frames():
    a, b = np.arange(10.0), np.arange(7.0)
    frames = ds.frame_signals([a, b], 3)
    np.testing.assert_array_equal(frames, [[0, 1, 2], [3, 4, 5], [6, 7, 8], [0, 1, 2],
                                           [3, 4, 5]])
    with pytest.raises(ValueError, match="no frame of n=20"):
        ds.frame_signals([a, b], 20)
    sig = ds.synthetic_speech(2, seconds=0.2, seed=3)
    data = ds.speech_frames(sig, n=64, bitrate=4, max_frames=30, seed=1)
    assert data.x_true.shape == data.x_tilde.shape == (30, 64) and len(data) == 30
    assert data.eta == 1 / 16
    assert np.max(np.abs(data.x_tilde - data.x_true)) <= data.eta


def test_split_signals_by_file():
    items = list(range(10))
    train, val, test = ds.split_signals(items, (0.6, 0.2, 0.2), seed=0)
    assert sorted(train + val + test) == items and (len(train), len(val), len(test)) == (6, 2, 2)
    assert ds.split_signals(items, (0.6, 0.2, 0.2), seed=0) == [train, val, test]
    assert [len(g) for g in ds.split_signals(items[:3], (0.9, 0.05, 0.05))] == [1, 1, 1]
    with pytest.raises(ValueError, match="sum to 1"):
        ds.split_signals(items, (0.5, 0.2))
    with pytest.raises(ValueError, match="at least 3 signals"):
        ds.split_signals(items[:2], (0.6, 0.2, 0.2))


def test_synthetic_speech_is_speech_like_and_seeded():
    a = ds.synthetic_speech(3, seconds=0.5, seed=5)
    b = ds.synthetic_speech(3, seconds=0.5, seed=5)
    assert len(a) == 3 and all(s.shape == (8000,) for s in a)
    assert all(np.max(np.abs(s)) == pytest.approx(1.0) for s in a)
    np.testing.assert_array_equal(a[0], b[0])
    assert not np.array_equal(a[0], ds.synthetic_speech(1, seconds=0.5, seed=6)[0])
    # energy concentrated below 4 kHz (formants), as in speech; not white noise
    spec = np.abs(np.fft.rfft(np.concatenate(a))) ** 2
    freqs = np.fft.rfftfreq(len(np.concatenate(a)), 1 / 16000)
    assert spec[freqs < 4000].sum() > 0.9 * spec.sum()
    with pytest.raises(ValueError, match="seconds"):
        ds.synthetic_speech(1, seconds=0)


def test_images_noise_and_patches():
    pytest.importorskip("skimage", reason="scikit-image is not installed")
    imgs = ds.load_images(("camera", "astronaut"))
    assert [i.shape for i in imgs] == [(512, 512), (512, 512)]
    assert all(i.dtype == np.float64 and 0 <= i.min() and i.max() <= 1 for i in imgs)
    with pytest.raises(ValueError, match="unknown image 'lena'"):
        ds.load_images("lena")
    noisy = ds.add_noise(imgs, 0.1, seed=0)
    assert np.std(noisy[0] - imgs[0]) == pytest.approx(0.1, rel=0.02)
    with pytest.raises(ValueError, match="sigma"):
        ds.add_noise(imgs, -1.0)
    p = ds.extract_patches(imgs[0], 128)
    assert p.shape == (16, 128, 128)
    np.testing.assert_array_equal(p[1], imgs[0][:128, 128:256])
    assert ds.extract_patches(imgs[0], 256, stride=128).shape == (9, 256, 256)
    with pytest.raises(ValueError, match="exceeds"):
        ds.extract_patches(imgs[0][:10, :10], 20)


def test_image_patches_and_dct_filters():
    pytest.importorskip("skimage", reason="scikit-image is not installed")
    noisy, clean = ds.image_patches(ds.load_images("camera"), size=64, sigma=0.05,
                                    max_patches=10, seed=2)
    assert noisy.shape == clean.shape == (10, 64, 64)
    assert np.std(noisy - clean) == pytest.approx(0.05, rel=0.05)
    from pdunroll import dct_filters, dct_matrix

    h = dct_filters(4)
    c = dct_matrix(4)
    assert h.shape == (15, 4, 4)
    np.testing.assert_allclose(h[0], np.outer(c[0], c[1]), atol=1e-15)  # (a, b) = (0, 1)
    # orthonormal, and orthogonal to the constant filter
    np.testing.assert_allclose(h.reshape(15, 16) @ h.reshape(15, 16).T, np.eye(15), atol=1e-12)
    np.testing.assert_allclose(h.sum(axis=(1, 2)), 0, atol=1e-12)


@pytest.mark.parametrize("call", [
    lambda seed: ds.synthetic_speech(1, seconds=0.05, seed=seed),
    lambda seed: ds.split_signals([1, 2, 3], (0.5, 0.5), seed=seed),
    lambda seed: ds.speech_frames([np.ones(64)], n=8, max_frames=2, seed=seed),
    lambda seed: ds.add_noise([np.zeros((2, 2))], 0.1, seed=seed),
    lambda seed: ds.image_patches([np.zeros((8, 8))], size=4, sigma=0.1, seed=seed),
], ids=["synthetic_speech", "split_signals", "speech_frames", "add_noise", "image_patches"])
def test_bad_seed_is_named(call):
    """A negative seed (e.g. ``pdunroll train speech --seed -1``) names the argument instead of
    NumPy's bare "expected non-negative integer"."""
    with pytest.raises(ValueError, match="seed must be an integer >= 0, got -1"):
        call(-1)
    with pytest.raises(TypeError, match="seed must be an integer"):
        call(1.5)


def test_quantize_saturates_outside_the_unit_range(backend, dtype, tol):
    """Values beyond ±1 are clipped first (as an A/D converter does), not extrapolated."""
    x = backend.asarray(np.array([-3.0, -1.0, 1.0, 1.5, 0.2]), dtype)
    got = backend.to_numpy(ds.quantize(x, 4))
    edge = backend.to_numpy(ds.quantize(backend.asarray(np.array([-1.0, 1.0]), dtype), 4))
    np.testing.assert_allclose(got[:4], [edge[0], edge[0], edge[1], edge[1]], **tol)
    assert np.max(np.abs(got)) <= 1 - 1 / 32 + 1e-6  # the top of 16 levels, Δ/2 = 1/32


def test_speech_frames_refuses_multichannel_arrays():
    stereo = np.zeros((1000, 2))
    with pytest.raises(ValueError, match=r"one array of shape \(1000, 2\).*interleave"):
        ds.speech_frames(stereo, n=32)
    with pytest.raises(ValueError, match=r"signals\[1\] has shape \(10, 2\)"):
        ds.speech_frames([np.ones(64), np.ones((10, 2))], n=32)
    one = np.sin(np.arange(96) / 5)
    np.testing.assert_array_equal(ds.speech_frames(one, n=32).x_true,  # one 1-D recording
                                  ds.speech_frames([one], n=32).x_true)


def test_damaged_mixed_rate_and_short_wav_files_are_named(tmp_path):
    t = np.arange(800)
    good = _write(tmp_path / "a.wav", (3000 * np.sin(t / 5)).astype(np.int16))
    bad = tmp_path / "b.wav"
    bad.write_bytes(good.read_bytes()[:30])  # header cut inside the fmt chunk: struct.error
    with pytest.raises(ValueError, match=f"{bad} is not a readable wav file"):
        ds.read_wav_folder(tmp_path)
    _write(bad, (3000 * np.sin(t / 7)).astype(np.int16), rate=8000)
    with pytest.raises(ValueError, match=r"mixes sample rates \(8000 Hz: b\.wav; 16000 Hz: a\.wav"):
        ds.read_wav_folder(tmp_path)
    signals, _, rates = ds.read_wav_folder(tmp_path, rate=16000)
    assert rates == [16000, 16000] and len(signals[1]) == 1600  # resample_poly 8 -> 16 kHz
    ref = np.sin(np.arange(1600) / 14)
    np.testing.assert_allclose(signals[1][100:-100], ref[100:-100] / np.max(np.abs(ref)),
                               atol=0.02)
    with pytest.raises(ValueError, match=r"shorter than one frame of 1000 samples: a\.wav "
                                         r"\(800 samples\)"):
        ds.read_wav_folder(tmp_path, rate=16000, min_samples=1000)


@pytest.mark.parametrize("m", [8, 13, 16])
def test_dct_frame_is_parseval_and_extends_the_dct(m):
    """dct_matrix(n, m): the first n columns of the m×m orthonormal DCT-II, so CᵀC = I; m = n
    is the orthonormal DCT, and m < n is refused naming m."""
    from pdunroll import dct_matrix

    c = dct_matrix(8, m)
    assert c.shape == (m, 8)
    np.testing.assert_allclose(c.T @ c, np.eye(8), atol=1e-12)
    if m == 8:
        np.testing.assert_allclose(c @ c.T, np.eye(8), atol=1e-12)
    else:  # m cosines on a finer grid: the first n rows are not the n×n DCT's
        assert np.abs(c[1] - dct_matrix(8)[1]).max() > 1e-2
    np.testing.assert_allclose(c, dct_matrix(m)[:, :8], atol=1e-15)
    with pytest.raises(ValueError, match="m must be"):
        dct_matrix(8, 7)


def test_truncated_wav_file_is_refused_naming_it(tmp_path):
    """A file cut short inside its data chunk: SciPy reads the samples that are there with only
    a WavFileWarning; pdunroll refuses it, naming the file."""
    t = np.arange(4000)
    good = _write(tmp_path / "a.wav", (3000 * np.sin(t / 5)).astype(np.int16))
    cut = tmp_path / "cut"
    cut.mkdir()
    (cut / "b.wav").write_bytes(good.read_bytes()[:len(good.read_bytes()) // 2])
    with pytest.raises(ValueError, match=r"b\.wav is truncated"):
        ds.read_wav_folder(cut)
    assert len(ds.read_wav_folder(tmp_path)[0][0]) == 4000


@pytest.mark.parametrize("signal, error, match", [
    (np.arange(1000) * 10.0, ValueError, r"signals\[0\] is not normalised.*x / max \|x\|"),
    (np.zeros(1000), ValueError, r"signals\[0\] is silent"),
    (np.full(1000, np.nan), ValueError, r"signals\[0\] contains non-finite"),
    (np.ones(1000, dtype=complex), TypeError, r"signals\[0\] must hold real numbers"),
    (np.ones(1000, dtype=bool), TypeError, r"signals\[0\] must hold real numbers"),
])
def test_speech_frames_refuses_unnormalised_silent_and_non_real_signals(signal, error, match):
    """Raw int16 values as floats would saturate to two quantized levels; an all-silent signal
    is refused as read_wav_folder refuses a silent file; both name signals[i]."""
    with pytest.raises(error, match=match):
        ds.speech_frames([signal], n=64)
    with pytest.raises(TypeError, match="signals must be a list"):
        ds.speech_frames(3, n=64)
    ok = ds.speech_frames([np.linspace(-1, 1, 1000)], n=64)  # exactly ±1 is normalised
    assert np.max(np.abs(ok.x_true)) == 1.0
