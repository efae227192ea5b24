"""The settings of a training run as one object: :class:`TrainConfig` holds what
:func:`pdunroll.train` and :class:`~pdunroll.OperatorLearner` are told besides the data, the
files and the hooks, and reads itself back from a checkpoint, so a resumed run continues with
the settings it was started with."""

from __future__ import annotations

from dataclasses import dataclass, fields

from ..model import DEFAULT_OMEGA
from ..unroll.methods import GradientMethod, method_from_settings
from .optimizers import LearningRate

__all__ = ["TrainConfig"]


@dataclass(frozen=True)
class TrainConfig:
    """Unrolling (``iterations``, ``method``, ``weights``, ``omega``), optimizer and learning
    rate, ``epochs``, ``batch_size``, early stopping (``patience``), ``seed`` and the power
    iterations per update of ‖K‖ (``norm_iterations``): the keywords of :func:`pdunroll.train`
    of the same names and defaults, checked there. ``train(model, x̃, x†, **config.options())``
    runs with them."""

    iterations: int = 10
    method: GradientMethod | str = "full"
    weights: str | None = None
    omega: float = DEFAULT_OMEGA
    optimizer: object = "adam"
    lr: float | LearningRate = 1e-3
    epochs: int = 10
    batch_size: int = 32
    patience: int | None = None
    seed: int = 0
    norm_iterations: int = 30

    def options(self) -> dict:
        """The keywords of :func:`pdunroll.train`."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_checkpoint(cls, path) -> TrainConfig:
        """The configuration a checkpoint was written with (its ``config`` and optimizer
        records): ``train(..., checkpoint=path, resume=True, **TrainConfig.from_checkpoint(
        path).options())`` continues the run without restating its settings."""
        from .checkpoint import CHECKPOINT_FORMAT, read_npz

        _, settings = read_npz(path, CHECKPOINT_FORMAT)
        c = settings["config"]
        return cls(iterations=c["iterations"], method=method_from_settings(c["method"]),
                   weights=c["weights"], omega=c["omega"], optimizer=settings["optimizer"],
                   lr=LearningRate(**c["lr"]), epochs=c["epochs"], batch_size=c["batch_size"],
                   patience=c["patience"], seed=c["seed"], norm_iterations=c["norm_iterations"])
