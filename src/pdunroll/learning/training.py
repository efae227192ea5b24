"""The training loop: learn K by minibatch first-order descent on the unrolled loss

    J(K) = (1/B) Σ_{i ∈ batch} ½ ‖A_L(K, x̃_i) − x†_i‖²,

with ∇_K J from :func:`pdunroll.gradient` with any gradient method (full, truncated,
asymptotic, implicit; ergodic weights; relaxed primal Jacobian). After every update the step
sizes of the :class:`~pdunroll.StepRule` follow the new K: ‖K‖ is re-estimated by power
iteration warm-started from the previous singular vector (fixed :class:`~pdunroll.StepSizes`
stay as given).

A step is the minibatch gradient (a replaceable :class:`MinibatchGradient`), the optimizer's
update and the new ‖K‖; an epoch ends with the validation loss (L Chambolle-Pock steps on the
validation set), the best operator so far, early stopping on it, a checkpoint and a summary line
on the ``pdunroll`` logger (INFO). Checkpoints are also written within an epoch every few minutes
or steps; Ctrl-C (or any other exception, e.g. from the callback) writes a checkpoint of the last
finished step before the exception propagates (a run that made no step writes none), and
``resume=True`` continues bit for bit (fixed seed) after checking the settings and the data
fingerprint.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from .. import tree
from .._array import Array, check_count, check_flag, check_positive, to_host, trusted_values
from ..data.fingerprint import fingerprint_difference
from ..model import AnalysisModel, StepRule, StepSizes, resolve_steps, step_rule
from ..operators.base import NormEstimate
from ..unroll.gradient import _checked_loss, gradient_unchecked, squared_loss
from ..unroll.methods import GradientMethod
from ..unroll.plan import Plan, make_plan
from .checkpoint import (
    CheckpointFile,
    check_writable,
    load_checkpoint,
    model_settings,
    save_checkpoint,
    saved_model_settings,
)
from .evaluation import reconstruct, unrolled_loss_unchecked, validation_snr
from .optimizers import LearningRate, Optimizer, make_optimizer
from .state import History, TrainState
from .threads import with_thread_limit

__all__ = ["LocalGradient", "MinibatchGradient", "TrainResult", "epoch_summary", "train"]

log = logging.getLogger(__name__)  # under "pdunroll": epoch summaries at INFO


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

    def __repr__(self) -> str:
        val = "none" if self.best_val_loss is None else f"{self.best_val_loss:.4g}"
        return (f"TrainResult(epochs={self.epochs}, steps={self.steps}, "
                f"best_epoch={self.best_epoch}, best_val_loss={val}, "
                f"stopped_early={self.stopped_early})")


def _config(**kw) -> dict:
    """The run configuration as plain JSON values (tuples become lists)."""
    return json.loads(json.dumps(kw))


class MinibatchGradient(Protocol):
    """The replaceable piece of a training step: the summed loss (a number, or a 0-d array
    that stays on the device until the step's one transfer) and the summed gradient w.r.t.
    the operator's parameters over the training pairs ``indices`` (NumPy integers into the
    training set), for ``model`` with step sizes ``steps``. :class:`LocalGradient` computes it
    in this process; a distributed one computes parts on workers and reduces them."""

    def __call__(self, model: AnalysisModel, indices: np.ndarray,
                 steps: StepSizes) -> tuple[float, object]: ...


@dataclass(frozen=True)
class LocalGradient:
    """:class:`MinibatchGradient` in this process: :func:`pdunroll.gradient` of the selected
    pairs (inputs were checked once, by :func:`train`)."""

    x_tilde: Array
    x_true: Array
    plan: Plan  # without step sizes: a call's steps complete it
    loss: Callable | None = None  # loss(x_hat, x_true) -> (value, gradient); None: squared
    kernel: Callable = gradient_unchecked  # or its compiled program (train's compile=)

    def __call__(self, model, indices, steps):
        xp = model.operator.xp
        idx = xp.asarray(indices, device=model.operator.device)
        xb, tb = xp.take(self.x_tilde, idx, axis=0), xp.take(self.x_true, idx, axis=0)
        # per-signal parameters of F and G (the measurements of an inverse problem) follow;
        # their values were checked by train
        with trusted_values():
            model = AnalysisModel(model.operator, model.f.take(idx), model.g.take(idx))
        ell = squared_loss(tb, on_device=True) if self.loss is None else \
            _checked_loss(lambda x_hat: self.loss(x_hat, tb))
        res = self.kernel(model, xb, ell, self.plan.with_steps(steps))
        return res.loss, res.operator


@dataclass(frozen=True)
class _Settings:
    """The fixed settings of a run besides its unrolling (the :class:`Plan`): step sizes,
    optimizer, schedule, data sizes, stopping."""

    steps: StepRule | StepSizes
    optimizer: Optimizer
    schedule: LearningRate
    epochs: int
    batch_size: int
    per_epoch: int
    patience: int | None
    norm_iterations: int

    @property
    def total(self) -> int:
        return self.epochs * self.per_epoch

    @property
    def rule(self) -> StepRule:
        """The rule whose ‖K‖ the run follows (the default rule's for fixed steps: recorded)."""
        return self.steps if isinstance(self.steps, StepRule) else StepRule()

    def sizes(self, op_norm) -> StepSizes:
        """The step sizes for the current ‖K‖: the rule's, or the fixed ones."""
        return self.steps if isinstance(self.steps, StepSizes) else self.steps.for_norm(op_norm)


#: one update that multiplies ‖K‖ by more than this is divergence (docs: "Reliability")
DIVERGENCE_FACTOR = 10.0


def _step(settings: _Settings, state: TrainState, model: AnalysisModel, indices, grad_fn):
    """One update: the minibatch gradient of the mean loss, the optimizer step and ‖K‖ of the
    new operator (warm-started). Returns the new model and the step's records; ``state`` is
    not changed (so an interruption leaves it consistent)."""
    norm = state.norm
    steps = settings.sizes(norm)
    loss_sum, grad_sum = grad_fn(model, indices, steps)
    n = len(indices)
    grad = tree.scale(1.0 / n, grad_sum)
    rate = settings.schedule(state.step, settings.total)
    params, opt_state = settings.optimizer.update(state.params, grad, state.opt_state, rate)
    with trusted_values():  # checked below, with the step's one host transfer
        new = model.with_params(params)
    new_norm, vector = settings.rule.refresh(new.operator, state.norm_vector,
                                             settings.norm_iterations)
    op = model.operator
    xp = op.xp
    loss, gnorm, new_norm = to_host(
        xp, xp.asarray(loss_sum, dtype=op.dtype, device=op.device) / n, _grad_norm(xp, grad),
        new_norm)
    if not all(map(math.isfinite, (loss, gnorm, new_norm))):
        if not all(bool(xp.all(xp.isfinite(p))) for p in tree.flatten(params)):
            raise FloatingPointError(f"training diverged at step {state.step}: the update at "
                                     f"rate {rate:g} made the parameters non-finite: lower the "
                                     "learning rate lr")
        raise FloatingPointError(f"training diverged at step {state.step} (loss {loss}, "
                                 f"‖K‖ {new_norm}, rate {rate:g}): lower the learning rate lr")
    if new_norm > DIVERGENCE_FACTOR * norm:
        raise FloatingPointError(
            f"training diverged at step {state.step}: the update at rate {rate:g} multiplied "
            f"‖K‖ by {new_norm / norm:.3g} (from {norm:.4g} to {new_norm:.4g}; more than "
            f"{DIVERGENCE_FACTOR:g} in one step counts as divergence): lower the learning rate lr")
    est = NormEstimate(new_norm, vector, settings.norm_iterations)
    return new, params, opt_state, est, loss, gnorm, rate


def _grad_norm(xp, grad) -> Array:
    """The Euclidean norm over all leaves of ``grad``, a 0-d array (no host round trip)."""
    leaves = tree.flatten(grad)
    total = xp.sum(leaves[0] * leaves[0])
    for g in leaves[1:]:
        total = total + xp.sum(g * g)
    return xp.sqrt(total)


def _commit(state: TrainState, record, batch: int) -> None:
    """Write one finished step into ``state`` and its history."""
    _, params, opt_state, est, loss, gnorm, rate = record
    h = state.history
    h.step_loss.append(loss)
    h.step_grad_norm.append(gnorm)
    h.step_lr.append(rate)
    h.step_op_norm.append(est.value)
    state.params, state.opt_state = params, opt_state
    state.norm, state.norm_vector = est.value, est.vector
    state.epoch_loss_sum += loss
    state.batch, state.step = batch, state.step + 1


def _end_epoch(settings: _Settings, state: TrainState, val: float | None, seconds: float,
               rng) -> None:
    """Epoch records, the best operator so far and early stopping."""
    h = state.history
    h.epoch_train_loss.append(state.epoch_loss_sum / settings.per_epoch)
    h.epoch_val_loss.append(val)
    h.epoch_seconds.append(seconds)
    state.epoch, state.batch, state.epoch_loss_sum = state.epoch + 1, 0, 0.0
    state.rng_state = rng.bit_generator.state
    if val is None:
        state.best_params, state.best_epoch = state.params, state.epoch
    elif val < state.best_val:
        state.best_val, state.best_epoch = val, state.epoch
        state.best_params, state.bad_epochs = state.params, 0
    else:
        state.bad_epochs += 1
        state.stopped = settings.patience is not None and state.bad_epochs >= settings.patience


@with_thread_limit
def train(
    model: AnalysisModel,
    x_tilde: Array,
    x_true: Array,
    *,
    validation: tuple[Array, Array] | None = None,
    iterations: int = 10,
    method: GradientMethod | str = "full",
    weights=None,
    omega: float | None = None,
    steps: StepRule | StepSizes | None = None,
    optimizer="adam",
    lr: float | LearningRate = 1e-3,
    epochs: int = 10,
    batch_size: int = 32,
    patience: int | None = None,
    seed: int = 0,
    norm_iterations: int = 30,
    checkpoint: str | Path | CheckpointFile | None = None,
    resume: bool = False,
    progress: bool = True,
    callback: Callable[[dict], object] | None = None,
    minibatch_gradient: Callable[..., MinibatchGradient] | None = None,
    client=None,
    threads: int | None = 1,
    loss: Callable[[Array, Array], tuple[float, Array]] | None = None,
    compile: bool | dict = False,
) -> TrainResult:
    """Learn the operator parameters of ``model`` from pairs (x̃_i, x†_i).

    Parameters
    ----------
    model : AnalysisModel
        Starting model (e.g. K = DCT); its F and G stay fixed.
    x_tilde, x_true : arrays (N, *in_shape)
        Degraded and clean training signals (any array-API backend, same device as K).
    validation : (x_tilde, x_true) or (x_tilde, x_true, model), optional
        Held-out pairs: validation loss per epoch, best operator kept, early stopping. A third
        entry gives the F and G of the held-out signals (with the operator being trained), as
        a model whose F or G holds per-signal data needs: e.g.
        ``pu.inverse_problem(K, A, validation_measurements)``.
    iterations, method, weights
        Unrolling and gradient method (:class:`~pdunroll.Full`, :class:`~pdunroll.Truncated`,
        ...) as in :func:`pdunroll.gradient`; validation uses the same L and weights.
    steps, omega
        A :class:`~pdunroll.StepRule` (default ``StepRule()``; its step sizes follow K after
        every update) or fixed :class:`~pdunroll.StepSizes`; ``omega=w`` is shorthand for
        ``steps=StepRule(omega=w)``.
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
    checkpoint : path or CheckpointFile, optional
        ``.npz`` file written after every epoch, within an epoch every 5 minutes (a
        :class:`CheckpointFile` sets the interval in steps or minutes and records a fingerprint
        of the training data), and on Ctrl-C (or any other exception after the first step). Its
        path is checked before the first step.
    resume : bool
        Continue from ``checkpoint`` (which must exist and match this configuration and the
        data fingerprint).
    progress : bool
        Show a tqdm progress bar.
    callback : callable, optional
        ``callback(info)`` after every update, ``info`` a dict with step, epoch, batch, loss,
        grad_norm, lr.
    minibatch_gradient : callable, optional
        ``minibatch_gradient(x_tilde, x_true, plan)`` returning a :class:`MinibatchGradient`,
        ``plan`` the :class:`~pdunroll.unroll.plan.Plan` of the run (method, L, weights; the
        step sizes come with each call); default :class:`LocalGradient` (this process).
    client : dask.distributed.Client, optional
        Data-parallel training on its workers (:class:`~pdunroll.learning.distributed.
        DaskGradient`: the pairs scattered once in shards, partial gradients added in shard
        order); the validation loss is computed there too. Same minibatches as without it.
    threads : int or None
        BLAS and OpenMP threads during the call (default 1, the fastest for the small
        minibatch products on shared cores; None: the libraries' own setting), see
        :mod:`pdunroll.learning.threads`.
    loss : callable, optional
        ``loss(x_hat, x_true) -> (value, gradient)``: the loss summed over a minibatch and its
        gradient w.r.t. x̂ (finite, of x̂'s shape, dtype and backend), replacing ½ Σ ‖x̂ − x†‖²
        in the training steps and the validation loss (both divided by the number of signals).
        Computed in this process (not with ``client`` or ``minibatch_gradient``).
    compile : bool or dict
        For torch tensors: ``True`` runs each training step (forward loop, loss and the
        hand-written reverse pass) as one ``torch.compile`` program (inductor; on CUDA also a
        CUDA graph), compiled at the first step of each minibatch shape (seconds) and reused
        after; a dict gives ``torch.compile``'s ``backend``, ``mode``, ``options``,
        ``fullgraph``. Where no compiler works, one warning and eager steps. The validation
        loss runs eagerly. Docs, "pdunroll inside torch and JAX": "The compiled path".

    Notes
    -----
    Parameters of F and G with one entry per signal (the measurements f of
    :func:`~pdunroll.inverse_problem`) are taken for each minibatch's signals
    (:meth:`~pdunroll.Function.take`); such a model holds the measurements of the training
    signals only, so its ``validation`` is a triple with the held-out signals' model.

    Epoch summaries go to the ``pdunroll`` logger at level INFO.
    """
    model.check_signals(x_tilde=x_tilde, x_true=x_true)
    val_fg = None  # F and G of the validation signals (per-signal data), else the model's
    if validation is not None:
        if not isinstance(validation, tuple | list) or len(validation) not in (2, 3):
            raise TypeError("validation must be a pair (x_tilde, x_true) or a triple (x_tilde, "
                            "x_true, model of the validation signals)")
        if len(validation) == 3:
            if not isinstance(validation[2], AnalysisModel):
                raise TypeError("the third entry of validation must be the AnalysisModel of the "
                                f"validation signals, got {type(validation[2]).__name__}")
            val_fg = (validation[2].f, validation[2].g)
            validation = tuple(validation[:2])
        elif model.f.per_signal or model.g.per_signal:
            raise ValueError("validation of a model whose F or G holds per-signal data (the "
                             "measurements of an inverse problem) needs the model of the "
                             "validation signals: validation=(x_tilde, x_true, model), e.g. "
                             "pu.inverse_problem(K, A, validation_measurements)")
        val_model = model if val_fg is None else AnalysisModel(model.operator, *val_fg)
        val_model.check_signals(validation_x_tilde=validation[0],
                                validation_x_true=validation[1])
    # no ∇x̃: a training step needs the operator's gradient only
    plan = make_plan(method, iterations, weights, x_wanted=False)
    method, iterations, alphas = plan.method, plan.iterations, plan.alphas
    epochs = check_count("epochs", epochs)
    norm_iterations = check_count("norm_iterations", norm_iterations)
    batch_size = check_count("batch_size", batch_size)
    if patience is not None:
        patience = check_count("patience", patience)
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    rule = step_rule(omega, steps)
    if isinstance(rule, StepSizes):
        resolve_steps(model.operator, None, rule)
    schedule = lr if isinstance(lr, LearningRate) else \
        LearningRate(check_positive("lr", lr))
    progress = check_flag("progress", progress)
    resume = check_flag("resume", resume)
    opt = make_optimizer(optimizer)
    if resume and checkpoint is None:
        raise ValueError("resume=True needs checkpoint=path")
    ck = checkpoint if checkpoint is None or isinstance(checkpoint, CheckpointFile) \
        else CheckpointFile(checkpoint)
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable, callback(info); got "
                        f"{type(callback).__name__}")

    if loss is not None:
        if not callable(loss):
            raise TypeError("loss must be callable, loss(x_hat, x_true) -> (value, gradient); "
                            f"got {type(loss).__name__}")
        if client is not None or minibatch_gradient is not None:
            raise ValueError("loss= is computed in this process: give it without client and "
                             "minibatch_gradient")
    kernel = _compiled_kernel(compile, model, x_tilde, client, minibatch_gradient)
    if client is not None:
        if model.f.per_signal or model.g.per_signal:
            raise ValueError("client= shards the training pairs over Dask workers, which do not "
                             "take a model's per-signal data (the measurements of an inverse "
                             "problem): train this model in one process (without client=, "
                             "--workers or --scheduler)")
        if minibatch_gradient is not None:
            raise ValueError("give client or minibatch_gradient, not both")
        from .distributed import dask_gradient

        minibatch_gradient = dask_gradient(client)
    n_train = x_tilde.shape[0]
    batch_size = min(batch_size, n_train)
    settings = _Settings(rule, opt, schedule, epochs, batch_size,
                         math.ceil(n_train / batch_size), patience, norm_iterations)
    grad_fn = (LocalGradient(x_tilde, x_true, plan, loss, kernel)
               if loss or kernel is not gradient_unchecked
               else (minibatch_gradient or LocalGradient)(x_tilde, x_true, plan))
    config = _config(iterations=iterations, method=method.settings(), weights=weights,
                     **_steps_config(rule), lr=schedule.settings(), epochs=epochs,
                     batch_size=batch_size,
                     patience=patience, seed=int(seed), norm_iterations=norm_iterations,
                     dtype=str(model.operator.dtype).split(".")[-1], n_train=n_train,
                     n_val=None if validation is None else validation[0].shape[0],
                     data=None if ck is None else ck.data)
    if ck is not None and ck.run is not None:
        config["run"] = _config(**ck.run)

    if loss is not None:
        config["loss"] = getattr(loss, "__qualname__", type(loss).__name__)

    def val_loss(m, norm):
        if validation is None:
            return None
        if val_fg is not None:
            m = AnalysisModel(m.operator, *val_fg)
        if loss is not None:
            x_hat = reconstruct(m, validation[0], iterations=iterations, weights=weights,
                                steps=settings.sizes(norm))
            return _checked_loss(lambda x: loss(x, validation[1]))(x_hat)[0] / x_hat.shape[0]
        return unrolled_loss_unchecked(m, *validation, iterations=iterations, alphas=alphas,
                                       steps=settings.sizes(norm), client=client)

    # a model the checkpoint cannot describe, or a path it cannot be written to, fails here,
    # not at the end of the first epoch
    described = None if ck is None else _config(**model_settings(model))
    if ck is not None:
        check_writable(ck.path)
    val_energy = None if validation is None else \
        float(model.operator.xp.sum(validation[1] * validation[1]))
    if resume:
        state, saved = load_checkpoint(ck.path, model.operator.params)
        _check_same(saved, config, opt.settings(), described)
    else:
        state = _start(model, opt, seed, val_loss, settings.rule)
    current = model.with_params(state.params)

    def save():
        nonlocal last_save
        if ck is not None:
            save_checkpoint(ck.path, state, model=current, config=config,
                            optimizer=opt.settings())
        last_save = (state.step, time.monotonic())

    def save_due() -> bool:
        steps, at = last_save
        return ck is not None and (
            (ck.every_steps is not None and state.step - steps >= ck.every_steps) or
            (ck.every_minutes is not None and time.monotonic() - at >= 60 * ck.every_minutes))

    last_save = (state.step, time.monotonic())
    first_step = state.step

    from tqdm.auto import tqdm

    bar = tqdm(total=settings.total, initial=state.step, disable=not progress, unit="step",
               desc="training", dynamic_ncols=True)
    rng = np.random.Generator(np.random.PCG64())
    try:
        while state.epoch < epochs and not state.stopped:
            rng.bit_generator.state = state.rng_state
            order = rng.permutation(n_train)
            tic = time.perf_counter()
            for j in range(state.batch, settings.per_epoch):
                record = _step(settings, state, current, order[j * batch_size:(j + 1) * batch_size],
                               grad_fn)
                current = record[0]
                _commit(state, record, j + 1)
                bar.update(1)
                if state.step % 10 == 0 or j + 1 == settings.per_epoch:
                    bar.set_postfix(loss=f"{record[4]:.3e}", epoch=state.epoch + 1,
                                    refresh=False)
                if j + 1 < settings.per_epoch and save_due():
                    save()
                if callback is not None:
                    callback({"step": state.step, "epoch": state.epoch, "batch": j + 1,
                              "loss": record[4], "grad_norm": record[5], "lr": record[6]})
            v = val_loss(current, state.norm)
            _end_epoch(settings, state, v, time.perf_counter() - tic, rng)
            if v is not None:
                bar.set_postfix(loss=f"{state.history.epoch_train_loss[-1]:.3e}", val=f"{v:.3e}",
                                epoch=state.epoch, refresh=False)
            save()
            log.info("%s", epoch_summary(state.history, state.epoch, epochs, n_val=config["n_val"],
                                         val_energy=val_energy))
    except BaseException:  # Ctrl-C, an error in the callback, ...: keep the last whole step
        if state.step > first_step or resume:  # a fresh run that made no step leaves nothing
            save()
        raise
    finally:
        bar.close()
    log.info("finished: %d steps, %d epoch%s; best epoch %d%s%s", state.step, state.epoch,
             "" if state.epoch == 1 else "s", state.best_epoch,
             "" if state.best_val is None else f" (validation loss {state.best_val:.4e})",
             "" if state.best_epoch or state.best_val is None
             else ": no epoch improved on the start, the result is the starting operator")
    return TrainResult(model=current.with_params(state.best_params), final_model=current,
                       history=state.history, best_epoch=state.best_epoch,
                       best_val_loss=state.best_val, stopped_early=state.stopped,
                       epochs=state.epoch, steps=state.step)


def _compiled_kernel(compile, model: AnalysisModel, x_tilde, client, minibatch_gradient
                     ) -> Callable:
    """The gradient of a training step: :func:`gradient_unchecked`, or with ``compile`` its
    ``torch.compile`` program (:func:`pdunroll.torch.compiled_gradient`)."""
    if compile is False:
        return gradient_unchecked
    if client is not None or minibatch_gradient is not None:
        raise ValueError("compile= compiles the steps computed in this process: give it "
                         "without client and minibatch_gradient")
    from array_api_compat import is_torch_namespace

    op = model.operator
    if not is_torch_namespace(op.xp):
        raise ValueError("compile= needs the model and data as torch tensors (torch.compile), "
                         f"got {type(x_tilde).__name__}")
    from ..torch import compiled_gradient

    return compiled_gradient(compile, op.device)  # checks compile


def _steps_config(steps: StepRule | StepSizes) -> dict:
    """The step sizes of a run as configuration entries: ``omega``, and under ``steps`` the
    rule's settings where they differ from ``StepRule(omega)`` in more than ω, or the fixed
    numbers (a run with ``omega=`` alone keeps the entries of earlier checkpoints)."""
    if isinstance(steps, StepRule):
        if steps == StepRule(omega=steps.omega):
            return {"omega": steps.omega}
        return {"omega": steps.omega, "steps": steps.settings()}
    return {"omega": None, "steps": {"sigma": steps.sigma, "tau": steps.tau,
                                     "theta": steps.theta, "op_norm": steps.op_norm}}


def epoch_summary(history: History, epoch: int, epochs: int, *, n_val=None,
                  val_energy=None) -> str:
    """One line on epoch ``epoch`` (1-based): training loss, validation loss and SNR, the
    starting operator's validation loss for reference, and the epoch's time."""
    i = epoch - 1
    text = f"epoch {epoch}/{epochs}: train loss {history.epoch_train_loss[i]:.4e}"
    val = history.epoch_val_loss[i]
    if val is not None:
        text += f", validation loss {val:.4e}"
        snr_db = validation_snr(val, n_val, val_energy)
        if snr_db is not None:
            text += f" (SNR {snr_db:.2f} dB)"
        if history.initial_val_loss is not None:
            text += f", start {history.initial_val_loss:.4e}"
    return text + f", {history.epoch_seconds[i]:.1f} s"


def _start(model: AnalysisModel, opt: Optimizer, seed: int, val_loss, rule: StepRule
           ) -> TrainState:
    """The state before the first step: ‖K‖ to convergence, the starting validation loss."""
    est = rule.initial_norm(model.operator)
    params = model.operator.params
    first_val = val_loss(model, est.value)
    return TrainState(params=params, opt_state=opt.init(params), norm=est.value,
                      norm_vector=est.vector,
                      rng_state=np.random.Generator(np.random.PCG64(seed)).bit_generator.state,
                      best_params=params, best_val=first_val,
                      history=History(initial_val_loss=first_val))


def _check_same(saved: dict, config: dict, optimizer: dict, model: dict) -> None:
    """Resuming with other settings would not continue the same run: name what differs."""
    diff = [f"{k}: checkpoint {saved['config'].get(k)!r}, now {v!r}"
            for k, v in config.items() if k not in ("data", "run") and saved["config"].get(k) != v]
    data = fingerprint_difference(saved["config"].get("data"), config.get("data"))
    if data:
        diff.append("training data: " + "; ".join(data))
    before = saved_model_settings(saved)
    for part in ("operator", "f", "g"):  # e.g. another quantization radius η in G
        if before[part] != model[part]:
            diff.append(f"model {part}: checkpoint {before[part]!r}, now {model[part]!r}")
    if saved["optimizer"] != optimizer:
        diff.append(f"optimizer: checkpoint {saved['optimizer']!r}, now {optimizer!r}")
    if diff:
        raise ValueError("cannot resume: the checkpoint was written with other settings (" +
                         "; ".join(diff) + ")")
