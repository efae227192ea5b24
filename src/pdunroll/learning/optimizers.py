"""First-order optimizers and learning-rate schedules for operator parameters, on any array-API
backend.

Parameters are an array or a tuple of arrays (e.g. a filter bank); an optimizer works on the
list of its leaves. Optimizers are stateless objects: ``init(params)`` makes the state (a dict of
an integer ``step`` and lists of arrays) and ``update(params, grad, state, lr)`` returns new
parameters and a new state, so a checkpoint only has to store the state dict.

    SGD:   v ← μ v + g,              p ← p − lr v           (plain SGD for μ = 0)
    Adam:  m ← β₁ m + (1 − β₁) g,    v ← β₂ v + (1 − β₂) g²,
           p ← p − lr m̂ / (√v̂ + ε),  m̂ = m / (1 − β₁ᵗ), v̂ = v / (1 − β₂ᵗ)
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass

from .._array import as_float, check_positive
from .._array import xp_of as _xp
from ..tree import flatten, unflatten

__all__ = ["SGD", "Adam", "LearningRate", "Optimizer", "SCHEDULES", "grad_norm",
           "make_optimizer"]

SCHEDULES = ("constant", "linear", "polynomial", "inverse")


def grad_norm(grad) -> float:
    """Euclidean (Frobenius) norm over all leaves of ``grad``."""
    total = 0.0
    for g in flatten(grad):
        total += float(_xp(g).linalg.vector_norm(g)) ** 2
    return math.sqrt(total)


@dataclass(frozen=True)
class LearningRate:
    """Learning rate lr_k at step k = 0 … total − 1.

    ``"constant"``: lr_k = initial. ``"linear"``: from ``initial`` down to ``final`` at the last
    step (the papers' linear decay). ``"polynomial"``: (initial − final)(1 − k/(total − 1))^power
    + final. ``"inverse"``: initial / (1 + k / period), the classical 1/k decay of SGD.
    ``final`` defaults to initial / 1000. ``warmup``: the fraction of all steps over which the
    rate rises linearly to the schedule's, lr_k · (k + 1) / W for k < W = ⌈warmup · total⌉
    (a linear warm-up: the first Adam steps, normalised by a second-moment estimate of one
    gradient, are otherwise as large as the rate itself).
    """

    initial: float
    schedule: str = "constant"
    final: float | None = None
    power: float = 1.0
    period: float = 1.0
    warmup: float = 0.0

    def __post_init__(self):
        check_positive("initial learning rate", self.initial)
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.final is not None and not (
                0 <= as_float("final", self.final, "a number") <= self.initial):
            raise ValueError(f"final learning rate must lie in [0, initial={self.initial}], "
                             f"got {self.final}")
        check_positive("power", self.power)
        check_positive("period", self.period)
        if not (isinstance(self.warmup, int | float) and 0 <= self.warmup < 1):
            raise ValueError(f"warmup must be a fraction of the steps in [0, 1), got "
                             f"{self.warmup!r}")

    def __call__(self, step: int, total: int) -> float:
        rate = self._scheduled(step, total)
        ramp = math.ceil(self.warmup * total)
        return rate * (step + 1) / ramp if step < ramp else rate

    def _scheduled(self, step: int, total: int) -> float:
        if self.schedule == "constant":
            return float(self.initial)
        if self.schedule == "inverse":
            return float(self.initial) / (1.0 + step / self.period)
        final = self.initial / 1000 if self.final is None else self.final
        power = 1.0 if self.schedule == "linear" else self.power
        frac = min(step / max(total - 1, 1), 1.0)
        return float((self.initial - final) * (1.0 - frac) ** power + final)

    def settings(self) -> dict:
        """Plain values, ``LearningRate(**settings)`` (``warmup`` only when used, so that the
        settings of a run without it read as before)."""
        out = {"initial": self.initial, "schedule": self.schedule, "final": self.final,
               "power": self.power, "period": self.period}
        return out | ({"warmup": self.warmup} if self.warmup else {})


class Optimizer(ABC):
    """Base class: ``init(params) -> state`` and ``update(params, grad, state, lr)``."""

    name: str

    @abstractmethod
    def init(self, params) -> dict:
        """The optimizer state for ``params`` (e.g. zero moments)."""

    @abstractmethod
    def update(self, params, grad, state: dict, lr: float):
        """(new params, new state) after one step along ``grad`` with rate ``lr``."""

    @abstractmethod
    def settings(self) -> dict:
        """The optimizer's settings as JSON values (stored in checkpoints)."""


def _in_unit_interval(name: str, value) -> float:
    """``value`` as a float in [0, 1), else an error naming ``name``."""
    v = as_float(name, value, "a number in [0, 1)")
    if not 0.0 <= v < 1.0:
        raise ValueError(f"{name} must lie in [0, 1), got {value}")
    return v


class SGD(Optimizer):
    """Stochastic gradient descent with optional heavy-ball momentum μ ∈ [0, 1)."""

    name = "sgd"

    def __init__(self, momentum: float = 0.0):
        self.momentum = _in_unit_interval("momentum", momentum)

    def init(self, params) -> dict:
        if self.momentum == 0.0:
            return {"step": 0}
        return {"step": 0, "velocity": [_xp(p).zeros_like(p) for p in flatten(params)]}

    def update(self, params, grad, state, lr):
        ps, gs = flatten(params), flatten(grad)
        if self.momentum == 0.0:
            return unflatten(params, [p - lr * g for p, g in zip(ps, gs, strict=True)]), \
                {"step": state["step"] + 1}
        vel = [self.momentum * v + g for v, g in zip(state["velocity"], gs, strict=True)]
        new = [p - lr * v for p, v in zip(ps, vel, strict=True)]
        return unflatten(params, new), {"step": state["step"] + 1, "velocity": vel}

    def settings(self) -> dict:
        return {"name": self.name, "momentum": self.momentum}

    def __repr__(self) -> str:
        return f"SGD(momentum={self.momentum:g})"


class Adam(Optimizer):
    """Adam (Kingma & Ba) with bias correction."""

    name = "adam"

    def __init__(self, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8):
        self.beta1 = _in_unit_interval("beta1", beta1)
        self.beta2 = _in_unit_interval("beta2", beta2)
        self.eps = check_positive("eps", eps)

    def init(self, params) -> dict:
        zeros = [_xp(p).zeros_like(p) for p in flatten(params)]
        return {"step": 0, "m": zeros, "v": list(zeros)}

    def update(self, params, grad, state, lr):
        b1, b2 = self.beta1, self.beta2
        t = state["step"] + 1
        m = [b1 * m + (1 - b1) * g for m, g in zip(state["m"], flatten(grad), strict=True)]
        v = [b2 * v + (1 - b2) * (g * g) for v, g in zip(state["v"], flatten(grad), strict=True)]
        c1, c2 = 1 - b1**t, 1 - b2**t
        new = [p - (lr / c1) * mi / (_xp(vi).sqrt(vi / c2) + self.eps)
               for p, mi, vi in zip(flatten(params), m, v, strict=True)]
        return unflatten(params, new), {"step": t, "m": m, "v": v}

    def settings(self) -> dict:
        return {"name": self.name, "beta1": self.beta1, "beta2": self.beta2, "eps": self.eps}

    def __repr__(self) -> str:
        return f"Adam(beta1={self.beta1:g}, beta2={self.beta2:g}, eps={self.eps:g})"


def make_optimizer(spec) -> Optimizer:
    """An :class:`Optimizer` from an instance, a name ("sgd", "adam") or a settings dict."""
    if isinstance(spec, Optimizer):
        return spec
    if isinstance(spec, str):
        spec = {"name": spec}
    if not isinstance(spec, dict) or "name" not in spec:
        raise TypeError(f'optimizer must be "sgd", "adam", an Optimizer or a settings dict, got '
                        f"{spec!r}")
    kwargs = {k: v for k, v in spec.items() if k != "name"}
    classes = {"sgd": SGD, "adam": Adam}
    if spec["name"] not in classes:
        raise ValueError(f'optimizer must be "sgd" or "adam", got {spec["name"]!r}')
    return classes[spec["name"]](**kwargs)

