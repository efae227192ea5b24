"""The lower-level model min_x F(Kx) + G(x − x̃) and the Chambolle-Pock step sizes."""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

from ._array import Array, as_float, check_finite, check_positive, namespace
from .functions.euclidean import Function
from .operators.base import (
    LinearOperator,
    NormEstimate,
    estimate_norm,
    power_steps,
    start_vector,
)
from .tree import flatten, unflatten

__all__ = ["DEFAULT_OMEGA", "NORMS", "AnalysisModel", "StepRule", "StepSizes", "frobenius_norm",
           "resolve_steps", "step_rule", "step_sizes"]


@dataclass(frozen=True)
class AnalysisModel:
    """min_x F(K x) + G(x − x̃): an analysis operator K, F (applied to Kx) and G (to x − x̃)."""

    operator: LinearOperator
    f: Function
    g: Function

    def __post_init__(self):
        if not isinstance(self.operator, LinearOperator):
            raise TypeError("operator must be a LinearOperator, got "
                            f"{type(self.operator).__name__}")
        for name in ("f", "g"):
            if not isinstance(getattr(self, name), Function):
                raise TypeError(f"{name} must be a pdunroll Function (e.g. L1Norm()), got "
                                f"{type(getattr(self, name)).__name__}")

    def with_params(self, params) -> AnalysisModel:
        """The same model with new operator parameters."""
        return AnalysisModel(self.operator.with_params(params), self.f, self.g)

    def leaves(self) -> tuple[list, list, list]:
        """The parameter leaves (:func:`pdunroll.tree.flatten`) of the operator, F and G."""
        return (flatten(self.operator.params), flatten(self.f.params), flatten(self.g.params))

    def with_leaves(self, leaves, counts: tuple[int, int]) -> AnalysisModel:
        """The model with its parameter leaves replaced by ``leaves`` (the operator's, then F's,
        then G's; ``counts`` = how many are the operator's and F's): how the torch and JAX
        layers put their framework's parameters into the model."""
        n_op, n_f = counts
        parts = (leaves[:n_op], leaves[n_op:n_op + n_f], leaves[n_op + n_f:])
        op, f, g = self.operator, self.f, self.g
        if parts[0]:
            op = op.with_params(unflatten(op.params, parts[0]))
        if parts[1]:
            f = f.with_params(unflatten(f.params, parts[1]))
        if parts[2]:
            g = g.with_params(unflatten(g.params, parts[2]))
        return AnalysisModel(op, f, g)

    def check_signals(self, **signals: Array):
        """Check signals of shape (batch, *in_shape) against the operator; return the namespace.

        Raises naming the argument: wrong backend or device (also against the operator and the
        parameters of F and G), wrong dtype, wrong shape, an empty batch, non-finite values.
        """
        op = self.operator
        own = [(f"{name} parameters", p) for name in ("f", "g")
               for p in flatten(getattr(self, name).params)]
        named = list(signals.items()) + [("operator parameters", p) for p in op.arrays] + own
        xp = namespace(*named)
        for name, p in own:
            if p.dtype != op.dtype:
                raise TypeError(f"{name} has dtype {p.dtype} but the operator has {op.dtype}: "
                                "convert one of them")
        for name, x in signals.items():
            if tuple(x.shape[1:]) != tuple(op.in_shape) or x.ndim != len(op.in_shape) + 1:
                raise ValueError(
                    f"{name} must have shape (batch, {', '.join(map(str, op.in_shape))}) for this "
                    f"operator, got {tuple(x.shape)}"
                )
            if x.shape[0] == 0:
                raise ValueError(f"{name} has an empty batch (shape {tuple(x.shape)}): give at "
                                 "least one signal")
            if x.dtype != op.dtype:
                raise TypeError(f"{name} has dtype {x.dtype} but the operator has {op.dtype}: "
                                "convert one of them")
        first = next(iter(signals.values()))
        for name, x in signals.items():
            if x.shape != first.shape:
                raise ValueError(f"{name} has shape {tuple(x.shape)} but "
                                 f"{next(iter(signals))} has {tuple(first.shape)}")
        batch = first.shape[0]
        self.f._check_params("f", tuple(op.out_shape), batch)
        self.g._check_params("g", tuple(op.in_shape), batch)
        check_finite(xp, **signals)
        return xp


def check_model(model) -> AnalysisModel:
    """Return ``model`` if it is an :class:`AnalysisModel`, else raise a ``TypeError``."""
    if not isinstance(model, AnalysisModel):
        raise TypeError(f"model must be an AnalysisModel(operator, f, g), got "
                        f"{type(model).__name__}")
    return model


@dataclass(frozen=True)
class StepSizes:
    """Chambolle-Pock parameters σ (dual), τ (primal), θ (extrapolation) and the ‖K‖ they
    were made for; σ τ ‖K‖² < 1 is checked. Fixed numbers, given as ``steps=`` where a
    :class:`StepRule` would re-make them for each operator: build them with a rule's
    :meth:`~StepRule.sizes` or :func:`step_sizes`, or pass a result's ``steps`` back
    (``steps=res.steps``) to rerun with exactly the same ones. Made by a rule inside the
    training loop or a layer, σ, τ and ‖K‖ are 0-d arrays on the operator's device. Step sizes
    are constants for differentiation: no gradient flows through ‖K‖."""

    sigma: float
    tau: float
    theta: float
    op_norm: float

    def __post_init__(self):
        for name in ("sigma", "tau", "op_norm"):
            object.__setattr__(self, name, check_positive(name, getattr(self, name)))
        theta = as_float("theta", self.theta, "a number in [0, 1]")
        if not (0.0 <= theta <= 1.0):
            raise ValueError(f"theta must lie in [0, 1], got {self.theta}")
        object.__setattr__(self, "theta", theta)
        if self.sigma * self.tau * self.op_norm**2 >= 1:
            raise ValueError(
                f"step sizes break sigma * tau * ||K||^2 < 1: sigma={self.sigma:g}, "
                f"tau={self.tau:g}, ||K||={self.op_norm:g} give "
                f"{self.sigma * self.tau * self.op_norm**2:g}")

    @classmethod
    def _on_device(cls, sigma, tau, theta: float, op_norm) -> StepSizes:
        """Step sizes whose σ, τ, ‖K‖ are 0-d arrays made by a :class:`StepRule` (so σ τ ‖K‖²
        = margin² < 1 holds by construction): not checked, since reading them would be a host
        round trip (the training loop, the layers, under ``jax.jit``)."""
        steps = object.__new__(cls)
        for name, value in (("sigma", sigma), ("tau", tau), ("theta", theta),
                            ("op_norm", op_norm)):
            object.__setattr__(steps, name, value)
        return steps


DEFAULT_OMEGA = 30.0
"""The library's one default ω = σ/τ, chosen by measurement (docs, "Mathematics": "The default
ω"): on untrained models ω = 30 gives the best SNR of the DCT speech model at L = 10 and is
within 0.1 dB of the best PSNR of a DCT-filter denoising model at L = 30."""


@dataclass(frozen=True)
class StepRule:
    """How the Chambolle-Pock step sizes follow the operator:

        σ = ω·margin/‖K‖,   τ = margin/(ω‖K‖),   θ = ``theta``,

    so σ τ ‖K‖² = margin² < 1. ``norm`` chooses ‖K‖: ``"spectral"`` (the largest singular value:
    the largest steps the convergence condition allows, as in Chambolle & Pock 2011 and the
    papers of Brauer & Lorenz) or ``"frobenius"`` (‖K‖_F ≥ ‖K‖₂, √n for an orthonormal n×n K;
    what the released code of Brauer & Lorenz, EUSIPCO 2023, computes with
    ``tf.linalg.norm(K, ord=2)``; docs, "Gradient modes": "The released code's conventions").

    Every entry point that runs the solver takes ``steps=`` as a rule (made into
    :class:`StepSizes` for the operator at hand; the training loop and the layers re-make them
    as K changes) or as fixed :class:`StepSizes`; ``omega=w`` is shorthand for
    ``steps=StepRule(omega=w)``."""

    omega: float = DEFAULT_OMEGA
    norm: str = "spectral"
    theta: float = 1.0
    margin: float = 0.99

    def __post_init__(self):
        object.__setattr__(self, "omega", _number("omega", self.omega, "a positive number"))
        if not math.isfinite(self.omega) or self.omega <= 0:
            raise ValueError(f"omega must be a positive finite number, got {self.omega!r}")
        if not isinstance(self.norm, str) or self.norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {self.norm!r}")
        object.__setattr__(self, "theta", _number("theta", self.theta, "a number in [0, 1]"))
        if not 0.0 <= self.theta <= 1.0:
            raise ValueError(f"theta must lie in [0, 1], got {self.theta!r}")
        object.__setattr__(self, "margin", _number("margin", self.margin, "a number in (0, 1)"))
        if not 0.0 < self.margin < 1.0:
            raise ValueError(f"margin must lie in (0, 1) (then sigma * tau * ||K||^2 = "
                             f"margin^2 < 1), got {self.margin!r}")

    def sizes(self, operator: LinearOperator, op_norm: float | None = None) -> StepSizes:
        """The step sizes for ``operator``: ‖K‖ computed (``norm``), or ``op_norm`` as given
        (e.g. a saved estimate), refused below a lower bound of ‖K‖ (too small a norm gives too
        large steps and a wrong solution without an error)."""
        if not isinstance(operator, LinearOperator):
            raise TypeError(f"operator must be a LinearOperator, got {type(operator).__name__}")
        if op_norm is None:
            value = float(operator.norm() if self.norm == "spectral"
                          else frobenius_norm(operator))
            if not (value > 0 and math.isfinite(value)):
                raise ValueError(f"the operator norm must be positive and finite, got {value}")
        else:
            value = check_positive("op_norm", op_norm)
            _check_norm_bound(operator, value)
        return self.for_norm(value)

    def for_norm(self, op_norm) -> StepSizes:
        """The step sizes for a known ‖K‖ ``op_norm`` (a number, checked, or a 0-d array of the
        operator's namespace, e.g. the training loop's estimate on the device, not checked: no
        host round trip)."""
        sigma = self.omega * self.margin / op_norm
        tau = self.margin / (self.omega * op_norm)
        if isinstance(op_norm, numbers.Real):
            return StepSizes(sigma, tau, self.theta, op_norm)
        return StepSizes._on_device(sigma, tau, self.theta, op_norm)

    def initial_norm(self, operator: LinearOperator) -> NormEstimate:
        """‖K‖ of a starting operator (as :meth:`sizes` computes it: the operator's own
        ``norm()``, exact where it has one) and the vector that warm-starts :meth:`refresh`
        (a power iteration to convergence)."""
        if self.norm == "spectral":
            est = estimate_norm(operator)
            if type(operator).norm is LinearOperator.norm:
                return est
            return NormEstimate(float(operator.norm()), est.vector, est.iterations)
        return NormEstimate(float(frobenius_norm(operator)), start_vector(operator), 0)

    def refresh(self, operator: LinearOperator, vector: Array, iterations: int
                ) -> tuple[Array, Array]:
        """(‖K‖, vector) of an operator that changed a little since ``vector`` was made (a
        training step, a layer's call): ``iterations`` power iterations warm-started from
        ``vector`` (the spectral norm), or ‖K‖_F. ‖K‖ is a 0-d array on the operator's device,
        made without a host round trip. The spectral estimate approaches ‖K‖ from below; the
        margin covers that: with est ≥ margin·‖K‖₂, σ τ ‖K‖₂² ≤ 1 (tested against an SVD after
        training steps)."""
        if self.norm == "spectral":
            return power_steps(operator, vector, iterations)
        return _frobenius(operator), vector

    def settings(self) -> dict:
        """The rule as JSON values (:meth:`from_settings` makes it again)."""
        return {"omega": self.omega, "norm": self.norm, "theta": self.theta,
                "margin": self.margin}

    @classmethod
    def from_settings(cls, settings: dict) -> StepRule:
        """The rule of :meth:`settings` (unknown keys are refused)."""
        if not isinstance(settings, dict):
            raise TypeError(f"step rule settings must be a dict, got {type(settings).__name__}")
        unknown = set(settings) - {"omega", "norm", "theta", "margin"}
        if unknown:
            raise ValueError(f"unknown step rule settings {sorted(unknown)}: expected omega, "
                             "norm, theta, margin")
        return cls(**settings)


def _number(name: str, value, expected: str) -> float:
    """``value`` as a float; bools and strings are refused (True is not a step size)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be {expected}, got {value!r}")
    return float(value)


def step_sizes(
    operator: LinearOperator,
    *,
    omega: float | None = None,
    sigma: float | None = None,
    tau: float | None = None,
    theta: float = 1.0,
    op_norm: float | None = None,
    norm: str = "spectral",
) -> StepSizes:
    """``StepRule(omega, norm, theta).sizes(operator, op_norm)``: σ = ω·0.99/‖K‖ and
    τ = 0.99/(ω‖K‖) (ω = :data:`DEFAULT_OMEGA` by default), or given σ, τ (checked against
    σ τ ‖K‖² < 1; ω is then refused, since it would be ignored).

    ``op_norm`` skips the norm computation; it is refused when it lies below ‖K v‖/‖v‖ for a
    fixed v, a lower bound of ‖K‖. ``norm``: ``"spectral"`` or ``"frobenius"``, see
    :class:`StepRule`; the StepSizes' ``op_norm`` is then that norm.
    """
    if not isinstance(operator, LinearOperator):
        raise TypeError(f"operator must be a LinearOperator, got {type(operator).__name__}")
    if omega is not None and (sigma is not None or tau is not None):
        raise ValueError("give omega or sigma and tau, not both: sigma and tau fix the steps, "
                         "omega would be ignored")
    rule = StepRule(omega=DEFAULT_OMEGA if omega is None else omega, norm=norm, theta=theta)
    steps = rule.sizes(operator, op_norm)
    if sigma is None and tau is None:
        return steps
    if sigma is None or tau is None:
        raise ValueError("give both sigma and tau, or neither (then they follow from omega)")
    return StepSizes(sigma, tau, theta, steps.op_norm)


NORMS = ("spectral", "frobenius")


def frobenius_norm(operator: LinearOperator) -> float:
    """‖K‖_F = (Σ_j ‖K e_j‖²)^½ over the unit vectors e_j of the input space (the matrix's
    entries for a :class:`~pdunroll.DenseOperator`; applied in chunks of 1024 otherwise)."""
    return float(_frobenius(operator))


def _frobenius(operator: LinearOperator) -> Array:
    """:func:`frobenius_norm` as a 0-d array of the operator's namespace (no host round
    trip)."""
    xp = operator.xp
    matrix = getattr(operator, "matrix", None)
    if matrix is not None:
        return xp.linalg.vector_norm(matrix)
    n = math.prod(operator.in_shape)
    total = None
    for lo in range(0, n, 1024):
        hi = min(n, lo + 1024)
        cols = xp.reshape(xp.arange(lo, hi, device=operator.device), (hi - lo, 1))
        basis = xp.astype(cols == xp.reshape(xp.arange(n, device=operator.device), (1, n)),
                          operator.dtype)
        part = xp.sum(operator.apply(xp.reshape(basis, (hi - lo, *operator.in_shape))) ** 2)
        total = part if total is None else total + part
    return xp.sqrt(total)


def _check_norm_bound(operator: LinearOperator, norm: float) -> None:
    """Raise unless ``norm`` ≥ ‖K v‖/‖v‖ (up to rounding) for the power iteration's start v."""
    xp = operator.xp
    v = start_vector(operator)
    bound = float(xp.linalg.vector_norm(operator.apply(v)) / xp.linalg.vector_norm(v))
    if norm < bound * (1 - 1e-3):
        raise ValueError(f"op_norm={norm:g} is below a lower bound of ||K|| ({bound:g}): the "
                         "step sizes would be too large; leave op_norm out to compute it")


def step_rule(omega: float | None, steps) -> StepRule | StepSizes:
    """The ``steps=`` of a call that also takes the shorthand ``omega=``: a :class:`StepRule`
    (``StepRule(omega=omega)`` for ``omega``, the default rule for neither) or fixed
    :class:`StepSizes` as given."""
    if steps is None:
        return StepRule() if omega is None else StepRule(omega=omega)
    if omega is not None:
        raise ValueError("give omega or steps, not both (omega=w is shorthand for "
                         "steps=StepRule(omega=w))")
    if not isinstance(steps, StepRule | StepSizes):
        raise TypeError("steps must be a pdunroll.StepRule or pdunroll.StepSizes (from "
                        f"pdunroll.step_sizes(...) or a result's .steps), got "
                        f"{type(steps).__name__}")
    return steps


def resolve_steps(operator: LinearOperator, omega: float | None, steps) -> StepSizes:
    """The step sizes of a call that takes ``omega=`` or ``steps=`` (:func:`step_rule`): a
    rule's sizes for ``operator``, or given :class:`StepSizes` (their ‖K‖ checked against a
    lower bound)."""
    rule = step_rule(omega, steps)
    if isinstance(rule, StepRule):
        return rule.sizes(operator)
    _check_norm_bound(operator, rule.op_norm)
    return rule
