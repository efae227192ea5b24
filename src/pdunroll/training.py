"""The training loop: learn K by minibatch first-order descent on the unrolled loss

    J(K) = (1/B) Σ_{i ∈ batch} ½ ‖A_L(K, x̃_i) − x†_i‖²,

with ∇_K J from :func:`pdunroll.gradient` in any mode (full, truncated, asymptotic, ergodic
weights, relaxed primal Jacobian). After every update the step sizes σ = ω·0.99/‖K‖,
τ = 0.99/(ω‖K‖) follow the new K: ‖K‖ is re-estimated by power iteration warm-started from the
previous singular vector. Each epoch ends with the validation loss (L Chambolle-Pock steps on the
validation set), early stopping on it, and a checkpoint; Ctrl-C (or any other exception, e.g.
from the callback) writes a checkpoint of the last finished step before the exception
propagates, and ``resume=True`` continues bit for bit (fixed seed).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ._array import Array, check_count
from .checkpoint import History, TrainState, load_checkpoint, model_settings, save_checkpoint
from .gradients import MODES, gradient
from .model import AnalysisModel
from .operators import estimate_norm
from .optimizers import LearningRate, grad_norm, make_optimizer, scale
from .solver import chambolle_pock

__all__ = ["TrainResult", "reconstruct", "train", "unrolled_loss"]

_EVAL_CHUNK = 2048  # signals per Chambolle-Pock call when evaluating


@dataclass(frozen=True)
class TrainResult:
    """``model``: the best model by validation loss (the last one without validation data);
    ``final_model``: the model after the last update; ``history``: losses, gradient norms,
    learning rates, ‖K‖ per step and losses per epoch; ``best_epoch``: 0 for the starting
    operator, k after epoch k; ``stopped_early``: early stopping fired."""

    model: AnalysisModel
    final_model: AnalysisModel
    history: History
    best_epoch: int
    best_val_loss: float | None
    stopped_early: bool
    epochs: int
    steps: int


def reconstruct(model: AnalysisModel, x_tilde: Array, *, iterations: int, omega: float = 10.0,
                weights=None, op_norm: float | None = None) -> Array:
    """x̂ = A_L(K, x̃) for many signals, in chunks (Chambolle-Pock with σ, τ from ‖K‖)."""
    xp = model.operator.xp
    if op_norm is None:
        op_norm = estimate_norm(model.operator).value
    n = x_tilde.shape[0]
    parts = [chambolle_pock(model, x_tilde[i:min(i + _EVAL_CHUNK, n), ...],
                            iterations=iterations, omega=omega, weights=weights,
                            op_norm=op_norm).x
             for i in range(0, n, _EVAL_CHUNK)]
    return parts[0] if len(parts) == 1 else xp.concat(parts)


def unrolled_loss(model: AnalysisModel, x_tilde: Array, x_true: Array, *, iterations: int,
                  omega: float = 10.0, weights=None, op_norm: float | None = None) -> float:
    """J = mean over signals of ½‖A_L(K, x̃) − x†‖²."""
    model.check_signals(x_tilde=x_tilde, x_true=x_true)
    xp = model.operator.xp
    d = reconstruct(model, x_tilde, iterations=iterations, omega=omega, weights=weights,
                    op_norm=op_norm) - x_true
    return 0.5 * float(xp.sum(d * d)) / x_tilde.shape[0]


def _config(**kw) -> dict:
    """The run configuration as plain JSON values (tuples become lists)."""
    return json.loads(json.dumps(kw))


def train(
    model: AnalysisModel,
    x_tilde: Array,
    x_true: Array,
    *,
    validation: tuple[Array, Array] | None = None,
    iterations: int = 10,
    mode: str = "full",
    b: int | None = None,
    weights=None,
    relax_primal: bool = False,
    omega: float = 10.0,
    gradient_options: dict | None = None,
    optimizer="adam",
    lr: float | LearningRate = 1e-3,
    epochs: int = 10,
    batch_size: int = 32,
    patience: int | None = None,
    seed: int = 0,
    norm_iterations: int = 30,
    checkpoint: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
    callback: Callable[[dict], object] | None = None,
) -> TrainResult:
    """Learn the operator parameters of ``model`` from pairs (x̃_i, x†_i).

    Parameters
    ----------
    model : AnalysisModel
        Starting model (e.g. K = DCT); its F and G stay fixed.
    x_tilde, x_true : arrays (N, *in_shape)
        Degraded and clean training signals (any array-API backend, same device as K).
    validation : (x_tilde, x_true), optional
        Held-out pairs: validation loss per epoch, best operator kept, early stopping.
    iterations, mode, b, weights, relax_primal, omega
        Unrolling and gradient settings, passed to :func:`pdunroll.gradient`; validation uses
        the same L and weights.
    gradient_options : dict, optional
        Further keywords of :func:`pdunroll.gradient`, e.g. ``{"checkpoints": 30}`` or
        ``{"solver": "neumann", "strict": False}`` for mode="implicit".
    optimizer : "adam", "sgd", an :class:`Optimizer` or a settings dict
    lr : float or LearningRate
        A float is a constant learning rate; a :class:`LearningRate` gives a schedule over all
        ``epochs × batches`` steps.
    epochs, batch_size : int
        Each epoch visits every training pair once in a fresh random order (the last minibatch
        may be smaller).
    patience : int, optional
        Stop after this many epochs without a new best validation loss.
    seed : int
        Seeds the shuffling (NumPy ``Generator``): same seed, same run.
    norm_iterations : int
        Power iterations per update for ‖K‖, warm-started from the previous singular vector
        (the start is estimated to convergence).
    checkpoint : path, optional
        ``.npz`` file written after every epoch and on Ctrl-C (or any other exception).
    resume : bool
        Continue from ``checkpoint`` (which must exist and match this configuration).
    progress : bool
        Show a tqdm progress bar.
    callback : callable, optional
        ``callback(info)`` after every update, ``info`` a dict with step, epoch, batch, loss,
        grad_norm, lr.
    """
    model.check_signals(x_tilde=x_tilde, x_true=x_true)
    if validation is not None:
        if not isinstance(validation, tuple | list) or len(validation) != 2:
            raise TypeError("validation must be a pair (x_tilde, x_true)")
        model.check_signals(validation_x_tilde=validation[0], validation_x_true=validation[1])
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    iterations = check_count("iterations", iterations)
    epochs = check_count("epochs", epochs)
    norm_iterations = check_count("norm_iterations", norm_iterations)
    batch_size = check_count("batch_size", batch_size)
    if patience is not None:
        patience = check_count("patience", patience)
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    schedule = lr if isinstance(lr, LearningRate) else LearningRate(float(lr))
    opt = make_optimizer(optimizer)
    if resume and checkpoint is None:
        raise ValueError("resume=True needs checkpoint=path")

    xp = model.operator.xp
    n_train = x_tilde.shape[0]
    batch_size = min(batch_size, n_train)
    per_epoch = math.ceil(n_train / batch_size)
    total = epochs * per_epoch
    config = _config(iterations=iterations, mode=mode, b=b, weights=weights,
                     relax_primal=relax_primal, omega=omega, lr=schedule.settings(),
                     epochs=epochs, batch_size=batch_size, patience=patience, seed=int(seed),
                     norm_iterations=norm_iterations,
                     dtype=str(model.operator.dtype).split(".")[-1], n_train=n_train,
                     n_val=None if validation is None else validation[0].shape[0],
                     gradient_options=dict(gradient_options or {}))
    grad_kw = dict(iterations=iterations, mode=mode, b=b, weights=weights,
                   relax_primal=relax_primal, omega=omega, **(gradient_options or {}))

    def val_loss(m, norm):
        if validation is None:
            return None
        return unrolled_loss(m, *validation, iterations=iterations, omega=omega,
                             weights=weights, op_norm=norm)

    # a model the checkpoint cannot describe fails here, not at the end of the first epoch
    described = None if checkpoint is None else _config(**model_settings(model))
    if resume:
        state, saved = load_checkpoint(checkpoint, model.operator.params)
        _check_same(saved, config, opt.settings(), described)
    else:
        est = estimate_norm(model.operator)
        params = model.operator.params
        first_val = val_loss(model, est.value)
        state = TrainState(params=params, opt_state=opt.init(params), norm=est.value,
                           norm_vector=est.vector,
                           rng_state=np.random.Generator(np.random.PCG64(seed))
                           .bit_generator.state,
                           best_params=params, best_val=first_val,
                           history=History(initial_val_loss=first_val))
    current = model.with_params(state.params)

    def save():
        if checkpoint is not None:
            save_checkpoint(checkpoint, state, model=current, config=config,
                            optimizer=opt.settings())

    from tqdm.auto import tqdm

    bar = tqdm(total=total, initial=state.step, disable=not progress, unit="step",
               desc="training", dynamic_ncols=True)
    rng = np.random.Generator(np.random.PCG64())
    try:
        while state.epoch < epochs and not state.stopped:
            rng.bit_generator.state = state.rng_state
            order = rng.permutation(n_train)
            tic = time.perf_counter()
            for j in range(state.batch, per_epoch):
                idx = xp.asarray(order[j * batch_size:(j + 1) * batch_size],
                                 device=current.operator.device)
                xb, tb = xp.take(x_tilde, idx, axis=0), xp.take(x_true, idx, axis=0)
                res = gradient(current, xb, tb, op_norm=state.norm, **grad_kw)
                grad = scale(res.operator, 1.0 / xb.shape[0])
                rate = schedule(state.step, total)
                params, opt_state = opt.update(state.params, grad, state.opt_state, rate)
                new = current.with_params(params)
                est = estimate_norm(new.operator, v0=state.norm_vector,
                                    iterations=norm_iterations)
                loss = res.loss / xb.shape[0]
                gnorm = grad_norm(grad)
                if not math.isfinite(loss) or not math.isfinite(est.value):
                    raise FloatingPointError(
                        f"training diverged at step {state.step} (loss {loss}, ‖K‖ {est.value}): "
                        "lower the learning rate")
                # commit the step (state changes only here, so Ctrl-C leaves it consistent)
                h = state.history
                h.step_loss.append(loss)
                h.step_grad_norm.append(gnorm)
                h.step_lr.append(rate)
                h.step_op_norm.append(est.value)
                state.params, state.opt_state, current = params, opt_state, new
                state.norm, state.norm_vector = est.value, est.vector
                state.epoch_loss_sum += loss
                state.batch, state.step = j + 1, state.step + 1
                bar.update(1)
                if state.step % 10 == 0 or j + 1 == per_epoch:
                    bar.set_postfix(loss=f"{loss:.3e}", epoch=state.epoch + 1,
                                    refresh=False)
                if callback is not None:
                    callback({"step": state.step, "epoch": state.epoch, "batch": j + 1,
                              "loss": loss, "grad_norm": gnorm, "lr": rate})
            # end of epoch: validation, best operator, early stopping, checkpoint
            v = val_loss(current, state.norm)
            h = state.history
            h.epoch_train_loss.append(state.epoch_loss_sum / per_epoch)
            h.epoch_val_loss.append(v)
            h.epoch_seconds.append(time.perf_counter() - tic)
            state.epoch, state.batch, state.epoch_loss_sum = state.epoch + 1, 0, 0.0
            state.rng_state = rng.bit_generator.state
            if v is not None:
                if v < state.best_val:
                    state.best_val, state.best_epoch = v, state.epoch
                    state.best_params, state.bad_epochs = state.params, 0
                else:
                    state.bad_epochs += 1
                    state.stopped = patience is not None and state.bad_epochs >= patience
                bar.set_postfix(loss=f"{h.epoch_train_loss[-1]:.3e}", val=f"{v:.3e}",
                                epoch=state.epoch, refresh=False)
            else:
                state.best_params, state.best_epoch = state.params, state.epoch
            save()
    except BaseException:  # Ctrl-C, an error in the callback, ...: keep the last whole step
        save()
        raise
    finally:
        bar.close()
    return TrainResult(model=current.with_params(state.best_params), final_model=current,
                       history=state.history, best_epoch=state.best_epoch,
                       best_val_loss=state.best_val, stopped_early=state.stopped,
                       epochs=state.epoch, steps=state.step)


def _check_same(saved: dict, config: dict, optimizer: dict, model: dict) -> None:
    """Resuming with other settings would not continue the same run: name what differs."""
    diff = [f"{k}: checkpoint {saved['config'].get(k)!r}, now {v!r}"
            for k, v in config.items() if saved["config"].get(k) != v]
    for part in ("operator", "f", "g"):  # e.g. another quantization radius η in G
        if saved["model"][part] != model[part]:
            diff.append(f"model {part}: checkpoint {saved['model'][part]!r}, now {model[part]!r}")
    if saved["optimizer"] != optimizer:
        diff.append(f"optimizer: checkpoint {saved['optimizer']!r}, now {optimizer!r}")
    if diff:
        raise ValueError("cannot resume: the checkpoint was written with other settings (" +
                         "; ".join(diff) + ")")
