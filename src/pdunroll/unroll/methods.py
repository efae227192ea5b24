"""Gradient methods: how the reverse pass through L unrolled steps is run.

Each method is a small immutable object that checks its own settings when it is made and knows
what the forward pass must keep for it; :func:`pdunroll.gradient`, :func:`pdunroll.vjp`,
:func:`pdunroll.forward_backward_gradient`, :func:`pdunroll.train`, the
:class:`~pdunroll.OperatorLearner` and the command line all take the same objects
(``method=pu.Truncated(30)``). The mathematics of each is on the docs' "Mathematics" page
(sections "Reverse mode", "Truncated and asymptotic gradients", "The fixed-point gradient").

=============================  ============================================  =================
method                         gradient of                                   forward keeps
=============================  ============================================  =================
``Full(segments=None)``        all L steps (exact)                           L steps
``Truncated(b, segments)``     the last b steps                              b steps
``Asymptotic(b)``              b steps at the final iterate (L → ∞ limit)    the last step
``Implicit(solver, tol, ..)``  the fixed point, b → ∞ (a linear solve)       the last step
=============================  ============================================  =================

``segments=c`` (full and truncated) stores the forward state at the starts of c segments only
and recomputes one segment at a time in the reverse pass ("gradient checkpointing" in the
automatic-differentiation literature): the same gradient to rounding, with memory for c states
plus one segment instead of b steps (c ≈ √b is best), at the cost of one more forward pass.
``relax_primal=True`` (every method) replaces the Jacobian of the primal prox by the identity:
an approximation, not the exact gradient, and not what the released code of Brauer & Lorenz
(EUSIPCO 2023) computes either (2–16 % apart in ∇_K on speech). ``released_mask=eta_backward``
(every method) applies the released code's primal mask 1{|z_P − x̃| ≤ eta_backward} instead of
the exact Jacobian 1{|z_P| ≤ η} of the ℓ∞-ball prox: the released code tests z_P, already in the
coordinates r = x − x̃, against x̃ once more, so its mask is not the Jacobian of its own forward
pass; it trains with eta_backward = 1. Offered only to run with its conventions (docs, "Gradient
modes": "The released code's conventions").

The strings ``"full"`` and ``"implicit"`` stand for ``Full()`` and ``Implicit()``; the two
methods that need ``b`` have no string form, so no b is ever chosen silently.

Each method also runs its own part of an unrolled gradient: :meth:`~GradientMethod.keeps` says
what the forward pass keeps for it, :meth:`~GradientMethod.reverse` runs its Chambolle-Pock
reverse recursion (the functions of :mod:`.reverse`), and the methods at the final iterate sum
the recursion continued there (:meth:`Asymptotic.final_series`: b terms;
:meth:`Implicit.final_series`: a linear solve), which forward-backward splitting uses. No other
module dispatches on the method's type.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import ClassVar

from .._array import check_count, check_flag, check_positive
from .implicit import solve
from .reverse import backward_asymptotic, backward_implicit, backward_stored

__all__ = ["BY_NAME", "Asymptotic", "Full", "GradientMethod", "Implicit", "Truncated", "as_method",
           "method_from_settings"]

SOLVERS = ("gmres", "neumann")


@dataclass(frozen=True)
class GradientMethod(ABC):
    """Base of the gradient methods; ``relax_primal`` and ``released_mask`` (keywords) are
    shared by all (see the module's docstring)."""

    relax_primal: bool = field(default=False, kw_only=True)
    released_mask: float | None = field(default=None, kw_only=True)

    name: ClassVar[str]
    #: the reverse steps are the stored forward steps (so an ergodic average may be
    #: differentiated); False: they all sit at the final iterate
    stores_steps: ClassVar[bool] = True

    def __post_init__(self):
        object.__setattr__(self, "relax_primal", check_flag("relax_primal", self.relax_primal))
        if self.released_mask is not None:
            object.__setattr__(self, "released_mask",
                               check_positive("released_mask", self.released_mask))
            if self.relax_primal:
                raise ValueError("give relax_primal=True or released_mask, not both: each "
                                 "replaces the primal prox Jacobian")

    def back_steps(self, iterations: int) -> int:
        """How many reverse steps this method runs after L = ``iterations`` forward steps."""
        return iterations

    def settings(self) -> dict:
        """Plain JSON values that :func:`method_from_settings` turns back into this method."""
        return {"name": self.name, **asdict(self)}

    @abstractmethod
    def keeps(self, iterations: int) -> tuple[int, range | tuple]:
        """What the forward pass of L = ``iterations`` steps keeps for this method: (steps on
        the tape, steps k before which the state is stored as a segment start)."""

    @abstractmethod
    def reverse(self, plan, model, x_tilde, scaled, state, x_hat, g_out):
        """This method's reverse recursion from v = ``g_out`` over what the forward pass kept
        (``state``), with the call's scaled operators (σK, −τK): (∇ operator parameters,
        Σ_k σ δ_D^k or None, [∇ F params, ∇ G params], solve info or None)."""

    @abstractmethod
    def label(self) -> str:
        """A short name for tables, e.g. ``Truncated(3)``."""


def _segments(value) -> int | None:
    return None if value is None else check_count("segments", value)


@dataclass(frozen=True)
class _StoredSteps(GradientMethod):
    """Methods whose reverse steps are the last b stored forward steps (``segments``: stored
    as segment starts and recomputed)."""

    def keeps(self, iterations):
        b = self.back_steps(iterations)
        if self.segments:
            return 0, range(iterations - b + 1, iterations + 1, math.ceil(b / self.segments))
        return b, ()

    def reverse(self, plan, model, x_tilde, scaled, state, x_hat, g_out):
        return backward_stored(plan, model, x_tilde, scaled, state, g_out)


@dataclass(frozen=True)
class _AtFinalIterate(GradientMethod):
    """Methods whose reverse steps all use the final step's Jacobians: the forward pass keeps
    its last step only."""

    stores_steps: ClassVar[bool] = False

    def keeps(self, iterations):
        return 1, ()

    @abstractmethod
    def final_series(self, step: Callable[[tuple], tuple[tuple, tuple]], start: tuple
                     ) -> tuple[tuple, object]:
        """The reverse recursion continued at the final iterate, summed: with s_0 = ``start``
        and (s_{j+1}, o_j) = ``step(s_j)`` (s a tuple of arrays, linear in s), the sums Σ_j o_j
        and the solve info (None without a solve)."""


@dataclass(frozen=True)
class Full(_StoredSteps):
    """Exact backpropagation through all L steps."""

    segments: int | None = None
    name: ClassVar[str] = "full"

    def __post_init__(self):
        super().__post_init__()
        object.__setattr__(self, "segments", _segments(self.segments))

    def label(self):
        return "Full()" if not self.segments else f"Full(segments={self.segments})"


@dataclass(frozen=True)
class Truncated(_StoredSteps):
    """Backpropagation through the last ``b`` steps (1 ≤ b ≤ L; b = L is :class:`Full`)."""

    b: int
    segments: int | None = None
    name: ClassVar[str] = "truncated"

    def __post_init__(self):
        super().__post_init__()
        object.__setattr__(self, "b", check_count("b", self.b))
        object.__setattr__(self, "segments", _segments(self.segments))

    def back_steps(self, iterations: int) -> int:
        if self.b > iterations:
            raise ValueError(f"Truncated(b={self.b}) needs b <= iterations ({iterations})")
        return self.b

    def label(self):
        return f"Truncated({self.b})"


#: the most reverse steps of :class:`Asymptotic` (each costs about one forward step); the limit
#: b → ∞ is :class:`Implicit`, which stops when the sum has converged
MAX_ASYMPTOTIC_STEPS = 10**6


@dataclass(frozen=True)
class Asymptotic(_AtFinalIterate):
    """``b`` reverse steps with the Jacobians, y and x̂ of the final iterate (b may exceed L,
    up to ``MAX_ASYMPTOTIC_STEPS`` = 10⁶): nothing is stored. The limit b → ∞ is
    :class:`Implicit`."""

    b: int
    name: ClassVar[str] = "asymptotic"

    def __post_init__(self):
        super().__post_init__()
        object.__setattr__(self, "b", check_count("b", self.b))
        if self.b > MAX_ASYMPTOTIC_STEPS:
            raise ValueError(f"b must be at most {MAX_ASYMPTOTIC_STEPS:,} backward steps (each "
                             f"costs about one forward step), got {self.b:,}: for the limit "
                             "b → ∞ use pdunroll.Implicit(), which stops once the sum converges")

    def back_steps(self, iterations: int) -> int:
        return self.b

    def reverse(self, plan, model, x_tilde, scaled, state, x_hat, g_out):
        return (*backward_asymptotic(plan, model, scaled, state, x_hat, g_out), None)

    def final_series(self, step, start):
        """b terms: Σ_{j<b} o_j."""
        s, sums = start, None
        for _ in range(self.b):
            s, out = step(s)
            sums = out if sums is None else tuple(a + o for a, o in zip(sums, out, strict=True))
        return sums, None

    def label(self):
        return f"Asymptotic({self.b})"


@dataclass(frozen=True)
class Implicit(_AtFinalIterate):
    """The fixed-point gradient: the reverse recursion at the final iterate summed to infinity
    by solving (I − N) u = (g, 0, 0) per signal.

    ``solver``: ``"gmres"`` (restarted GMRES) or ``"neumann"`` (the asymptotic recursion run
    until it converges); ``tol``: relative residual per signal, in (0, 1) (default
    max(1e−10, 1000 ε) of the dtype); ``maxiter``: at most this many iterations (default
    1000). If the solve misses ``tol`` (a singular system: nonsmooth F, G, a lower-level
    solution that is not unique) ``strict=True`` raises :class:`~pdunroll.ConvergenceError`;
    ``strict=False`` warns with :class:`~pdunroll.ConvergenceWarning` and returns the
    unconverged gradient with ``info.converged`` False.
    """

    solver: str = "gmres"
    tol: float | None = None
    maxiter: int | None = None
    strict: bool = True
    name: ClassVar[str] = "implicit"

    def __post_init__(self):
        super().__post_init__()
        if self.solver not in SOLVERS:
            raise ValueError(f"solver must be one of {SOLVERS}, got {self.solver!r}")
        if self.tol is not None:
            object.__setattr__(self, "tol", check_positive("tol", self.tol))
            if self.tol >= 1:  # a zero solution already has relative residual 1
                raise ValueError(f"tol must lie in (0, 1) (a relative residual; the zero "
                                 f"solution already meets tol >= 1), got {self.tol}")
        if self.maxiter is not None:
            object.__setattr__(self, "maxiter", check_count("maxiter", self.maxiter))
        object.__setattr__(self, "strict", check_flag("strict", self.strict))

    def reverse(self, plan, model, x_tilde, scaled, state, x_hat, g_out):
        return backward_implicit(plan, model, scaled, state, x_hat, g_out)

    def final_series(self, step, start):
        """All terms: u = (I − N)⁻¹ s_0 with N(s) = step(s)[0] (:func:`.implicit.solve`), then
        the outputs of step(u)."""
        u, info = solve(lambda s: step(s)[0], start, self)
        return step(u)[1], info

    def label(self):
        return f"Implicit({self.solver!r})"


#: each method's class by its name (:meth:`GradientMethod.settings`, the command line's --method)
BY_NAME = {cls.name: cls for cls in (Full, Truncated, Asymptotic, Implicit)}


def as_method(method) -> GradientMethod:
    """``method`` if it is a :class:`GradientMethod`; ``"full"`` and ``"implicit"`` become
    ``Full()`` and ``Implicit()``; anything else is a ``TypeError``/``ValueError`` naming
    ``method``."""
    if isinstance(method, GradientMethod):
        return method
    if method == "full":
        return Full()
    if method == "implicit":
        return Implicit()
    if method in ("truncated", "asymptotic"):
        raise ValueError(f'method="{method}" needs the number of backward steps: use '
                         f"pdunroll.{BY_NAME[method].__name__}(b)")
    raise TypeError("method must be pdunroll.Full(), Truncated(b), Asymptotic(b), Implicit() "
                    f'or the string "full" or "implicit", got {method!r}')


def method_from_settings(settings: dict) -> GradientMethod:
    """The method that :meth:`GradientMethod.settings` described."""
    kw = dict(settings)
    name = kw.pop("name", None)
    if name not in BY_NAME:
        raise ValueError(f"unknown gradient method {name!r}: expected one of {sorted(BY_NAME)}")
    return BY_NAME[name](**kw)
