"""Speech training data: frames of wav folders or of a built-in synthetic generator, with uniform
quantization.

Speech (Brauer & Lorenz, EUSIPCO 2023, and "Ergodic bilevel optimization"): each file is normalised
to max |x| = 1 and cut into frames of n samples; the degraded frames are quantized at ``bitrate``
bits,

    x̃ = sign(x)·Δ·(⌊|x|/Δ⌋ + ½),   Δ = 2/2^bitrate,   |x̃ − x| ≤ η = Δ/2.

Files are used at their own sample rate (one rate per folder; :func:`read_wav_folder` refuses
a mix unless told a ``rate`` to resample to; the published experiments use 16 kHz). Splits are
by file, so no file contributes to two sets. Data here are NumPy float64 arrays; move them to
another backend with its ``asarray``.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._array import Array, check_count, check_finite, check_positive, namespace

__all__ = ["SpeechFrames", "frame_signals", "quantization_radius", "quantize", "read_wav_files",
           "read_wav_folder",
           "speech_frames", "split_signals", "synthetic_speech"]

MAX_BITRATE = 24
MAX_SECONDS = 3600  # per synthetic signal


def _check_bitrate(bitrate) -> int:
    if isinstance(bitrate, bool) or not isinstance(bitrate, int | np.integer):
        raise TypeError(f"bitrate must be an integer number of bits, got {bitrate!r}")
    if not 1 <= bitrate <= MAX_BITRATE:
        raise ValueError(f"bitrate must lie in 1..{MAX_BITRATE} bits, got {bitrate}")
    return int(bitrate)


def quantization_radius(bitrate: int) -> float:
    """η = Δ/2 = 1/2^bitrate: the radius of the ℓ∞ ball around x̃ that holds x."""
    return 1.0 / 2 ** _check_bitrate(bitrate)


def quantize(x: Array, bitrate: int) -> Array:
    """Uniform b-bit mid-rise quantization of signals normalised to [−1, 1] (any array-API
    backend): x̃ = s(x)·Δ·(min(⌊|x|/Δ⌋, 2^(b−1) − 1) + ½), Δ = 2/2^b, with s(x) = +1 for x ≥ 0
    and −1 for x < 0: the 2^b levels ±Δ/2, ±3Δ/2, …, ±(1 − Δ/2).

    A mid-rise quantizer has no level at 0: a zero sample maps to +Δ/2, as in the released
    code of Brauer & Lorenz (EUSIPCO 2023), so that every x̃ is a cell's midpoint and
    |x − x̃| ≤ Δ/2 = η holds for every sample. (sign(0) = 0 would map it to 0 and tell the
    decoder that the sample is exactly 0; speech files hold many exact zeros.) A sample at
    exactly ±1 maps to the top level ±(1 − Δ/2), still within η (the released code maps it to
    ±(1 + Δ/2), a level b bits cannot encode). Values outside [−1, 1] saturate, as in an A/D
    converter: they are clipped to ±1 first (so there |x̃ − x| exceeds η; normalise the signals
    to max |x| = 1 to avoid it)."""
    b = _check_bitrate(bitrate)
    delta = 2.0 / 2 ** b
    xp = namespace(("x", x))
    check_finite(xp, x=x)
    x = xp.clip(x, -1.0, 1.0)
    side = xp.where(x >= 0, xp.ones_like(x), -xp.ones_like(x))
    return side * delta * (xp.clip(xp.floor(xp.abs(x) / delta), 0.0, 2.0 ** (b - 1) - 1) + 0.5)


# ---------------------------------------------------------------- speech


def read_wav_folder(folder, *, rate: int | None = None, min_samples: int = 1
                    ) -> tuple[list[np.ndarray], list[Path], list[int]]:
    """Read every ``*.wav`` file of ``folder`` (sorted by name; other files are ignored).

    Returns the signals (float64, each normalised to max |x| = 1), their paths and sample
    rates. Files of different sample rates are refused unless ``rate`` is given: then every
    file is resampled to ``rate`` Hz (``scipy.signal.resample_poly``) and the rates returned
    are ``rate``. Raises a clear error naming the file for a missing or empty folder, a folder
    without wav files, unreadable or damaged wav files, multi-channel files, non-finite samples,
    silent files and files shorter than ``min_samples`` (e.g. one frame).
    """
    folder = Path(folder)
    if not folder.exists():
        raise FileNotFoundError(f"speech folder {folder} does not exist")
    if not folder.is_dir():
        raise NotADirectoryError(f"speech folder {folder} is not a folder")
    entries = sorted(p for p in folder.iterdir() if p.is_file())
    if not entries:
        raise ValueError(f"speech folder {folder} is empty: expected .wav files")
    paths = [p for p in entries if p.suffix.lower() == ".wav"]
    if not paths:
        shown = ", ".join(p.name for p in entries[:5]) + (", ..." if len(entries) > 5 else "")
        raise ValueError(f"speech folder {folder} holds no .wav files (found: {shown})")
    return read_wav_files(paths, rate=rate, min_samples=min_samples, where=folder)


def read_wav_files(paths, *, rate: int | None = None, min_samples: int = 1, where=None
                   ) -> tuple[list[np.ndarray], list[Path], list[int]]:
    """:func:`read_wav_folder` for a given list of files (``where`` names them in errors)."""
    import struct

    from scipy.io import wavfile
    from scipy.signal import resample_poly

    paths = [Path(p) for p in paths]
    if rate is not None:
        rate = check_count("rate", rate)
    min_samples = check_count("min_samples", min_samples)
    folder = where if where is not None else "the given files"
    signals, rates = [], []
    for path in paths:
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", wavfile.WavFileWarning)
                file_rate, data = wavfile.read(path)
        # a damaged header raises struct.error, a truncated chunk ValueError or EOFError
        except (ValueError, OSError, EOFError, struct.error) as err:
            raise ValueError(f"{path} is not a readable wav file (damaged or truncated?): "
                             f"{err}") from err
        for w in caught:  # SciPy reads a file cut short with only a WavFileWarning
            if _TRUNCATED in str(w.message) or "Incomplete chunk" in str(w.message):
                raise ValueError(f"{path} is truncated (shorter than its header says: "
                                 f"{w.message}): re-copy or remove it")
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        if data.ndim != 1:
            raise ValueError(f"{path} has {data.shape[1]} channels: only mono wav files are "
                             "supported (mix them down first)")
        x = _normalise(data, path)
        if rate is not None and file_rate != rate:
            g = math.gcd(rate, int(file_rate))
            x = resample_poly(x, rate // g, int(file_rate) // g)
            x = _normalise(x, path)
        signals.append(x)
        rates.append(int(file_rate))
    if rate is None and len(set(rates)) > 1:
        by_rate = {r: [p.name for p, q in zip(paths, rates, strict=True) if q == r]
                   for r in sorted(set(rates))}
        shown = "; ".join(f"{r} Hz: {', '.join(names[:3])}{', ...' if len(names) > 3 else ''}"
                          for r, names in by_rate.items())
        raise ValueError(f"{folder} mixes sample rates ({shown}): resample them to one rate "
                         "(rate=..., the command line's --rate)")
    short = [f"{p.name} ({len(x)} samples)" for p, x in zip(paths, signals, strict=True)
             if len(x) < min_samples]
    if short:
        raise ValueError(f"in {folder}, {len(short)} file(s) are shorter than one frame of "
                         f"{min_samples} samples: {', '.join(short[:5])}"
                         f"{', ...' if len(short) > 5 else ''} (remove them or use a smaller n)")
    return signals, paths, rates if rate is None else [rate] * len(paths)


_TRUNCATED = "Reached EOF prematurely"  # SciPy's warning for a file cut short


def _normalise(data: np.ndarray, path) -> np.ndarray:
    x = data.astype(np.float64)
    if data.dtype == np.uint8:  # 8-bit wav is unsigned, centred at 128
        x = x - 128.0
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{path} contains non-finite samples (NaN or inf)")
    peak = np.max(np.abs(x)) if x.size else 0.0
    if peak == 0:
        raise ValueError(f"{path} is silent (or empty): cannot normalise it to max |x| = 1")
    return x / peak


def frame_signals(signals, n: int) -> np.ndarray:
    """Non-overlapping frames of n samples from every signal (a shorter tail is dropped)."""
    n = check_count("n", n)
    parts = [np.reshape(s[: (len(s) // n) * n], (-1, n)) for s in signals]
    if not parts or sum(len(p) for p in parts) == 0:
        raise ValueError(f"no frame of n={n} samples fits in the given signals "
                         f"(longest has {max((len(s) for s in signals), default=0)} samples)")
    return np.concatenate(parts)


def split_signals(signals, fractions, seed: int = 0) -> list[list]:
    """Split a list of signals (or files) into consecutive groups of the given fractions after
    a seeded shuffle, each group non-empty; fractions must sum to 1."""
    if abs(sum(fractions) - 1) > 1e-9 or any(f <= 0 for f in fractions):
        raise ValueError(f"fractions must be positive and sum to 1, got {fractions}")
    if len(signals) < len(fractions):
        raise ValueError(f"need at least {len(fractions)} signals to split into "
                         f"{len(fractions)} sets, got {len(signals)}")
    n = len(signals)
    sizes = [max(1, int(f * n)) for f in fractions]
    while sum(sizes) > n:  # too many: take from the largest set
        sizes[sizes.index(max(sizes))] -= 1
    sizes[0] += n - sum(sizes)  # the rest goes to the first (training) set
    order = np.random.default_rng(check_count("seed", seed, minimum=0)).permutation(n)
    bounds = np.cumsum([0, *sizes])
    return [[signals[i] for i in order[a:b]] for a, b in zip(bounds[:-1], bounds[1:],
                                                             strict=True)]


@dataclass(frozen=True)
class SpeechFrames:
    """Quantized and clean frames (N, n), NumPy float64, and the quantizer's ℓ∞ radius η."""

    x_tilde: np.ndarray
    x_true: np.ndarray
    bitrate: int
    eta: float

    def __len__(self) -> int:
        return self.x_true.shape[0]


def speech_frames(signals, *, n: int = 320, bitrate: int = 4, max_frames: int | None = None,
                  seed: int = 0) -> SpeechFrames:
    """Frames of n samples of normalised signals and their quantized versions.

    ``signals``: a list of 1-D (mono) recordings, or one 1-D array; a 2-D array (e.g. stereo,
    samples × channels) is refused, since framing it would interleave the channels.
    ``max_frames`` keeps a seeded random subset of at most that many frames. Each recording must
    be normalised to [−1, 1] (x / max |x|, as :func:`read_wav_folder` returns them) and not
    silent; one that is not is refused naming it (``signals[i]``).
    """
    n = check_count("n", n)
    bitrate = _check_bitrate(bitrate)
    seed = check_count("seed", seed, minimum=0)
    if isinstance(signals, np.ndarray):
        if signals.ndim != 1:
            raise ValueError(f"signals must be a list of 1-D (mono) recordings, got one array "
                             f"of shape {signals.shape}: framing it would interleave its "
                             "channels (pass [x] for one recording, or a list of channels)")
        signals = [signals]
    if isinstance(signals, str | bytes) or not hasattr(signals, "__len__"):
        raise TypeError(f"signals must be a list of 1-D recordings, got {type(signals).__name__}")
    signals = [_check_recording(f"signals[{i}]", s) for i, s in enumerate(signals)]
    x = frame_signals(signals, n)
    if max_frames is not None and len(x) > check_count("max_frames", max_frames):
        keep = np.sort(np.random.default_rng(seed).choice(len(x), max_frames, replace=False))
        x = x[keep]
    return SpeechFrames(quantize(x, bitrate), x, bitrate,
                        quantization_radius(bitrate))


def _check_recording(name: str, s) -> np.ndarray:
    """One recording of :func:`speech_frames` as float64: real, 1-D, finite, not silent and
    normalised (max |x| ≤ 1: the quantizer saturates beyond ±1)."""
    a = np.asarray(s)
    if a.dtype == bool or not (np.issubdtype(a.dtype, np.integer)
                               or np.issubdtype(a.dtype, np.floating)):
        raise TypeError(f"{name} must hold real numbers, got dtype {a.dtype}")
    if a.ndim != 1:
        raise ValueError(f"{name} has shape {a.shape}: expected a 1-D (mono) recording")
    a = a.astype(np.float64)
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains non-finite values (NaN or inf)")
    peak = float(np.max(np.abs(a))) if a.size else 0.0
    if peak == 0:
        raise ValueError(f"{name} is silent (all zeros): it carries nothing to learn from")
    if peak > 1:
        raise ValueError(f"{name} is not normalised to [-1, 1] (max |x| = {peak:g}): the "
                         "quantizer would saturate it; divide it by its peak, x / max |x| "
                         "(read_wav_folder does this for files)")
    return a


def synthetic_speech(n_signals: int = 8, *, seconds: float = 1.0, sample_rate: int = 16000,
                     seed: int = 0) -> list[np.ndarray]:
    """Speech-like signals from a source-filter model, each normalised to max |x| = 1.

    Syllables of 80–300 ms alternate voiced excitation (a glottal pulse train at a drifting
    pitch of 90–220 Hz, low-passed by 1/(1 − 0.9 z⁻¹)), unvoiced excitation (white noise) and
    near-silence; the excitation runs through an all-pole vocal-tract filter with four
    formants (resonances at F1 300–900, F2 900–2500, F3 2000–3200, F4 3300–4000 Hz) that glide
    between syllable targets, updated every 10 ms (``scipy.signal.lfilter`` with carried
    state); a √sin envelope shapes each syllable.
    """
    from scipy.signal import lfilter

    n_signals = check_count("n_signals", n_signals)
    sample_rate = check_count("sample_rate", sample_rate, minimum=8000)
    seconds = check_positive("seconds", seconds)
    if seconds > MAX_SECONDS:
        raise ValueError(f"seconds must be at most {MAX_SECONDS} (an hour) per signal, got "
                         f"{seconds:g}")
    rng = np.random.default_rng(check_count("seed", seed, minimum=0))
    length = int(round(seconds * sample_rate))
    hop = sample_rate // 100
    ranges = np.array([[300, 900], [900, 2500], [2000, 3200], [3300, 4000]], dtype=float)
    out = []
    for _ in range(n_signals):
        pieces, state = [], np.zeros(8)
        formants = rng.uniform(ranges[:, 0], ranges[:, 1])
        total, f0, phase = 0, rng.uniform(90, 220), 0.0
        while total < length:
            kind = rng.choice(3, p=[0.6, 0.25, 0.15])  # voiced, unvoiced, silence
            seg = int(rng.uniform(0.08, 0.3) * sample_rate)
            target = rng.uniform(ranges[:, 0], ranges[:, 1])
            gain = rng.uniform(0.3, 1.0)
            for start in range(0, seg, hop):
                m = min(hop, seg - start)
                formants = formants + 0.15 * (target - formants)
                if kind == 0:
                    f0 = float(np.clip(f0 * np.exp(rng.normal(0, 0.01)), 90, 220))
                    t = phase + np.arange(1, m + 1) * f0 / sample_rate
                    exc = np.diff(np.floor(np.concatenate([[phase], t])))
                    phase = float(t[-1] % 1.0)
                    exc = lfilter([1.0], [1.0, -0.9], exc) * gain
                elif kind == 1:
                    exc = rng.standard_normal(m) * 0.1 * gain
                else:
                    exc = rng.standard_normal(m) * 1e-3
                envelope = np.sqrt(np.sin(math.pi * (start + np.arange(m) + 0.5) / seg))
                a = _all_pole(formants, sample_rate)
                y, state = lfilter([1.0], a, exc * envelope, zi=state)
                pieces.append(y)
            total += seg
        x = np.concatenate(pieces)[:length]
        out.append(x / np.max(np.abs(x)))
    return out


def _all_pole(formants, sample_rate) -> np.ndarray:
    """Denominator of ∏ 1/(1 − 2 r cos θ z⁻¹ + r² z⁻²) with bandwidths growing with frequency."""
    bandwidth = 50.0 + 0.05 * formants
    r = np.exp(-math.pi * bandwidth / sample_rate)
    theta = 2 * math.pi * formants / sample_rate
    a = np.array([1.0])
    for ri, ti in zip(r, theta, strict=True):
        a = np.convolve(a, [1.0, -2 * ri * math.cos(ti), ri * ri])
    return a
