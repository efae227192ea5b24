"""Command line: ``pdunroll train speech``, ``pdunroll train denoise``, ``pdunroll evaluate``.

``pdunroll train speech`` learns an analysis operator for speech dequantization (F = ‖·‖₁,
G = indicator of {‖x − x̃‖_∞ ≤ η}, K initialised as the DCT) on the built-in synthetic speech or
on a folder of mono wav files (``--data``). ``pdunroll train denoise`` learns a bank of 2-D
filters for image denoising (F = ‖·‖₁ of the filter responses, G = indicator of
{‖x − x̃‖₂ ≤ σ √#pixels}, filters initialised as 2-D DCT filters) on patches of
scikit-image's bundled images. Both print a table of test MSE and SNR (PSNR for images) for the
degraded input, the DCT start and the learned operator, and write to ``--out``:
``operator.npz`` (load it with :func:`pdunroll.load_operator`), ``checkpoint.npz`` (``--resume``
continues from it), ``curves.png`` and ``results.json``. Ctrl-C saves the checkpoint first. A
new run (without ``--resume``) refuses a ``--out`` that holds the checkpoint of an earlier one.

``pdunroll evaluate OPERATOR`` prints the same table for a saved operator on its test set.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import signal
import sys
from pathlib import Path

__all__ = ["main"]

SPLIT = (0.7, 0.15, 0.15)  # speech: train / validation / test, by file
TRAIN_IMAGES = ("camera", "coins", "moon", "astronaut", "brick", "grass")
TEST_IMAGES = ("page", "clock")


# ---------------------------------------------------------------- arguments


# speech data options of ``train speech``: every default is stated in --help
SPEECH_DEFAULTS = {"signals": 60, "seconds": 3.0, "bitrate": 4, "seed": 0}
N_SYNTHETIC, N_WAV = 128, 320  # frame length: fast synthetic default; the papers' 320 (20 ms)


def _speech_data_args(p) -> None:
    """Data options of ``train speech``."""
    p.add_argument("--data", type=Path, default=None,
                   help="folder of mono wav files, or with train/ and dev/ subfolders (dev/ is "
                        "the test set); default: built-in synthetic speech")
    p.add_argument("--signals", type=_positive_int, default=SPEECH_DEFAULTS["signals"],
                   help=f"synthetic speech: number of signals (default "
                        f"{SPEECH_DEFAULTS['signals']})")
    p.add_argument("--seconds", type=_positive_float, default=SPEECH_DEFAULTS["seconds"],
                   help=f"synthetic speech: seconds per signal (default "
                        f"{SPEECH_DEFAULTS['seconds']:g})")
    p.add_argument("--n", type=_positive_int, default=None,
                   help=f"samples per frame (default {N_WAV} with --data, 20 ms at 16 kHz as in "
                        f"the papers; {N_SYNTHETIC} for the synthetic speech)")
    p.add_argument("--m", type=_positive_int, default=None,
                   help="rows of the operator K: m = n starts from the n×n DCT, m > n from an "
                        "overcomplete DCT frame, the first n columns of the m×m DCT-II "
                        "(default 2n with --data, +0.6 dB over m = n on the IEEE corpus; n for "
                        "the synthetic speech)")
    p.add_argument("--bitrate", type=_positive_int, default=SPEECH_DEFAULTS["bitrate"],
                   help=f"quantizer bits (default {SPEECH_DEFAULTS['bitrate']})")
    p.add_argument("--rate", type=_positive_int, default=None,
                   help="resample every wav file to this rate in Hz (scipy.signal.resample_poly);"
                        " default: none, and a folder of mixed rates is refused")
    p.add_argument("--max-frames", type=_positive_int, default=None,
                   help="use at most this many training frames (random subset; default: all)")
    p.add_argument("--seed", type=_nonnegative_int, default=SPEECH_DEFAULTS["seed"],
                   help=f"seed of data, split and shuffling (default {SPEECH_DEFAULTS['seed']})")


def _evaluate_data_args(p) -> None:
    """Data options of ``evaluate``: by default the training run's own test set."""
    p.add_argument("--data", type=Path, default=None,
                   help="score every wav file of this folder (default: the training run's test "
                        "set, read again and checked against its SHA-256 digests)")
    p.add_argument("--bitrate", type=_positive_int, default=None,
                   help="quantizer bits (default: as in training)")
    p.add_argument("--rate", type=_positive_int, default=None,
                   help="resample the wav files to this rate in Hz (default: as in training)")
    p.add_argument("--no-baseline", action="store_true",
                   help="skip the DCT row (it costs as much as the learned operator's)")


def _image_data_args(p) -> None:
    p.add_argument("--images", nargs="+", default=list(TRAIN_IMAGES),
                   help=f"training images (default {' '.join(TRAIN_IMAGES)})")
    p.add_argument("--test-images", nargs="+", default=list(TEST_IMAGES),
                   help=f"test images (default {' '.join(TEST_IMAGES)})")
    p.add_argument("--sigma", type=_positive_float, default=0.1,
                   help="noise level (default 0.1)")
    p.add_argument("--patch", type=_positive_int, default=32, help="patch size (default 32)")
    p.add_argument("--max-patches", type=_positive_int, default=470,
                   help="training + validation patches (default 470)")
    p.add_argument("--seed", type=_nonnegative_int, default=0,
                   help="seed of noise, split and shuffling (default 0)")


def _train_args(p, *, out: str, omega: float, lr: float, epochs: int, batch_size: int
                ) -> None:
    p.add_argument("--out", type=Path, default=None,
                   help=f"output folder (default runs/{out}, or runs/{out}-2, -3, ... when it "
                        "holds an earlier run, which is kept; with --resume: the newest of "
                        "them)")
    p.add_argument("--iterations", "-L", type=_positive_int, default=10,
                   help="unrolled Chambolle-Pock steps L (default 10)")
    p.add_argument("--omega", type=_positive_float, default=omega,
                   help=f"σ/τ balance ω (default {omega:g})")
    p.add_argument("--method", choices=("full", "truncated", "asymptotic", "implicit"),
                   default="full",
                   help="gradient method (default full): exact backpropagation through all L "
                        "steps; through the last --b steps; --b steps at the final iterate; "
                        "the fixed-point gradient (see the docs' 'Gradient modes' page)")
    p.add_argument("--b", type=int, default=None,
                   help="backward steps of --method truncated / asymptotic (required there, "
                        "e.g. 30 as in the speech tutorial; refused otherwise)")
    p.add_argument("--weights", choices=("harmonic", "uniform"), default=None,
                   help="ergodic unrolling weights (default: last iterate)")
    p.add_argument("--relax-primal", action="store_true",
                   help="treat the primal prox as identity in the backward pass (an "
                        "approximation, not the exact gradient)")
    p.add_argument("--optimizer", choices=("adam", "sgd"), default="adam",
                   help="default adam")
    p.add_argument("--lr", type=_positive_float, default=lr,
                   help=f"initial learning rate (default {lr}; at large L, e.g. -L 100, a "
                        "smaller one such as 2e-4: on speech 1e-3 made the first epoch worse "
                        "and the run kept its start)")
    p.add_argument("--schedule", choices=("constant", "linear", "polynomial", "inverse"),
                   default="linear", help="learning-rate schedule (default: linear decay to "
                                          "lr/1000)")
    p.add_argument("--epochs", type=_positive_int, default=epochs, help=f"default {epochs}")
    p.add_argument("--batch-size", type=_positive_int, default=batch_size,
                   help=f"default {batch_size}")
    p.add_argument("--patience", type=_positive_int, default=None,
                   help="early stopping after this many epochs without improvement (default: "
                        "none)")
    p.add_argument("--checkpoint-minutes", type=_positive_float, default=5.0,
                   help="also save the checkpoint within an epoch every this many minutes "
                        "(default 5; it is always saved at every epoch's end)")
    p.add_argument("--checkpoint-steps", type=_positive_int, default=None,
                   help="also save the checkpoint every this many steps (default: by time only)")
    p.add_argument("--resume", action="store_true",
                   help="continue from OUT/checkpoint.npz (same settings and data)")
    p.add_argument("--init", type=Path, default=None, metavar="OPERATOR",
                   help="start from the operator of an earlier run (its operator.npz, e.g. one "
                        "trained at a smaller -L) instead of the DCT; its shape must be the one "
                        "the other arguments give; the DCT stays the table's baseline")
    p.add_argument("--quiet", action="store_true",
                   help="no progress bar and no epoch lines (OUT/train.log still has them)")


def _int_at_least(minimum: int):
    """An argparse type: an integer >= ``minimum``, else a usage error saying so."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text!r}")
        return value

    return parse


_positive_int = _int_at_least(1)
_nonnegative_int = _int_at_least(0)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (0 < value < math.inf):
        raise argparse.ArgumentTypeError(f"expected a positive finite number, got {text!r}")
    return value


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("pdunroll")
    except PackageNotFoundError:
        return "unknown (not installed)"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pdunroll", description="Learn analysis operators by bilevel optimization through "
                                     "an unrolled Chambolle-Pock algorithm.")
    parser.add_argument("--version", action="version", version=f"pdunroll {_version()}")
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser("train", help="learn an operator")
    tasks = train.add_subparsers(dest="task", required=True)
    speech = tasks.add_parser("speech", help="speech dequantization (Brauer & Lorenz 2023)")
    _speech_data_args(speech)
    # ω = 30 and m = 2n: the best of the runs on the IEEE corpus (docs, Results page)
    _train_args(speech, out="speech", omega=30.0, lr=1e-3, epochs=8, batch_size=32)
    denoise = tasks.add_parser("denoise",
                               help="image denoising with a filter bank (Brauer & Lorenz)")
    _image_data_args(denoise)
    denoise.add_argument("--kernel", type=_positive_int, default=5,
                         help="filter size k: k²−1 DCT filters of k×k to start (default 5)")
    _train_args(denoise, out="denoise", omega=10.0, lr=3e-2, epochs=3, batch_size=8)
    ev = commands.add_parser("evaluate", help="apply a saved operator to its test set or a "
                                              "folder")
    ev.add_argument("operator", type=Path, help="operator .npz written by pdunroll train")
    _evaluate_data_args(ev)
    ev.add_argument("--iterations", "-L", type=int, default=None,
                    help="Chambolle-Pock steps (default: the training L)")
    audit = commands.add_parser(  # the gradient audit: _audit
        "audit", help="check every gradient method against finite differences, autodiff and "
                      "each other on the tutorials' models")
    audit.add_argument("--problem", choices=("speech", "denoise", "segmentation", "all"),
                       default="all", help="tutorial model to audit (default all)")
    audit.add_argument("--iterations", "-L", type=_positive_int, default=20,
                       help="unrolled steps L (default 20)")
    audit.add_argument("--no-autodiff", action="store_true",
                       help="leave out torch.autograd and jax.grad")
    for sub in (speech, denoise, ev):
        # array backend, dtype and device of the computation (data are read as NumPy float64)
        sub.add_argument("--backend", choices=BACKENDS, default="numpy",
                         help="array library that runs the solver and the gradients (default "
                              "numpy; torch, jax, cupy when installed)")
        sub.add_argument("--dtype", choices=("float32", "float64"),
                         default="float64" if sub is ev else "float32",
                         help="floating-point type (default float64)" if sub is ev else
                              "floating-point type (default float32: on the IEEE corpus it "
                              "costs 0.03 dB against float64 and is 1.8× faster, see the docs' "
                              "Results page)")
        sub.add_argument("--device", default=None,
                         help="device of --backend torch / jax (e.g. cuda, cuda:1, gpu; "
                              "default: the library's default device)")
    for sub in (speech, denoise, ev, audit):
        sub.add_argument("--threads", type=_positive_int, default=1,
                         help="BLAS threads (default 1: the minibatch products are small, and "
                              "one thread per process is fastest on a few shared cores); an "
                              "OMP_NUM_THREADS / OPENBLAS_NUM_THREADS already set wins")
        _dask_args(sub)
    return parser


def _dask_args(p) -> None:
    """``--scheduler`` / ``--workers``: training steps and reconstructions on Dask workers."""
    g = p.add_argument_group("Dask distributed (pip install torch==2.13.0 && "
                             "pip install \"pdunroll[distributed]\")")
    where = g.add_mutually_exclusive_group()
    where.add_argument("--scheduler", metavar="ADDRESS", default=None,
                       help="address of a running Dask scheduler (e.g. tcp://host:8786): "
                            "minibatch gradients and reconstructions run on its workers")
    where.add_argument("--workers", type=_positive_int, default=None, metavar="N",
                       help="start a local Dask cluster of N worker processes (1 thread each)")


BACKENDS = ("numpy", "torch", "jax", "cupy")


def _on_backend(args, model, sets):
    """``model`` and the (degraded, clean) pairs of ``sets`` moved to ``--backend``,
    ``--dtype``, ``--device`` (docs, "Backends and devices": the arrays choose where the
    library computes)."""
    import numpy as np

    dtype = args.dtype
    name, device = args.backend, args.device
    if name == "numpy" and device not in (None, "cpu"):
        raise ValueError(f"--device {device}: --backend numpy runs on the cpu only")
    try:
        if name == "numpy":
            def move(a):
                return np.asarray(a, dtype=dtype)
        elif name == "torch":
            import torch

            dev = torch.device(device) if device else None

            def move(a):
                return torch.asarray(np.asarray(a, dtype=dtype), device=dev)
        elif name == "jax":
            import jax

            if dtype == "float64":
                jax.config.update("jax_enable_x64", True)
            dev = jax.devices(device)[0] if device else None

            def move(a):
                return jax.device_put(jax.numpy.asarray(np.asarray(a, dtype=dtype)), dev)
        else:
            import cupy

            if device:
                cupy.cuda.Device(int(device.removeprefix("cuda:"))).use()

            def move(a):
                return cupy.asarray(np.asarray(a, dtype=dtype))
        moved = model.with_params(move(model.operator.params))
        return moved, [tuple(move(a) for a in pair) for pair in sets]
    except ImportError as err:
        raise ImportError(f"--backend {name} needs the {name} package (pip install {name}): "
                          f"{err}") from err
    except (RuntimeError, ValueError, TypeError) as err:
        raise ValueError(f"--backend {name} --device {device}: {err}") from err


def _limit_threads(n: int) -> None:
    """Default BLAS thread counts; effective because numpy is not imported yet."""
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, str(n))


# ---------------------------------------------------------------- data and models


def _wav_files(folder: Path, *, rate, n):
    """Signals, paths and the one sample rate of every wav file of ``folder``."""
    from .data import speech as ds

    signals, paths, rates = ds.read_wav_folder(folder, rate=rate, min_samples=n)
    return signals, paths, rates[0]


def _speech_sets(args):
    """(training, validation, test) frame pairs split by file, η, a description of the data for
    the records, the fingerprint of the training data and the record of the test set that
    ``evaluate`` reads again."""
    from .data import speech as ds
    from .data.fingerprint import file_digests

    framing = {"n": args.n, "bitrate": args.bitrate, "max_frames": args.max_frames,
               "seed": args.seed}
    if args.data is None:
        gen = {"signals": args.signals, "seconds": args.seconds, "seed": args.seed}
        sets = ds.split_signals(ds.synthetic_speech(args.signals, seconds=args.seconds,
                                                    seed=args.seed), SPLIT, seed=args.seed)
        data = {"kind": "synthetic", **gen, "sample_rate": 16000,
                "split": "signals split 70/15/15"}
        fingerprint = {"kind": "synthetic", **gen, **framing}
        test = {"kind": "synthetic", **gen}
        text = f"synthetic speech ({args.signals} × {args.seconds:g} s, seed {args.seed})"
    else:
        root = args.data.resolve()
        if (args.data / "train").is_dir() and (args.data / "dev").is_dir():
            signals, paths, rate = _wav_files(args.data / "train", rate=args.rate, n=args.n)
            idx = ds.split_signals(list(range(len(paths))), (0.85, 0.15), seed=args.seed)
            dev, dev_paths, dev_rate = _wav_files(args.data / "dev", rate=args.rate, n=args.n)
            if dev_rate != rate:
                raise ValueError(f"--data {args.data}: train/ is at {rate} Hz but dev/ at "
                                 f"{dev_rate} Hz; resample both with --rate")
            groups = [[(signals[i], paths[i]) for i in idx[0]],
                      [(signals[i], paths[i]) for i in idx[1]],
                      list(zip(dev, dev_paths, strict=True))]
            split = "train/ split 85/15 by file, dev/ as test"
        else:
            signals, paths, rate = _wav_files(args.data, rate=args.rate, n=args.n)
            idx = ds.split_signals(list(range(len(paths))), SPLIT, seed=args.seed)
            groups = [[(signals[i], paths[i]) for i in part] for part in idx]
            split = "files split 70/15/15"
        sets = [[x for x, _ in g] for g in groups]
        digests = [file_digests([p for _, p in g], root) for g in groups]
        data = {"kind": "wav", "folder": str(root), "split": split, "sample_rate": rate,
                "resampled_to": args.rate,
                "files": dict(zip(("train", "validation", "test"), map(len, groups),
                                  strict=True))}
        fingerprint = {"kind": "wav", "files": {**digests[0], **digests[1]}, "sample_rate": rate,
                       **framing}
        test = {"kind": "wav", "folder": str(root), "files": digests[2], "sample_rate": rate,
                "resampled_to": args.rate}
        text = (f"{args.data} ({sum(map(len, groups))} wav files at {rate} Hz"
                f"{' (resampled)' if args.rate else ''}, {split})")
    frames = [ds.speech_frames(s, n=args.n, bitrate=args.bitrate, seed=args.seed,
                               max_frames=args.max_frames if i == 0 else None)
              for i, s in enumerate(sets)]
    data["frames"] = dict(zip(("train", "validation", "test"), map(len, frames), strict=True))
    pairs = [(f.x_tilde, f.x_true) for f in frames]
    return pairs, frames[0].eta, data, fingerprint, test, text


def _image_sets(meta: dict):
    """Training and validation patches of the training images, test patches of the test
    images: (noisy, clean) pairs."""
    from .data import images as ds

    size, sigma, seed = meta["patch"], meta["sigma"], meta["seed"]
    noisy, clean = ds.image_patches(ds.load_images(meta["images"]), size=size, sigma=sigma,
                                    max_patches=meta["max_patches"], seed=seed)
    n_val = max(1, round(0.15 * len(clean)))
    test = ds.image_patches(ds.load_images(meta["test_images"]), size=size, sigma=sigma,
                            max_patches=200, seed=seed + 7)
    return [(noisy[n_val:], clean[n_val:]), (noisy[:n_val], clean[:n_val]), test]


def _speech_model(n: int, eta: float, matrix=None, m: int | None = None):
    from .functions import L1Norm, LinfBall
    from .model import AnalysisModel
    from .operators import DenseOperator, dct_matrix

    K = dct_matrix(n, m) if matrix is None else matrix
    return AnalysisModel(DenseOperator(K), f=L1Norm(), g=LinfBall(eta))


def _speech_baselines(start) -> list:
    """The rows a learned speech operator is compared with: its start, and for an overcomplete
    start (m > n) also the n×n DCT, the papers' baseline."""
    m, n = start.operator.out_shape[0], start.operator.in_shape[0]
    if m == n:
        return [("DCT start", start)]
    return [("DCT", _speech_model(n, start.g.radius)), (f"DCT frame start ({m}×{n})", start)]


def _denoise_model(meta: dict, filters=None):
    from .functions import L1Norm, L2Ball
    from .model import AnalysisModel
    from .operators import Conv2dFilterBank, dct_filters

    h = dct_filters(meta["kernel"]) if filters is None else filters
    size = meta["patch"]
    return AnalysisModel(Conv2dFilterBank(h, (size, size), "periodic"), f=L1Norm(),
                         g=L2Ball(meta["sigma"] * size))


def _table(test, rows, iterations, omega, weights, *, images: bool,
           client=None) -> list[dict]:
    """MSE and SNR (PSNR for images in [0, 1]) of the degraded input and each model."""
    from .data.metrics import mse, snr
    from .learning.training import reconstruct

    x_tilde, x_true = test

    def quality(x_hat):
        err = mse(x_hat, x_true)
        return err, (10 * math.log10(1 / err) if images else snr(x_hat, x_true))

    first = "noisy input" if images else "quantized input"
    out = [dict(zip(("method", "mse", "snr_db"), (first, *quality(x_tilde)), strict=True))]
    for name, model in rows:
        x_hat = reconstruct(model, x_tilde, iterations=iterations, omega=omega, weights=weights,
                            client=client)
        out.append(dict(zip(("method", "mse", "snr_db"), (name, *quality(x_hat)),
                            strict=True)))
    return out


def _print_table(rows, title, *, images: bool) -> None:
    width = max(20, *(len(r["method"]) for r in rows))
    print(title)
    print(f"  {'method':<{width}} {'test MSE':>12} {'PSNR [dB]' if images else 'SNR [dB]':>10}")
    for r in rows:
        print(f"  {r['method']:<{width}} {r['mse']:>12.4e} {r['snr_db']:>10.2f}")


# ---------------------------------------------------------------- commands


def _method(args):
    """The gradient method of ``--method``, ``--b``, ``--relax-primal``; checked before any
    work."""
    from .unroll.methods import Asymptotic, Full, Implicit, Truncated

    kind = {"full": Full, "truncated": Truncated, "asymptotic": Asymptotic,
            "implicit": Implicit}[args.method]
    needs_b = args.method in ("truncated", "asymptotic")
    if needs_b and args.b is None:
        raise ValueError(f"--method {args.method} needs --b (the number of backward steps, "
                         "e.g. --b 30)")
    if not needs_b and args.b is not None:
        raise ValueError(f"--b is only used by --method truncated / asymptotic, not "
                         f"{args.method}")
    if needs_b:
        if args.b < 1 or (args.method == "truncated" and args.b > args.iterations):
            top = f" and at most --iterations ({args.iterations})" \
                if args.method == "truncated" else ""
            raise ValueError(f"--b must be at least 1{top}, got {args.b}")
        return kind(args.b, relax_primal=args.relax_primal)
    return kind(relax_primal=args.relax_primal)


def _check_train_args(args):
    """Every argument and combination of ``train``, before any work: the gradient method, the
    unrolling, the learning rate and the frame length. Returns the gradient method."""
    from .learning.optimizers import LearningRate
    from .unroll.gradient import check_unrolling

    method = _method(args)
    check_unrolling(method, args.iterations, args.weights)
    if args.backend == "numpy" and args.device not in (None, "cpu"):
        raise ValueError(f"--device {args.device}: --backend numpy runs on the cpu only")
    LearningRate(args.lr, args.schedule)
    if args.task == "speech":
        if args.n is None:  # stated in --help
            args.n = N_SYNTHETIC if args.data is None else N_WAV
        if args.n < 2:
            raise ValueError(f"--n must be at least 2 samples per frame, got {args.n}")
        if args.m is None:  # stated in --help
            args.m = args.n if args.data is None else 2 * args.n
        if args.m < args.n:
            raise ValueError(f"--m must be at least --n ({args.n}): K needs at least as many "
                             f"rows as a frame has samples, got {args.m}")
        if args.bitrate > 24:
            raise ValueError(f"--bitrate must lie in 1..24, got {args.bitrate}")
        if args.data is not None:
            if not args.data.is_dir():
                raise ValueError(f"--data {args.data} is not a folder")
        elif args.rate is not None:
            raise ValueError("--rate resamples wav files: it needs --data")
    elif args.kernel > args.patch:
        raise ValueError(f"--kernel {args.kernel} is larger than --patch {args.patch}")
    args.init_from = _init_params(args)
    return method


def _versions() -> dict:
    import platform

    import numpy as np

    return {"pdunroll": _version(), "python": platform.python_version(),
            "backend": {"name": "numpy", "version": np.__version__}}


def _say(text: str) -> None:
    """Print a line and write it to the run's log file (not twice to the console)."""
    import logging

    print(text, flush=True)
    logging.getLogger("pdunroll.cli").info(text, extra={"printed": True})


def _train(args) -> int:
    import time

    tic = time.perf_counter()
    method = _check_train_args(args)
    args.out = _output_folder(args)
    with _RunFolder(args.out, quiet=args.quiet) as run:
        return _train_in(args, method, run, tic)


def _train_in(args, method, run, tic) -> int:
    import time

    from .learning.checkpoint import CheckpointFile
    from .learning.optimizers import LearningRate
    from .learning.training import train

    checkpoint = args.out / "checkpoint.npz"
    _say(f"output folder: {args.out}{' (resumed)' if args.resume else ''}")
    if run.stale:
        _say(run.stale)
    (tr, va, te), start, meta, fingerprint = _run_data(args)
    baselines = _speech_baselines(start) if args.task == "speech" else [("DCT start", start)]
    if args.init_from is not None:
        params, meta["init"] = args.init_from
        start = start.with_params(params)
    start, (tr, va, te) = _on_backend(args, start, (tr, va, te))
    baselines = [(name, _on_backend(args, m, [])[0]) for name, m in baselines]
    try:
        res = train(start, *tr, validation=va, iterations=args.iterations, method=method,
                    weights=args.weights, omega=args.omega, optimizer=args.optimizer,
                    lr=LearningRate(args.lr, args.schedule), epochs=args.epochs,
                    batch_size=args.batch_size, patience=args.patience, seed=args.seed,
                    checkpoint=CheckpointFile(checkpoint, every_steps=args.checkpoint_steps,
                                              every_minutes=args.checkpoint_minutes,
                                              data=fingerprint),
                    resume=args.resume, progress=not args.quiet, client=args.client)
    except KeyboardInterrupt:
        if checkpoint.exists():
            print(f"\ninterrupted: checkpoint saved to {checkpoint}; continue with the same "
                  f"command and --resume --out {args.out}", file=sys.stderr)
        else:
            print("\ninterrupted before the first step: nothing to resume", file=sys.stderr)
        return 130
    _finish(args, method, res, baselines, va, te, meta, fingerprint,
            time.perf_counter() - tic)
    return 0


def _init_params(args):
    """The parameters of the operator of ``--init`` and its record (path and SHA-256 digest),
    checked against the shape that --n and --m (speech) or --kernel (denoise) give; None
    without --init. Called before any data are read."""
    from .data.fingerprint import file_digests
    from .learning.checkpoint import load_operator

    if args.init is None:
        return None
    path = args.init
    if not path.is_file():
        raise ValueError(f"--init {path}: there is no such operator file")
    model, _ = load_operator(path)
    params = model.operator.params
    want = ((args.m, args.n) if args.task == "speech"
            else (args.kernel ** 2 - 1, args.kernel, args.kernel))
    if tuple(params.shape) != want:
        given = "--n and --m" if args.task == "speech" else "--kernel"
        raise ValueError(f"--init {path}: its operator has parameters of shape "
                         f"{tuple(params.shape)}, but {given} give {want}")
    digest = next(iter(file_digests([path], path.parent).values()))
    return params, {"path": str(path.resolve()), "sha256": digest}


def _run_data(args):
    """The training, validation and test pairs, the starting model, the metadata to record and
    the fingerprint of the training data; the data line is printed."""
    if args.task == "denoise":
        meta = {"task": "denoise", **{k: getattr(args, k) for k in (
            "images", "test_images", "sigma", "patch", "max_patches", "kernel", "seed")}}
        sets = _image_sets(meta)
        start = _denoise_model(meta)
        fingerprint = {"kind": "images", **{k: v for k, v in meta.items() if k != "task"}}
        _say(f"data: patches {args.patch}×{args.patch} of {', '.join(args.images)} with noise "
             f"σ = {args.sigma:g}: {len(sets[0][0])} training, {len(sets[1][0])} validation; "
             f"test {len(sets[2][0])} patches of {', '.join(args.test_images)}; "
             f"{start.operator.out_shape[0]} filters {args.kernel}×{args.kernel}")
        return sets, start, meta, fingerprint
    sets, eta, data, fingerprint, test, text = _speech_sets(args)
    meta = {"task": "speech", "n": args.n, "m": args.m, "bitrate": args.bitrate, "data": data,
            "test_set": test, "seed": args.seed, "max_frames": args.max_frames}
    _say(f"data: {text}; frames of n={args.n}, bitrate {args.bitrate} (η = {eta:g}): "
         f"{len(sets[0][0])} training, {len(sets[1][0])} validation, {len(sets[2][0])} test")
    return sets, _speech_model(args.n, eta, m=args.m), meta, fingerprint


def _finish(args, method, res, baselines, va, te, meta, fingerprint, wall) -> None:
    """Save the operator, the curves and ``results.json`` (test table, data, settings,
    versions, epochs, wall time, steps, best epoch); print the table and the summary."""
    from .learning.checkpoint import save_operator, write_json
    from .learning.plotting import plot_learning_curves
    from .learning.training import validation_snr

    images = args.task == "denoise"
    h = res.history
    xp = res.model.operator.xp
    val_energy = float(xp.sum(va[1] * va[1]))
    epochs = [{"epoch": i + 1, "train_loss": h.epoch_train_loss[i],
               "val_loss": h.epoch_val_loss[i],
               "val_snr_db": validation_snr(h.epoch_val_loss[i], va[1].shape[0], val_energy),
               "seconds": h.epoch_seconds[i]} for i in range(len(h.epoch_train_loss))]
    settings = {k: getattr(args, k) for k in (
        "iterations", "omega", "weights", "relax_primal", "optimizer", "lr", "schedule",
        "epochs", "batch_size", "patience")}
    settings["method"] = method.settings()
    meta.update(best_epoch=res.best_epoch, best_val_loss=res.best_val_loss, settings=settings,
                fingerprint=fingerprint, versions=_versions())
    op_path = save_operator(args.out / "operator.npz", res.model, iterations=args.iterations,
                            omega=args.omega, weights=args.weights, metadata=meta)
    png = plot_learning_curves(res.history, args.out / "curves.png",
                               title=f"{args.task}, L={args.iterations}, {method.name}")
    rows = _table(te, [*baselines, ("learned operator", res.model)],
                  args.iterations, args.omega, args.weights, images=images,
                  client=args.client)
    summary = {"wall_seconds": round(wall, 3), "steps": res.steps, "epochs_run": res.epochs,
               "best_epoch": res.best_epoch, "stopped_early": res.stopped_early,
               "start_val_loss": h.initial_val_loss}
    write_json(args.out / "results.json",
               {"test": rows, **meta, **summary, "epochs": epochs,
                "command": ["pdunroll", *args.argv]})
    _print_table(rows, f"test set ({te[0].shape[0]} {'patches' if images else 'frames'}), "
                       f"L = {args.iterations}, best epoch {res.best_epoch} of {res.epochs}:",
                 images=images)
    _say(f"wall time {wall:.1f} s (data, training and the test table)")
    print(f"saved {op_path}, {png}, {args.out / 'results.json'}")


def _output_folder(args) -> Path:
    """``--out``, or the default numbered folder (``--resume``: the newest one with a
    checkpoint). Checks before any work: a folder (or none yet), a new run does not overwrite
    the checkpoint of an earlier one, a resume has one."""
    from .learning.runfolder import FolderLock, latest_folder, numbered_folder

    base = Path("runs") / args.task
    if args.out is None:
        out = (latest_folder(base) or base) if args.resume else numbered_folder(base)
    else:
        out = args.out
    checkpoint = out / "checkpoint.npz"
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file, expected a folder")
    FolderLock(out).check_free()  # a run in progress is named before anything else
    if args.resume and not checkpoint.is_file():
        raise ValueError(f"--resume: there is no {checkpoint} to continue")
    if not args.resume and checkpoint.exists():
        raise ValueError(f"--out {out} holds the checkpoint of an earlier run: continue it "
                         f"with --resume, or choose another --out (or delete {checkpoint})")
    return out


class _RunFolder:
    """The output folder while a run writes into it: created and checked writable, locked
    against a second run, with the log file ``train.log`` (epoch summaries of the ``pdunroll``
    logger; on the console too unless ``quiet``). A run that stops before its first step
    (no checkpoint) leaves nothing behind: what it created is removed."""

    def __init__(self, out: Path, *, quiet: bool):
        self.out, self.quiet, self.stale = out, quiet, None
        self.created: list[Path] = []
        self.handlers: list = []

    def __enter__(self):
        import logging

        from .learning.checkpoint import check_writable
        from .learning.runfolder import FolderLock

        missing = []
        for p in (self.out, *self.out.parents):
            if p.exists():
                break
            missing.append(p)
        try:
            check_writable(self.out / "checkpoint.npz")  # creates the folder
        except OSError as err:
            self._remove(missing)
            raise OSError(err.errno, f"--out {self.out}: {err.strerror}", str(self.out)) from err
        self.created = missing
        self.lock = FolderLock(self.out)
        try:
            self.lock.acquire()
        except Exception:
            self._remove(self.created)
            raise
        self.stale = self.lock.stale
        self.log_path = self.out / "train.log"
        self.new_log = not self.log_path.exists()
        logger = logging.getLogger("pdunroll")
        self.level = logger.level
        try:
            file_handler = logging.FileHandler(self.log_path, encoding="utf-8")
        except OSError as err:
            self.__exit__()
            raise OSError(err.errno, f"cannot write {self.log_path}: {err.strerror}",
                          str(self.log_path)) from err
        logger.setLevel(logging.INFO)
        file_handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        self.handlers = [file_handler]
        if not self.quiet:
            console = _console_handler()
            console.addFilter(lambda record: not getattr(record, "printed", False))
            self.handlers.append(console)
        for handler in self.handlers:
            logger.addHandler(handler)
        return self

    def __exit__(self, *exc):
        import logging

        logger = logging.getLogger("pdunroll")
        logger.setLevel(self.level)
        for handler in self.handlers:
            logger.removeHandler(handler)
            handler.close()
        self.lock.release()
        if not (self.out / "checkpoint.npz").exists():  # no step made: leave nothing behind
            if self.new_log:
                self.log_path.unlink(missing_ok=True)
            self._remove(self.created)

    @staticmethod
    def _remove(folders) -> None:
        for folder in folders:  # innermost first
            try:
                folder.rmdir()
            except OSError:
                return


def _console_handler():
    """A logging handler printing to stdout through ``tqdm.write`` (above a progress bar)."""
    import logging

    from tqdm.auto import tqdm

    class Console(logging.Handler):
        def emit(self, record):
            tqdm.write(self.format(record), file=sys.stdout)

    return Console()


def _evaluate(args) -> int:
    from .learning.checkpoint import load_operator

    model, settings = load_operator(args.operator)
    meta, solver = settings["metadata"], settings["solver"]
    iterations = solver["iterations"] if args.iterations is None else args.iterations
    if meta.get("task") == "denoise":
        if args.data is not None or args.rate is not None or args.bitrate is not None:
            raise ValueError("--data, --rate and --bitrate are for speech operators; a denoise "
                             "operator is scored on its test images")
        te = _image_sets(meta)[2]
        rows = [("DCT start", _denoise_model(meta)), ("learned operator", model)]
        title, images = f"test patches of {', '.join(meta['test_images'])}", True
    elif meta.get("task") == "speech":
        te, eta, title = _speech_test_set(args, model, meta)
        m, n = model.operator.out_shape[0], model.operator.in_shape[0]
        rows = [*_speech_baselines(_speech_model(n, eta, m=m)),
                ("learned operator", _speech_model(n, eta, model.operator.params))]
        images = False
    else:
        raise ValueError(f"{args.operator} was not written by pdunroll train (no task)")
    if args.no_baseline:
        rows = rows[-1:]
    moved = [_on_backend(args, m, [te]) for _, m in rows]
    rows, te = [(name, m) for (name, _), (m, _) in zip(rows, moved, strict=True)], moved[0][1][0]
    table = _table(te, rows, iterations, solver["omega"], solver["weights"], images=images,
                   client=args.client)
    _print_table(table, f"{title}, L = {iterations}:", images=images)
    return 0


def _speech_test_set(args, model, meta):
    """The frames ``evaluate`` scores: every wav file of ``--data``, or the training run's test
    set (its wav files read again and checked against their digests, or the synthetic
    generator's signals). Returns the (quantized, clean) pair, η and a title."""
    from .data import speech as ds
    from .data.fingerprint import file_digests, fingerprint_difference

    n = model.operator.in_shape[0]
    bitrate = meta["bitrate"] if args.bitrate is None else args.bitrate
    if args.data is not None:
        if (args.data / "dev").is_dir() and not any(args.data.glob("*.wav")):
            raise ValueError(f"--data {args.data} holds no wav files but a dev/ folder: score "
                             f"the test set with --data {args.data / 'dev'}")
        signals, paths, rate = _wav_files(args.data, rate=args.rate, n=n)
        where = f"{args.data}: all {len(paths)} wav files at {rate} Hz"
    else:
        test = meta.get("test_set")
        if not isinstance(test, dict):
            raise ValueError(f"{args.operator} does not record its test set (written by an "
                             "older pdunroll): give the test folder with --data")
        if test["kind"] == "synthetic":
            if args.rate is not None:
                raise ValueError("--rate resamples wav files: the operator was trained on "
                                 "synthetic speech")
            signals = ds.split_signals(ds.synthetic_speech(
                test["signals"], seconds=test["seconds"], seed=test["seed"]), SPLIT,
                seed=test["seed"])[2]
            where = (f"synthetic speech ({test['signals']} × {test['seconds']:g} s, seed "
                     f"{test['seed']}), its test part: {len(signals)} signals")
        else:
            root = Path(test["folder"])
            paths = [root / name for name in test["files"]]
            missing = [str(p) for p in paths if not p.is_file()]
            if missing:
                raise ValueError(f"the test files of {args.operator} are gone: "
                                 f"{', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''}"
                                 " (give the test folder with --data)")
            diff = fingerprint_difference({"files": test["files"]},
                                          {"files": file_digests(paths, root)})
            if diff:
                raise ValueError(f"the test files of {args.operator} in {root} have changed "
                                 f"since training: {'; '.join(diff)}")
            rate = args.rate if args.rate is not None else test.get("resampled_to")
            signals, paths, rate = ds.read_wav_files(paths, rate=rate, min_samples=n,
                                                     where=root)
            where = f"the test set of {args.operator}: {len(paths)} wav files of {root}"
            rate = rate[0]
    frames = ds.speech_frames(signals, n=n, bitrate=bitrate)
    title = f"{where}, {len(frames)} frames of n={n}, bitrate {bitrate}"
    return (frames.x_tilde, frames.x_true), frames.eta, title


class _Stop:
    """While training, SIGTERM (``kill``, a batch scheduler) and SIGHUP (a closed terminal) act
    as Ctrl-C: the run saves its checkpoint instead of dying with the work since the last
    epoch."""

    SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP")
                    if hasattr(signal, name))

    def __init__(self):
        self.received, self.previous = None, {}

    def _raise(self, signum, frame):
        self.received = signum
        raise KeyboardInterrupt

    def __enter__(self):
        try:
            for sig in self.SIGNALS:
                self.previous[sig] = signal.signal(sig, self._raise)
        except ValueError:  # not the main thread: signals cannot be handled here
            pass
        return self

    def __exit__(self, *exc):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def _dask_client(args):
    """The Dask client of ``--scheduler`` / ``--workers`` (None without them), closed after."""
    if args.scheduler is None and args.workers is None:
        yield None
        return
    from .learning.distributed import connected, local_cluster

    if args.scheduler is not None:
        with connected(args.scheduler, "--scheduler") as client:
            yield client
        return
    try:
        from distributed import Client
    except ImportError as err:
        raise ImportError("--workers needs Dask distributed: pip install torch==2.13.0 && "
                          "pip install \"pdunroll[distributed]\"") from err
    with local_cluster(args.workers) as cluster, Client(cluster) as client:
        yield client


def _audit(args) -> int:
    """``pdunroll audit``: one table per tutorial model; exit status 1 on a disagreement."""
    from .audit import check_gradients
    from .problems.tutorials import PROBLEMS, tutorial_problem

    ok = True
    for name in PROBLEMS if args.problem == "all" else (args.problem,):
        model, x_tilde, x_true, options = tutorial_problem(name)
        result = check_gradients(model, x_tilde, x_true, iterations=args.iterations,
                                 autodiff=not args.no_autodiff, **options)
        print(f"# {name}\n{result}\n")
        ok = ok and result.ok
    return 0 if ok else 1


def main(argv=None) -> int:
    from .learning.runfolder import FolderInUse

    args = _parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    _limit_threads(args.threads)
    try:
        if args.command == "audit":
            return _audit(args)
        if args.command != "train":
            with _dask_client(args) as args.client:
                return _evaluate(args)
        with _Stop() as stop, _dask_client(args) as args.client:
            code = _train(args)
        return 128 + stop.received if code == 130 and stop.received else code
    # OSError: e.g. disk full, no permission; FloatingPointError: training diverged
    except (ValueError, OSError, ImportError, FloatingPointError, FolderInUse) as err:
        print(f"pdunroll: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
