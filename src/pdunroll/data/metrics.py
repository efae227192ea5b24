"""Reconstruction quality over a set of signals, on any array-API backend.

    MSE = ‖x̂ − x†‖² / (number of samples)            SNR = 10 log₁₀(‖x†‖² / ‖x̂ − x†‖²) dB

Both pool all signals of the set (SNR is the ratio of total energies, not a mean of per-signal
SNRs).
"""

from __future__ import annotations

import math

from .._array import Array, array_size, check_finite, namespace

__all__ = ["mse", "snr"]


def _check(x_hat: Array, x_true: Array):
    xp = namespace(("x_hat", x_hat), ("x_true", x_true))
    if x_hat.shape != x_true.shape:
        raise ValueError(f"x_hat has shape {tuple(x_hat.shape)} but x_true has "
                         f"{tuple(x_true.shape)}")
    check_finite(xp, x_hat=x_hat, x_true=x_true)
    return xp


def mse(x_hat: Array, x_true: Array) -> float:
    """Mean squared error over all samples of all signals."""
    xp = _check(x_hat, x_true)
    d = x_hat - x_true
    return float(xp.sum(d * d)) / array_size(d)


def snr(x_hat: Array, x_true: Array) -> float:
    """Signal-to-noise ratio in dB of the reconstruction ``x_hat`` of ``x_true`` (inf if equal)."""
    xp = _check(x_hat, x_true)
    d = x_hat - x_true
    err = float(xp.sum(d * d))
    energy = float(xp.sum(x_true * x_true))
    if energy == 0:
        raise ValueError("x_true is all zeros: its SNR is undefined (no signal energy)")
    return math.inf if err == 0 else 10 * math.log10(energy / err)
