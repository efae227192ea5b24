"""Evaluation: reconstructions x̂ = A_L(K, x̃) of many signals in chunks, the unrolled loss
J = mean ½‖x̂ − x†‖² (the training loop's validation loss), the SNR of a validation loss, and
the results table of a run (MSE and SNR, or PSNR and SSIM for images, per model)."""

from __future__ import annotations

import math

from .._array import Array, array_device, check_count
from ..model import AnalysisModel, StepRule, StepSizes, resolve_steps, step_rule
from ..unroll.forward import ergodic_weights, solve

__all__ = ["image_table", "reconstruct", "results_table", "unrolled_loss",
           "unrolled_loss_unchecked", "validation_snr"]

_EVAL_CHUNK = 2048  # signals per Chambolle-Pock call when evaluating


def reconstruct(model: AnalysisModel, x_tilde: Array, *, iterations: int,
                omega: float | None = None, steps: StepRule | StepSizes | None = None,
                weights=None, op_norm: float | None = None, client=None) -> Array:
    """x̂ = A_L(K, x̃) for many signals, in chunks (Chambolle-Pock with the step sizes of
    ``steps``, a :class:`~pdunroll.StepRule` or fixed :class:`~pdunroll.StepSizes`; ``omega=w``
    is shorthand for ``steps=StepRule(omega=w)``; ``op_norm`` gives a rule the norm ‖K‖ instead
    of computing it). ``client``: a Dask distributed ``Client`` runs the chunks on its workers
    (:mod:`pdunroll.learning.distributed`)."""
    model.check_signals(x_tilde=x_tilde)
    iterations = check_count("iterations", iterations)
    steps = _sizes(model, omega, steps, op_norm)
    return _reconstruct(model, x_tilde, iterations, steps, ergodic_weights(weights, iterations),
                        client)


def _reconstruct(model, x_tilde, iterations, steps, alphas, client=None) -> Array:
    if client is not None:
        from .distributed import reconstruct_parts

        return reconstruct_parts(client, model, x_tilde, iterations, steps, alphas,
                                 cap=_EVAL_CHUNK)
    n, xp = x_tilde.shape[0], model.operator.xp

    def chunk(i, j):  # F and G with per-signal data (measurements) follow the signals
        if n <= _EVAL_CHUNK or not (model.f.per_signal or model.g.per_signal):
            return model
        idx = xp.arange(i, j, device=array_device(x_tilde))
        return AnalysisModel(model.operator, model.f.take(idx), model.g.take(idx))

    parts = [solve(chunk(i, min(i + _EVAL_CHUNK, n)), x_tilde[i:min(i + _EVAL_CHUNK, n), ...],
                   steps, iterations, alphas=alphas).x
             for i in range(0, n, _EVAL_CHUNK)]
    return parts[0] if len(parts) == 1 else xp.concat(parts)


def _sizes(model, omega, steps, op_norm) -> StepSizes:
    """The step sizes of a public call: a rule's for the model's operator (``op_norm`` as its
    ‖K‖ where given, checked against a lower bound) or fixed ones as given."""
    rule = step_rule(omega, steps)
    if isinstance(rule, StepSizes):
        if op_norm is not None:
            raise ValueError("give op_norm with a step rule, not with fixed steps (StepSizes "
                             "already hold their op_norm)")
        return resolve_steps(model.operator, None, rule)
    return rule.sizes(model.operator, op_norm)


def unrolled_loss(model: AnalysisModel, x_tilde: Array, x_true: Array, *, iterations: int,
                  omega: float | None = None, steps: StepRule | StepSizes | None = None,
                  weights=None, op_norm: float | None = None, client=None) -> float:
    """J = mean over signals of ½‖A_L(K, x̃) − x†‖² (step sizes as in :func:`reconstruct`;
    ``client``: on Dask workers, in chunks)."""
    model.check_signals(x_tilde=x_tilde, x_true=x_true)
    iterations = check_count("iterations", iterations)
    return unrolled_loss_unchecked(model, x_tilde, x_true, iterations=iterations,
                                   alphas=ergodic_weights(weights, iterations),
                                   steps=_sizes(model, omega, steps, op_norm), client=client)


def unrolled_loss_unchecked(model, x_tilde, x_true, *, iterations, alphas, steps,
                            client=None) -> float:
    """:func:`unrolled_loss` on checked inputs with known step sizes (validation passes)."""
    if client is not None:
        from .distributed import loss_sum_parts

        return 0.5 * loss_sum_parts(client, model, x_tilde, x_true, iterations, steps, alphas,
                                    cap=_EVAL_CHUNK) / x_tilde.shape[0]
    d = _reconstruct(model, x_tilde, iterations, steps, alphas) - x_true
    return 0.5 * float(model.operator.xp.sum(d * d)) / x_tilde.shape[0]


def validation_snr(loss: float | None, n_val: int | None, val_energy: float | None):
    """SNR in dB over the validation set from its loss J = Σ ½‖x̂ − x†‖² / N (as
    :func:`pdunroll.snr`: 10 log₁₀(‖x†‖² / ‖x̂ − x†‖²))."""
    if loss is None or not n_val or not val_energy:
        return None
    err = 2.0 * loss * n_val
    return math.inf if err == 0 else 10 * math.log10(val_energy / err)


def results_table(test: tuple, rows: list, *, iterations: int, steps: StepRule, weights=None,
                  images: bool = False, client=None, start_name: str | None = None
                  ) -> list[dict]:
    """One row per model of ``rows`` ((name, model) pairs) after the degraded input's own row
    (called ``start_name``, default "noisy input" for images, else "quantized input"): the
    test MSE and the SNR in dB (for images in [0, 1] the PSNR 10 log₁₀(1 / MSE)) of the
    reconstructions of ``test`` = (x̃, x†) with L = ``iterations`` steps of the rule
    ``steps`` (each model's σ, τ from its own ‖K‖)."""
    from ..data.metrics import mse, snr

    x_tilde, x_true = test

    def quality(x_hat):
        err = mse(x_hat, x_true)
        return err, (10 * math.log10(1 / err) if images else snr(x_hat, x_true))

    first = start_name or ("noisy input" if images else "quantized input")
    out = [dict(zip(("method", "mse", "snr_db"), (first, *quality(x_tilde)), strict=True))]
    for name, model in rows:
        x_hat = reconstruct(model, x_tilde, iterations=iterations, steps=steps, weights=weights,
                            client=client)
        out.append(dict(zip(("method", "mse", "snr_db"), (name, *quality(x_hat)), strict=True)))
    return out


def image_table(images: list, rows: list, *, iterations: int, steps: StepRule, weights=None,
                move=None, start_name: str = "noisy input", op_norm=None) -> list[dict]:
    """PSNR and SSIM (``skimage.metrics``, data range 1) of whole images: one entry per image
    and a last one with the means, each ``{"image", method: {"psnr_db", "ssim"}}`` for the
    degraded input x̃ (called ``start_name``) and every model. ``images``: (name, x̃, clean)
    NumPy arrays, or (name, x̃, clean, problem) for models that depend on the image (an
    inverse problem's forward operator and measurements); ``rows``: (name, factory) with
    ``factory(x)`` (``factory(x, problem)``) the model for x, x̃ as a batch of one on the
    computing backend; ``move``: a function moving NumPy arrays to that backend (default:
    NumPy); ``op_norm(model)``: ‖K‖ (or a bound) for the step sizes (default: the operator's
    own ``norm()``)."""
    import numpy as np
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    from .checkpoint import to_numpy

    def quality(x_hat, clean):
        return {"psnr_db": float(peak_signal_noise_ratio(clean, x_hat, data_range=1.0)),
                "ssim": float(structural_similarity(clean, x_hat, data_range=1.0))}

    move = move or (lambda a: a)
    table = []
    for name, noisy, clean, *problem in images:
        entry = {"image": name, start_name: quality(noisy, clean)}
        x = move(noisy[None])
        for method, factory in rows:
            model = factory(x, *problem)
            x_hat = reconstruct(model, x, iterations=iterations, steps=steps, weights=weights,
                                op_norm=None if op_norm is None else op_norm(model))
            entry[method] = quality(to_numpy(x_hat)[0].astype(np.float64), clean)
        table.append(entry)
    methods = [k for k in table[0] if k != "image"]
    table.append({"image": "mean", **{m: {q: float(np.mean([e[m][q] for e in table]))
                                          for q in ("psnr_db", "ssim")} for m in methods}})
    return table
