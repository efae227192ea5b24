"""Adversarial inputs over pdunroll's public API and command line, each outcome classified.

``python tools/fuzz_inputs.py [--timeout S] [--verbose]`` runs a few hundred calls users get
wrong: wrong shapes and ranks, int/bool/complex/float16 dtypes, NaN and inf inside arrays,
empty batches, lists and scalars for arrays, arrays of another backend (torch), absurd sizes,
junk scalars (booleans, strings, NaN, inf, negative, fractional counts), broken files (empty,
truncated, of another kind, a folder), and the command line's flags with bad values. A few
inputs must be accepted (read-only and non-contiguous arrays, torch tensors that require
grad): the documented acceptances of the Reliability page.

Each call is classified as

* ``clear``: an error of a clear kind (TypeError, ValueError, an OSError such as
  FileNotFoundError, FloatingPointError; for the command line exit status 2 and no traceback)
  whose message names the argument, flag or file;
* ``unclear``: any other error, or a message that does not name it;
* ``silent``: returned although the input is bad;
* ``hang``: still running after ``--timeout`` seconds (SIGALRM);
* ``accepted``: an input the library documents as accepted ran (``unexpected`` if it failed).

The exit status is 1 when any call is unclear, silent, a hang or unexpected. Runs on NumPy
(torch where installed, for the mixed-backend and requires_grad cases) in a temporary folder.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import re
import signal
import sys
import tempfile
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CLEAR = (TypeError, ValueError, OSError, FloatingPointError)


@dataclass(frozen=True)
class Case:
    call: str  # Python source evaluated in the namespace, or "cli: <argv>" for the command line
    names: str  # what the message must name (a word; for files and flags the text itself)
    accept: bool = False  # a documented acceptance: the call must run


class Timeout(BaseException):
    """Raised by SIGALRM: the call ran past the time limit."""


def _alarm(signum, frame):
    raise Timeout


# ---------------------------------------------------------------- the cases

BAD_ARRAYS = {  # source of a bad variant of the array ``{a}`` (shape (4, 8), float64)
    "rank 1": "{a}[0]",
    "rank 3": "{a}[None]",
    "wrong length": "{a}[:, :5]",
    "int dtype": "{a}.astype(np.int64)",
    "bool dtype": "{a} > 0",
    "complex dtype": "{a}.astype(np.complex128)",
    "float16": "{a}.astype(np.float16)",
    "NaN inside": "_with({a}, np.nan)",
    "inf inside": "_with({a}, np.inf)",
    "empty batch": "{a}[:0]",
    "a list": "{a}.tolist()",
    "a scalar": "1.0",
    "a string": "'x'",
    "None": "None",
    "torch tensor": "torch.asarray({a})",
}
OK_ARRAYS = {  # accepted on purpose
    "read-only": "_readonly({a})",
    "non-contiguous": "np.asfortranarray({a})",
    "strided view": "np.repeat({a}, 2, axis=1)[:, ::2]",
}
ARRAY_CALLS = [  # (call with the placeholder, the argument the placeholder is)
    ("pu.chambolle_pock(model, {v}, iterations=5)", "x_tilde", "x_tilde"),
    ("pu.gradient(model, {v}, x_true, iterations=5)", "x_tilde", "x_tilde"),
    ("pu.gradient(model, x_tilde, {v}, iterations=5)", "x_true", "x_true"),
    ("pu.vjp(model, {v}, iterations=5)", "x_tilde", "x_tilde"),
    ("pu.train(model, {v}, x_true, epochs=1, batch_size=2, progress=False)", "x_tilde",
     "x_tilde"),
    ("pu.train(model, x_tilde, {v}, epochs=1, batch_size=2, progress=False)", "x_true",
     "x_true"),
    ("pu.quantize({v}, 4)", "x_true", "x"),
    ("pu.snr({v}, x_true)", "x_tilde", "x_hat"),
    ("pu.mse(x_tilde, {v})", "x_true", "x_true"),
    ("op.apply({v})", "x_tilde", "x"),
    ("op.adjoint({v})", "x_tilde", "y"),
    ("pu.DenseOperator({v})", "K8", "matrix"),
    ("pu.Diagonal({v})", "x_tilde", "weights"),
    ("pu.LinearTerm({v})", "x_tilde", "c"),
    ("pu.forward_backward(smooth, pu.NonNegative(), {v}, step=0.5, iterations=3)", "x_true",
     "x0"),
    ("pu.LeastSquares(op, {v})", "x_true", "b"),
]
# calls whose argument is an array of one signal or a matrix: rank changes are fine there
RANK_FREE = {"K8": ("rank 1", "rank 3", "wrong length", "empty batch"),
             "x_tilde": (), "x_true": ()}
NOT_APPLICABLE = {  # (call index, variant): inputs that are valid for that argument
    ("pu.quantize({v}, 4)", "rank 1"), ("pu.quantize({v}, 4)", "rank 3"),
    ("pu.quantize({v}, 4)", "wrong length"), ("pu.quantize({v}, 4)", "empty batch"),
    ("pu.quantize({v}, 4)", "a scalar"),
    ("pu.snr({v}, x_true)", "a scalar"), ("pu.mse(x_tilde, {v})", "a scalar"),
    ("pu.Diagonal({v})", "rank 1"), ("pu.Diagonal({v})", "rank 3"),
    ("pu.Diagonal({v})", "wrong length"), ("pu.LinearTerm({v})", "rank 1"),
    ("pu.LinearTerm({v})", "rank 3"), ("pu.LinearTerm({v})", "wrong length"),
    ("pu.LeastSquares(op, {v})", "rank 1"), ("pu.LeastSquares(op, {v})", "a scalar"),
    ("pu.LeastSquares(op, {v})", "empty batch"),
}
# accepted on purpose: an operator's apply and adjoint are the solver's inner maps; they check
# shape and backend but leave values (no host synchronisation per step) and dtypes (the
# backend's promotion) to the public entry points, and map an empty batch to an empty batch
INNER = {("op.apply({v})", k) for k in ("int dtype", "bool dtype", "complex dtype", "float16",
                                        "NaN inside", "inf inside", "empty batch")} | {
    ("op.adjoint({v})", k) for k in ("int dtype", "bool dtype", "complex dtype", "float16",
                                     "NaN inside", "inf inside", "empty batch")}

JUNK = {  # junk scalars for a numeric argument
    "zero": "0", "negative": "-1", "fraction": "2.5", "NaN": "float('nan')",
    "inf": "float('inf')", "True": "True", "a string": "'3'", "a complex": "1 + 1j",
    "an array": "np.array([1.0, 2.0])", "None": "None", "huge": "1e300",
}
SCALAR_CALLS = [  # (call with {v}, argument, junk values that are valid there)
    ("pu.chambolle_pock(model, x_tilde, iterations={v})", "iterations", ()),
    ("pu.chambolle_pock(model, x_tilde, iterations=5, omega={v})", "omega",
     ("huge", "None", "fraction")),
    ("pu.gradient(model, x_tilde, x_true, iterations=5, method=pu.Truncated({v}))", "b", ()),
    ("pu.Asymptotic({v})", "b", ()),
    ("pu.Full(segments={v})", "segments", ("None",)),
    ("pu.Implicit(tol={v})", "tol", ("None",)),
    ("pu.Implicit(maxiter={v})", "maxiter", ("None",)),
    ("pu.Implicit(strict={v})", "strict", ("True",)),
    ("pu.Full(relax_primal={v})", "relax_primal", ("True",)),
    ("pu.Full(released_mask={v})", "released_mask", ("None", "huge", "fraction")),
    ("pu.step_sizes(op, omega={v})", "omega", ("huge", "None", "fraction")),
    ("pu.step_sizes(op, theta={v})", "theta", ("zero",)),
    ("pu.step_sizes(op, op_norm={v})", "op_norm", ("None", "huge", "fraction")),
    ("pu.L1Norm({v})", "weight", ("huge", "fraction")),
    ("pu.LinfBall({v})", "radius", ("huge", "fraction")),
    ("pu.L2Ball({v})", "radius", ("huge", "fraction")),
    ("pu.SquaredL2({v})", "weight", ("huge", "fraction")),
    ("pu.L21Norm(weight={v})", "weight", ("huge", "fraction")),
    ("pu.EntropicOrthant(start_value={v})", "start_value", ("huge", "fraction")),
    ("pu.SGD(momentum={v})", "momentum", ("zero",)),
    ("pu.Adam(beta1={v})", "beta1", ("zero",)),
    ("pu.Adam(eps={v})", "eps", ("huge", "fraction")),
    ("pu.LearningRate({v})", "initial learning rate", ("huge", "fraction")),
    ("pu.train(model, x_tilde, x_true, lr={v}, epochs=1, progress=False)", "lr",
     ("fraction",)),
    ("pu.train(model, x_tilde, x_true, epochs={v}, progress=False)", "epochs", ()),
    ("pu.train(model, x_tilde, x_true, batch_size={v}, epochs=1, progress=False)",
     "batch_size", ()),
    ("pu.train(model, x_tilde, x_true, seed={v}, epochs=1, progress=False)", "seed",
     ("zero",)),
    ("pu.train(model, x_tilde, x_true, patience={v}, epochs=1, progress=False)", "patience",
     ("None",)),
    ("pu.train(model, x_tilde, x_true, progress={v}, epochs=1)", "progress", ("True",)),
    ("pu.train(model, x_tilde, x_true, resume={v}, epochs=1, progress=False)", "resume", ()),
    ("pu.quantize(x_true, {v})", "bitrate", ()),
    ("pu.quantization_radius({v})", "bitrate", ()),
    ("pu.dct_matrix({v})", "n", ()),
    ("pu.speech_frames([np.sin(np.arange(1000.0))], n={v})", "n", ()),
    ("pu.speech_frames([np.sin(np.arange(1000.0))], max_frames={v}, n=64)", "max_frames",
     ("None", "huge")),
    ("pu.synthetic_speech({v}, seconds=0.1)", "n_signals", ()),
    ("pu.synthetic_speech(2, seconds={v})", "seconds", ("fraction",)),
    ("pu.estimate_norm(op, iterations={v})", "iterations", ()),
    ("pu.estimate_norm(op, rtol={v})", "rtol", ("zero", "fraction", "huge")),
    ("pu.check_gradients(model, x_tilde, x_true, iterations=3, eps={v}, autodiff=False)",
     "eps", ("fraction",)),
    ("pu.forward_backward(smooth, pu.NonNegative(), x_true, step={v}, iterations=3)", "step",
     ()),
    ("pu.forward_backward(smooth, pu.NonNegative(), x_true, step=0.5, iterations={v})",
     "iterations", ()),
    ("pu.segmentation_model(np.ones((1, 2, 4, 4)), {v})", "tv_weight", ("huge", "fraction")),
    ("pu.segmentation_model(np.ones((1, 2, 4, 4)), 0.1, entropic={v})", "entropic",
     ("True",)),
]

OTHER = [  # hand-written cases: absurd sizes, types, files, settings that do not fit
    Case("pu.chambolle_pock(K, x_tilde, iterations=5)", "model"),
    Case("pu.chambolle_pock(model, x_tilde, iterations=5, weights=[1, 1, 1, 1, -3])",
         "weights"),
    Case("pu.chambolle_pock(model, x_tilde, iterations=5, steps=3)", "steps"),
    Case("pu.chambolle_pock(model, x_tilde, iterations=5, omega=2.0, steps=pu.step_sizes(op))",
         "omega"),
    Case("pu.gradient(model, x_tilde, x_true, iterations=5, method='truncated')", "method"),
    Case("pu.gradient(model, x_tilde, iterations=5, loss=lambda x: (float('nan'), x))", "loss"),
    Case("pu.gradient(model, x_tilde, iterations=5, loss=lambda x: (0.0, x[:, :3]))", "loss"),
    Case("pu.gradient(model, x_tilde, x_true, iterations=5, loss=lambda x: (0.0, x))", "x_true"),
    Case("pu.step_sizes(op, sigma=0.5, tau=0.5, omega=3.0)", "omega"),
    Case("pu.step_sizes(op, sigma=0.5)", "tau"),
    Case("pu.step_sizes(op, norm='nuclear')", "norm"),
    Case("pu.Asymptotic(10**12)", "b"),
    Case("pu.dct_matrix(8, dtype=np.int32)", "dtype"),
    Case("pu.dct_matrix(8, m=4)", "m"),
    Case("pu.Gradient2d((4, 4), dtype=np.float16)", "dtype"),
    Case("pu.Gradient2d((0, 4))", "image_shape"),
    Case("pu.Conv1dFilterBank(np.ones((2, 3)), 0)", "length"),
    Case("pu.Conv2dFilterBank(np.ones((2, 3, 3)), (2, 2))", "image_shape"),
    Case("pu.Composition(op, pu.DenseOperator(np.ones((3, 3))))", "operator 1"),
    Case("pu.Stack(op, 3)", "operator 1"),
    Case("pu.AnalysisModel(op, pu.L1Norm(), 'linf')", "g"),
    Case("pu.LinearTerm(x_tilde, base=pu.L1Norm)", "base"),
    Case("pu.Simplex(axis='1')", "axis"),
    Case("pu.L21Norm(group_axis=1.5)", "group_axis"),
    Case("pu.estimate_norm(op, v0=np.zeros(8))", "v0"),
    Case("pu.estimate_norm(op, v0=np.ones(3))", "v0"),
    Case("pu.train(model, x_tilde, x_true, optimizer='adamw', epochs=1, progress=False)",
         "optimizer"),
    Case("pu.train(model, x_tilde, x_true, validation=x_tilde, epochs=1, progress=False)",
         "validation"),
    Case("pu.train(model, x_tilde, x_true, checkpoint=3, epochs=1, progress=False)",
         "checkpoint"),
    Case("pu.train(model, x_tilde, x_true, checkpoint='nowhere/deep/ck.npz', epochs=1, "
         "progress=False)", "nowhere/deep/ck.npz"),
    Case("pu.train(model, x_tilde, x_true, lr=1e6, epochs=2, batch_size=2, progress=False)",
         "learning rate"),
    Case("pu.train(model, x_tilde, x_true, callback=3, epochs=1, progress=False)", "callback"),
    Case("pu.CheckpointFile('ck.npz', every_steps=0)", "every_steps"),
    Case("pu.CheckpointFile('ck.npz', data=[1])", "data"),
    Case("pu.OperatorLearner(eta=-1.0).fit(x_tilde, x_true)", "eta"),
    Case("pu.speech_frames([np.arange(1000) * 10.0], n=64)", "signals[0]"),
    Case("pu.speech_frames([np.zeros(1000)], n=64)", "signals[0]"),
    Case("pu.speech_frames(np.ones((1000, 2)), n=64)", "signals"),
    Case("pu.speech_frames('speech.wav', n=64)", "signals"),
    Case("pu.speech_frames([np.ones(10)], n=64)", "n=64"),
    Case("pu.speech_frames([np.sin(np.arange(1000.0))], n=10**9)", "n=1000000000"),
    Case("pu.snr(x_true, 0 * x_true)", "x_true"),
    Case("pu.snr(x_true, x_true[:2])", "x_true"),
    Case("pu.forward_backward(smooth, pu.NonNegative(), x_true, step=100.0, iterations=5)",
         "step"),
    Case("pu.forward_backward(smooth, pu.EntropicOrthant(), 0 * x_true, step=0.5, "
         "iterations=5)", "x0"),
    Case("pu.forward_backward(x_true, pu.NonNegative(), x_true, step=0.5, iterations=5)",
         "smooth"),
    Case("pu.forward_backward(smooth, 'nonneg', x_true, step=0.5, iterations=5)", "g"),
    Case("pu.check_gradients(model, x_tilde.astype(np.float32), x_true.astype(np.float32), "
         "iterations=3)", "x_tilde"),
    Case("pu.check_gradients(model, x_tilde, x_true, iterations=3, methods='full')", "methods"),
    Case("pu.segmentation_model(np.ones((1, 1, 4, 4)), 0.1)", "costs"),
    Case("pu.segmentation_model(np.ones((2, 4, 4)), 0.1)", "costs"),
    Case("pu.segmentation_loss(np.ones((1, 2, 4, 4)), eps=-1.0)", "eps"),
    # files
    Case("pu.load_operator('missing.npz')", "missing.npz"),
    Case("pu.load_operator('empty.npz')", "empty.npz"),
    Case("pu.load_operator('truncated.npz')", "truncated.npz"),
    Case("pu.load_operator('plain.npz')", "plain.npz"),
    Case("pu.load_operator('array.npy')", "array.npy"),
    Case("pu.load_operator('notes.txt')", "notes.txt"),
    Case("pu.load_operator('folder')", "folder"),
    Case("pu.load_operator(3)", "path"),
    Case("pu.load_operator('checkpoint.npz')", "checkpoint.npz"),
    Case("pu.load_checkpoint('operator.npz', op.params)", "operator.npz"),
    Case("pu.load_checkpoint('checkpoint.npz', pu.dct_matrix(4))", "checkpoint.npz"),
    Case("pu.save_operator('folder', model, iterations=5, omega=1.0)", "folder"),
    Case("pu.save_operator('', model, iterations=5, omega=1.0)", "path"),
    Case("pu.save_operator('a/b/c/op.npz', model, iterations=5, omega=1.0)", "a/b/c/op.npz"),
    Case("pu.save_operator('readonly/op.npz', model, iterations=5, omega=1.0)",
         "readonly/op.npz"),
    Case("pu.save_operator('op.npz', model, iterations=5, omega=1.0, metadata=[1])",
         "metadata"),
    Case("pu.read_wav_folder('missing')", "missing"),
    Case("pu.read_wav_folder('notes.txt')", "notes.txt"),
    Case("pu.read_wav_folder('wav_truncated')", "cut.wav"),
    Case("pu.read_wav_folder('wav_header')", "header.wav"),
    Case("pu.read_wav_folder('wav_empty')", "empty.wav"),
    Case("pu.read_wav_folder('wav_text')", "text.wav"),
    Case("pu.read_wav_folder('wav_stereo')", "stereo.wav"),
    Case("pu.read_wav_folder('wav_silent')", "silent.wav"),
    Case("pu.read_wav_folder('wav_nan')", "nan.wav"),
    Case("pu.read_wav_folder('wav_rates')", "wav_rates"),
    Case("pu.read_wav_folder('wav_ok', min_samples=10**6)", "ok.wav"),
    Case("pu.read_wav_folder('empty_folder')", "empty_folder"),
    # accepted on purpose (docs, "Reliability")
    Case("pu.chambolle_pock(tmodel, torch.asarray(x_tilde).requires_grad_(True), "
         "iterations=5)", "", accept=True),
    Case("pu.gradient(tmodel, torch.asarray(x_tilde).requires_grad_(True), "
         "torch.asarray(x_true), iterations=5)", "", accept=True),
    Case("op.with_params(K8.astype(np.float32)).apply(x_tilde.astype(np.float32))", "",
         accept=True),
    Case("pu.quantize(np.float64(0.3), 4)", "", accept=True),
]

CLI_FAST = ["--signals", "4", "--seconds", "0.25", "--n", "16", "--iterations", "2", "--epochs",
            "1", "--quiet"]
CLI_BAD = [  # (flag, bad value): `pdunroll train speech` refuses each, naming the flag
    ("--n", "0"), ("--n", "-3"), ("--n", "x"), ("--n", "1"), ("--m", "4"), ("--iterations", "0"),
    ("--iterations", "2.5"), ("--lr", "-1"), ("--lr", "nan"), ("--lr", "inf"), ("--lr", "0"),
    ("--omega", "0"), ("--omega", "nan"), ("--epochs", "0"), ("--batch-size", "0"),
    ("--bitrate", "0"), ("--bitrate", "30"), ("--b", "0"), ("--method", "foo"),
    ("--weights", "geometric"), ("--optimizer", "adamw"), ("--signals", "0"), ("--signals", "2"),
    ("--seconds", "0"), ("--seconds", "-1"), ("--seconds", "nan"), ("--checkpoint-steps", "0"),
    ("--checkpoint-minutes", "-1"), ("--rate", "0"), ("--max-frames", "0"), ("--seed", "-1"),
    ("--patience", "0"), ("--dtype", "float16"), ("--backend", "tensorflow"), ("--out", ""),
    ("--data", "missing"), ("--data", "notes.txt"), ("--init", "missing.npz"),
    ("--threads", "0"), ("--schedule", "cosine"), ("--warmup", "2"),
]
CLI_OTHER = [  # (argv, what the message names)
    (["train", "speech", "--method", "truncated", *CLI_FAST], "--b"),
    (["train", "speech", "--method", "full", "--b", "3", *CLI_FAST], "--b"),
    (["train", "speech", "--method", "truncated", "--b", "5", *CLI_FAST], "--b"),
    (["train", "speech", "--relax-primal", "--method", "implicit", *CLI_FAST], "--relax-primal"),
    (["train", "speech", "--data", "wav_ok", "--signals", "5", "--quiet"], "--signals"),
    (["train", "speech", "--rate", "8000", *CLI_FAST], "--rate"),
    (["train", "speech", "--data", "wav_truncated", "--n", "16", "--quiet"], "cut.wav"),
    (["train", "speech", "--data", "empty_folder", "--n", "16", "--quiet"], "empty_folder"),
    (["train", "speech", "--resume", "--out", "never_ran", *CLI_FAST], "never_ran"),
    (["train", "speech", "--backend", "torch", "--device", "cuda:5", *CLI_FAST], "--device"),
    (["train", "speech", "--backend", "numpy", "--device", "cuda", *CLI_FAST], "--device"),
    (["train", "denoise", "--images", "camera", "--test-images", "camera", "--quiet"],
     "--test-images"),
    (["train", "denoise", "--images", "no_such_image", "--quiet"], "no_such_image"),
    (["train", "denoise", "--kernel", "40", "--quiet"], "--kernel"),
    (["evaluate", "missing.npz"], "missing.npz"),
    (["evaluate", "truncated.npz"], "truncated.npz"),
    (["evaluate", "plain.npz"], "plain.npz"),
    (["evaluate", "operator.npz", "--data", "missing"], "operator.npz"),
    (["train", "speech", *CLI_FAST, "--init", "plain.npz"], "plain.npz"),
    (["apply", "missing.npz", "x.wav", "--out", "applied"], "missing.npz"),
    (["apply", "operator.npz", "missing.wav", "--out", "applied"], "missing.wav"),
    (["audit", "--iterations", "0"], "--iterations"),
]


def cases() -> list[Case]:
    """Every case: the generated array and scalar cases, the hand-written ones, the command
    line's."""
    out = []
    for call, source, arg in ARRAY_CALLS:
        skip = RANK_FREE.get(source, ())
        for kind, bad in BAD_ARRAYS.items():
            if kind in skip or (call, kind) in NOT_APPLICABLE:
                continue
            if kind == "torch tensor" and call.startswith(("pu.quantize", "pu.snr", "pu.mse",
                                                           "pu.DenseOperator", "pu.Diagonal",
                                                           "pu.LinearTerm")):
                continue  # a torch array alone is a valid input there
            out.append(Case(call.format(v=bad.format(a=source)), arg,
                            accept=(call, kind) in INNER))
        for ok in OK_ARRAYS.values():
            out.append(Case(call.format(v=ok.format(a=source)), arg, accept=True))
    for call, arg, valid in SCALAR_CALLS:
        for kind, junk in JUNK.items():
            if kind not in valid:
                out.append(Case(call.format(v=junk), arg))
    out.extend(OTHER)
    for flag, value in CLI_BAD:
        argv = ["train", "speech", *CLI_FAST, flag, value]
        if flag in ("--rate", "--max-frames", "--data"):
            argv[2:2] = ["--data", "wav_ok"]
            argv = [a for a in argv if a not in ("--signals", "4", "--seconds", "0.25")]
        out.append(Case("cli: " + "\x1f".join(argv), flag if flag != "--data" else value))
    for argv, names in CLI_OTHER:
        out.append(Case("cli: " + "\x1f".join(argv), names))
    return out


# ---------------------------------------------------------------- the namespace and files


def _with(a, value):
    b = np.array(a, dtype=float)
    b[1, 2] = value
    return b


def _readonly(a):
    b = np.array(a)
    b.setflags(write=False)
    return b


def namespace(folder: Path) -> dict:
    """The names the calls use, and the files they read, written to ``folder``."""
    from scipy.io import wavfile

    import pdunroll as pu

    rng = np.random.default_rng(0)
    x_true = np.clip(rng.standard_normal((4, 8)) / 3, -1, 1)
    x_tilde = pu.quantize(x_true, 3)
    K8 = pu.dct_matrix(8)
    op = pu.DenseOperator(K8)
    model = pu.AnalysisModel(op, f=pu.L1Norm(), g=pu.LinfBall(pu.quantization_radius(3)))
    names = dict(pu=pu, np=np, x_true=x_true, x_tilde=x_tilde, K8=K8, K=K8, op=op, model=model,
                 smooth=pu.LeastSquares(pu.DenseOperator(np.eye(8)), x_true), _with=_with,
                 _readonly=_readonly)
    try:
        import torch

        names["torch"] = torch
        names["tmodel"] = pu.AnalysisModel(pu.DenseOperator(torch.asarray(K8)), f=pu.L1Norm(),
                                           g=pu.LinfBall(pu.quantization_radius(3)))
    except ImportError:
        pass
    os.chdir(folder)
    np.savez("plain.npz", a=np.ones(2))
    Path("truncated.npz").write_bytes(Path("plain.npz").read_bytes()[:50])
    Path("empty.npz").write_bytes(b"")
    np.save("array.npy", np.ones(3))
    Path("notes.txt").write_text("not an operator")
    Path("folder").mkdir()
    Path("empty_folder").mkdir()
    Path("readonly").mkdir()
    os.chmod("readonly", 0o500)
    pu.save_operator("operator.npz", model, iterations=5, omega=1.0)

    def stop(info):
        raise KeyboardInterrupt

    with contextlib.suppress(KeyboardInterrupt):
        pu.train(model, x_tilde, x_true, epochs=1, batch_size=2, progress=False,
                 checkpoint="checkpoint.npz", callback=stop)
    speech = (np.sin(np.arange(16000) / 7) * 20000).astype(np.int16)
    for name, write in {
        "wav_ok/ok.wav": lambda p: wavfile.write(p, 16000, speech),
        "wav_truncated/cut.wav": lambda p: (wavfile.write(p, 16000, speech),
                                            p.write_bytes(p.read_bytes()[:16000])),
        "wav_header/header.wav": lambda p: (wavfile.write(p, 16000, speech),
                                           p.write_bytes(p.read_bytes()[:30])),
        "wav_empty/empty.wav": lambda p: p.write_bytes(b""),
        "wav_text/text.wav": lambda p: p.write_text("RIFF? no"),
        "wav_stereo/stereo.wav": lambda p: wavfile.write(p, 16000, np.stack([speech] * 2, 1)),
        "wav_silent/silent.wav": lambda p: wavfile.write(p, 16000, 0 * speech),
        "wav_nan/nan.wav": lambda p: wavfile.write(p, 16000, np.full(100, np.nan, np.float32)),
        "wav_rates/a.wav": lambda p: wavfile.write(p, 16000, speech),
        "wav_rates/b.wav": lambda p: wavfile.write(p, 8000, speech),
    }.items():
        path = Path(name)
        path.parent.mkdir(exist_ok=True)
        write(path)
    for i in range(3):  # wav_ok holds 4 files: enough for a split
        wavfile.write(f"wav_ok/ok{i}.wav", 16000, np.roll(speech, 100 * i))
    return names


# ---------------------------------------------------------------- running and classifying


def _named(what: str, text: str) -> bool:
    if not what:
        return True
    if re.fullmatch(r"[\w ]+", what):
        return re.search(rf"(?<![\w-]){re.escape(what)}(?![\w])", text) is not None
    return what in text


def run(case: Case, names: dict, timeout: float) -> tuple[str, str]:
    """(outcome, message) of one case."""
    signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, timeout)
    err_text, code, error = "", None, None
    try:
        if case.call.startswith("cli: "):
            from pdunroll import cli

            stderr = io.StringIO()
            with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
                try:
                    code = cli.main(case.call[5:].split("\x1f"))
                except SystemExit as exit_:
                    code = exit_.code
                except Exception as err:  # noqa: BLE001 - a traceback is an outcome here
                    error = err
            err_text = stderr.getvalue()
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                eval(case.call, dict(names))  # noqa: S307 - our own cases
    except Timeout:
        return "hang", f"still running after {timeout:g} s"
    except Exception as err:  # noqa: BLE001 - every exception is a result here
        error = err
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    if case.call.startswith("cli: "):
        if error is not None:
            return "unclear", f"traceback: {type(error).__name__}: {error}"
        if code in (0, None):
            return ("accepted" if case.accept else "silent"), "exit 0"
        text = err_text.strip().splitlines()[-1] if err_text.strip() else ""
        clear = code == 2 and "Traceback" not in err_text and _named(case.names, err_text)
        return ("clear" if clear else "unclear"), f"exit {code}: {text}"
    if error is None:
        return ("accepted" if case.accept else "silent"), "returned"
    message = f"{type(error).__name__}: {error}"
    if case.accept:
        return "unexpected", message
    return ("clear" if isinstance(error, CLEAR) and _named(case.names, str(error))
            else "unclear"), message


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timeout", type=float, default=20.0,
                        help="seconds per call before it counts as a hang (default 20)")
    parser.add_argument("--verbose", action="store_true", help="print every case")
    args = parser.parse_args(argv)
    here = Path.cwd()
    all_cases = cases()
    counts: Counter = Counter()
    bad = []
    with tempfile.TemporaryDirectory() as tmp:
        try:
            names = namespace(Path(tmp))
            for case in all_cases:
                if "torch" in case.call and "torch" not in names:
                    continue
                if "readonly/" in case.call and os.geteuid() == 0:
                    continue  # root writes into a read-only folder
                outcome, message = run(case, names, args.timeout)
                counts[outcome] += 1
                if args.verbose or outcome in ("unclear", "silent", "hang", "unexpected"):
                    print(f"{outcome:10s} {case.call.replace(chr(31), ' ')}\n{'':11s}-> "
                          f"{message[:300]}")
                if outcome in ("unclear", "silent", "hang", "unexpected"):
                    bad.append(case)
        finally:
            os.chdir(here)
            with contextlib.suppress(OSError):
                os.chmod(Path(tmp) / "readonly", 0o700)
    total = sum(counts.values())
    print(f"{total} calls: " + ", ".join(f"{counts[k]} {k}" for k in
                                          ("clear", "accepted", "unclear", "silent", "hang",
                                           "unexpected")))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
