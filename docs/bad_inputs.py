"""Bad inputs tried on the public entry points, and the error each one gets.

``python docs/bad_inputs.py`` runs every case and writes the table the Reliability page
includes (docs/_generated/bad_inputs.md); tests/test_bad_inputs.py runs the same cases, checks
that each raises a TypeError or ValueError (or a FileNotFoundError for a missing file) whose
message names the argument, and that the committed table is the one this script writes now.

A case is (entry point, the call as Python source, the argument its message must name). The
calls run in a fresh temporary folder with the names of :func:`namespace` defined. The messages
must not depend on the versions of NumPy or Python that pyproject allows (the table is compared
in every test environment): a case whose message quotes another library's is left out.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parent / "_generated" / "bad_inputs.md"


@dataclass(frozen=True)
class Case:
    entry: str  # the public name the call goes through
    call: str  # Python source, evaluated in namespace()
    argument: str  # what the message must name
    finding: str | None = None  # why the message does not name it yet (a known defect)


CASES = [
    # the solver
    Case("chambolle_pock", "pu.chambolle_pock(model, x_tilde, iterations=0)", "iterations"),
    Case("chambolle_pock", "pu.chambolle_pock(model, x_tilde, iterations=2.5)", "iterations"),
    Case("chambolle_pock", "pu.chambolle_pock(model, x_tilde[:, :5], iterations=5)", "x_tilde"),
    Case("chambolle_pock", "pu.chambolle_pock(model, x_tilde[0], iterations=5)", "x_tilde"),
    Case("chambolle_pock", "pu.chambolle_pock(model, x_tilde.astype(np.float32), iterations=5)",
         "x_tilde"),
    Case("chambolle_pock", "pu.chambolle_pock(model, x_tilde.tolist(), iterations=5)", "x_tilde"),
    Case("chambolle_pock", "pu.chambolle_pock(model, x_nan, iterations=5)", "x_tilde"),
    Case("chambolle_pock", "pu.chambolle_pock(model, x_tilde[:0], iterations=5)", "x_tilde"),
    Case("chambolle_pock", "pu.chambolle_pock(model, x_tilde, iterations=5, omega=-1.0)",
         "omega"),
    Case("chambolle_pock", 'pu.chambolle_pock(model, x_tilde, iterations=5, weights="harmonik")',
         "weights"),
    Case("chambolle_pock", "pu.chambolle_pock(K, x_tilde, iterations=5)", "model"),
    Case("chambolle_pock", "pu.chambolle_pock(model, x_tilde, iterations=5, callback=3)",
         "callback"),
    # gradients
    Case("gradient", "pu.gradient(model, x_tilde, x_true[:2], iterations=5)", "x_true"),
    Case("gradient", "pu.gradient(model, x_tilde, iterations=5)", "x_true"),
    Case("gradient", 'pu.gradient(model, x_tilde, x_true, iterations=5, method="fulll")',
         "method"),
    Case("gradient", "pu.gradient(model, x_tilde, x_true, iterations=5, method=pu.Truncated(9))",
         "b"),
    Case("gradient", "pu.gradient(model, x_tilde, x_true, iterations=5, method=3)", "method"),
    Case("gradient", "pu.gradient(model, x_tilde, x_true, iterations=5, loss=3)", "loss"),
    Case("vjp", "pu.vjp(model, x_tilde, iterations=-1)", "iterations"),
    Case("gradient", 'pu.gradient(model, x_tilde, x_true, iterations=5, weights="uniform", '
         'method=pu.Asymptotic(2))', "weights"),
    Case("vjp", "pu.vjp(model, x_tilde, iterations=5)[1](x_tilde[:, :3])", "v"),
    # training
    Case("train", "pu.train(model, x_tilde, x_true, lr=-1.0)", "lr"),
    Case("train", "pu.train(model, x_tilde, x_true, epochs=0)", "epochs"),
    Case("train", "pu.train(model, x_tilde, x_true, batch_size=0)", "batch_size"),
    Case("train", 'pu.train(model, x_tilde, x_true, optimizer="adamw")', "optimizer"),
    Case("train", "pu.train(model, x_tilde, x_true, seed=-1)", "seed"),
    Case("train", "pu.train(model, x_tilde, x_true, resume=True)", "checkpoint"),
    Case("train", "pu.train(model, x_tilde, x_true, validation=(1, 2, 3))", "validation"),
    Case("train", "pu.train(model, x_tilde, x_true, patience=0)", "patience"),
    Case("train", "pu.train(model, x_tilde, x_true, callback=3)", "callback"),
    Case("train", "pu.train(model, x_tilde, x_true, progress=2)", "progress"),
    Case("OperatorLearner", "pu.OperatorLearner(eta=0.1).fit(x_tilde[0], x_true[0])", "x_tilde"),
    Case("OperatorLearner", "pu.OperatorLearner().fit(x_tilde, x_true)", "eta"),
    # step sizes
    Case("step_sizes", "pu.step_sizes(op, omega=0.0)", "omega"),
    Case("step_sizes", "pu.step_sizes(op, sigma=2.0, tau=1.0)", "tau"),
    Case("step_sizes", "pu.step_sizes(op, theta=2.0)", "theta"),
    Case("step_sizes", "pu.step_sizes(op, op_norm=-1.0)", "op_norm"),
    Case("step_sizes", "pu.step_sizes(K)", "operator"),
    # gradient methods
    Case("Truncated", "pu.Truncated(0)", "b"),
    Case("Truncated", "pu.Truncated(2.5)", "b"),
    Case("Asymptotic", "pu.Asymptotic(-1)", "b"),
    Case("Full", "pu.Full(segments=0)", "segments"),
    Case("Full", 'pu.Full(relax_primal="yes")', "relax_primal"),
    Case("Implicit", 'pu.Implicit(solver="cg")', "solver"),
    Case("Implicit", "pu.Implicit(tol=-1.0)", "tol"),
    Case("Implicit", "pu.Implicit(maxiter=0)", "maxiter"),
    # operators and the model
    Case("DenseOperator", "pu.DenseOperator(np.ones(3))", "matrix"),
    Case("DenseOperator", "pu.DenseOperator(np.ones((2, 2), dtype=int))", "matrix"),
    Case("Conv1dFilterBank", "pu.Conv1dFilterBank(np.ones((2, 3)), 0)", "length"),
    Case("Conv1dFilterBank", 'pu.Conv1dFilterBank(np.ones((2, 3)), 8, boundary="reflect")',
         "boundary"),
    Case("Conv2dFilterBank", "pu.Conv2dFilterBank(np.ones((3, 3)), (8, 8))", "filters"),
    Case("Conv2dFilterBank", "pu.Conv2dFilterBank(np.ones((2, 3, 3)), (8,))", "image_shape"),
    Case("Diagonal", "pu.Diagonal(np.ones(3, dtype=int))", "weights"),
    Case("Gradient2d", "pu.Gradient2d((0, 4))", "image_shape"),
    Case("Stack", "pu.Stack()", "operators"),
    Case("Composition", "pu.Composition(op, pu.DenseOperator(np.ones((8, 3))), op)",
         "operator 1"),
    Case("estimate_norm", "pu.estimate_norm(op, iterations=0)", "iterations"),
    Case("estimate_norm", "pu.estimate_norm(op, rtol=-1.0)", "rtol"),
    Case("estimate_norm", "pu.estimate_norm(op, v0=np.ones(3))", "v0"),
    Case("estimate_norm", "pu.estimate_norm(K)", "op"),
    Case("AnalysisModel", "pu.AnalysisModel(K, f=pu.L1Norm(), g=pu.LinfBall(0.1))", "operator"),
    Case("AnalysisModel", 'pu.AnalysisModel(op, f="l1", g=pu.LinfBall(0.1))', "f"),
    # functions
    Case("LinfBall", "pu.LinfBall(-1.0)", "radius"),
    Case("L2Ball", 'pu.L2Ball("1")', "radius"),
    Case("L1Norm", "pu.L1Norm(weight=-1.0)", "weight"),
    Case("L21Norm", "pu.L21Norm(group_axis=0)", "group_axis"),
    Case("Simplex", "pu.Simplex(axis=0)", "axis"),
    Case("LinearTerm", "pu.LinearTerm(3)", "c"),
    # data
    Case("quantize", "pu.quantize(x_true, 0)", "bitrate"),
    Case("quantize", "pu.quantize(x_true, 2.5)", "bitrate"),
    Case("quantize", "pu.quantize(x_true.tolist(), 4)", "x"),
    Case("speech_frames", "pu.speech_frames([np.ones(1000)], n=0)", "n"),
    Case("speech_frames", "pu.speech_frames([np.ones(100)], n=320)", "signals"),
    Case("speech_frames", "pu.speech_frames([], n=64)", "signals"),
    Case("speech_frames", "pu.speech_frames([np.ones(1000)], bitrate=0)", "bitrate"),
    # files
    Case("load_operator", 'pu.load_operator("missing.npz")', "missing.npz"),
    Case("load_operator", 'pu.load_operator("plain.npz")', "plain.npz"),
    Case("load_operator", 'pu.load_operator("truncated.npz")', "truncated.npz"),
    Case("load_operator", 'pu.load_operator("checkpoint.npz")', "checkpoint.npz"),
    Case("save_operator", 'pu.save_operator("op.npz", model, iterations=0, omega=10.0)',
         "iterations"),
    Case("save_operator", 'pu.save_operator("op.npz", model, iterations=5, omega=float("nan"))',
         "omega"),
    Case("save_operator", 'pu.save_operator("op.npz", K, iterations=5, omega=10.0)', "model"),
    Case("save_operator", 'pu.save_operator("op.npz", own_model, iterations=5, omega=10.0)',
         "MyOperator"),
    # values that were silently accepted (issue "Trust, round two")
    Case("chambolle_pock", "pu.chambolle_pock(model, x_tilde, iterations=5, "
         "weights=[1, 1, 1, 1, -3])", "weights"),
    Case("chambolle_pock", "pu.chambolle_pock(model, x_tilde.astype(np.float16), iterations=5)",
         "x_tilde"),
    Case("gradient", 'pu.gradient(model, x_tilde, iterations=5, loss=lambda x: (float("nan"), x))',
         "loss"),
    Case("gradient", "pu.gradient(model, x_tilde, x_true, iterations=5, loss=lambda x: (0.0, x))",
         "x_true"),
    Case("train", 'pu.train(model, x_tilde, x_true, resume="yes", checkpoint="ck.npz")', "resume"),
    Case("Truncated", "pu.Truncated(3, relax_primal=1)", "relax_primal"),
    Case("Asymptotic", "pu.Asymptotic(10**9)", "b"),
    Case("Implicit", "pu.Implicit(tol=2.0)", "tol"),
    Case("step_sizes", "pu.step_sizes(op, omega=True)", "omega"),
    Case("step_sizes", "pu.step_sizes(op, sigma=0.5, tau=0.5, omega=3.0)", "omega"),
    Case("L2Ball", "pu.L2Ball(True)", "radius"),
    Case("LinfBall", "pu.LinfBall(1 + 0j)", "radius"),
    Case("SGD", 'pu.SGD(momentum="0.9")', "momentum"),
    Case("Adam", "pu.Adam(beta1=1.0)", "beta1"),
    Case("segmentation_model", 'pu.segmentation_model(np.ones((1, 2, 4, 4)), 0.1, entropic="yes")',
         "entropic"),
    Case("DenseOperator", "pu.DenseOperator(K.astype(np.float16))", "matrix"),
    Case("Gradient2d", "pu.Gradient2d((4, 4), dtype=np.float16)", "dtype"),
    Case("dct_matrix", "pu.dct_matrix(8, dtype=np.int32)", "dtype"),
    Case("DenseOperator", "op.apply(xps.ones((2, 8), dtype=xps.float64))", "x"),
    Case("forward_backward", "pu.forward_backward(smooth, pu.NonNegative(), x_true, step=100.0, "
         "iterations=5)", "step"),
    Case("forward_backward", "pu.forward_backward(smooth, pu.EntropicOrthant(), 0 * x_true, "
         "step=0.5, iterations=5)", "x0"),
    Case("speech_frames", "pu.speech_frames([np.arange(1000) * 10.0], n=64)", "signals[0]"),
    Case("speech_frames", "pu.speech_frames([np.zeros(1000)], n=64)", "signals[0]"),
    Case("speech_frames", "pu.speech_frames([np.full(1000, np.inf)], n=64)", "signals[0]"),
    Case("snr", "pu.snr(x_true, 0 * x_true)", "x_true"),
    Case("check_gradients", "pu.check_gradients(model, x_tilde, x_true, iterations=3, eps=-1.0)",
         "eps"),
    Case("check_gradients", 'pu.check_gradients(model, x_tilde, x_true, iterations=3, '
         'methods="full")', "methods"),
    # found by tools/fuzz_inputs.py
    Case("check_gradients", "pu.check_gradients(model, x_tilde, x_true, iterations=3, eps=1e300)",
         "eps"),
    Case("mse", "pu.mse(x_tilde, x_nan)", "x_true"),
    Case("DenseOperator", "op.apply(x_tilde.tolist())", "x"),
    Case("LinearTerm", "pu.LinearTerm(x_tilde[:0])", "c"),
    Case("forward_backward", "pu.forward_backward(smooth, pu.NonNegative(), x_true[:, :5], "
         "step=0.5, iterations=5)", "x0"),
    Case("EntropicOrthant", "pu.EntropicOrthant(start_value=True)", "start_value"),
    Case("synthetic_speech", "pu.synthetic_speech(2, seconds=1e300)", "seconds"),
    Case("synthetic_speech", 'pu.synthetic_speech(2, seconds="3")', "seconds"),
    Case("estimate_norm", "pu.estimate_norm(op, rtol=None)", "rtol"),
]


def namespace() -> dict:
    """The names the calls use: a small speech model and data, an operator and a few files
    (written to the current folder)."""
    import pdunroll as pu

    rng = np.random.default_rng(0)
    x_true = np.clip(rng.standard_normal((4, 8)) / 3, -1, 1)
    x_tilde = pu.quantize(x_true, 3)
    K = pu.dct_matrix(8)
    op = pu.DenseOperator(K)
    model = pu.AnalysisModel(op, f=pu.L1Norm(), g=pu.LinfBall(pu.quantization_radius(3)))
    x_nan = x_tilde.copy()
    x_nan[1, 2] = np.nan

    class MyOperator(pu.DenseOperator):  # a user's own operator, not registered as saveable
        pass

    own_model = pu.AnalysisModel(MyOperator(K), f=pu.L1Norm(), g=pu.LinfBall(0.1))
    np.savez("plain.npz", a=np.ones(2))  # an .npz file, not pdunroll's
    Path("truncated.npz").write_bytes(Path("plain.npz").read_bytes()[:50])
    with contextlib.suppress(KeyboardInterrupt):  # a checkpoint, which is not an operator file
        pu.train(model, x_tilde, x_true, epochs=1, batch_size=2, progress=False,
                 checkpoint="checkpoint.npz", callback=_interrupt)
    import array_api_strict as xps

    smooth = pu.LeastSquares(pu.DenseOperator(np.eye(8)), x_true)  # Lipschitz constant 1
    return dict(pu=pu, np=np, xps=xps, K=K, op=op, model=model, x_tilde=x_tilde,
                x_true=x_true, x_nan=x_nan, own_model=own_model, smooth=smooth)


def _interrupt(info):
    raise KeyboardInterrupt


CLEAR = (TypeError, ValueError, FileNotFoundError)  # the exceptions a bad input may raise


def names_argument(argument: str, err: BaseException | None) -> bool:
    """Whether the error is one of CLEAR and its message names ``argument`` as a word."""
    return isinstance(err, CLEAR) and re.search(rf"(?<!\w){re.escape(argument)}(?!\w)",
                                                str(err)) is not None


def run(case: Case, names: dict) -> BaseException | None:
    """The exception the call raises (None if it returns)."""
    try:
        eval(case.call, dict(names))  # noqa: S307 - our own cases
    except Exception as err:  # noqa: BLE001 - every exception is a result here
        return err
    return None


@contextlib.contextmanager
def in_temporary_folder():
    """Run in a fresh temporary folder (the file cases write and read there)."""
    here = Path.cwd()
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)
        try:
            yield Path(tmp)
        finally:
            os.chdir(here)


def results() -> list[tuple[Case, BaseException | None]]:
    """Every case with its exception, run in a temporary folder."""
    import warnings

    with in_temporary_folder(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        names = namespace()
        return [(case, run(case, names)) for case in CASES]


def _message(err: BaseException | None) -> str:
    if err is None:
        return "(no error)"
    text = str(err)
    tmp = os.path.realpath(tempfile.gettempdir())
    text = text.replace(tmp, "$TMP")
    return f"{type(err).__name__}: {text}"


def _code(text: str) -> str:
    """An inline code span of a table cell: exact text (no typographic quotes), | escaped."""
    text = text.replace("\n", " ").replace("|", r"\|")
    fence = "`" * (max((len(r) for r in re.findall("`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def table(rows) -> str:
    """The markdown table of the Reliability page."""
    lines = ["| bad call | error | named? |", "| --- | --- | --- |"]
    for case, err in rows:
        named = ("yes" if names_argument(case.argument, err)
                 else f"**no**: {case.finding or 'not yet reviewed'}")
        lines.append(f"| {_code(case.call)} | {_code(_message(err))} | {named} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    rows = results()
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(table(rows))
    print(f"wrote {OUT} ({len(rows)} cases)")
    for case, err in rows:
        if not names_argument(case.argument, err):
            print(f"  does not name {case.argument!r}: {case.call} -> {_message(err)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
