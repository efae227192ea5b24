"""The lower-level model min_x F(Kx) + G(x − x̃) and the Chambolle-Pock step sizes."""

from __future__ import annotations

import math
from dataclasses import dataclass

from ._array import Array, as_float, check_finite, check_positive, namespace
from .functions.euclidean import Function
from .operators.base import LinearOperator
from .tree import flatten, unflatten

__all__ = ["AnalysisModel", "NORMS", "StepSizes", "frobenius_norm", "resolve_steps", "step_sizes"]


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
    were made for; σ τ ‖K‖² < 1 is checked. Build them with :func:`step_sizes`, or pass a
    result's ``steps`` back (``steps=res.steps``) to rerun with exactly the same ones. Step
    sizes are constants for differentiation: no gradient flows through ‖K‖."""

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
    """σ = ω·0.99/‖K‖ and τ = 0.99/(ω‖K‖) (ω = 1 by default), or given σ, τ (checked against
    σ τ ‖K‖² < 1; ω is then refused, since it would be ignored).

    ``op_norm`` skips the norm computation (e.g. a warm-started estimate during training); it
    is refused when it lies below ‖K v‖/‖v‖ for a fixed v, a lower bound of ‖K‖ (too small a
    norm gives too large steps and a wrong solution without an error).

    ``norm`` chooses which ‖K‖ the steps are made from: ``"spectral"`` (default, the largest
    singular value: the largest steps the convergence condition σ τ ‖K‖₂² < 1 allows, as in
    Chambolle & Pock 2011 and the papers of Brauer & Lorenz) or ``"frobenius"`` (‖K‖_F ≥
    ‖K‖₂, √n for an orthonormal n×n K: steps √n/‖K‖₂ times smaller). The second is what the
    released code of Brauer & Lorenz (EUSIPCO 2023) computes, since ``tf.linalg.norm(K,
    ord=2)`` of a matrix is its Frobenius norm; use it to run with their conventions, whose L
    steps converge far less than L steps of the spectral choice (docs, "Gradient modes":
    "The released code's conventions"). The StepSizes' ``op_norm`` is then ‖K‖_F.
    """
    if not isinstance(operator, LinearOperator):
        raise TypeError(f"operator must be a LinearOperator, got {type(operator).__name__}")
    if omega is not None and (sigma is not None or tau is not None):
        raise ValueError("give omega or sigma and tau, not both: sigma and tau fix the steps, "
                         "omega would be ignored")
    omega = check_positive("omega", 1.0 if omega is None else omega)
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
    if op_norm is None:
        norm = float(operator.norm() if norm == "spectral" else frobenius_norm(operator))
        if not (norm > 0 and math.isfinite(norm)):
            raise ValueError(f"the operator norm must be positive and finite, got {norm}")
    else:
        norm = check_positive("op_norm", op_norm)
        _check_norm_bound(operator, norm)
    if sigma is None and tau is None:
        return StepSizes(omega * 0.99 / norm, 0.99 / (omega * norm), theta, norm)
    if sigma is None or tau is None:
        raise ValueError("give both sigma and tau, or neither (then they follow from omega)")
    return StepSizes(sigma, tau, theta, norm)


NORMS = ("spectral", "frobenius")


def frobenius_norm(operator: LinearOperator) -> float:
    """‖K‖_F = (Σ_j ‖K e_j‖²)^½ over the unit vectors e_j of the input space (the matrix's
    entries for a :class:`~pdunroll.DenseOperator`; applied in chunks of 1024 otherwise)."""
    xp = operator.xp
    matrix = getattr(operator, "matrix", None)
    if matrix is not None:
        return float(xp.linalg.vector_norm(matrix))
    n = math.prod(operator.in_shape)
    total = 0.0
    for lo in range(0, n, 1024):
        hi = min(n, lo + 1024)
        cols = xp.reshape(xp.arange(lo, hi, device=operator.device), (hi - lo, 1))
        basis = xp.astype(cols == xp.reshape(xp.arange(n, device=operator.device), (1, n)),
                          operator.dtype)
        total += float(xp.sum(operator.apply(xp.reshape(basis, (hi - lo, *operator.in_shape)))
                              ** 2))
    return math.sqrt(total)


def _check_norm_bound(operator: LinearOperator, norm: float) -> None:
    """Raise unless ``norm`` ≥ ‖K v‖/‖v‖ (up to rounding) for the power iteration's start v."""
    xp = operator.xp
    n = math.prod(operator.in_shape)
    v = xp.reshape(xp.sin(xp.arange(n, dtype=operator.dtype, device=operator.device) * 1.2345
                          + 0.5), (1, *operator.in_shape))
    bound = float(xp.linalg.vector_norm(operator.apply(v)) / xp.linalg.vector_norm(v))
    if norm < bound * (1 - 1e-3):
        raise ValueError(f"op_norm={norm:g} is below a lower bound of ||K|| ({bound:g}): the "
                         "step sizes would be too large; leave op_norm out to compute it")


def resolve_steps(operator: LinearOperator, omega: float | None,
                  steps: StepSizes | None) -> StepSizes:
    """The step sizes of a call that takes ``omega=`` or ``steps=``: ``steps`` as given (its
    ‖K‖ checked against a lower bound), else :func:`step_sizes` with ω = ``omega`` (default
    1)."""
    if steps is None:
        return step_sizes(operator, omega=1.0 if omega is None else omega)
    if omega is not None:
        raise ValueError("give omega or steps, not both (steps already fix sigma and tau)")
    if not isinstance(steps, StepSizes):
        raise TypeError("steps must be a pdunroll.StepSizes (from pdunroll.step_sizes(...) or a "
                        f"result's .steps), got {type(steps).__name__}")
    _check_norm_bound(operator, steps.op_norm)
    return steps
