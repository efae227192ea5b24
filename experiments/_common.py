"""Shared pieces of the speech experiments: the IEEE corpus as frames, the published model,
CSV output. Run the scripts from anywhere; the corpus is read in place, never copied."""

from __future__ import annotations

import csv
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = Path(os.environ.get("PDUNROLL_SPEECH_DIR",
                                   ROOT / ".." / "shared" / "data" / "ieee_speech"))

# the minibatch products are small: one BLAS thread per process is fastest on shared cores
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

import pdunroll as pu  # noqa: E402
from pdunroll.data import speech as ds  # noqa: E402
from pdunroll.tasks.speech import speech_model  # noqa: E402


def add_data_args(parser, *, out: str) -> None:
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA,
                        help="IEEE corpus folder with train/ and dev/ wav folders "
                             "(default $PDUNROLL_SPEECH_DIR, else "
                             "../shared/data/ieee_speech next to the repository)")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / out,
                        help=f"output folder (default runs/{out})")
    parser.add_argument("--quick", action="store_true",
                        help="small setting that runs in minutes on 2 CPU cores")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def add_scheduler_arg(parser) -> None:
    parser.add_argument("--scheduler", metavar="ADDRESS", default=None,
                        help="a Dask scheduler (e.g. tcp://host:8786): run the independent "
                             "configurations as tasks on its workers, one per worker thread; "
                             "the CSV is the same (pip install torch==2.13.0 && pip install "
                             "\"pdunroll[distributed]\")")


def sweep(run, jobs: list, scheduler: str | None = None, **shared):
    """``run(job, **shared)`` for each job, yielded in the order of ``jobs``: one after another
    here, or with ``scheduler`` as Dask tasks (``shared`` scattered to every worker once;
    Dask distributed docs, "Futures"). The script and this module are sent to the workers
    (``Client.upload_file``): they need pdunroll installed, not the experiments folder."""
    if scheduler is None:
        for job in jobs:
            yield run(job, **shared)
        return
    from distributed import Client

    with Client(scheduler) as client:
        for module in dict.fromkeys((__name__, run.__module__)):
            if module != "__main__":
                client.upload_file(sys.modules[module].__file__, load=False)
        data = {k: client.scatter(v, broadcast=True) for k, v in shared.items()}
        futures = [client.submit(run, job, **data, pure=False) for job in jobs]
        for future in futures:
            yield future.result()


def settings(args, *, paper: dict, quick: dict, overrides: tuple[str, ...]) -> dict:
    """The paper's (or with --quick the quick) setting, with the command-line overrides given."""
    cfg = dict(quick if args.quick else paper)
    cfg.update({k: getattr(args, k) for k in overrides if getattr(args, k) is not None})
    return cfg


def frames_for(args, cfg: dict):
    """:func:`ieee_frames` with a script's parsed arguments and settings."""
    return ieee_frames(args.data, n=cfg["n"], bitrate=cfg["bitrate"],
                       max_train=cfg["max_train"], max_test=cfg["max_test"], seed=args.seed)


def ieee_frames(data: Path, *, n: int, bitrate: int, max_train: int | None,
                max_test: int | None, seed: int):
    """Training frames from train/, test frames from dev/ (seeded random subsets)."""
    for sub in ("train", "dev"):
        if not (data / sub).is_dir():
            sys.exit(f"{data / sub} is missing: pass --data with the IEEE corpus folder")
    train = ds.speech_frames(ds.read_wav_folder(data / "train")[0], n=n, bitrate=bitrate,
                             max_frames=max_train, seed=seed)
    test = ds.speech_frames(ds.read_wav_folder(data / "dev")[0], n=n, bitrate=bitrate,
                            max_frames=max_test, seed=seed + 1)
    return train, test


def dct_model(n: int, eta: float) -> pu.AnalysisModel:
    """The published start: K = orthonormal DCT-II, F = ‖·‖₁, G = ι{‖x − x̃‖_∞ ≤ η} (the speech
    task's model, :func:`pdunroll.tasks.speech.speech_model`)."""
    return speech_model(n, eta)


def test_mse(model, frames, iterations: int, weights=None) -> float:
    x_hat = pu.reconstruct(model, frames.x_tilde, iterations=iterations, omega=10.0,
                           weights=weights)
    return pu.mse(x_hat, frames.x_true)


def read_csv(path: Path) -> list[dict]:
    """The rows of a CSV that ``write_csv`` wrote (none if it does not exist), numbers as int
    or float: what a resumed run has already done."""
    if not path.exists():
        return []
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    for r in rows:
        for k, v in r.items():
            try:
                r[k] = int(v) if v.lstrip("-").isdigit() else float(v)
            except (ValueError, AttributeError):
                pass
    return rows


def write_csv(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        # the union of the rows' keys: rows of a resumed run may carry newer columns
        writer = csv.DictWriter(fh, fieldnames=list(dict.fromkeys(k for r in rows for k in r)),
                                restval="")
        writer.writeheader()
        writer.writerows(rows)
    return path


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


__all__ = ["DEFAULT_DATA", "ROOT", "add_data_args", "add_scheduler_arg", "dct_model", "read_csv",
           "ieee_frames", "np", "pu", "pyplot", "sweep", "test_mse", "write_csv"]
