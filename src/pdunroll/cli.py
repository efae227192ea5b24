"""Command line: ``pdunroll train speech``, ``pdunroll train denoise``, ``pdunroll train
deblur``, ``pdunroll train inpaint``, ``pdunroll evaluate``, ``pdunroll apply``,
``pdunroll audit``: parsing and printing over the task modules
(:mod:`pdunroll.tasks`) and a run in its folder (:mod:`pdunroll.learning.run`).

``pdunroll train speech`` learns an analysis operator for speech dequantization (F = ‖·‖₁,
G = indicator of {‖x − x̃‖_∞ ≤ η}, K initialised as the DCT) on the built-in synthetic speech or
on a folder of mono wav files (``--data``). ``pdunroll train denoise`` learns a bank of 2-D
filters for image denoising (F = ‖·‖₁ of the filter responses, G = indicator of
{‖x − x̃‖₂ ≤ σ √#pixels}, filters initialised as 2-D DCT filters) on patches of
scikit-image's bundled images, of image files or of a folder of images (``--data``).
``pdunroll train deblur`` and ``inpaint`` learn such a bank for ‖K x‖₁ + ½‖A x − f‖² with a
Gaussian blur or a mask A on the same images (:mod:`pdunroll.tasks.inverse`). All print
a table of test MSE and SNR (PSNR for images) for the degraded input, the DCT start and the
learned operator, and write to ``--out``: ``operator.npz`` (load it with
:func:`pdunroll.load_operator`), ``checkpoint.npz`` (``--resume`` continues from it with the
settings it was started with), ``train.log``, ``curves.png`` (filter banks also
``filters.png``) and ``results.json``. Ctrl-C saves the checkpoint first. A new run (without
``--resume``) refuses a ``--out`` that holds the checkpoint of an earlier one.

``pdunroll evaluate OPERATOR`` prints the same table for a saved operator on its test set (or
on a folder: wav files, or whole images with PSNR and SSIM). ``pdunroll apply MODEL INPUT...
--out DIR`` reconstructs wav files or images of any length or size with the saved model, as it
was trained (:func:`pdunroll.apply_files`).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
from dataclasses import fields
from pathlib import Path

from .learning.placement import BACKENDS
from .operators.convolution import BOUNDARIES
from .tasks import denoise, inverse, speech
from .unroll.methods import BY_NAME

__all__ = ["main"]

SPEECH_LR_HELP = ("on the IEEE corpus 1e-3 made a first epoch of 10 000 frames worse in 3 of 3 "
                  "seeds, 5e-4 better; at large L, e.g. -L 100, a smaller one such as 2e-4")
# the options a checkpoint keeps so that --resume reads them back (not where or how to run)
NOT_RECORDED = ("command", "task", "out", "resume", "quiet", "threads", "backend", "device",
                "compile",
                "scheduler", "workers", "checkpoint_minutes", "checkpoint_steps", "argv",
                "client")


# ---------------------------------------------------------------- arguments


# every default is stated in --help; the values are the task modules'
SPEECH_DEFAULTS = {f.name: f.default for f in fields(speech.SpeechOptions)}
N_SYNTHETIC, N_WAV = speech.N_SYNTHETIC, speech.N_WAV


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
                   help="score every wav file (speech) or image (denoising: whole images, PSNR "
                        "and SSIM) of this folder (default: the training run's test set, read "
                        "again and checked against its SHA-256 digests)")
    p.add_argument("--sigma", type=_positive_float, default=None,
                   help="images: the noise level σ of the test data (denoising: added to the "
                        "images; deblurring, inpainting: to the measurements; default: as in "
                        "training)")
    p.add_argument("--bitrate", type=_positive_int, default=None,
                   help="quantizer bits (default: as in training)")
    p.add_argument("--rate", type=_positive_int, default=None,
                   help="resample the wav files to this rate in Hz (default: as in training)")
    p.add_argument("--no-baseline", action="store_true",
                   help="skip the DCT row (it costs as much as the learned operator's)")
    p.add_argument("--radius-factor", type=_positive_float, default=None,
                   help="denoising: c of the ℓ2 ball c σ √#pixels for every row (default: the "
                        "run's)")


def _image_data_args(p, *, noise: str = "--sigma", default: float = 0.1) -> None:
    """Data options of ``train denoise``, ``deblur`` and ``inpaint`` (the noise level is
    ``noise``)."""
    p.add_argument("--data", type=Path, default=None,
                   help="folder of images (png, tif, npy; colour is converted to grey), or "
                        "with train/ and dev/ subfolders (dev/ is the test set); split by file "
                        "70/15/15 (train/ 85/15); default: --images and --test-images")
    p.add_argument("--images", nargs="+", default=list(denoise.TRAIN_IMAGES),
                   help=f"training images: names of scikit-image's images or image files "
                        f"(default {' '.join(denoise.TRAIN_IMAGES)})")
    p.add_argument("--test-images", nargs="+", default=list(denoise.TEST_IMAGES),
                   help=f"test images: names or files (default "
                        f"{' '.join(denoise.TEST_IMAGES)})")
    p.add_argument(noise, type=_positive_float, default=default,
                   help=f"noise level σ on [0, 1] intensities (default {default:g})")
    p.add_argument("--patch", type=_positive_int, default=32, help="patch size (default 32)")
    p.add_argument("--max-patches", type=_positive_int, default=470,
                   help="training + validation patches (default 470)")
    p.add_argument("--seed", type=_nonnegative_int, default=0,
                   help="seed of noise, split and shuffling (default 0)")


def _train_args(p, *, out: str, omega: float, lr: float, warmup: float, epochs: int,
                batch_size: int, lr_help: str) -> None:
    p.add_argument("--out", type=_out_path, default=None,
                   help=f"output folder (default runs/{out}, or runs/{out}-2, -3, ... when it "
                        "holds an earlier run, which is kept; with --resume: the newest of "
                        "them)")
    p.add_argument("--iterations", "-L", type=_positive_int, default=10,
                   help="unrolled Chambolle-Pock steps L (default 10)")
    p.add_argument("--omega", type=_positive_float, default=omega,
                   help=f"σ/τ balance ω (default {omega:g})")
    p.add_argument("--method", choices=tuple(BY_NAME),
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
                   help=f"initial learning rate (default {lr:g}; {lr_help})")
    p.add_argument("--schedule", choices=("constant", "linear", "polynomial", "inverse"),
                   default="linear", help="learning-rate schedule (default: linear decay to "
                                          "lr/1000)")
    p.add_argument("--warmup", type=_fraction, default=warmup,
                   help=f"fraction of all steps over which the rate rises linearly from 0 to "
                        f"its schedule (default {warmup:g})")
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
                   help="continue from OUT/checkpoint.npz with the settings it was started "
                        "with (options given again must agree; same data)")
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


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (0 <= value < 1):
        raise argparse.ArgumentTypeError(f"expected a fraction in [0, 1), got {text!r}")
    return value


def _out_path(text: str) -> Path:
    """A folder argument: an empty one (``--out ''``) would mean the current folder."""
    if not text.strip():
        raise argparse.ArgumentTypeError("must name a folder, got an empty string (for the "
                                         "current folder, give --out .)")
    return Path(text)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (0 < value < math.inf):
        raise argparse.ArgumentTypeError(f"expected a positive finite number, got {text!r}")
    return value


def _parser() -> tuple[argparse.ArgumentParser, dict]:
    parser = argparse.ArgumentParser(
        prog="pdunroll", description="Learn analysis operators by bilevel optimization through "
                                     "an unrolled Chambolle-Pock algorithm.")
    parser.add_argument("--version", action="version", version=f"pdunroll {_version()}")
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser("train", help="learn an operator")
    tasks = train.add_subparsers(dest="task", required=True)
    sp = tasks.add_parser("speech", help="speech dequantization (Brauer & Lorenz 2023)")
    _speech_data_args(sp)
    _train_args(sp, out="speech", **speech.TRAINING, lr_help=SPEECH_LR_HELP)
    dn = tasks.add_parser("denoise", help="image denoising with a filter bank (Brauer & Lorenz)")
    _image_data_args(dn)
    dn.add_argument("--kernel", type=_positive_int, default=5,
                    help="filter size k: k²−1 DCT filters of k×k to start (default 5)")
    dn.add_argument("--radius-factor", type=_positive_float, default=1.0,
                    help="c of the data term: the reconstruction stays within c σ √#pixels of "
                         "the noisy image (default 1, the expected noise norm; on natural "
                         "images a c a little below 1 is often better)")
    dn.add_argument("--boundary", choices=BOUNDARIES, default="periodic",
                    help="where the filters' responses are taken: periodic (wrapping around the "
                         "image; default), zero (zero outside it) or valid (only where the "
                         "window lies inside: no wrap-around edges in small training patches)")
    _train_args(dn, out="denoise", **denoise.TRAINING,
                lr_help="a smaller one if the epoch lines show the validation loss rising")
    defaults = inverse.InverseOptions()
    db = tasks.add_parser("deblur", help="deblurring (Gaussian blur plus noise) with a filter "
                                         "bank: ‖K x‖₁ + ½‖A x − f‖²")
    ip = tasks.add_parser("inpaint", help="inpainting (missing pixels plus noise) with a "
                                          "filter bank: ‖K x‖₁ + ½‖A x − f‖²")
    db.add_argument("--blur-sigma", type=_positive_float, default=defaults.blur_sigma,
                    help=f"σ of the Gaussian blur in pixels (default {defaults.blur_sigma:g}; "
                         "a kernel of 2⌈3σ⌉ + 1 pixels)")
    ip.add_argument("--missing", type=_fraction, default=defaults.missing,
                    help=f"probability of a pixel to be missing (default {defaults.missing:g};"
                         " one mask for a run's patches, one per image in evaluate)")
    for sub, name in ((db, "deblur"), (ip, "inpaint")):
        _image_data_args(sub, noise="--noise", default=defaults.noise)
        sub.add_argument("--kernel", type=_positive_int, default=defaults.kernel,
                         help=f"filter size k: k²−1 DCT filters of k×k to start (default "
                              f"{defaults.kernel})")
        sub.add_argument("--weight", type=_positive_float, default=None,
                         help="λ of λ‖K x‖₁ + ½‖A x − f‖²: the DCT start's scale and TV's "
                              "weight in evaluate (default 100 σ², 0.01 at --noise 0.01); "
                              "scale --lr with it")
        _train_args(sub, out=name, **inverse.TRAINING,
                    lr_help="a smaller one if the epoch lines show the validation loss rising")
    ev = commands.add_parser("evaluate", help="apply a saved operator to its test set or a "
                                              "folder")
    ev.add_argument("operator", type=Path, help="operator .npz written by pdunroll train")
    _evaluate_data_args(ev)
    ev.add_argument("--iterations", "-L", type=int, default=None,
                    help="Chambolle-Pock steps (default: the training L)")
    ev.add_argument("--omega", type=_positive_float, default=None,
                    help="step-size ratio ω of σ = ω·0.99/‖K‖, τ = 0.99/(ω‖K‖) for every row "
                         "(default: the model's; the rest of its step rule is kept)")
    ev.add_argument("--json", type=Path, default=None, metavar="FILE",
                    help="also write the table to FILE as JSON (with the operator, L, the "
                         "step rule, the title, backend and dtype)")
    ap = commands.add_parser(
        "apply", help="reconstruct files with a saved model: wav files (speech) or images "
                      "(denoising, deblurring, inpainting with --mask), of any length or size")
    ap.add_argument("model", type=Path, help="operator.npz of pdunroll train (or a file of "
                                             "LearnedModel.save / save_operator)")
    ap.add_argument("inputs", type=Path, nargs="+", metavar="INPUT",
                    help="files or folders: .wav for a speech model, .png / .tif / .npy for "
                         "an image model (denoising; deblurring: the blurred images; "
                         "inpainting: the damaged ones, with --mask); folders are searched "
                         "recursively")
    ap.add_argument("--out", type=_out_path, required=True,
                    help="output folder: each result keeps its file name (a folder's files "
                         "their path inside it), rate and sample or pixel type")
    ap.add_argument("--iterations", "-L", type=_positive_int, default=None,
                    help="Chambolle-Pock steps (default: the model's training L)")
    ap.add_argument("--mask", type=Path, default=None, metavar="FILE",
                    help="inpainting models: an image of the inputs' size marking the observed "
                         "pixels white (nonzero) and the missing ones black")
    ap.add_argument("--batch-size", type=_positive_int, default=None,
                    help="frames or image channels per solver call (default 2048)")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    ap.add_argument("--backend", choices=BACKENDS, default="numpy",
                    help="array library that computes (default numpy)")
    ap.add_argument("--device", default=None, help="device of --backend torch / jax")
    audit = commands.add_parser(  # the gradient audit: _audit
        "audit", help="check every gradient method against finite differences, autodiff and "
                      "each other on the tutorials' models")
    audit.add_argument("--problem", choices=("speech", "denoise", "segmentation", "all"),
                       default="all", help="tutorial model to audit (default all)")
    audit.add_argument("--iterations", "-L", type=_positive_int, default=20,
                       help="unrolled steps L (default 20)")
    audit.add_argument("--no-autodiff", action="store_true",
                       help="leave out torch.autograd and jax.grad")
    for sub in (sp, dn, db, ip, ev):
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
    for sub in (sp, dn, db, ip):
        sub.add_argument("--compile", action="store_true",
                         help="with --backend torch: run each training step (forward loop, "
                              "loss, hand-written reverse pass) as a torch.compile program "
                              "(inductor; needs a C++ compiler on a CPU; CUDA graphs on a GPU), "
                              "compiled once per minibatch shape at the first step: faster "
                              "steps after seconds to minutes of compiling (docs: \"pdunroll "
                              "inside torch and JAX\", \"The compiled path\")")
    for sub in (sp, dn, db, ip, ev, ap, audit):
        sub.add_argument("--threads", type=_positive_int, default=None,
                         help="BLAS and OpenMP threads (default 1: the minibatch products are "
                              "small, and one thread per process is fastest on a few shared "
                              "cores; the Python API's threads= does the same), or what "
                              "OMP_NUM_THREADS / OPENBLAS_NUM_THREADS say when they are set")
        if sub is not ap:
            _dask_args(sub)
    return parser, {"speech": sp, "denoise": dn, "deblur": db, "inpaint": ip}


def _dask_args(p) -> None:
    """``--scheduler`` / ``--workers``: training steps and reconstructions on Dask workers."""
    g = p.add_argument_group("Dask distributed (pip install dask distributed)")
    where = g.add_mutually_exclusive_group()
    where.add_argument("--scheduler", metavar="ADDRESS", default=None,
                       help="address of a running Dask scheduler (e.g. tcp://host:8786): "
                            "minibatch gradients and reconstructions run on its workers")
    where.add_argument("--workers", type=_positive_int, default=None, metavar="N",
                       help="start a local Dask cluster of N worker processes (1 thread each)")


THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
# torch's CPU allocator returns every freed tensor to the system, so an image-sized tensor
# (Set12's 512² with 48 filters: 50 MB) is paged in again at each Chambolle-Pock step; with
# this variable torch asks for transparent huge pages (≥ 2 MB) instead: denoising a 512² image
# took 2.0–2.3× less time (its system time 3.4× less; docs, "Benchmarks"). Read once, when
# torch makes its first tensor; NumPy asks for huge pages by itself.
HUGE_PAGES = ("THP_MEM_ALLOC_ENABLE", "1")


def _memory_settings() -> None:
    """The process's memory settings: torch's huge pages (``HUGE_PAGES``, unless the
    environment sets it), and glibc keeping the memory a call frees (``mallopt``
    M_TRIM_THRESHOLD, M_TOP_PAD):
    by default it returns the free top of its heap to the system after each gradient, so the
    next one pages its forward pass's tape in again (NumPy, n = 320, batch 32: ≈ 1 000 page
    faults per gradient at L = 10, 3 000 at L = 100, 2–3 µs each; without them ``pu.gradient``
    took 1.31–1.37 instead of 1.64 × its matrix-product floor at L = 10, 1.24 instead of 1.42 ×
    at L = 100; docs, "Benchmarks"). A process-wide choice, so the command line's, not the
    library's; nothing where the C library has no ``mallopt``."""
    import ctypes
    import ctypes.util

    os.environ.setdefault(*HUGE_PAGES)
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c")).mallopt
    except (OSError, AttributeError, TypeError):
        return
    mallopt(-1, 1 << 30)  # M_TRIM_THRESHOLD: keep up to 1 GiB of free heap
    mallopt(-2, 64 << 20)  # M_TOP_PAD: grow the heap in steps of 64 MiB


def _limit_threads(n: int | None) -> int | None:
    """The thread count of ``--threads`` (None: the environment's when it sets one, else 1),
    made the BLAS default before numpy is imported; returns what training is told (None:
    leave the environment's)."""
    if n is None and any(var in os.environ for var in THREAD_VARIABLES):
        return None
    n = 1 if n is None else n
    for var in THREAD_VARIABLES:
        os.environ[var] = str(n)
    return n


def _version() -> str:
    from .learning.run import versions

    return versions()["pdunroll"]


# ---------------------------------------------------------------- train


def _method(args):
    """The gradient method of ``--method``, ``--b``, ``--relax-primal``; checked before any
    work."""
    kind = BY_NAME[args.method]
    needs_b = "b" in kind.__dataclass_fields__
    if needs_b and args.b is None:
        raise ValueError(f"--method {args.method} needs --b (the number of backward steps, "
                         "e.g. --b 30)")
    if not needs_b and args.b is not None:
        raise ValueError(f"--b is only used by --method truncated / asymptotic, not "
                         f"{args.method}")
    if args.method == "implicit" and args.relax_primal:
        raise ValueError("--relax-primal does not go with --method implicit: with the primal "
                         "prox Jacobian replaced by the identity the fixed-point system is "
                         "singular (its solve cannot converge); use --method asymptotic --b B")
    if needs_b:
        if args.b < 1 or (args.method == "truncated" and args.b > args.iterations):
            top = f" and at most --iterations ({args.iterations})" \
                if args.method == "truncated" else ""
            raise ValueError(f"--b must be at least 1{top}, got {args.b}")
        return kind(args.b, relax_primal=args.relax_primal)
    return kind(relax_primal=args.relax_primal)


def _train_config(args):
    """The :class:`~pdunroll.learning.config.TrainConfig` of the training options, checked."""
    from .learning.config import TrainConfig
    from .learning.optimizers import LearningRate
    from .unroll.plan import make_plan

    method = _method(args)
    make_plan(method, args.iterations, args.weights)
    return TrainConfig(iterations=args.iterations, method=method, weights=args.weights,
                       omega=args.omega, optimizer=args.optimizer,
                       lr=LearningRate(args.lr, args.schedule, warmup=args.warmup),
                       epochs=args.epochs,
                       batch_size=args.batch_size, patience=args.patience, seed=args.seed)


def _task_options(args):
    """The task's options (:class:`~pdunroll.tasks.speech.SpeechOptions` or
    :class:`~pdunroll.tasks.denoise.DenoiseOptions`) from the parsed arguments, resolved."""
    cls = {"speech": speech.SpeechOptions, "denoise": denoise.DenoiseOptions}.get(
        args.task, inverse.InverseOptions)
    values = {f.name: getattr(args, f.name) for f in fields(cls) if hasattr(args, f.name)}
    if args.task != "speech":
        values.update(images=tuple(args.images), test_images=tuple(args.test_images))
    if cls is inverse.InverseOptions:
        values["problem"] = args.task
    return cls(**values).resolved()


def _record(args) -> dict:
    """The options a resume reads back: the task's and the training's, as JSON values."""
    return {"task": args.task,
            "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
                        if k not in NOT_RECORDED}}


def _resume_defaults(args, parser, tasks, argv):
    """With ``--resume``: the arguments parsed again over the options the checkpoint was
    started with (options given again win; the training loop refuses those that differ)."""
    from .learning.checkpoint import run_record
    from .learning.runfolder import output_folder

    out = output_folder(args.out, Path("runs") / args.task, resume=True)
    record = run_record(out / "checkpoint.npz")
    if not record or record.get("task") != args.task:
        return args
    tasks[args.task].set_defaults(**record["options"])
    again = parser.parse_args(argv)
    again.out = out
    typed = {a.split("=", 1)[0] for a in argv}
    now = _task_options(again)  # the data and model options, defaults filled in
    before = _task_options(argparse.Namespace(**{**vars(again), **record["options"]}))
    for f in fields(now):
        flag = f"--{f.name.replace('_', '-')}"
        if flag in typed and str(getattr(now, f.name)) != str(getattr(before, f.name)):
            raise ValueError(f"{flag} {getattr(now, f.name)}: the run in {out} was started with "
                             f"{flag} {getattr(before, f.name)}; a resumed run keeps its data and "
                             f"model options (leave {flag} out, or start a new run)")
    return again


def _refuse_ignored(args) -> None:
    """Options typed on the command line that this run would ignore are refused, naming them."""
    given = {a.split("=", 1)[0] for a in args.argv if a.startswith("--")}
    if args.compile and args.backend != "torch":
        raise ValueError(f"--compile compiles the steps with torch.compile: it needs --backend "
                         f"torch, got --backend {args.backend}")
    if args.resume and "--init" in given:
        raise ValueError("--init is not used with --resume: the checkpoint holds the operator "
                         "to continue from; leave --init out")
    if args.task in inverse.PROBLEMS and (args.workers or args.scheduler):
        raise ValueError(f"--workers and --scheduler shard the training pairs, not their "
                         f"measurements: train {args.task} in one process")
    if args.task == "speech" and args.data is not None and given & {"--signals", "--seconds"}:
        raise ValueError(f"{' and '.join(sorted(given & {'--signals', '--seconds'}))} describe "
                         "the synthetic speech, which --data replaces: leave them out")


def _train(args) -> int:
    import time

    from .learning.placement import Placement
    from .learning.run import init_params, run_task
    from .learning.runfolder import RunFolder, output_folder, say

    tic = time.perf_counter()
    config = _train_config(args)
    placement = Placement(args.backend, args.dtype, args.device).check()
    opts = _task_options(args)
    given = "--n and --m" if args.task == "speech" else "--kernel"
    init = init_params(args.init, opts.parameter_shape, given)
    args.out = output_folder(args.out, Path("runs") / args.task, resume=args.resume)
    checkpoint = args.out / "checkpoint.npz"
    with RunFolder(args.out, quiet=args.quiet) as run:
        try:
            report = run_task(args.task, opts, config, placement, out=args.out,
                              resume=args.resume, init=init,
                              checkpoint={"every_steps": args.checkpoint_steps,
                                          "every_minutes": args.checkpoint_minutes},
                              record=_record(args), stale=run.stale, progress=not args.quiet,
                              command=args.argv, started=tic, threads=args.threads,
                              compile=args.compile,
                              client=args.client)
        except KeyboardInterrupt:
            if checkpoint.exists():
                print(f"\ninterrupted: checkpoint saved to {checkpoint}; continue with "
                      f"pdunroll train {args.task} --resume --out {args.out}", file=sys.stderr)
            else:
                print("\ninterrupted before the first step: nothing to resume",
                      file=sys.stderr)
            return 130
        _print_table(report.rows, report.title, images=report.images)
        say(f"wall time {report.wall:.1f} s (data, training and the test table)")
        print(f"saved {', '.join(map(str, report.files))}")
    return 0


# ---------------------------------------------------------------- evaluate and audit


def _print_table(rows, title, *, images: bool) -> None:
    width = max(20, *(len(r["method"]) for r in rows))
    print(title)
    print(f"  {'method':<{width}} {'test MSE':>12} {'PSNR [dB]' if images else 'SNR [dB]':>10}")
    for r in rows:
        print(f"  {r['method']:<{width}} {r['mse']:>12.4e} {r['snr_db']:>10.2f}")


def _evaluate(args) -> int:
    from .learning.checkpoint import load_operator
    from .learning.evaluation import results_table
    from .learning.placement import Placement

    model, settings = load_operator(args.operator)
    meta, solver = settings["metadata"], settings["solver"]
    iterations = solver["iterations"] if args.iterations is None else args.iterations
    steps = _step_rule(solver, args.omega)
    source = str(args.operator)
    if args.radius_factor is not None:
        if meta.get("task") != "denoise":
            raise ValueError("--radius-factor is for denoising operators")
        meta = {**meta, "radius_factor": args.radius_factor}
    if meta.get("task") in inverse.PROBLEMS:
        if args.rate is not None or args.bitrate is not None:
            raise ValueError("--rate and --bitrate are for speech operators")
        return _evaluate_images(args, model, meta, iterations, steps, solver["weights"])
    if meta.get("task") == "denoise":
        if args.rate is not None or args.bitrate is not None:
            raise ValueError("--rate and --bitrate are for speech operators")
        if args.data is not None or "test_set" in meta:
            return _evaluate_images(args, model, meta, iterations, steps, solver["weights"])
        if args.sigma is not None:
            raise ValueError("--sigma: this operator was trained on scikit-image's images or "
                             "given files; give a folder of test images with --data")
        test, rows, title = denoise.evaluation_rows(source, model, meta)
    elif meta.get("task") == "speech":
        if args.sigma is not None:
            raise ValueError("--sigma is for denoising operators")
        test, rows, title = speech.evaluation_rows(source, model, meta, data=args.data,
                                                   rate=args.rate, bitrate=args.bitrate)
    else:
        raise ValueError(f"{args.operator} was not written by pdunroll train (no task)")
    if args.no_baseline:
        rows = rows[-1:]
    placement = Placement(args.backend, args.dtype, args.device)
    moved = [placement.place(m, [test]) for _, m in rows]
    rows, test = [(name, m) for (name, _), (m, _) in zip(rows, moved, strict=True)], moved[0][1][0]
    images = meta["task"] == "denoise"
    table = results_table(test, rows, iterations=iterations, steps=steps,
                          weights=solver["weights"], images=images, client=args.client)
    _print_table(table, f"{title}, L = {iterations}, ω = {steps.omega:g}:", images=images)
    _write_json(args, table, title, iterations, steps)
    return 0


def _step_rule(solver: dict, omega: float | None):
    """The step rule a saved model was trained with (files written before the rule had more
    than ω: the default rule with their ω), with ``--omega`` in place of its ω."""
    from .model import StepRule

    rule = StepRule.from_settings({k: solver[k] for k in ("omega", "norm", "theta", "margin")
                                   if k in solver})
    return rule if omega is None else StepRule.from_settings({**rule.settings(), "omega": omega})


def _write_json(args, table: list, title: str, iterations: int, steps) -> None:
    """``evaluate --json FILE``: the printed table and what it was computed with."""
    if args.json is None:
        return
    import json

    record = {"operator": str(args.operator), "title": title, "iterations": iterations,
              "steps": steps.settings(), "backend": args.backend, "dtype": args.dtype,
              "rows": table}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(record, indent=1) + "\n")


def _evaluate_images(args, model, meta, iterations, steps, weights) -> int:
    """``evaluate`` of a denoising, deblurring or inpainting operator on whole images: PSNR
    and SSIM per image and their means, for the degraded input, TV with the same data term,
    the DCT start and the learned filters."""
    import time

    from .learning.evaluation import image_table
    from .learning.placement import Placement

    tic = time.perf_counter()
    if meta["task"] == "denoise":
        images, sigma, title = denoise.evaluation_images(str(args.operator), meta,
                                                         data=args.data, sigma=args.sigma)
        rows, start, bound = denoise.image_rows(model, meta, sigma), "noisy input", None
    else:
        images, _, title = inverse.evaluation_images(str(args.operator), meta,
                                                         data=args.data, noise=args.sigma)
        rows, start, bound = (inverse.image_rows(model, meta), inverse.START_NAME,
                              inverse.norm_bound)
    if args.no_baseline:
        rows = rows[-1:]
    table = image_table(images, rows, iterations=iterations, steps=steps,
                        weights=weights, start_name=start, op_norm=bound,
                        move=Placement(args.backend, args.dtype, args.device).mover())
    methods = [k for k in table[0] if k != "image"]
    width = max(12, *(len(e["image"]) for e in table))
    print(f"{title}, L = {iterations}, ω = {steps.omega:g}: PSNR [dB] / SSIM")
    print(f"  {'image':<{width}}" + "".join(f" {m:>26}" for m in methods))
    for e in table:
        print(f"  {e['image']:<{width}}" + "".join(
            f" {e[m]['psnr_db']:>17.2f} / {e[m]['ssim']:.4f}" for m in methods))
    print(f"wall time {time.perf_counter() - tic:.1f} s")
    _write_json(args, table, title, iterations, steps)
    return 0


def _apply(args) -> int:
    """``pdunroll apply``: every input reconstructed by the model as it was trained
    (:func:`pdunroll.apply_files`), each written under ``--out``."""
    import time
    from dataclasses import replace

    from .learning.apply import apply_files
    from .learning.learned import load_model
    from .learning.placement import Placement
    from .learning.threads import thread_limit

    tic = time.perf_counter()
    learned = load_model(args.model)
    if args.backend != "numpy" or args.device is not None:
        dtype = str(learned.dtype).split(".")[-1]
        moved = Placement(args.backend, dtype, args.device).check().place(learned.model)[0]
        learned = replace(learned, model=moved)
    with thread_limit(args.threads):
        written = apply_files(learned, args.inputs, args.out, iterations=args.iterations,
                              batch_size=args.batch_size, progress=not args.quiet,
                              mask=args.mask)
    L = learned.iterations if args.iterations is None else args.iterations
    print(f"wrote {len(written)} file{'s' if len(written) != 1 else ''} to {args.out} "
          f"(L = {L}, {time.perf_counter() - tic:.1f} s)")
    return 0


@contextlib.contextmanager
def _dask_client(args):
    """The Dask client of ``--scheduler`` / ``--workers`` (None without them), closed after."""
    if args.scheduler is None and args.workers is None:
        yield None
        return
    from .learning.distributed import connected, import_distributed, local_cluster

    if args.scheduler is not None:
        with connected(args.scheduler, "--scheduler") as client:
            yield client
        return
    distributed = import_distributed("--workers")
    with local_cluster(args.workers) as cluster, distributed.Client(cluster) as client:
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
    from .learning.runfolder import FolderInUse, StopSignals
    from .unroll.implicit import ConvergenceError

    argv = list(sys.argv[1:] if argv is None else argv)
    parser, tasks = _parser()
    args = parser.parse_args(argv)
    args.threads = _limit_threads(args.threads)
    _memory_settings()
    try:
        if args.command == "train" and args.resume:
            args = _resume_defaults(args, parser, tasks, argv)
        args.argv = argv
        if args.command == "audit":
            return _audit(args)
        if args.command == "apply":
            return _apply(args)
        if args.command != "train":
            with _dask_client(args) as args.client:
                return _evaluate(args)
        _refuse_ignored(args)  # before a Dask cluster starts
        with StopSignals() as stop, _dask_client(args) as args.client:
            code = _train(args)
        return 128 + stop.received if code == 130 and stop.received else code
    # OSError: e.g. disk full, no permission; FloatingPointError: training diverged
    except (ValueError, OSError, ImportError, FloatingPointError, FolderInUse,
            ConvergenceError) as err:
        print(f"pdunroll: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
