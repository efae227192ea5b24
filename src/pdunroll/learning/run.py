"""One training run of a task in its output folder (what ``pdunroll train`` does between
parsing and printing): the task's data sets, the start (or ``--init``), the backend, the
training with a checkpoint, and the records: ``operator.npz`` (the
:class:`~pdunroll.LearnedModel`, read back by :func:`pdunroll.load_model`), ``curves.png`` and
``results.json`` with the test table, the data, the settings, the versions and what each epoch
did. A run in which no epoch improved on the start says so and does not call the start
"learned"."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

from .. import tree
from ..tasks import denoise, inverse, speech
from ..tasks.base import NOT_IMPROVED, learned_name
from .config import TrainConfig
from .placement import Placement
from .runfolder import say

__all__ = ["IMAGE_TASKS", "TASK_MODULES", "RunReport", "init_params", "run_task", "versions"]

TASK_MODULES = {"speech": speech, "denoise": denoise, "deblur": inverse, "inpaint": inverse}
IMAGE_TASKS = ("denoise", "deblur", "inpaint")


@dataclass(frozen=True)
class RunReport:
    """What a finished run prints: the test table rows, its title, whether the task is images
    (PSNR) and the files written."""

    rows: list
    title: str
    images: bool
    files: tuple
    wall: float


def versions() -> dict:
    import platform
    from importlib.metadata import PackageNotFoundError, version

    import numpy as np

    try:
        ours = version("pdunroll")
    except PackageNotFoundError:
        ours = "unknown (not installed)"
    return {"pdunroll": ours, "python": platform.python_version(),
            "backend": {"name": "numpy", "version": np.__version__}}


def init_params(path: Path | None, shape: tuple, given: str):
    """The parameters of the operator file ``path`` (``--init``) and its record (path and
    SHA-256 digest), checked against the parameter ``shape`` the options give (named by
    ``given``); None without a path. Called before any data are read."""
    from ..data.fingerprint import file_digests
    from .checkpoint import load_operator

    if path is None:
        return None
    if not path.is_file():
        raise ValueError(f"--init {path}: there is no such operator file")
    model, _ = load_operator(path)
    params = model.operator.params
    if isinstance(params, tuple) and params:  # [K; A] of a deblurring or inpainting run
        params = params[0]
    if tuple(params.shape) != tuple(shape):
        raise ValueError(f"--init {path}: its operator has parameters of shape "
                         f"{tuple(params.shape)}, but {given} give {tuple(shape)}")
    digest = next(iter(file_digests([path], path.parent).values()))
    return params, {"path": str(path.resolve()), "sha256": digest}


def run_task(task: str, opts, config: TrainConfig, placement: Placement, *, out: Path,
             resume: bool, init, checkpoint: dict, record: dict, stale: str | None,
             progress: bool, command: list, started: float, threads: int | None = 1,
             client=None, compile: bool = False) -> RunReport:
    """Train ``task`` (a key of :data:`TASK_MODULES`) with its resolved options ``opts`` and
    ``config`` on ``placement``, writing into ``out`` (a locked :class:`RunFolder`); ``init``:
    the result of :func:`init_params`; ``checkpoint``: ``every_steps`` and ``every_minutes``;
    ``record``: what the checkpoint keeps to resume without restating the settings;
    ``command``: the command line recorded; ``started``: ``time.perf_counter()`` at the start
    (for the wall time); ``threads``: BLAS threads of the training; ``compile``: the steps as a
    ``torch.compile`` program (:func:`~pdunroll.train`'s ``compile``). Raises KeyboardInterrupt
    (the checkpoint saved) when interrupted."""
    from . import training
    from .checkpoint import CheckpointFile

    say(f"output folder: {out}{' (resumed)' if resume else ''}")
    if stale:
        say(stale)
    data = TASK_MODULES[task].datasets(opts)
    say(f"data: {data.text}")
    start, meta = data.start, dict(data.meta)
    if init is not None:
        params, meta["init"] = init
        if isinstance(start.operator.params, tuple):  # [K; A]: only K is trained
            params = (params, *start.operator.params[1:])
        start = start.with_params(params)
    start, (tr, va, te) = placement.place(start, data.sets)
    baselines = [(name, placement.place(m)[0]) for name, m in data.baselines]
    if data.signals is not None:  # the test table's models hold the test measurements
        baselines = [(name, data.signals(m, 2)) for name, m in baselines]
        va = (*va, data.signals(start, 1))
    samples = math.prod(tr[0].shape[1:])
    say(f"losses below: the mean over signals of ½‖x̂ − x†‖² ({samples}/2 × the table's MSE "
        "per sample); start: the starting operator's validation loss")
    res = training.train(
        start, *tr, validation=va, **config.options(),
        checkpoint=CheckpointFile(out / "checkpoint.npz", data=data.fingerprint, run=record,
                                  **checkpoint),
        resume=resume, progress=progress, client=client, threads=threads, compile=compile)
    return _finish(task, config, res, baselines, va, te, meta, data, out, client, command,
                   started)


def _finish(task, config: TrainConfig, res, baselines, va, te, meta, data, out, client,
            command, started) -> RunReport:
    """Save the operator, the curves and ``results.json`` (test table, data, settings,
    versions, epochs, steps, best epoch, whether an epoch improved on the start)."""
    import time

    from .checkpoint import to_numpy, write_json
    from .evaluation import results_table, validation_snr
    from .learned import LearnedModel
    from .plotting import plot_filters, plot_learning_curves

    images = task in IMAGE_TASKS
    fingerprint = data.fingerprint
    h = res.history
    xp = res.model.operator.xp
    val_energy = float(xp.sum(va[1] * va[1]))
    epochs = [{"epoch": i + 1, "train_loss": h.epoch_train_loss[i],
               "val_loss": h.epoch_val_loss[i],
               "val_snr_db": validation_snr(h.epoch_val_loss[i], va[1].shape[0], val_energy),
               "seconds": h.epoch_seconds[i]} for i in range(len(h.epoch_train_loss))]
    method = config.method
    settings = {k: getattr(config, k) for k in ("iterations", "omega", "weights", "epochs",
                                                 "batch_size", "patience")}
    settings.update(method=method.settings(), optimizer=config.optimizer,
                    lr=config.lr.initial, schedule=config.lr.schedule,
                    relax_primal=method.relax_primal)
    improved = res.best_epoch > 0
    meta.update(best_epoch=res.best_epoch, best_val_loss=res.best_val_loss, settings=settings,
                fingerprint=fingerprint, versions=versions(), improved=improved)
    learned = LearnedModel.from_training(res, config, metadata=meta, data=fingerprint)
    if data.signals is not None:  # saved without the training measurements
        learned = replace(learned, model=data.signals(learned.model, None))
    op_path = learned.save(out / "operator.npz")
    png = plot_learning_curves(res.history, out / "curves.png",
                               title=f"{task}, L={config.iterations}, {method.name}")
    if images:  # the learned filter bank (the operator's one (count, k, k) parameter)
        banks = [p for p in tree.flatten(learned.model.operator.params) if p.ndim == 3]
        plot_filters(to_numpy(banks[0]), out / "filters.png",
                     title=f"{banks[0].shape[0]} learned filters ({task}, L={config.iterations})")
    if not improved:
        say(f"no epoch improved on the start's validation loss {h.initial_val_loss:.4e}: the "
            f"saved operator is the start (the table calls it {NOT_IMPROVED!r}); try a smaller "
            "--lr, a --warmup or more --epochs")
    model = res.model if data.signals is None else data.signals(res.model, 2)
    rows = results_table(te, [*baselines, (learned_name(meta), model)],
                         iterations=config.iterations, steps=learned.steps,
                         weights=config.weights, images=images, client=client,
                         start_name=data.start_name)
    wall = time.perf_counter() - started
    summary = {"wall_seconds": round(wall, 3), "steps": res.steps, "epochs_run": res.epochs,
               "best_epoch": res.best_epoch, "stopped_early": res.stopped_early,
               "start_val_loss": h.initial_val_loss}
    results = out / "results.json"
    write_json(results, {"test": rows, **meta, **summary, "epochs": epochs,
                         "command": ["pdunroll", *command]})
    unit = "patches" if images else "frames"
    epochs_word = "epoch" if res.epochs == 1 else "epochs"
    title = (f"test set ({te[0].shape[0]} {unit}), L = {config.iterations}, best epoch "
             f"{res.best_epoch} of {res.epochs} {epochs_word}"
             f"{'' if improved else ' (none improved on the start)'}:")
    return RunReport(rows, title, images, (op_path, png, results), wall)
