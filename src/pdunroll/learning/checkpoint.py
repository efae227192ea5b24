"""Nothing lost: training checkpoints and learned operators on disk.

Both are single ``.npz`` files (no pickles) holding NumPy copies of the arrays and a ``settings``
entry with a JSON document; both are written atomically (temporary file in the same folder,
fsync, ``os.replace``), so an interrupted write never leaves a broken file behind.

* operator files (:func:`write_model_file` / :func:`read_model_file`, behind
  ``LearnedModel.save`` / :func:`pdunroll.load_model` and :func:`save_operator` /
  :func:`load_operator`): the model as the description each part gives of itself
  (:mod:`pdunroll.registry`; any operator and function, composites included) with its arrays,
  and the solver settings (L, step rule, ergodic weights) and metadata (e.g. the bitrate), so
  a learned model loads back ready to use. Files of format version 1 (three operator types)
  still load.
* :class:`TrainState` with :func:`save_checkpoint` / :func:`load_checkpoint`: everything the
  training loop needs to continue bit for bit: parameters, optimizer state, the warm-start vector
  of the norm estimate, RNG state, position in the epoch, best parameters and history, and the
  model's description (a resume with another model is refused).
"""

from __future__ import annotations

import contextlib
import errno
import glob
import json
import os
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._array import Array, check_count, check_positive, default_namespace, xp_of
from .._array import array_device as _device
from .._array import to_numpy as _host
from ..model import AnalysisModel
from ..registry import Reader, Writer
from ..tree import flatten, unflatten
from ..unroll.forward import ergodic_weights
from .state import History, TrainState

__all__ = ["CheckpointFile", "History", "TrainState", "check_writable", "load_checkpoint",
           "load_operator", "model_from_settings", "model_settings", "read_model_file",
           "run_record", "save_checkpoint", "save_operator", "saved_model_settings",
           "write_json", "write_model_file"]

OPERATOR_FORMAT = "pdunroll-operator"
CHECKPOINT_FORMAT = "pdunroll-checkpoint"
VERSION = 2  # 2: each part describes itself (pdunroll.registry); 1: three operator types


# ---------------------------------------------------------------- arrays and files


def to_numpy(a: Array) -> np.ndarray:
    """A NumPy copy of an array of any backend and device (host transfer for GPU arrays:
    :func:`pdunroll._array.to_numpy`)."""
    return np.array(_host(a), copy=True)


def from_numpy(a: np.ndarray, xp, device) -> Array:
    """A NumPy array moved to namespace ``xp`` on ``device``."""
    return xp.asarray(a, device=device)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _named(err: OSError, path) -> OSError:
    """The same OSError with ``path`` in its message (e.g. a full disk: errno 28)."""
    return type(err)(err.errno, f"{err.strerror or err} (writing {path})", str(path)) \
        if err.errno else OSError(f"{err} (writing {path})")


def as_path(path, name: str = "path") -> Path:
    """``path`` as a :class:`~pathlib.Path`, else a ``TypeError`` naming ``name``."""
    if not isinstance(path, str | os.PathLike) or (isinstance(path, str) and not path):
        raise TypeError(f"{name} must be a file path (a non-empty str or os.PathLike), got "
                        f"{path!r}")
    return Path(path)


def _make_folder(path: Path) -> None:
    """Create the folder of ``path`` if only that one folder is missing: a typo in a path
    should not create a chain of folders up to the file system's root."""
    folder = path.parent
    if not folder.exists() and not folder.parent.exists():
        raise FileNotFoundError(errno.ENOENT, f"neither its folder {folder} nor {folder.parent} "
                                "exists (only the file's own folder is created)", str(path))
    folder.mkdir(exist_ok=True)


def check_writable(path) -> Path:
    """Check before any work that a file can be written atomically at ``path``: not a folder,
    its folder exists (or is created, if its parent exists) and a file can be made in it.
    Errors name the path."""
    path = as_path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder: expected the path of a .npz file in it, "
                                f"e.g. {path / 'checkpoint.npz'}")
    try:
        _make_folder(path)
        fd, probe = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".probe")
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise OSError(err.errno, f"cannot write {path}: {err.strerror or err}",
                      str(path)) from err
    return path


def write_npz(path, arrays: dict[str, np.ndarray], settings: dict) -> Path:
    """Write ``arrays`` and the JSON ``settings`` to ``path`` atomically, compressed (NumPy
    stores the JSON as 4 bytes a character; a checkpoint's step history is most of it);
    return the path. I/O errors name the path."""
    path = as_path(path)
    try:
        return _write_npz(path, arrays, settings)
    except OSError as err:
        raise _named(err, path) from err


def write_json(path, document: dict) -> Path:
    """Write ``document`` as indented JSON to ``path`` atomically (e.g. ``results.json``);
    I/O errors name the path."""
    path = as_path(path)
    try:
        return _atomic(path, lambda fh: fh.write(json.dumps(document, indent=2).encode()))
    except OSError as err:
        raise _named(err, path) from err


def _write_npz(path: Path, arrays, settings) -> Path:
    payload = dict(arrays)
    payload["settings"] = np.array(json.dumps(settings))
    return _atomic(path, lambda fh: np.savez_compressed(fh, **payload))


def _atomic(path: Path, write) -> Path:
    """``write(binary file)`` into a temporary file in the same folder, fsync, rename."""
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, "is a folder, expected a file path", str(path))
    _make_folder(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.",
                               suffix=".tmp")
    try:
        # mkstemp makes the file private (0600): give it the mode of any other new file
        os.chmod(tmp, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    remove_leftovers(path)
    return path


def remove_leftovers(path: Path) -> list[Path]:
    """Remove the temporary files ``.<name>.<pid>.*.tmp`` that a writer of ``path`` killed
    mid-write (e.g. by SIGKILL) left behind: those of processes that are gone, and of older
    versions without a process id. Runs after every write; returns what it removed."""
    removed = []
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        pid = tmp.name[len(path.name) + 2:].split(".", 1)[0]
        if pid.isdigit() and _alive(int(pid)):  # still writing (this process included)
            continue
        with contextlib.suppress(FileNotFoundError):  # another process removed it first
            tmp.unlink()
            removed.append(tmp)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def read_npz(path, expected_format: str | tuple[str, ...]) -> tuple[dict[str, np.ndarray], dict]:
    """Arrays and JSON settings of a file written by :func:`write_npz`; clear errors otherwise."""
    path = as_path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    try:
        data = np.load(path, allow_pickle=False)
        if not isinstance(data, np.lib.npyio.NpzFile):  # a .npy file
            raise ValueError("it holds a single array, not an .npz archive")
        with data:
            arrays = {k: data[k] for k in data.files}
    # empty or truncated files (e.g. an interrupted copy) raise EOFError or BadZipFile
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as err:
        raise ValueError(f"{path} is not a pdunroll .npz file (empty, truncated or another "
                         f"format): {err}") from err
    if "settings" not in arrays:
        raise ValueError(f"{path} has no settings entry: not written by pdunroll")
    try:
        settings = json.loads(str(arrays.pop("settings")))
    except ValueError as err:
        settings = err
    if not isinstance(settings, dict):
        raise ValueError(f"{path} has a broken settings entry: not written by pdunroll")
    formats = (expected_format,) if isinstance(expected_format, str) else expected_format
    if settings.get("format") not in formats:
        raise ValueError(f"{path} holds a {settings.get('format')!r}, expected "
                         f"{' or '.join(map(repr, formats))}")
    if settings.get("version", 0) > VERSION:
        raise ValueError(f"{path} was written by a newer pdunroll (format version "
                         f"{settings['version']} > {VERSION})")
    return arrays, settings


def _put(arrays: dict, prefix: str, tree) -> None:
    for i, a in enumerate(flatten(tree)):
        arrays[f"{prefix}.{i}"] = to_numpy(a)


def _check_fits(path, arrays: dict, prefix: str, like, what: str) -> None:
    """Raise naming ``path`` unless the stored ``prefix.i`` arrays have the shapes of the
    leaves of ``like`` (``what`` names it in the message)."""
    stored = [tuple(arrays[f"{prefix}.{i}"].shape) for i in range(
        sum(1 for k in arrays if k.rsplit(".", 1)[0] == prefix))]
    wanted = [tuple(a.shape) for a in flatten(like)]
    if stored != wanted:
        raise ValueError(f"{path} holds operator parameters of shapes {stored}, but {what} has "
                         f"{wanted}: it was written for another model")


def _take(arrays: dict, prefix: str, like, xp, device):
    n = len(flatten(like))
    return unflatten(like, [from_numpy(arrays[f"{prefix}.{i}"], xp, device) for i in range(n)])


# ---------------------------------------------------------------- model descriptions


def model_settings(model: AnalysisModel, writer: Writer | None = None) -> dict:
    """JSON description of ``model``: ``{"operator": ..., "f": ..., "g": ...}``, each part's
    own description (:mod:`pdunroll.registry`) with references to the arrays it handed to
    ``writer``. A part that cannot be described raises a TypeError naming it."""
    writer = Writer() if writer is None else writer
    out = {}
    for part in ("operator", "f", "g"):
        try:
            out[part] = writer.part(getattr(model, part))
        except TypeError as err:
            raise TypeError(f"cannot save the model's {part}: {err}") from err
    return out


def model_from_settings(settings: dict, reader: Reader) -> AnalysisModel:
    """Rebuild an :class:`AnalysisModel` from :func:`model_settings`, arrays from ``reader``."""
    return AnalysisModel(*(reader.part(settings[part]) for part in ("operator", "f", "g")))


def _put_model(arrays: dict, model: AnalysisModel) -> dict:
    """Describe ``model``; its arrays go into ``arrays`` as NumPy copies, ``model.<ref>``."""
    writer = Writer()
    description = model_settings(model, writer)
    for key, a in writer.arrays.items():
        arrays[f"model.{key}"] = to_numpy(a)
    return description


def _legacy_model(settings: dict) -> dict:
    """A model description of format version 1 (three operator types, the parameters stored
    as ``params.<i>``, functions as their attributes) in today's form, arrays as ``a<i>``."""
    op = dict(settings["operator"])
    kind, n = op.pop("type"), op.pop("n_params")
    if n != 1 or kind not in ("DenseOperator", "Conv2dFilterBank", "Conv1dFilterBank"):
        raise ValueError(f"unknown operator {kind!r} with {n} parameter arrays in a format "
                         "version 1 file")
    key = "matrix" if kind == "DenseOperator" else "filters"
    return {"operator": {"type": kind, key: "a0", **op}, "f": settings["f"], "g": settings["g"]}


def saved_model_settings(settings: dict) -> dict:
    """The model description of a file's settings in today's form (version 1 converted): what
    :func:`model_settings` gives for the model the file holds."""
    if settings.get("version", 1) == 1:
        return _legacy_model(settings["model"])
    return settings["model"]


def _read_model(arrays: dict, settings: dict, xp, device) -> AnalysisModel:
    """The model of a file's ``settings["model"]`` (any format version), arrays to ``xp``."""
    xp = default_namespace(xp)
    if settings.get("version", 1) == 1:
        stored = {f"a{i}": arrays[f"params.{i}"]
                  for i in range(settings["model"]["operator"]["n_params"])}
    else:
        stored = {k.removeprefix("model."): a for k, a in arrays.items()
                  if k.startswith("model.")}
    reader = Reader(stored, lambda a: from_numpy(a, xp, device), xp, device)
    return model_from_settings(saved_model_settings(settings), reader)


# ---------------------------------------------------------------- model files


def write_model_file(path, model: AnalysisModel, settings: dict) -> Path:
    """Write ``model`` (its description and arrays) with the JSON ``settings`` (solver,
    metadata, ...) to an operator file, atomically."""
    arrays: dict = {}
    description = _put_model(arrays, model)
    document = {"format": OPERATOR_FORMAT, "version": VERSION, "model": description,
                **settings, "dtype": str(model.operator.dtype).split(".")[-1]}
    return write_npz(path, arrays, document)


def read_model_file(path, *, xp=None, device=None, checkpoints: bool = False
                    ) -> tuple[AnalysisModel, dict]:
    """The model of an operator file (any format version; arrays in namespace ``xp``, NumPy by
    default, on ``device``) and the file's settings dict. ``checkpoints=True`` also reads a
    training checkpoint: its model with the best parameters so far (by validation loss)."""
    formats = (OPERATOR_FORMAT, CHECKPOINT_FORMAT) if checkpoints else OPERATOR_FORMAT
    arrays, settings = read_npz(path, formats)
    try:
        model = _read_model(arrays, settings, xp, device)
        if settings["format"] == CHECKPOINT_FORMAT:
            op = model.operator
            model = model.with_params(_take(arrays, "best", op.params, op.xp, op.device))
    except (KeyError, AttributeError) as err:
        raise ValueError(f"{path} has a damaged model description: {err!r}") from err
    return model, settings


def save_operator(path, model: AnalysisModel, *, iterations: int, omega: float,
                  weights=None, metadata: dict | None = None) -> Path:
    """Save ``model`` with the solver settings (L, ω, ergodic weights) to an ``.npz`` file.
    :func:`pdunroll.load_model` reads it back as a :class:`~pdunroll.LearnedModel` that
    reconstructs with these settings (``LearnedModel.save`` writes the same format with the
    whole step rule, the gradient method and the data fingerprint).

    ``metadata`` (JSON-serialisable) is stored alongside, e.g. ``{"bitrate": 4}``.
    """
    if not isinstance(model, AnalysisModel):
        raise TypeError(f"model must be a pdunroll AnalysisModel (operator, f, g), got "
                        f"{type(model).__name__}")
    iterations = check_count("iterations", iterations)
    omega = check_positive("omega", omega)
    ergodic_weights(weights, iterations)  # a clear error for unknown weights
    if metadata is not None and not isinstance(metadata, dict):
        raise TypeError(f"metadata must be a dict of JSON values, got {type(metadata).__name__}")
    return write_model_file(path, model, {
        "solver": {"iterations": int(iterations), "omega": float(omega), "weights": weights},
        "metadata": metadata or {}})


def load_operator(path, *, xp=None, device=None) -> tuple[AnalysisModel, dict]:
    """Load an operator file (of :func:`save_operator` or ``LearnedModel.save``, any format
    version): the model (arrays in namespace ``xp``, NumPy by default, on ``device``) and the
    settings dict with ``"solver"`` and ``"metadata"``. :func:`pdunroll.load_model` gives the
    whole learned model instead."""
    return read_model_file(path, xp=xp, device=device)


# ---------------------------------------------------------------- training checkpoints


@dataclass(frozen=True)
class CheckpointFile:
    """Where :func:`pdunroll.train` keeps its checkpoint, and how often it writes it.

    ``path``: the ``.npz`` file, written at every epoch's end, on Ctrl-C (or any other
    exception after the first step) and within an epoch every ``every_steps`` steps and
    every ``every_minutes`` minutes since the last write (default every 5 minutes; ``None``
    turns either off); resuming from any of them is bit for bit. ``data``: a fingerprint of
    the training data (JSON values, e.g. the files' SHA-256 digests), stored in the checkpoint;
    resuming with another one is refused, naming what differs. ``run``: what started the run
    (JSON values, e.g. the command line's task and options), stored so that a resume can read
    it back (:func:`run_record`); not compared on resume.
    """

    path: str | Path
    every_steps: int | None = None
    every_minutes: float | None = 5.0
    data: dict | None = None
    run: dict | None = None

    def __post_init__(self):
        if not isinstance(self.path, str | os.PathLike):
            raise TypeError(f"checkpoint path must be a str or a path, got "
                            f"{type(self.path).__name__}")
        if self.every_steps is not None:
            check_count("every_steps", self.every_steps)
        if self.every_minutes is not None:
            check_positive("every_minutes", self.every_minutes)
        if self.data is not None and not isinstance(self.data, dict):
            raise TypeError(f"data must be a dict (a fingerprint of the training data), got "
                            f"{type(self.data).__name__}")
        if self.run is not None and not isinstance(self.run, dict):
            raise TypeError(f"run must be a dict of JSON values, got {type(self.run).__name__}")


def run_record(path) -> dict | None:
    """The ``run`` record of :class:`CheckpointFile` stored in the checkpoint at ``path``."""
    return read_npz(path, CHECKPOINT_FORMAT)[1]["config"].get("run")


def save_checkpoint(path, state: TrainState, *, model: AnalysisModel, config: dict,
                    optimizer: dict) -> Path:
    """Write ``state`` with the model, training configuration and optimizer settings."""
    if not isinstance(state, TrainState):
        raise TypeError(f"state must be a TrainState, got {type(state).__name__}")
    if not isinstance(model, AnalysisModel):
        raise TypeError(f"model must be a pdunroll AnalysisModel, got {type(model).__name__}")
    shapes = [[tuple(a.shape) for a in flatten(p)] for p in (state.params,
                                                              model.operator.params)]
    if shapes[0] != shapes[1]:
        raise ValueError(f"the state's parameters have shapes {shapes[0]} but the model's "
                         f"operator has {shapes[1]}: pass the model the state belongs to")
    arrays: dict = {}
    _put(arrays, "params", state.params)
    _put(arrays, "best", state.best_params)
    arrays["norm_vector"] = to_numpy(state.norm_vector)
    description = _put_model(arrays, model)
    for key, value in state.opt_state.items():
        if isinstance(value, list):
            for i, a in enumerate(value):
                arrays[f"opt.{key}.{i}"] = to_numpy(a)
    settings = {
        "format": CHECKPOINT_FORMAT, "version": VERSION, "model": description,
        "config": config, "optimizer": optimizer,
        "opt_scalars": {k: v for k, v in state.opt_state.items() if not isinstance(v, list)},
        "opt_lists": {k: len(v) for k, v in state.opt_state.items() if isinstance(v, list)},
        "norm": state.norm, "rng_state": state.rng_state, "best_val": state.best_val,
        "best_epoch": state.best_epoch, "bad_epochs": state.bad_epochs, "epoch": state.epoch,
        "batch": state.batch, "step": state.step, "epoch_loss_sum": state.epoch_loss_sum,
        "stopped": state.stopped, "history": state.history.to_dict(),
    }
    return write_npz(path, arrays, settings)


def load_checkpoint(path, like) -> tuple[TrainState, dict]:
    """Read a checkpoint; arrays go to the namespace and device of ``like`` (the parameters of
    the model being trained). Returns the state and the settings dict (``config``, ...)."""
    arrays, settings = read_npz(path, CHECKPOINT_FORMAT)
    if not flatten(like):
        raise TypeError(f"like must be the operator parameters (an array or a tuple of arrays) "
                        f"of the model being trained, got {like!r}")
    _check_fits(path, arrays, "params", like, "like (the model being trained)")
    first = flatten(like)[0]
    xp = xp_of(first)
    dev = _device(first)
    opt_state = dict(settings["opt_scalars"])
    for key, n in settings["opt_lists"].items():
        opt_state[key] = [from_numpy(arrays[f"opt.{key}.{i}"], xp, dev) for i in range(n)]
    state = TrainState(
        params=_take(arrays, "params", like, xp, dev),
        opt_state=opt_state,
        norm=settings["norm"],
        norm_vector=from_numpy(arrays["norm_vector"], xp, dev),
        rng_state=settings["rng_state"],
        best_params=_take(arrays, "best", like, xp, dev),
        best_val=settings["best_val"], best_epoch=settings["best_epoch"],
        bad_epochs=settings["bad_epochs"], epoch=settings["epoch"], batch=settings["batch"],
        step=settings["step"], epoch_loss_sum=settings["epoch_loss_sum"],
        stopped=settings["stopped"], history=History(**settings["history"]),
    )
    return state, settings
