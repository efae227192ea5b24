"""The configuration of one unrolled gradient: a :class:`Plan` holds the gradient method, L, the
ergodic weights, the step sizes and which cotangents are wanted, checked together when it is
made. It is the single configuration argument of the unchecked kernels
(:func:`~pdunroll.unroll.gradient.vjp_unchecked`,
:func:`~pdunroll.unroll.gradient.gradient_unchecked`), of :func:`~pdunroll.unroll.reverse.reverse`
and of the layers' and the training loop's steps; the public entry points make it from their
keyword arguments with :func:`make_plan`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from .._array import check_count, check_flag
from ..model import StepSizes
from .forward import ergodic_weights
from .methods import GradientMethod, as_method

__all__ = ["Plan", "make_plan"]


@dataclass(frozen=True)
class Plan:
    """``method``: the :class:`~pdunroll.GradientMethod`; ``iterations``: L; ``alphas``: the
    ergodic weights α_1..α_L (a tuple summing to 1) or ``None`` for the last iterate;
    ``steps``: the :class:`~pdunroll.StepSizes` (``None`` until a call knows them, e.g. a
    training step, see :meth:`with_steps`); ``x_wanted``: whether ∇_x̃ is computed (training
    needs only the parameters' gradients). Checked when made: a misplaced argument raises
    here, naming it, not deep inside the loop."""

    method: GradientMethod
    iterations: int
    alphas: tuple[float, ...] | None = None
    steps: StepSizes | None = None
    x_wanted: bool = True

    def __post_init__(self):
        if not isinstance(self.method, GradientMethod):
            raise TypeError(f"method must be a pdunroll GradientMethod (e.g. pdunroll.Full()), "
                            f"got {self.method!r}")
        object.__setattr__(self, "iterations", check_count("iterations", self.iterations))
        self.method.back_steps(self.iterations)  # e.g. Truncated(b) with b > L
        if self.alphas is not None:
            if not isinstance(self.alphas, tuple) or len(self.alphas) != self.iterations:
                raise ValueError(f"alphas must be a tuple of L = {self.iterations} ergodic "
                                 f"weights (pdunroll.ergodic_weights) or None, got "
                                 f"{self.alphas!r}")
            if not self.method.stores_steps:
                raise ValueError(f"weights cannot be combined with {type(self.method).__name__}: "
                                 "its backward steps all sit at the final iterate; use Full() or "
                                 "Truncated(b)")
        if self.steps is not None and not isinstance(self.steps, StepSizes):
            raise TypeError(f"steps must be pdunroll StepSizes or None, got "
                            f"{type(self.steps).__name__}")
        object.__setattr__(self, "x_wanted", check_flag("x_wanted", self.x_wanted))

    @property
    def b(self) -> int:
        """The number of reverse steps, ``method.back_steps(iterations)``."""
        return self.method.back_steps(self.iterations)

    def with_steps(self, steps: StepSizes) -> Plan:
        """The same plan with step sizes ``steps`` (those of one call)."""
        return replace(self, steps=steps)


def make_plan(method, iterations, weights=None, steps: StepSizes | None = None, *,
              x_wanted: bool = True) -> Plan:
    """The :class:`Plan` of a public call: ``method`` a :class:`~pdunroll.GradientMethod` or
    ``"full"``/``"implicit"``, L = ``iterations``, ``weights`` as in
    :func:`~pdunroll.ergodic_weights`, checked together (every entry point that unrolls makes
    its plan here)."""
    method = as_method(method)
    iterations = check_count("iterations", iterations)
    method.back_steps(iterations)  # b > L is reported before the weights
    return Plan(method, iterations, ergodic_weights(weights, iterations), steps, x_wanted)
