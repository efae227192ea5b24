"""Command line: ``pdunroll train speech``, ``pdunroll evaluate``.

``pdunroll train speech`` learns an analysis operator for speech dequantization (F = ‖·‖₁,
G = indicator of {‖x − x̃‖_∞ ≤ η}, K initialised as the DCT) on the built-in synthetic speech or
on a folder of mono wav files (``--data``), prints a table of test MSE and SNR for the quantized
input, the DCT operator and the learned operator, and writes to ``--out``: ``operator.npz``
(load it with :func:`pdunroll.load_operator`), ``checkpoint.npz`` (``--resume`` continues from
it), ``curves.png`` and ``results.json``. Ctrl-C saves the checkpoint before exiting.

``pdunroll evaluate OPERATOR`` prints the same table for a saved operator on the test set.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

__all__ = ["main"]

SPLIT = (0.7, 0.15, 0.15)  # train / validation / test, by file


def _speech_args(p: argparse.ArgumentParser, *, defaults: bool = True) -> None:
    d = (lambda v: v) if defaults else (lambda v: None)
    p.add_argument("--data", type=Path, default=None,
                   help="folder of mono wav files, or with train/ and dev/ subfolders (dev/ is "
                        "the test set); default: built-in synthetic speech")
    p.add_argument("--signals", type=int, default=60,
                   help="synthetic speech: number of signals (default 60)")
    p.add_argument("--seconds", type=float, default=3.0,
                   help="synthetic speech: seconds per signal (default 3)")
    p.add_argument("--n", type=int, default=d(128), help="samples per frame (default 128)")
    p.add_argument("--bitrate", type=int, default=d(4), help="quantizer bits (default 4)")
    p.add_argument("--max-frames", type=int, default=None,
                   help="use at most this many training frames (random subset)")
    p.add_argument("--seed", type=int, default=0, help="seed of data, split and shuffling")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pdunroll", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser("train", help="learn an operator")
    tasks = train.add_subparsers(dest="task", required=True)
    speech = tasks.add_parser("speech", help="speech dequantization (seeds 001, 002)")
    _speech_args(speech)
    speech.add_argument("--out", type=Path, default=Path("runs/speech"),
                        help="output folder (default runs/speech)")
    speech.add_argument("--iterations", "-L", type=int, default=10,
                        help="unrolled Chambolle-Pock steps L (default 10)")
    speech.add_argument("--omega", type=float, default=10.0, help="σ/τ balance ω (default 10)")
    speech.add_argument("--mode", choices=("full", "truncated", "asymptotic"), default="full")
    speech.add_argument("--b", type=int, default=None,
                        help="backward steps for truncated/asymptotic modes")
    speech.add_argument("--weights", choices=("harmonic", "uniform"), default=None,
                        help="ergodic unrolling weights (default: last iterate)")
    speech.add_argument("--relax-primal", action="store_true",
                        help="treat the ℓ∞ clip as identity in the backward pass")
    speech.add_argument("--optimizer", choices=("adam", "sgd"), default="adam")
    speech.add_argument("--lr", type=float, default=1e-3, help="initial learning rate")
    speech.add_argument("--schedule", choices=("constant", "linear", "polynomial", "inverse"),
                        default="linear", help="learning-rate schedule (default linear decay "
                                               "to lr/1000)")
    speech.add_argument("--epochs", type=int, default=8)
    speech.add_argument("--batch-size", type=int, default=32)
    speech.add_argument("--patience", type=int, default=None,
                        help="early stopping after this many epochs without improvement")
    speech.add_argument("--resume", action="store_true",
                        help="continue from OUT/checkpoint.npz (same settings)")
    speech.add_argument("--quiet", action="store_true", help="no progress bar")
    ev = commands.add_parser("evaluate", help="apply a saved operator to the test set")
    ev.add_argument("operator", type=Path, help="operator .npz written by pdunroll train")
    _speech_args(ev, defaults=False)
    ev.add_argument("--iterations", "-L", type=int, default=None,
                    help="Chambolle-Pock steps (default: the training L)")
    for sub in (speech, ev):
        sub.add_argument("--threads", type=int, default=1,
                         help="BLAS threads (default 1: the minibatch products are small, and "
                              "one thread per process is fastest on a few shared cores); an "
                              "OMP_NUM_THREADS / OPENBLAS_NUM_THREADS already set wins")
    return parser


def _limit_threads(n: int) -> None:
    """Default BLAS thread counts; effective because numpy is not imported yet."""
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, str(n))


def _speech_sets(args):
    """Training, validation and test frames (split by file)."""
    from . import datasets as ds

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
    return frames, source


def _speech_model(n: int, eta: float, matrix=None):
    from . import AnalysisModel, DenseOperator, L1Norm, LinfBall, dct_matrix

    K = dct_matrix(n) if matrix is None else matrix
    return AnalysisModel(DenseOperator(K), f=L1Norm(), g=LinfBall(eta))


def _table(test, rows, iterations, omega, weights) -> list[dict]:
    from . import mse, reconstruct, snr

    out = [{"method": "quantized input", "mse": mse(test.x_tilde, test.x_true),
            "snr_db": snr(test.x_tilde, test.x_true)}]
    for name, model in rows:
        x_hat = reconstruct(model, test.x_tilde, iterations=iterations, omega=omega,
                            weights=weights)
        out.append({"method": name, "mse": mse(x_hat, test.x_true),
                    "snr_db": snr(x_hat, test.x_true)})
    return out


def _print_table(rows, title) -> None:
    print(title)
    print(f"  {'method':<20} {'test MSE':>12} {'SNR [dB]':>10}")
    for r in rows:
        print(f"  {r['method']:<20} {r['mse']:>12.4e} {r['snr_db']:>10.2f}")


def _train_speech(args) -> int:
    from . import LearningRate, save_operator, train
    from .plotting import plot_learning_curves

    (tr, va, te), source = _speech_sets(args)
    print(f"data: {source}; frames of n={args.n}, bitrate {args.bitrate} (η = {tr.eta:g}): "
          f"{len(tr)} training, {len(va)} validation, {len(te)} test")
    start = _speech_model(args.n, tr.eta)
    checkpoint = args.out / "checkpoint.npz"
    try:
        res = train(start, tr.x_tilde, tr.x_true, validation=(va.x_tilde, va.x_true),
                    iterations=args.iterations, mode=args.mode, b=args.b, weights=args.weights,
                    relax_primal=args.relax_primal, omega=args.omega, optimizer=args.optimizer,
                    lr=LearningRate(args.lr, args.schedule), epochs=args.epochs,
                    batch_size=args.batch_size, patience=args.patience, seed=args.seed,
                    checkpoint=checkpoint, resume=args.resume, progress=not args.quiet)
    except KeyboardInterrupt:
        print(f"\ninterrupted: checkpoint saved to {checkpoint}; continue with the same "
              "command and --resume", file=sys.stderr)
        return 130
    meta = {"task": "speech", "n": args.n, "bitrate": args.bitrate, "data": source,
            "best_epoch": res.best_epoch, "best_val_loss": res.best_val_loss}
    op_path = save_operator(args.out / "operator.npz", res.model, iterations=args.iterations,
                            omega=args.omega, weights=args.weights, metadata=meta)
    png = plot_learning_curves(res.history, args.out / "curves.png",
                               title=f"speech, n={args.n}, L={args.iterations}, {args.mode}")
    rows = _table(te, [("DCT operator", start), ("learned operator", res.model)],
                  args.iterations, args.omega, args.weights)
    (args.out / "results.json").write_text(json.dumps({"test": rows, **meta}, indent=2))
    _print_table(rows, f"test set ({len(te)} frames), L = {args.iterations}, best epoch "
                       f"{res.best_epoch} of {res.epochs}:")
    print(f"saved {op_path}, {png}, {args.out / 'results.json'}")
    return 0


def _evaluate(args) -> int:
    from . import load_operator

    model, settings = load_operator(args.operator)
    meta = settings["metadata"]
    if meta.get("task") != "speech":
        raise SystemExit(f"{args.operator}: evaluate supports speech operators, this one is "
                         f"{meta.get('task')!r}")
    args.n = meta["n"] if args.n is None else args.n
    args.bitrate = meta["bitrate"] if args.bitrate is None else args.bitrate
    if args.n != model.operator.in_shape[0]:
        raise SystemExit(f"--n {args.n} does not match the operator's {model.operator.in_shape[0]}"
                         " samples per frame")
    (_, _, te), source = _speech_sets(args)
    solver = settings["solver"]
    iterations = args.iterations or solver["iterations"]
    learned = _speech_model(args.n, te.eta, model.operator.params)  # η of this bitrate
    rows = _table(te, [("DCT operator", _speech_model(args.n, te.eta)),
                       ("learned operator", learned)],
                  iterations, solver["omega"], solver["weights"])
    _print_table(rows, f"{source}: test set ({len(te)} frames), L = {iterations}:")
    return 0


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    _limit_threads(args.threads)
    try:
        if args.command == "train":
            return _train_speech(args)
        return _evaluate(args)
    except (ValueError, FileNotFoundError, NotADirectoryError) as err:
        print(f"pdunroll: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
