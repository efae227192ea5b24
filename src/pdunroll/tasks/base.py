"""What every task hands to a run: its data sets, its starting model and the records of both;
and the split of a folder of files into training, validation and test files."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..data.fingerprint import file_digests, fingerprint_difference
from ..model import AnalysisModel

__all__ = ["NOT_IMPROVED", "FileSplit", "TaskData", "learned_name", "recorded_files",
           "split_files"]

NOT_IMPROVED = "start (no epoch improved)"  # the table's name of a result that is its start

SPLIT = (0.7, 0.15, 0.15)  # one folder: training / validation / test, by file
TRAIN_DEV_SPLIT = (0.85, 0.15)  # train/: training / validation; dev/ is the test set


def learned_name(meta: dict) -> str:
    """The table's name of a run's result: "learned operator", or :data:`NOT_IMPROVED` when no
    epoch improved on the start (``meta["improved"]`` false: the result is the start)."""
    return NOT_IMPROVED if meta.get("improved") is False else "learned operator"


@dataclass(frozen=True)
class TaskData:
    """``sets``: the (degraded, clean) pairs of training, validation and test as NumPy float64;
    ``start``: the starting model; ``baselines``: the (name, model) rows the table compares the
    learned model with (the start among them); ``meta``: what the run records about its task and
    data; ``fingerprint``: the training data's fingerprint (checkpoints refuse to resume on other
    data); ``text``: the data line a run prints. Where F holds per-signal data (the
    measurements of an inverse problem), ``signals(model, part)`` is ``model`` with the data
    of set ``part`` (0, 1, 2: training, validation, test; None: the model to save, without
    training data); ``start_name``: the tables' name of x̃ (default: the input's)."""

    sets: tuple
    start: AnalysisModel
    baselines: list
    meta: dict
    fingerprint: dict
    text: str
    signals: Callable[[AnalysisModel, int | None], AnalysisModel] | None = None
    start_name: str | None = None


@dataclass(frozen=True)
class FileSplit:
    """The items read from a data folder by part (training, validation, test): ``parts`` holds
    (item, path) pairs; ``root`` is the folder, ``how`` says how it was split, ``digests`` are
    each part's SHA-256 digests ``{name: digest}`` and ``info`` what ``read`` returned besides
    items and paths (per folder read: one, or train/ and dev/)."""

    root: Path
    parts: tuple[list, list, list]
    how: str
    digests: tuple[dict, dict, dict]
    info: tuple


def split_files(folder: Path, read, *, seed: int) -> FileSplit:
    """The files of a data folder split by file. ``read(folder)`` returns (items, paths, info)
    of every file of one folder. A folder with ``train/`` and ``dev/`` subfolders gives train/
    split 85/15 into training and validation and dev/ as the test set; any other folder is split
    70/15/15 (seeded shuffle, :func:`pdunroll.split_signals`)."""
    from ..data.speech import split_signals

    if (folder / "train").is_dir() and (folder / "dev").is_dir():
        items, paths, info = read(folder / "train")
        idx = split_signals(list(range(len(paths))), TRAIN_DEV_SPLIT, seed=seed)
        dev, dev_paths, dev_info = read(folder / "dev")
        parts = ([(items[i], paths[i]) for i in idx[0]], [(items[i], paths[i]) for i in idx[1]],
                 list(zip(dev, dev_paths, strict=True)))
        how, infos = "train/ split 85/15 by file, dev/ as test", (info, dev_info)
    else:
        items, paths, info = read(folder)
        idx = split_signals(list(range(len(paths))), SPLIT, seed=seed)
        parts = tuple([(items[i], paths[i]) for i in part] for part in idx)
        how, infos = "files split 70/15/15", (info,)
    root = folder.resolve()
    digests = tuple(file_digests([p for _, p in part], root) for part in parts)
    return FileSplit(root, parts, how, digests, infos)


def recorded_files(source: str, test: dict, what: str, again: str) -> list[Path]:
    """The paths of the test files a run recorded (``test["folder"]`` and the SHA-256 digests
    ``test["files"]`` ``{name: digest}``), checked: a missing file or one whose digest differs
    is an error naming ``source`` (the operator file) and ``what`` the files are (e.g. "test
    images"); ``again`` says how to go on (e.g. "give a folder with --data")."""
    root = Path(test["folder"])
    paths = [root / name for name in test["files"]]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise ValueError(f"the {what} of {source} are gone: {', '.join(missing[:3])}"
                         f"{', ...' if len(missing) > 3 else ''} ({again})")
    diff = fingerprint_difference({"files": test["files"]},
                                  {"files": file_digests(paths, root)})
    if diff:
        raise ValueError(f"the {what} of {source} in {root} have changed since training: "
                         f"{'; '.join(diff)}")
    return paths
