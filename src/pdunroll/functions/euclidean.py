"""Convex functions F and G and their proximal maps, each with its vector-Jacobian product.

A :class:`Function` f gives

* ``value(x)``: f(x) per signal, shape (batch,); ``conj_value(y)``: f*(y) per signal;
* ``prox(z, t)`` = prox_{t f}(z) = argmin_u f(u) + ‖u − z‖²/(2t), and
  ``conj_prox(z, s)`` = prox_{s f*}(z), by default through the Moreau identity
  prox_{s f*}(z) = z − s prox_{f/s}(z/s);
* ``prox_save(z, t)`` → (prox, saved) and ``prox_vjp(saved, v, t)`` = J_prox(z)ᵀ v, and the same
  for the conjugate (``conj_prox_save``, ``conj_prox_vjp``). ``saved`` is what the reverse pass
  keeps per step: a boolean mask for clips and soft thresholds (elementwise Jacobians, the fast
  case), the point and its norm for the ℓ2 ball (a Jacobian that is not diagonal);
* ``params``: the function's own learnable arrays (``()`` for most), with
  ``prox_param_vjp(saved, v, t)`` = ∇_params ⟨v, prox_{tf}(z)⟩ and ``conj_prox_param_vjp``
  (e.g. the costs c of :class:`LinearTerm`).
* the whole proximal step of an algorithm, which the solvers call:
  ``prox_step(prev, a, t)`` = argmin_u t f(u) − ⟨a, u⟩ + D(u, prev) for a step direction a
  already scaled by the step size (a = −t·grad for a descent step along −grad) and
  ``conj_prox_step(prev, a, s)`` = argmin_y s f*(y) − ⟨a, y⟩ + D(y, prev) (a = s·ascent, an
  ascent step of the dual; Chambolle-Pock passes a = (σK) x̄ and a = (−τK)ᵀ y with σK, −τK made
  once per call, so no step multiplies by σ or τ), with ``*_save`` variants,
  ``prox_step_vjp(saved, v, t)`` → (∂u/∂prevᵀ v, ∂u/∂aᵀ v) and ``prox_step_param_vjp(saved, v,
  t)`` = ∇_params ⟨v, u⟩ (prev, a fixed). For the Euclidean distance D(u, p) = ½‖u − p‖² these
  are prox_{tf}(z) (resp. prox_{sf*}(z)) at z = prev + a, both cotangents are J_prox(z)ᵀ v (one
  array, returned twice) and the parameter VJP is ``prox_param_vjp``. A Bregman distance
  (:mod:`pdunroll.functions.bregman`) makes u depend on prev also outside z;
* ``start(zeros)`` / ``conj_start(zeros)``: the first iterate given zeros of its shape (zeros,
  unless the step needs an interior point, e.g. the entropy's positive one).

All maps act on batches: axis 0 is the batch, the other axes belong to one signal. Balls are one
ball per signal.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

from .._array import Array, check_count, check_finite, check_positive, namespace
from .._array import array_device as _device
from .._array import xp_of as _xp
from ..registry import saveable

__all__ = [
    "Function",
    "L1Norm",
    "L21Norm",
    "L2Ball",
    "LinearTerm",
    "LinfBall",
    "NoiseL2Ball",
    "NonNegative",
    "Simplex",
    "SquaredL2",
    "Zero",
]


def _signal_axes(x: Array) -> tuple[int, ...]:
    return tuple(range(1, x.ndim))


class Function(ABC):
    """A proper convex lower-semicontinuous function with a computable prox.

    Saving (:mod:`pdunroll.registry`): a function registered with :func:`pdunroll.saveable`
    is described by its attributes (``vars(f)``, e.g. ``{"weight": 2.0}``) and rebuilt as
    ``cls(**config)``; functions holding arrays or other functions override :meth:`to_config`
    and :meth:`from_config`."""

    params = ()

    def with_params(self, params) -> Function:
        """The same function with new parameters; a function without parameters (``params =
        ()``) takes ``()`` only and returns itself. Functions with parameters override this."""
        name = type(self).__name__
        if not (isinstance(self.params, tuple) and not self.params):
            raise TypeError(f"{name} has parameters but no with_params: define "
                            "with_params(self, params) returning the function with new ones")
        if not (isinstance(params, tuple) and not params):
            raise ValueError(f"{name} has no parameters: params must be (), got {params!r}")
        return self

    def to_config(self, writer) -> dict:
        """The function's settings as JSON values: its attributes, which must be numbers,
        strings, booleans or None (else override this and :meth:`from_config`)."""
        config = dict(vars(self))
        odd = [k for k, v in config.items()
               if not isinstance(v, int | float | str | bool | type(None))]
        if odd or not (isinstance(self.params, tuple) and not self.params):
            raise TypeError(f"{type(self).__qualname__} holds {', '.join(odd) or 'parameters'} "
                            "besides numbers: give it to_config(self, writer) -> dict and a "
                            "classmethod from_config(cls, config, reader) (docs, 'Saving "
                            "and applying models')")
        return config

    @classmethod
    def from_config(cls, config: dict, reader) -> Function:
        """The function a :meth:`to_config` dict describes: ``cls(**config)``."""
        return cls(**config)

    @abstractmethod
    def value(self, x: Array) -> Array:
        """f(x) per signal, shape (batch,) (inf outside an indicator's set)."""

    @abstractmethod
    def conj_value(self, y: Array) -> Array:
        """f*(y) per signal, shape (batch,)."""

    def prox(self, z: Array, t: float) -> Array:
        return self.prox_save(z, t)[0]

    #: whether ``params`` hold one entry per signal (then :meth:`take` selects them)
    per_signal = False

    def take(self, indices: Array) -> Function:
        """The function for the signals ``indices`` (an integer array) of the batch it was made
        for, as a training minibatch needs: itself, unless its parameters hold one entry per
        signal (the measurements of :class:`~pdunroll.Translated`)."""
        return self

    def _check_params(self, name: str, signal_shape: tuple[int, ...], batch: int) -> None:
        """Raise if ``params`` do not fit signals of shape (batch, *signal_shape); ``name`` is
        "f" or "g". Nothing to check by default."""
        return None

    @abstractmethod
    def prox_save(self, z: Array, t: float):
        """(prox_{t f}(z), what :meth:`prox_vjp` needs)."""

    @abstractmethod
    def prox_vjp(self, saved, v: Array, t: float) -> Array:
        """J_{prox t f}(z)ᵀ v from the ``saved`` of :meth:`prox_save`."""

    def start(self, zeros: Array) -> Array:
        return zeros

    def check_start(self, name: str, x: Array) -> None:
        """Raise naming ``name`` if the steps cannot move from the start ``x`` (nothing to
        check for Euclidean steps; entropic steps need x > 0)."""
        return None

    def conj_start(self, zeros: Array) -> Array:
        return zeros

    def conj_start_param_vjp(self, e: Array):
        """∇_params ⟨e, conj_start(zeros)⟩: how the first dual iterate y⁰ depends on the
        parameters (``()``: it does not). The full reverse pass adds it with e = ε_D^1, the
        cotangent reaching y⁰."""
        return ()

    # the Euclidean proximal steps at z = prev + a; Bregman functions override these
    def prox_step(self, prev: Array, a: Array, t: float) -> Array:
        return self.prox(prev + a, t)

    def prox_step_save(self, prev: Array, a: Array, t: float):
        return self.prox_save(prev + a, t)

    def prox_step_vjp(self, saved, v: Array, t: float) -> tuple[Array, Array]:
        w = self.prox_vjp(saved, v, t)
        return w, w

    def prox_step_param_vjp(self, saved, v: Array, t: float):
        return self.prox_param_vjp(saved, v, t)

    def conj_prox_step(self, prev: Array, a: Array, s: float) -> Array:
        return self.conj_prox(prev + a, s)

    def conj_prox_step_save(self, prev: Array, a: Array, s: float):
        return self.conj_prox_save(prev + a, s)

    def conj_prox_step_vjp(self, saved, v: Array, s: float) -> tuple[Array, Array]:
        w = self.conj_prox_vjp(saved, v, s)
        return w, w

    def conj_prox_step_param_vjp(self, saved, v: Array, s: float):
        return self.conj_prox_param_vjp(saved, v, s)

    # conjugate through the Moreau identity; subclasses override where a direct formula is faster
    def conj_prox(self, z: Array, s: float) -> Array:
        return self.conj_prox_save(z, s)[0]

    def conj_prox_save(self, z: Array, s: float):
        inner, saved = self.prox_save(z / s, 1 / s)
        return z - s * inner, saved

    def conj_prox_vjp(self, saved, v: Array, s: float) -> Array:
        return v - self.prox_vjp(saved, v, 1 / s)

    def prox_param_vjp(self, saved, v: Array, t: float):
        """∇_params ⟨v, prox_{tf}(z)⟩ with z fixed (same structure as ``params``)."""
        return ()

    def conj_prox_param_vjp(self, saved, v: Array, s: float):
        """∇_params ⟨v, prox_{sf*}(z)⟩; by default through the Moreau identity, which matches
        the default ``conj_prox_save`` (a subclass overriding that overrides this too)."""
        grad = self.prox_param_vjp(saved, v, 1 / s)
        return grad if isinstance(grad, tuple) and not grad else -s * grad


def _slack(x: Array) -> float:
    """1 + 100 ε of x's dtype: tolerance for feasibility checks of rounded iterates."""
    return 1 + 100 * float(_xp(x).finfo(x.dtype).eps)


def _inf_where(xp, infeasible: Array, like: Array) -> Array:
    zero = xp.zeros(infeasible.shape, dtype=like.dtype, device=_device(like))
    return xp.where(infeasible, xp.asarray(math.inf, dtype=like.dtype, device=_device(like)), zero)


def _keep(mask: Array, v: Array) -> Array:
    """v where mask, else 0: the VJP of a map whose Jacobian is the 0/1 diagonal ``mask``
    (a product with the 0/1 mask: several times faster than ``where`` on NumPy)."""
    return v * _xp(v).astype(mask, v.dtype)


@saveable
class L1Norm(Function):
    """f(x) = w ‖x‖₁. prox: soft threshold at t w; prox of s f*: clip to [−w, w]."""

    def __init__(self, weight: float = 1.0):
        self.weight = check_positive("weight", weight)

    def value(self, x):
        xp = _xp(x)
        return self.weight * xp.sum(xp.abs(x), axis=_signal_axes(x))

    def conj_value(self, y):
        xp = _xp(y)
        return _inf_where(xp, xp.max(xp.abs(y), axis=_signal_axes(y)) > self.weight * _slack(y), y)

    def prox_save(self, z, t):
        xp = _xp(z)
        thr = t * self.weight
        mask = xp.abs(z) > thr
        return xp.where(mask, z - thr * xp.sign(z), xp.zeros_like(z)), mask

    def prox_vjp(self, mask, v, t):
        return _keep(mask, v)

    def conj_prox(self, z, s):
        return _xp(z).clip(z, -self.weight, self.weight)

    def conj_prox_save(self, z, s):
        # the clip's output y is its own record: |y| < w exactly where the Jacobian is 1, so the
        # reverse pass keeps no mask beside the y^k it stores anyway (z = ±w exactly: 0 is taken)
        y = _xp(z).clip(z, -self.weight, self.weight)
        return y, y

    def conj_prox_vjp(self, y, v, s):
        # v where |y| < w: w − |y| is > 0 exactly there (y is the clip's output, |y| ≤ w), so
        # its ceil is 0 at |y| = w and ≥ 1 elsewhere (1 for w ≤ 1): the 0/1 mask without a bool
        # array, which torch's CPU kernels make and cast slowly (mask and product of a
        # 32 × 320 float32 batch, one thread: 11 µs against 19 µs; NumPy 5.3 µs either way)
        xp = _xp(y)
        mask = xp.ceil(self.weight - xp.abs(y))
        if self.weight > 1:
            mask = xp.clip(mask, max=1.0)
        return v * mask

    def __repr__(self):
        return f"L1Norm(weight={self.weight})"


@saveable
class LinfBall(Function):
    """Indicator of {‖x‖_∞ ≤ radius}. prox: clip to [−radius, radius] (any step);
    prox of s f*: soft threshold at s·radius (f* = radius ‖·‖₁)."""

    def __init__(self, radius: float):
        self.radius = check_positive("radius", radius)

    def value(self, x):
        xp = _xp(x)
        return _inf_where(xp, xp.max(xp.abs(x), axis=_signal_axes(x)) > self.radius * _slack(x), x)

    def conj_value(self, y):
        xp = _xp(y)
        return self.radius * xp.sum(xp.abs(y), axis=_signal_axes(y))

    def prox(self, z, t):
        return _xp(z).clip(z, -self.radius, self.radius)

    def prox_save(self, z, t):
        # the clip returns z itself exactly where |z| ≤ ρ (and ±ρ ≠ z elsewhere): the mask of
        # its Jacobian in one comparison, without |z|
        u = _xp(z).clip(z, -self.radius, self.radius)
        return u, u == z

    def prox_vjp(self, mask, v, t):
        return _keep(mask, v)

    def __repr__(self):
        return f"LinfBall(radius={self.radius})"


@saveable
class L2Ball(Function):
    """Indicator of {‖x_i‖₂ ≤ radius} for every signal x_i of the batch (norm over all non-batch
    axes). prox: x ↦ x·min(1, ρ/‖x‖); its Jacobian outside the ball is (ρ/‖z‖)(I − u uᵀ),
    u = z/‖z‖: not diagonal. f* = radius ‖·‖₂."""

    def __init__(self, radius: float):
        self.radius = check_positive("radius", radius)

    def radius_for(self, x) -> float:
        """The radius ρ for signals of the shape of ``x`` (batch first): ``radius`` here."""
        return self.radius

    def _norms(self, x):
        return _xp(x).linalg.vector_norm(x, axis=_signal_axes(x), keepdims=True)

    def value(self, x):
        xp = _xp(x)
        return _inf_where(xp, xp.reshape(self._norms(x), (-1,)) > self.radius_for(x) * _slack(x),
                          x)

    def conj_value(self, y):
        xp = _xp(y)
        return self.radius_for(y) * xp.reshape(self._norms(y), (-1,))

    def prox_save(self, z, t):
        xp = _xp(z)
        rho = self.radius_for(z)
        nrm = self._norms(z)
        outside = nrm > rho
        scale = xp.where(outside, rho / xp.where(outside, nrm, xp.ones_like(nrm)),
                         xp.ones_like(nrm))
        return z * scale, (z, nrm, scale)

    def prox_vjp(self, saved, v, t):
        xp = _xp(v)
        z, nrm, scale = saved
        outside = nrm > self.radius_for(z)
        safe = xp.where(outside, nrm, xp.ones_like(nrm))
        u = z / safe
        uv = xp.sum(u * v, axis=_signal_axes(v), keepdims=True)
        return scale * (v - xp.where(outside, uv, xp.zeros_like(uv)) * u)

    def __repr__(self):
        return f"L2Ball(radius={self.radius})"


@saveable
class NoiseL2Ball(L2Ball):
    """Indicator of {‖x_i‖₂ ≤ c σ √N} for every signal x_i of N entries: the ℓ2 ball that
    holds Gaussian noise of level σ (‖noise‖₂ ≈ σ√N), as G of a denoising model
    (G(x − x̃)). The radius follows the signal's size at every call, so one model applies to
    images of any size; on N-entry signals it equals ``L2Ball(c * sigma * sqrt(N))``."""

    def __init__(self, sigma: float, c: float = 1.0):
        self.sigma = check_positive("sigma", sigma)
        self.c = check_positive("c", c)

    def radius_for(self, x) -> float:
        return self.radius_of_size(math.prod(x.shape[1:]))

    def radius_of_size(self, n: int) -> float:
        """c σ √n: the radius for signals of n entries."""
        return self.c * self.sigma * math.sqrt(n)

    def __repr__(self):
        return f"NoiseL2Ball(sigma={self.sigma}, c={self.c})"


@saveable
class Zero(Function):
    """f = 0. prox: identity; f* is the indicator of {0} (values within 100 ε of 0 count as 0),
    prox of s f*: 0."""

    def value(self, x):
        xp = _xp(x)
        return xp.zeros((x.shape[0],), dtype=x.dtype, device=_device(x))

    def conj_value(self, y):
        # {0} up to the rounding of iterates of order 1 (e.g. y − c of a LinearTerm)
        xp = _xp(y)
        return _inf_where(xp, xp.max(xp.abs(y), axis=_signal_axes(y)) > _slack(y) - 1, y)

    def prox_save(self, z, t):
        return z, None

    def prox_vjp(self, saved, v, t):
        return v

    def conj_prox_save(self, z, s):
        return _xp(z).zeros_like(z), None

    def conj_prox_vjp(self, saved, v, s):
        return _xp(v).zeros_like(v)

    def __repr__(self):
        return "Zero()"


@saveable
class SquaredL2(Function):
    """f(x) = (w/2)‖x‖². prox: z/(1 + t w); f* = ‖·‖²/(2w)."""

    def __init__(self, weight: float = 1.0):
        self.weight = check_positive("weight", weight)

    def value(self, x):
        xp = _xp(x)
        return 0.5 * self.weight * xp.sum(x * x, axis=_signal_axes(x))

    def conj_value(self, y):
        xp = _xp(y)
        return 0.5 / self.weight * xp.sum(y * y, axis=_signal_axes(y))

    def prox_save(self, z, t):
        return z / (1 + t * self.weight), None

    def prox_vjp(self, saved, v, t):
        return v / (1 + t * self.weight)

    def __repr__(self):
        return f"SquaredL2(weight={self.weight})"


def check_axis(name: str, axis: int, x: Array) -> None:
    """Raise naming ``name`` unless ``x`` has an axis ``axis`` (a function's group or label
    axis; axis 0 is the batch)."""
    if x.ndim <= axis:
        raise ValueError(f"{name}={axis} needs arrays with more than {axis} axes (axis 0 is the "
                         f"batch), got shape {tuple(x.shape)}")


@saveable
class L21Norm(Function):
    """f(u) = w Σ_pixels ‖u_g‖₂, the ℓ2 norm over the groups along ``group_axis`` summed over all
    other non-batch axes (isotropic TV of a :class:`Gradient2d` output: group_axis=1).

    prox: group soft threshold u_g ↦ u_g·max(0, 1 − t w/‖u_g‖), Jacobian on active groups
    (1 − tw/‖z‖) I + (tw/‖z‖) ẑ ẑᵀ (ẑ = z/‖z‖); prox of s f*: projection of every group on the
    ball of radius w, Jacobian (w/‖z‖)(I − ẑ ẑᵀ) outside.
    """

    def __init__(self, weight: float = 1.0, group_axis: int = 1):
        self.weight = check_positive("weight", weight)
        self.group_axis = check_count("group_axis", group_axis)

    def _norms(self, x):
        check_axis("group_axis", self.group_axis, x)
        return _xp(x).linalg.vector_norm(x, axis=self.group_axis, keepdims=True)

    def value(self, x):
        return self.weight * _xp(x).sum(self._norms(x), axis=_signal_axes(x))

    def conj_value(self, y):
        xp = _xp(y)
        return _inf_where(xp, xp.max(self._norms(y), axis=_signal_axes(y)) > self.weight
                          * _slack(y), y)

    def prox_save(self, z, t):
        xp = _xp(z)
        nrm = self._norms(z)
        thr = t * self.weight
        active = nrm > thr
        safe = xp.where(active, nrm, xp.ones_like(nrm))
        scale = xp.where(active, 1 - thr / safe, xp.zeros_like(nrm))
        return z * scale, (z, nrm)

    def prox_vjp(self, saved, v, t):
        xp = _xp(v)
        z, nrm = saved
        thr = t * self.weight
        active = nrm > thr
        safe = xp.where(active, nrm, xp.ones_like(nrm))
        zv = xp.sum(z * v, axis=self.group_axis, keepdims=True)
        out = (1 - thr / safe) * v + (thr * zv / safe**3) * z
        return xp.where(active, out, xp.zeros_like(out))

    def conj_prox_save(self, z, s):
        xp = _xp(z)
        nrm = self._norms(z)
        outside = nrm > self.weight
        safe = xp.where(outside, nrm, xp.ones_like(nrm))
        return z * xp.where(outside, self.weight / safe, xp.ones_like(nrm)), (z, nrm)

    def conj_prox_vjp(self, saved, v, s):
        xp = _xp(v)
        z, nrm = saved
        outside = nrm > self.weight
        safe = xp.where(outside, nrm, xp.ones_like(nrm))
        zv = xp.sum(z * v, axis=self.group_axis, keepdims=True)
        out = (self.weight / safe) * (v - (zv / safe**2) * z)
        return xp.where(outside, out, v)

    def __repr__(self):
        return f"L21Norm(weight={self.weight}, group_axis={self.group_axis})"


@saveable
class Simplex(Function):
    """Indicator of the probability simplex along ``axis`` at every other position (pixelwise
    label probabilities: u ≥ 0, Σ_axis u = 1). f*(y) = Σ_pixels max_axis y.

    prox (any step): Euclidean projection u = max(z − θ, 0) with θ = max_k (Σ_{i≤k} z_(i) − 1)/k
    over the values sorted in decreasing order; Jacobian on the support S: I − 1 1ᵀ/|S|.
    """

    def __init__(self, axis: int = 1):
        self.axis = check_count("axis", axis)

    def value(self, x):
        check_axis("axis", self.axis, x)
        xp = _xp(x)
        axes = _signal_axes(x)
        off = xp.abs(xp.sum(x, axis=self.axis, keepdims=True) - 1)
        slack = 64 * xp.finfo(x.dtype).eps * x.shape[self.axis]  # rounding of the sum
        bad = (xp.max(off, axis=axes) > slack) | (xp.min(x, axis=axes) < 0)
        return _inf_where(xp, bad, x)

    def conj_value(self, y):
        check_axis("axis", self.axis, y)
        xp = _xp(y)
        return xp.sum(xp.max(y, axis=self.axis, keepdims=True), axis=_signal_axes(y))

    def prox_save(self, z, t):
        check_axis("axis", self.axis, z)
        xp = _xp(z)
        n = z.shape[self.axis]
        shape = tuple(n if i == self.axis else 1 for i in range(z.ndim))
        k = xp.reshape(xp.arange(1, n + 1, dtype=z.dtype, device=_device(z)), shape)
        descending = xp.flip(xp.sort(z, axis=self.axis), axis=self.axis)  # NumPy: no descending=
        partial = xp.cumulative_sum(descending, axis=self.axis)
        theta = xp.max((partial - 1) / k, axis=self.axis, keepdims=True)
        support = z > theta
        return xp.where(support, z - theta, xp.zeros_like(z)), support

    def prox_vjp(self, support, v, t):
        xp = _xp(v)
        kept = _keep(support, v)
        count = xp.sum(xp.astype(support, v.dtype), axis=self.axis, keepdims=True)
        return _keep(support, v - xp.sum(kept, axis=self.axis, keepdims=True) / count)

    def __repr__(self):
        return f"Simplex(axis={self.axis})"


@saveable
class NonNegative(Function):
    """Indicator of {x ≥ 0}. prox: max(z, 0) (any step), derivative 1 on z ≥ 0 (the boundary
    counts as inside, as for the clips); f* = indicator of {y ≤ 0}, prox of s f*: min(z, 0).
    Both indicators accept 100 ε of rounding (e.g. of y − c in a :class:`LinearTerm`)."""

    def value(self, x):
        xp = _xp(x)
        return _inf_where(xp, xp.min(x, axis=_signal_axes(x)) < 1 - _slack(x), x)

    def conj_value(self, y):
        xp = _xp(y)
        return _inf_where(xp, xp.max(y, axis=_signal_axes(y)) > _slack(y) - 1, y)

    def prox_save(self, z, t):
        xp = _xp(z)
        mask = z >= 0
        return xp.where(mask, z, xp.zeros_like(z)), mask

    def prox_vjp(self, mask, v, t):
        return _keep(mask, v)

    def __repr__(self):
        return "NonNegative()"


@saveable
class LinearTerm(Function):
    """f(u) = ⟨c, u⟩ + base(u) with costs c of one signal's shape (shared by the batch) or of the
    batch's shape (one per signal); ``base`` defaults to :class:`Zero`.

    prox_{tf}(z) = prox_{t base}(z − t c); f*(y) = base*(y − c). ``params`` = c, with
    ∇_c ⟨v, prox_{tf}(z)⟩ = −t J_{prox t base}(z − tc)ᵀ v (summed over the batch for shared c).
    Every step method of ``base`` (Euclidean or Bregman, primal and dual) is used through the
    shift: primal steps along a − t c, dual steps in y − c (the dual start is c plus the
    base's).
    """

    def __init__(self, c: Array, base: Function | None = None):
        xp = namespace(("c", c))
        if 0 in tuple(c.shape) or c.ndim == 0:
            raise ValueError(f"c must hold the costs of one signal or of a batch, got shape "
                             f"{tuple(c.shape)}")
        check_finite(xp, c=c)
        base = Zero() if base is None else base
        if not isinstance(base, Function):
            raise TypeError(f"base must be a pdunroll Function, got {type(base).__name__}")
        if not (isinstance(base.params, tuple) and not base.params):
            raise ValueError(f"base must be a function without parameters, got {base!r}")
        self.params = c
        self.base = base

    @property
    def c(self) -> Array:
        return self.params

    def with_params(self, c: Array) -> LinearTerm:
        return LinearTerm(c, self.base)

    def to_config(self, writer) -> dict:
        return {"c": writer.array(self.params), "base": writer.part(self.base)}

    @classmethod
    def from_config(cls, config, reader) -> LinearTerm:
        return cls(reader.array(config["c"]), reader.part(config["base"]))

    def value(self, x):
        xp = _xp(x)
        return xp.sum(self.params * x, axis=_signal_axes(x)) + self.base.value(x)

    def conj_value(self, y):
        return self.base.conj_value(y - self.params)

    def prox_save(self, z, t):
        return self.base.prox_save(z - t * self.params, t)

    def prox_vjp(self, saved, v, t):
        return self.base.prox_vjp(saved, v, t)

    def prox_param_vjp(self, saved, v, t):
        return self._cost_grad(-t * self.base.prox_vjp(saved, v, t))

    def _check_params(self, name, signal_shape, batch):
        shape, full = tuple(self.params.shape), (batch, *signal_shape)
        if shape not in (signal_shape, full):
            raise ValueError(f"the costs c of {name} must have shape {signal_shape} or (batch, "
                             f"{', '.join(map(str, signal_shape))}) = {full}, got {shape}")

    def _cost_grad(self, grad):
        return _xp(grad).sum(grad, axis=0) if self.params.ndim < grad.ndim else grad

    # primal steps: the base's step along a − t c (Euclidean or Bregman), ∇_c ⟨v, u⟩ = −t δ
    def check_start(self, name, x):
        self.base.check_start(name, x)

    def start(self, zeros):
        return self.base.start(zeros)

    def prox_step(self, prev, a, t):
        return self.base.prox_step(prev, a - t * self.params, t)

    def prox_step_save(self, prev, a, t):
        return self.base.prox_step_save(prev, a - t * self.params, t)

    def prox_step_vjp(self, saved, v, t):
        return self.base.prox_step_vjp(saved, v, t)

    def prox_step_param_vjp(self, saved, v, t):
        return self._cost_grad(-t * self.base.prox_step_vjp(saved, v, t)[1])

    # dual steps: f* = base*(· − c), so the base's step (Euclidean or Bregman) in w = y − c,
    # y' = c + P(y − c, a); ∇_c ⟨v, y'⟩ = v − ε with ε the cotangent of the previous iterate
    def conj_start(self, zeros):
        return self.params + self.base.conj_start(zeros)

    def conj_start_param_vjp(self, e):
        return self._cost_grad(e)

    def conj_prox_step(self, prev, a, s):
        return self.params + self.base.conj_prox_step(prev - self.params, a, s)

    def conj_prox_step_save(self, prev, a, s):
        w, saved = self.base.conj_prox_step_save(prev - self.params, a, s)
        return self.params + w, saved

    def conj_prox_step_vjp(self, saved, v, s):
        return self.base.conj_prox_step_vjp(saved, v, s)

    def conj_prox_step_param_vjp(self, saved, v, s):
        return self._cost_grad(v - self.base.conj_prox_step_vjp(saved, v, s)[0])

    def __repr__(self):
        return f"LinearTerm(c of shape {tuple(self.params.shape)}, base={self.base!r})"
