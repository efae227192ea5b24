"""What a training run is made of between two steps: its records and its resumable state."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from .._array import Array

__all__ = ["History", "TrainState"]


@dataclass
class History:
    """Per-step and per-epoch records of a training run (all plain Python numbers)."""

    initial_val_loss: float | None = None  # validation loss of the starting operator
    step_loss: list = field(default_factory=list)  # mean ½‖x̂ − x†‖² per signal, minibatch
    step_grad_norm: list = field(default_factory=list)  # ‖∇_K‖ of the minibatch mean loss
    step_lr: list = field(default_factory=list)
    step_op_norm: list = field(default_factory=list)  # ‖K‖ after the update
    epoch_train_loss: list = field(default_factory=list)  # mean of the epoch's step losses
    epoch_val_loss: list = field(default_factory=list)  # validation loss (None: no validation)
    epoch_seconds: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class TrainState:
    """Everything needed to continue a run exactly where it stopped."""

    params: object  # operator parameters (array or tuple of arrays)
    opt_state: dict  # {"step": int, name: [arrays]}
    norm: float  # ‖K‖ estimate for the current params
    norm_vector: Array  # its right singular vector (warm start of the next estimate)
    rng_state: dict  # numpy bit-generator state at the start of the current epoch
    best_params: object
    best_val: float | None = None
    best_epoch: int = 0  # 0: the starting operator; k: after epoch k
    bad_epochs: int = 0
    epoch: int = 0  # epochs finished
    batch: int = 0  # minibatches finished in the current epoch
    step: int = 0  # updates done in all
    epoch_loss_sum: float = 0.0
    stopped: bool = False  # early stopping fired
    history: History = field(default_factory=History)
