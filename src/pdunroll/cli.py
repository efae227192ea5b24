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
import json
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


# speech data options of ``train speech``; ``evaluate`` defaults to the values of the training
SPEECH_DEFAULTS = {"signals": 60, "seconds": 3.0, "n": 128, "bitrate": 4, "seed": 0}


def _speech_data_args(p, *, defaults: bool = True) -> None:
    d = SPEECH_DEFAULTS.get if defaults else (lambda key: None)
    t = (lambda key: f"default {SPEECH_DEFAULTS[key]:g}") if defaults else \
        (lambda key: "default: as in training")
    p.add_argument("--data", type=Path, default=None,
                   help="folder of mono wav files, or with train/ and dev/ subfolders (dev/ is "
                        "the test set); " + ("default: built-in synthetic speech" if defaults
                                             else "default: the training's data"))
    p.add_argument("--signals", type=int, default=d("signals"),
                   help=f"synthetic speech: number of signals ({t('signals')})")
    p.add_argument("--seconds", type=float, default=d("seconds"),
                   help=f"synthetic speech: seconds per signal ({t('seconds')})")
    p.add_argument("--n", type=int, default=d("n"), help=f"samples per frame ({t('n')})")
    p.add_argument("--bitrate", type=int, default=d("bitrate"),
                   help=f"quantizer bits ({t('bitrate')})")
    p.add_argument("--max-frames", type=int, default=None,
                   help="use at most this many training frames (random subset)")
    p.add_argument("--seed", type=int, default=d("seed"),
                   help=f"seed of data, split and shuffling ({t('seed')})")


def _image_data_args(p) -> None:
    p.add_argument("--images", nargs="+", default=list(TRAIN_IMAGES),
                   help=f"training images (default {' '.join(TRAIN_IMAGES)})")
    p.add_argument("--test-images", nargs="+", default=list(TEST_IMAGES),
                   help=f"test images (default {' '.join(TEST_IMAGES)})")
    p.add_argument("--sigma", type=float, default=0.1, help="noise level (default 0.1)")
    p.add_argument("--patch", type=int, default=32, help="patch size (default 32)")
    p.add_argument("--max-patches", type=int, default=470,
                   help="training + validation patches (default 470)")
    p.add_argument("--seed", type=int, default=0, help="seed of noise, split and shuffling")


def _train_args(p, *, out: str, lr: float, epochs: int, batch_size: int) -> None:
    p.add_argument("--out", type=Path, default=Path("runs") / out,
                   help=f"output folder (default runs/{out})")
    p.add_argument("--iterations", "-L", type=int, default=10,
                   help="unrolled Chambolle-Pock steps L (default 10)")
    p.add_argument("--omega", type=float, default=10.0, help="σ/τ balance ω (default 10)")
    p.add_argument("--method", choices=("full", "truncated", "asymptotic", "implicit"),
                   default="full",
                   help="gradient method (default full): exact backpropagation through all L "
                        "steps; through the last --b steps; --b steps at the final iterate; "
                        "the fixed-point gradient (see the docs' 'Gradient modes' page)")
    p.add_argument("--b", type=int, default=None,
                   help="backward steps of --method truncated / asymptotic (required there, "
                        "refused otherwise)")
    p.add_argument("--weights", choices=("harmonic", "uniform"), default=None,
                   help="ergodic unrolling weights (default: last iterate)")
    p.add_argument("--relax-primal", action="store_true",
                   help="treat the primal prox as identity in the backward pass (an "
                        "approximation, not the exact gradient)")
    p.add_argument("--optimizer", choices=("adam", "sgd"), default="adam")
    p.add_argument("--lr", type=float, default=lr, help=f"initial learning rate (default {lr})")
    p.add_argument("--schedule", choices=("constant", "linear", "polynomial", "inverse"),
                   default="linear", help="learning-rate schedule (default: linear decay to "
                                          "lr/1000)")
    p.add_argument("--epochs", type=int, default=epochs, help=f"default {epochs}")
    p.add_argument("--batch-size", type=int, default=batch_size, help=f"default {batch_size}")
    p.add_argument("--patience", type=int, default=None,
                   help="early stopping after this many epochs without improvement")
    p.add_argument("--resume", action="store_true",
                   help="continue from OUT/checkpoint.npz (same settings)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pdunroll", description="Learn analysis operators by bilevel optimization through "
                                     "an unrolled Chambolle-Pock algorithm.")
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser("train", help="learn an operator")
    tasks = train.add_subparsers(dest="task", required=True)
    speech = tasks.add_parser("speech", help="speech dequantization (Brauer & Lorenz 2023)")
    _speech_data_args(speech)
    _train_args(speech, out="speech", lr=1e-3, epochs=8, batch_size=32)
    denoise = tasks.add_parser("denoise",
                               help="image denoising with a filter bank (Brauer & Lorenz)")
    _image_data_args(denoise)
    denoise.add_argument("--kernel", type=int, default=5,
                         help="filter size k: k²−1 DCT filters of k×k to start (default 5)")
    _train_args(denoise, out="denoise", lr=3e-2, epochs=3, batch_size=8)
    ev = commands.add_parser("evaluate", help="apply a saved operator to its test set")
    ev.add_argument("operator", type=Path, help="operator .npz written by pdunroll train")
    _speech_data_args(ev, defaults=False)
    ev.add_argument("--iterations", "-L", type=int, default=None,
                    help="Chambolle-Pock steps (default: the training L)")
    for sub in (speech, denoise, ev):
        # array backend, dtype and device of the computation (data are read as NumPy float64)
        sub.add_argument("--backend", choices=BACKENDS, default="numpy",
                         help="array library that runs the solver and the gradients (default "
                              "numpy; torch, jax, cupy when installed)")
        sub.add_argument("--dtype", choices=("float32", "float64"), default=None,
                         help="floating-point type (default float64)")
        sub.add_argument("--device", default=None,
                         help="device of --backend torch / jax (e.g. cuda, cuda:1, gpu; "
                              "default: the library's default device)")
        sub.add_argument("--threads", type=_positive_int, default=1,
                         help="BLAS threads (default 1: the minibatch products are small, and "
                              "one thread per process is fastest on a few shared cores); an "
                              "OMP_NUM_THREADS / OPENBLAS_NUM_THREADS already set wins")
    return parser


BACKENDS = ("numpy", "torch", "jax", "cupy")


def _on_backend(args, model, sets):
    """``model`` and the (degraded, clean) pairs of ``sets`` moved to ``--backend``,
    ``--dtype``, ``--device`` (docs, "Backends and devices": the arrays choose where the
    library computes)."""
    import numpy as np

    dtype = args.dtype or "float64"
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


def _speech_sets(args):
    """Training, validation and test frames (split by file) and a description."""
    from .data import speech as ds

    if args.data is None:
        signals = ds.synthetic_speech(args.signals, seconds=args.seconds, seed=args.seed)
        sets = ds.split_signals(signals, SPLIT, seed=args.seed)
        source = f"synthetic speech ({args.signals} × {args.seconds:g} s, seed {args.seed})"
    elif (args.data / "train").is_dir() and (args.data / "dev").is_dir():
        train_val = ds.split_signals(ds.read_wav_folder(args.data / "train")[0], (0.85, 0.15),
                                     seed=args.seed)
        sets = [*train_val, ds.read_wav_folder(args.data / "dev")[0]]
        source = f"{args.data} (train/ split 85/15, dev/ as test)"
    else:
        sets = ds.split_signals(ds.read_wav_folder(args.data)[0], SPLIT, seed=args.seed)
        source = f"{args.data} (files split 70/15/15)"
    frames = [ds.speech_frames(s, n=args.n, bitrate=args.bitrate, seed=args.seed,
                               max_frames=args.max_frames if i == 0 else None)
              for i, s in enumerate(sets)]
    return [(f.x_tilde, f.x_true) for f in frames], frames[0].eta, source


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


def _speech_model(n: int, eta: float, matrix=None):
    from .functions import L1Norm, LinfBall
    from .model import AnalysisModel
    from .operators import DenseOperator, dct_matrix

    K = dct_matrix(n) if matrix is None else matrix
    return AnalysisModel(DenseOperator(K), f=L1Norm(), g=LinfBall(eta))


def _denoise_model(meta: dict, filters=None):
    from .functions import L1Norm, L2Ball
    from .model import AnalysisModel
    from .operators import Conv2dFilterBank, dct_filters

    h = dct_filters(meta["kernel"]) if filters is None else filters
    size = meta["patch"]
    return AnalysisModel(Conv2dFilterBank(h, (size, size), "periodic"), f=L1Norm(),
                         g=L2Ball(meta["sigma"] * size))


def _table(test, rows, iterations, omega, weights, *, images: bool) -> list[dict]:
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
        x_hat = reconstruct(model, x_tilde, iterations=iterations, omega=omega, weights=weights)
        out.append(dict(zip(("method", "mse", "snr_db"), (name, *quality(x_hat)),
                            strict=True)))
    return out


def _print_table(rows, title, *, images: bool) -> None:
    print(title)
    print(f"  {'method':<20} {'test MSE':>12} {'PSNR [dB]' if images else 'SNR [dB]':>10}")
    for r in rows:
        print(f"  {r['method']:<20} {r['mse']:>12.4e} {r['snr_db']:>10.2f}")


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


def _train(args) -> int:
    from .learning.checkpoint import save_operator
    from .learning.optimizers import LearningRate
    from .learning.plotting import plot_learning_curves
    from .learning.training import train

    method = _method(args)
    images = args.task == "denoise"
    checkpoint = _output_folder(args)
    if images:
        meta = {"task": "denoise", **{k: getattr(args, k) for k in (
            "images", "test_images", "sigma", "patch", "max_patches", "kernel", "seed")}}
        (tr, va, te) = _image_sets(meta)
        start = _denoise_model(meta)
        print(f"data: patches {args.patch}×{args.patch} of {', '.join(args.images)} with noise "
              f"σ = {args.sigma:g}: {len(tr[0])} training, {len(va[0])} validation; test "
              f"{len(te[0])} patches of {', '.join(args.test_images)}; "
              f"{start.operator.out_shape[0]} filters {args.kernel}×{args.kernel}")
    else:
        (tr, va, te), eta, source = _speech_sets(args)
        meta = {"task": "speech", "n": args.n, "bitrate": args.bitrate, "data": source,
                # what ``evaluate`` needs to rebuild the same test set
                "data_dir": None if args.data is None else str(args.data.resolve()),
                "signals": args.signals, "seconds": args.seconds, "seed": args.seed}
        start = _speech_model(args.n, eta)
        print(f"data: {source}; frames of n={args.n}, bitrate {args.bitrate} (η = {eta:g}): "
              f"{len(tr[0])} training, {len(va[0])} validation, {len(te[0])} test")
    start, (tr, va, te) = _on_backend(args, start, (tr, va, te))
    try:
        res = train(start, *tr, validation=va, iterations=args.iterations, method=method,
                    weights=args.weights, omega=args.omega, optimizer=args.optimizer,
                    lr=LearningRate(args.lr, args.schedule), epochs=args.epochs,
                    batch_size=args.batch_size, patience=args.patience, seed=args.seed,
                    checkpoint=checkpoint, resume=args.resume, progress=not args.quiet)
    except KeyboardInterrupt:
        if checkpoint.exists():
            print(f"\ninterrupted: checkpoint saved to {checkpoint}; continue with the same "
                  "command and --resume", file=sys.stderr)
        else:
            print("\ninterrupted before the first step: nothing to resume", file=sys.stderr)
        return 130
    meta.update(best_epoch=res.best_epoch, best_val_loss=res.best_val_loss)
    op_path = save_operator(args.out / "operator.npz", res.model, iterations=args.iterations,
                            omega=args.omega, weights=args.weights, metadata=meta)
    png = plot_learning_curves(res.history, args.out / "curves.png",
                               title=f"{args.task}, L={args.iterations}, {method.name}")
    rows = _table(te, [("DCT start", start), ("learned operator", res.model)],
                  args.iterations, args.omega, args.weights, images=images)
    (args.out / "results.json").write_text(json.dumps({"test": rows, **meta}, indent=2))
    _print_table(rows, f"test set ({len(te[0])} {'patches' if images else 'frames'}), "
                       f"L = {args.iterations}, best epoch {res.best_epoch} of {res.epochs}:",
                 images=images)
    print(f"saved {op_path}, {png}, {args.out / 'results.json'}")
    return 0


def _output_folder(args) -> Path:
    """Check ``--out`` before any work: it must be (or become) a folder, and a new run must not
    overwrite the checkpoint of an earlier one. Returns the checkpoint's path."""
    checkpoint = args.out / "checkpoint.npz"
    if args.out.exists() and not args.out.is_dir():
        raise ValueError(f"--out {args.out} is a file, expected a folder")
    if args.resume and not checkpoint.is_file():
        raise ValueError(f"--resume: there is no {checkpoint} to continue")
    if not args.resume and checkpoint.exists():
        raise ValueError(f"--out {args.out} holds the checkpoint of an earlier run: continue it "
                         f"with --resume, or choose another --out (or delete {checkpoint})")
    try:
        args.out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ValueError(f"cannot create the output folder --out {args.out}: {err}") from err
    return checkpoint


def _evaluate(args) -> int:
    from .learning.checkpoint import load_operator

    model, settings = load_operator(args.operator)
    meta, solver = settings["metadata"], settings["solver"]
    iterations = solver["iterations"] if args.iterations is None else args.iterations
    if meta.get("task") == "denoise":
        te = _image_sets(meta)[2]
        rows = [("DCT start", _denoise_model(meta)), ("learned operator", model)]
        title, images = f"test patches of {', '.join(meta['test_images'])}", True
    elif meta.get("task") == "speech":
        # the test set of the training run unless told otherwise (operators saved before
        # the data settings were recorded fall back to the training defaults)
        for key in ("n", "bitrate", "signals", "seconds", "seed"):
            if getattr(args, key) is None:
                setattr(args, key, meta.get(key, SPEECH_DEFAULTS[key]))
        if args.data is None and meta.get("data_dir"):
            args.data = Path(meta["data_dir"])
        if args.n != model.operator.in_shape[0]:
            raise ValueError(f"--n {args.n} does not match the operator's "
                             f"{model.operator.in_shape[0]} samples per frame")
        (_, _, te), eta, title = _speech_sets(args)
        rows = [("DCT start", _speech_model(args.n, eta)),
                ("learned operator", _speech_model(args.n, eta, model.operator.params))]
        images = False
    else:
        raise ValueError(f"{args.operator} was not written by pdunroll train (no task)")
    moved = [_on_backend(args, m, [te]) for _, m in rows]
    rows, te = [(name, m) for (name, _), (m, _) in zip(rows, moved, strict=True)], moved[0][1][0]
    table = _table(te, rows, iterations, solver["omega"], solver["weights"], images=images)
    _print_table(table, f"{title}: {len(te[0])} test signals, L = {iterations}:", images=images)
    return 0


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


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    _limit_threads(args.threads)
    try:
        if args.command != "train":
            return _evaluate(args)
        with _Stop() as stop:
            code = _train(args)
        return 128 + stop.received if code == 130 and stop.received else code
    # OSError: e.g. disk full, no permission; FloatingPointError: training diverged
    except (ValueError, OSError, ImportError, FloatingPointError) as err:
        print(f"pdunroll: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
