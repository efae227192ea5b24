"""Speech dequantization (Brauer & Lorenz, EUSIPCO 2023): F = ‖·‖₁, G = indicator of the
quantization cell {‖x − x̃‖_∞ ≤ η}, K started from the DCT; the data sets of a run (the built-in
synthetic speech, or a folder of mono wav files split by file) and the test set that
``pdunroll evaluate`` reads again.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path

from ..functions.euclidean import L1Norm, LinfBall
from ..model import AnalysisModel
from ..operators.dense import DenseOperator, dct_matrix
from .base import SPLIT, TaskData, learned_name, recorded_files, split_files

__all__ = ["N_SYNTHETIC", "N_WAV", "TRAINING", "SpeechOptions", "baselines", "datasets",
           "evaluation_rows", "evaluation_set", "speech_model"]

N_SYNTHETIC, N_WAV = 128, 320  # frame length: fast synthetic default; the papers' 320 (20 ms)
# the command line's training defaults: ω = 40 and m = 2n are the best of the runs on the IEEE
# corpus (docs, Results page: +2.35 dB over the DCT after 8 epochs against ω = 30's +2.25, +2.50
# after 32 against +2.44); lr 5e-4: one epoch on 10 000 frames improved the validation loss
# in 3 of 3 seeds (at 1e-3 in none; a warm-up of 10 or 30 % of the steps at 1e-3 in 2 and 1 of 3)
TRAINING = {"omega": 40.0, "lr": 5e-4, "warmup": 0.0, "epochs": 8, "batch_size": 32}


def speech_model(n: int, eta: float, *, m: int | None = None, matrix=None, xp=None,
                 dtype=None, device=None) -> AnalysisModel:
    """The speech dequantization model: K = ``matrix``, or the n×n orthonormal DCT-II, or for
    m > n the overcomplete DCT frame (the first n columns of the m×m DCT-II); F = ‖·‖₁;
    G = indicator of {‖x − x̃‖_∞ ≤ η}. ``xp``, ``dtype``, ``device``: where the DCT is made
    (NumPy float64 by default)."""
    K = dct_matrix(n, m, xp=xp, dtype=dtype, device=device) if matrix is None else matrix
    return AnalysisModel(DenseOperator(K), f=L1Norm(), g=LinfBall(eta))


def baselines(start: AnalysisModel) -> list:
    """The rows a learned speech operator is compared with: its start, and for an overcomplete
    start (m > n) also the n×n DCT, the papers' baseline."""
    m, n = start.operator.out_shape[0], start.operator.in_shape[0]
    if m == n:
        return [("DCT start", start)]
    return [("DCT", speech_model(n, start.g.radius)), (f"DCT frame start ({m}×{n})", start)]


@dataclass(frozen=True)
class SpeechOptions:
    """The data options of a speech run (the command line's ``train speech`` options): a wav
    folder ``data`` (else synthetic speech of ``signals`` × ``seconds``), frames of ``n``
    samples, K of ``m`` rows, a ``bitrate``-bit quantizer, an optional resampling ``rate``, at
    most ``max_frames`` training frames, the ``seed`` of data, split and shuffling. ``n`` and
    ``m`` default to 320 and 2n with a folder (the papers' 20 ms at 16 kHz; m = 2n gained 0.6 dB
    on the IEEE corpus), 128 and n for the synthetic speech."""

    data: Path | None = None
    signals: int = 60
    seconds: float = 3.0
    n: int | None = None
    m: int | None = None
    bitrate: int = 4
    rate: int | None = None
    max_frames: int | None = None
    seed: int = 0

    def resolved(self) -> SpeechOptions:
        """The options with n and m filled in, checked before any data are read."""
        n = self.n if self.n is not None else (N_SYNTHETIC if self.data is None else N_WAV)
        if n < 2:
            raise ValueError(f"--n must be at least 2 samples per frame, got {n}")
        m = self.m if self.m is not None else (n if self.data is None else 2 * n)
        if m < n:
            raise ValueError(f"--m must be at least --n ({n}): K needs at least as many rows as "
                             f"a frame has samples, got {m}")
        if self.bitrate > 24:
            raise ValueError(f"--bitrate must lie in 1..24, got {self.bitrate}")
        if self.data is not None:
            if not Path(self.data).is_dir():
                raise ValueError(f"--data {self.data} is not a folder")
        elif self.rate is not None:
            raise ValueError("--rate resamples wav files: it needs --data")
        elif self.signals < 3:
            raise ValueError(f"--signals must be at least 3 (split by signal into training, "
                             f"validation and test), got {self.signals}")
        return replace(self, n=n, m=m)

    def record(self) -> dict:
        """The options as JSON values."""
        out = asdict(self)
        out["data"] = None if self.data is None else str(self.data)
        return out

    @property
    def parameter_shape(self) -> tuple:
        """The shape of K's parameters that these options give (after :meth:`resolved`)."""
        return (self.m, self.n)


def _wav_folder(folder: Path, *, rate, n):
    """Signals, paths and the one sample rate of every wav file of ``folder``."""
    from ..data.speech import read_wav_folder

    signals, paths, rates = read_wav_folder(folder, rate=rate, min_samples=n)
    return signals, paths, rates[0]


def datasets(opts: SpeechOptions) -> TaskData:
    """Training, validation and test frame pairs split by file (or by synthetic signal), the
    DCT start, the records and the fingerprint of a speech run with resolved options."""
    from ..data import speech as ds

    framing = {"n": opts.n, "bitrate": opts.bitrate, "max_frames": opts.max_frames,
               "seed": opts.seed}
    if opts.data is None:
        gen = {"signals": opts.signals, "seconds": opts.seconds, "seed": opts.seed}
        sets = ds.split_signals(ds.synthetic_speech(opts.signals, seconds=opts.seconds,
                                                    seed=opts.seed), SPLIT, seed=opts.seed)
        data = {"kind": "synthetic", **gen, "sample_rate": 16000,
                "split": "signals split 70/15/15"}
        fingerprint = {"kind": "synthetic", **gen, **framing}
        test = {"kind": "synthetic", **gen}
        text = f"synthetic speech ({opts.signals} × {opts.seconds:g} s, seed {opts.seed})"
    else:
        folder = Path(opts.data)
        split = split_files(folder, lambda f: _wav_folder(f, rate=opts.rate, n=opts.n),
                            seed=opts.seed)
        rate = split.info[0]
        if len(split.info) == 2 and split.info[1] != rate:
            raise ValueError(f"--data {folder}: train/ is at {rate} Hz but dev/ at "
                             f"{split.info[1]} Hz; resample both with --rate")
        sets = [[x for x, _ in part] for part in split.parts]
        data = {"kind": "wav", "folder": str(split.root), "split": split.how,
                "sample_rate": rate, "resampled_to": opts.rate,
                "files": dict(zip(("train", "validation", "test"), map(len, split.parts),
                                  strict=True))}
        fingerprint = {"kind": "wav", "files": {**split.digests[0], **split.digests[1]},
                       "test_files": split.digests[2], "sample_rate": rate, **framing}
        test = {"kind": "wav", "folder": str(split.root), "files": split.digests[2],
                "sample_rate": rate, "resampled_to": opts.rate}
        text = (f"{folder} ({sum(map(len, split.parts))} wav files at {rate} Hz"
                f"{' (resampled)' if opts.rate else ''}, {split.how})")
    frames = [ds.speech_frames(s, n=opts.n, bitrate=opts.bitrate, seed=opts.seed,
                               max_frames=opts.max_frames if i == 0 else None)
              for i, s in enumerate(sets)]
    data["frames"] = dict(zip(("train", "validation", "test"), map(len, frames), strict=True))
    pairs = tuple((f.x_tilde, f.x_true) for f in frames)
    eta = frames[0].eta
    meta = {"task": "speech", "n": opts.n, "m": opts.m, "bitrate": opts.bitrate, "data": data,
            "test_set": test, "seed": opts.seed, "max_frames": opts.max_frames}
    text = (f"{text}; frames of n={opts.n}, bitrate {opts.bitrate} (η = {eta:g}): "
            f"{len(pairs[0][0])} training, {len(pairs[1][0])} validation, {len(pairs[2][0])} "
            "test")
    start = speech_model(opts.n, eta, m=opts.m)
    return TaskData(pairs, start, baselines(start), meta, fingerprint, text)


def evaluation_set(source: str, meta: dict, n: int, *, data: Path | None = None,
             rate: int | None = None, bitrate: int | None = None):
    """The frames ``pdunroll evaluate`` scores an operator of ``n`` samples per frame on: every
    wav file of ``data``, or the training run's test set (its wav files read again and checked
    against their digests, or the synthetic generator's signals); ``source`` names the operator
    file in errors. Returns the (quantized, clean) pair, η and a title."""
    from ..data import speech as ds

    bitrate = meta["bitrate"] if bitrate is None else bitrate
    if data is not None:
        if (data / "dev").is_dir() and not any(data.glob("*.wav")):
            raise ValueError(f"--data {data} holds no wav files but a dev/ folder: score "
                             f"the test set with --data {data / 'dev'}")
        signals, paths, rate = _wav_folder(data, rate=rate, n=n)
        where = f"{data}: all {len(paths)} wav files at {rate} Hz"
    else:
        test = meta.get("test_set")
        if not isinstance(test, dict):
            raise ValueError(f"{source} does not record its test set (written by an older "
                             "pdunroll): give the test folder with --data")
        if test["kind"] == "synthetic":
            if rate is not None:
                raise ValueError("--rate resamples wav files: the operator was trained on "
                                 "synthetic speech")
            signals = ds.split_signals(ds.synthetic_speech(
                test["signals"], seconds=test["seconds"], seed=test["seed"]), SPLIT,
                seed=test["seed"])[2]
            where = (f"synthetic speech ({test['signals']} × {test['seconds']:g} s, seed "
                     f"{test['seed']}), its test part: {len(signals)} signals")
        else:
            paths = recorded_files(source, test, "test files", "give the test folder with --data")
            root = Path(test["folder"])
            rate = rate if rate is not None else test.get("resampled_to")
            signals, paths, _ = ds.read_wav_files(paths, rate=rate, min_samples=n, where=root)
            where = f"the test set of {source}: {len(paths)} wav files of {root}"
    frames = ds.speech_frames(signals, n=n, bitrate=bitrate)
    title = f"{where}, {len(frames)} frames of n={n}, bitrate {bitrate}"
    return (frames.x_tilde, frames.x_true), frames.eta, title


def evaluation_rows(source: str, model: AnalysisModel, meta: dict, *, data=None, rate=None,
                    bitrate=None):
    """What ``pdunroll evaluate`` scores a learned speech operator on (see
    :func:`evaluation_set`) and the rows of its table: the DCT baselines and the operator with
    G of the evaluated bitrate. Returns (test pair, rows, title)."""
    m, n = model.operator.out_shape[0], model.operator.in_shape[0]
    test, eta, title = evaluation_set(source, meta, n, data=data, rate=rate, bitrate=bitrate)
    rows = [*baselines(speech_model(n, eta, m=m)),
            (learned_name(meta), speech_model(n, eta, matrix=model.operator.params))]
    return test, rows, title
