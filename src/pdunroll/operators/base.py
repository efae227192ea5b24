"""Linear analysis operators K acting on batches of signals.

An operator maps arrays of shape ``(batch, *in_shape)`` to ``(batch, *out_shape)``. It offers

* ``apply(x)``: K x, and ``adjoint(y)``: Kᵀ y, which check their argument (shape, backend) and
  call the products ``_apply(x)`` and ``_adjoint(y)``, which check nothing: the solvers check
  their inputs once, at the entry point, and call the products in their loops;
* ``param_vjp(a, b)``: the gradient of Σ_batch ⟨a, K b⟩ with respect to the operator's own
  parameters ``params`` (same structure as ``params``), the only place the reverse recursions
  need to know what K is made of;
* ``with_params(params)``: the same operator with new parameters (operators are immutable),
  which may be of another dtype or backend (how an operator is moved);
* ``norm()``: the spectral norm ‖K‖ (exact where cheap, else :func:`estimate_norm`);
* ``scaled(c)``: c K, which the Chambolle-Pock passes make once per call as σK and −τK.
"""

from __future__ import annotations

import copy
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass

from .._array import (
    Array,
    array_device,
    as_float,
    check_count,
    default_namespace,
    namespace,
)
from ..tree import flatten, scale

__all__ = ["FixedOperator", "LinearOperator", "NormEstimate", "ScaledOperator", "check_batch",
           "check_params_shape", "estimate_norm", "power_steps", "start_vector"]


class LinearOperator(ABC):
    """Base class: subclasses set ``in_shape``, ``out_shape``, ``params`` and implement the
    products ``_apply`` (K x) and ``_adjoint`` (Kᵀ y), ``param_vjp`` and ``with_params``.

    ``apply`` and ``adjoint`` check their argument and call the products of the class that
    defines them; the solvers call the products. An operator that defines ``apply`` and
    ``adjoint`` itself (the contract before the products existed) keeps working: its methods
    are its products too. ``params`` is an array or a (nested) tuple of arrays; a fixed
    operator has ``params = ()`` and overrides ``arrays`` to return an array that fixes its
    namespace, dtype and device.
    """

    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    params: Array

    def __init_subclass__(cls, **kwargs):
        """Pair each product with its checked method: a class that defines ``_apply`` gets an
        ``apply`` that checks x and calls that ``_apply`` (not an override's below it, which
        may call it through ``super()``); a class that defines ``apply`` only has it as its
        ``_apply`` (likewise for ``adjoint``)."""
        super().__init_subclass__(**kwargs)
        for public, product, arg, shape in _PRODUCTS:
            own = cls.__dict__
            if product in own and public not in own:
                setattr(cls, public, _checked(cls, own[product], public, arg, shape))
            elif public in own and product not in own:
                setattr(cls, product, own[public])

    def apply(self, x: Array) -> Array:
        """K x for x of shape (batch, *in_shape), checked."""
        check_batch(self, "apply", "x", x, self.in_shape)
        return self._apply(x)

    def adjoint(self, y: Array) -> Array:
        """Kᵀ y for y of shape (batch, *out_shape), checked."""
        check_batch(self, "adjoint", "y", y, self.out_shape)
        return self._adjoint(y)

    @abstractmethod
    def _apply(self, x: Array) -> Array:
        """K x for x of shape (batch, *in_shape) of the operator's backend, unchecked."""

    @abstractmethod
    def _adjoint(self, y: Array) -> Array:
        """Kᵀ y for y of shape (batch, *out_shape) of the operator's backend, unchecked."""

    @abstractmethod
    def param_vjp(self, a: Array, b: Array):
        """∇_params Σ_batch ⟨a, K b⟩ for a: (batch, *out_shape), b: (batch, *in_shape)."""

    @abstractmethod
    def with_params(self, params) -> LinearOperator:
        """The same operator with new parameters (same structure as ``params``)."""

    @property
    def arrays(self) -> tuple:
        """The arrays the operator holds (its parameters' leaves): they fix namespace, dtype and
        device."""
        return tuple(flatten(self.params))

    @property
    def xp(self):
        """The array namespace of the operator's parameters (looked up once per operator:
        operators are immutable)."""
        xp = self.__dict__.get("_namespace")
        if xp is None:
            xp = namespace(*(("operator parameter", p) for p in self.arrays))
            self.__dict__["_namespace"] = xp
        return xp

    def __getstate__(self):
        """Pickled (Dask sends operators to its workers) without the looked-up namespace, a
        module."""
        state = dict(self.__dict__)
        state.pop("_namespace", None)
        return state

    @property
    def dtype(self):
        return self.arrays[0].dtype

    @property
    def device(self):
        return array_device(self.arrays[0])

    def norm(self, *, iterations: int = 500, rtol: float = 1e-7) -> float:
        """Spectral norm ‖K‖ = largest singular value (power iteration unless overridden)."""
        return estimate_norm(self, iterations=iterations, rtol=rtol).value

    def scaled(self, c) -> LinearOperator:
        """c K for a number or 0-d array c (of the operator's namespace). The Chambolle-Pock
        passes make σK and −τK once per call, so that no step multiplies an iterate by σ or τ
        (docs, Mathematics: "The forward pass"). By default a :class:`ScaledOperator`, which
        multiplies each product by c; operators linear in their parameters override this to
        scale the parameters instead (one pass over them per call, none per product)."""
        return ScaledOperator(self, c)

    def _with_scaled_params(self, c) -> LinearOperator:
        """The operator with parameters c·params (one array), without the constructor's checks:
        its values were checked when it was made, and reading c·params would be a host round
        trip on every solver call."""
        new = copy.copy(self)
        new.params = c * self.params
        return new

    def at_shape(self, shape: tuple[int, ...]) -> LinearOperator:
        """The same operator (same parameters) for signals of shape ``shape``: itself for its
        own ``in_shape``. Operators whose parameters do not depend on the signal's size (the
        filter banks, :class:`~pdunroll.Gradient2d`, and stacks and compositions of them)
        override this; for the others any other shape is an error."""
        shape = tuple(shape)
        if shape == tuple(self.in_shape):
            return self
        raise ValueError(f"{type(self).__name__} acts on signals of shape {tuple(self.in_shape)} "
                         f"only (its parameters are tied to that size), got shape {shape}")

    def to_config(self, writer) -> dict:
        """The operator's description for a file (:mod:`pdunroll.registry`): its settings as
        JSON values, its arrays as references of ``writer.array``. Saveable operators (class
        decorator :func:`pdunroll.saveable`) override this and :meth:`from_config`."""
        raise TypeError(f"{type(self).__qualname__} is registered as saveable but does not "
                        "describe itself: give it to_config(self, writer) -> dict and a "
                        "classmethod from_config(cls, config, reader)")

    @classmethod
    def from_config(cls, config: dict, reader) -> LinearOperator:
        """The operator a :meth:`to_config` dict describes, arrays from ``reader``."""
        raise TypeError(f"{cls.__qualname__} cannot be rebuilt from a file: give it a "
                        "classmethod from_config(cls, config, reader)")


# (checked method, product, argument name, attribute holding the argument's signal shape)
_PRODUCTS = (("apply", "_apply", "x", "in_shape"), ("adjoint", "_adjoint", "y", "out_shape"))


def _checked(cls: type, product, public: str, arg: str, shape: str):
    """The method ``public`` of ``cls``: check the argument, then call ``product``."""

    def method(self, x: Array) -> Array:
        check_batch(self, public, arg, x, getattr(self, shape))
        return product(self, x)

    method.__name__, method.__qualname__ = public, f"{cls.__qualname__}.{public}"
    method.__doc__ = getattr(LinearOperator, public).__doc__
    return method


class ScaledOperator(LinearOperator):
    """c K: an operator's products multiplied by c (a number or 0-d array), what
    :meth:`LinearOperator.scaled` gives where the operator has no cheaper form of its own.
    ``params`` are K's; ``param_vjp`` is c times K's."""

    def __init__(self, operator: LinearOperator, c):
        self.operator, self.scale = operator, c
        self.in_shape, self.out_shape = operator.in_shape, operator.out_shape
        self.params = operator.params

    @property
    def arrays(self) -> tuple:
        return self.operator.arrays

    def _apply(self, x: Array) -> Array:
        return self.scale * self.operator._apply(x)

    def _adjoint(self, y: Array) -> Array:
        return self.scale * self.operator._adjoint(y)

    def param_vjp(self, a: Array, b: Array):
        return scale(self.scale, self.operator.param_vjp(a, b))

    def with_params(self, params) -> ScaledOperator:
        return ScaledOperator(self.operator.with_params(params), self.scale)

    def scaled(self, c) -> LinearOperator:
        return self.operator.scaled(c * self.scale)

    def __repr__(self) -> str:
        return f"ScaledOperator({self.operator!r}, {self.scale!r})"


class FixedOperator(LinearOperator):
    """Base of operators without parameters (``params = ()``). ``_place(xp, dtype, device)``
    makes a one-entry array that fixes their namespace, dtype and device (a dtype such as
    ``torch.float32`` given without ``xp`` picks its library; default NumPy float64);
    operators that hold arrays of their own (a kernel, a mask) return those as ``arrays``."""

    params = ()

    def _place(self, xp, dtype, device) -> None:
        xp = default_namespace(xp, dtype)
        self._template = xp.zeros((1,), dtype=xp.float64 if dtype is None else dtype,
                                  device=device)
        namespace(("dtype", self._template))

    @property
    def arrays(self) -> tuple:
        return (self._template,)


def check_batch(op: LinearOperator, method: str, name: str, x: Array,
                shape: tuple[int, ...]) -> None:
    """Raise ``ValueError`` naming the operator's ``method`` and its argument ``name`` unless x
    has shape (batch, *shape): a wrong size would otherwise broadcast, or be sliced, into a wrong
    result without an error; and a ``TypeError`` if x comes from another backend than the
    operator's arrays (NumPy's ``@`` would return a torch tensor for one; a NumPy x is left to
    the operator's backend, which converts it or raises)."""
    if not hasattr(x, "ndim") or not hasattr(x, "dtype"):
        raise TypeError(f"{type(op).__name__}.{method}: {name} must be an array of the "
                        f"operator's backend, got {type(x).__name__}")
    if x.ndim != len(shape) + 1 or tuple(x.shape[1:]) != tuple(shape):
        raise ValueError(f"{type(op).__name__}.{method}: {name} must have shape "
                         f"(batch, {', '.join(map(str, shape))}), got {tuple(x.shape)}")
    ref = op.__dict__.get("_array_type")  # the type of the operator's arrays, found once
    if ref is None:
        ref = op.__dict__["_array_type"] = type(op.arrays[0])
    # another type, e.g. a traced JAX value: compare namespaces (slower, rare). A subclass either
    # way is the same backend (torch.nn.Parameter and torch.Tensor); a NumPy x is let through
    # (JAX promotes it, e.g. the cotangents of jax.test_util.check_grads)
    if (type(x) is not ref and type(x).__module__ != "numpy"
            and not isinstance(x, ref) and not issubclass(ref, type(x))):
        namespace((name, x), *((f"{type(op).__name__} parameter", p) for p in op.arrays))


def check_params_shape(op: LinearOperator, params: Array) -> None:
    """``with_params`` keeps the operator's geometry: raise ``ValueError`` unless an array
    ``params`` has the shape of ``op.params`` (a wrong one would silently change in_shape or
    out_shape; non-arrays are left to the constructor's type check). Another dtype or backend
    is accepted on purpose: that is how an operator is moved (the command line's ``--dtype``
    and ``--backend``, the audit's autodiff rows); signals of the old dtype are then refused
    by the solver, naming them."""
    shape = getattr(params, "shape", None)
    if shape is not None and tuple(shape) != tuple(op.params.shape):
        raise ValueError(f"{type(op).__name__}.with_params: params must have shape "
                         f"{tuple(op.params.shape)} (the operator's), got {tuple(shape)}")


def start_vector(op: LinearOperator) -> Array:
    """The power iteration's deterministic, generic start: v_i = sin(1.2345 i + 0.5) of shape
    (1, *in_shape) (the array API has no random numbers), not normalised."""
    xp, n = op.xp, math.prod(op.in_shape)
    v = xp.sin(xp.arange(n, dtype=op.dtype, device=op.device) * 1.2345 + 0.5)
    return xp.reshape(v, (1, *op.in_shape))


def power_steps(op: LinearOperator, v: Array, iterations: int) -> tuple[Array, Array]:
    """``iterations`` power iterations on KᵀK from v (shape (1, *in_shape)): v ← KᵀK v /
    ‖KᵀK v‖, returning (√‖KᵀK v‖, v) with the estimate a 0-d array. A fixed count, no
    convergence test: no host round trip (the training loop's and the layers' refresh of ‖K‖,
    also under ``jax.jit``). The estimate approaches ‖K‖ from below."""
    xp = op.xp
    v = v / xp.linalg.vector_norm(v)
    nrm = None
    for _ in range(iterations):
        w = op._adjoint(op._apply(v))
        nrm = xp.linalg.vector_norm(w)
        v = w / nrm
    return xp.sqrt(nrm), v


@dataclass(frozen=True)
class NormEstimate:
    """Result of :func:`estimate_norm`: the estimate, the right singular vector (pass it back as
    ``v0`` to warm-start the next estimate after a small change of K) and the iterations used."""

    value: float
    vector: Array
    iterations: int


def estimate_norm(
    op: LinearOperator, *, v0: Array | None = None, iterations: int = 500, rtol: float = 1e-7
) -> NormEstimate:
    """Estimate ‖K‖ by power iteration on KᵀK: v ← KᵀK v / ‖KᵀK v‖, ‖K‖ ≈ √‖KᵀK v‖.

    Stops when the estimate changes by less than ``rtol`` (relative) or after ``iterations``.
    The estimate approaches ‖K‖ from below; the step-size rules keep a margin (0.99) for that.
    ``v0`` warm-starts from a previous :class:`NormEstimate`'s ``vector``.
    """
    if not isinstance(op, LinearOperator):
        raise TypeError(f"op must be a LinearOperator (e.g. pdunroll.DenseOperator(K)), got "
                        f"{type(op).__name__}")
    iterations = check_count("iterations", iterations)
    if not 0 <= as_float("rtol", rtol, "a finite number >= 0") < math.inf:
        raise ValueError(f"rtol must be a finite number >= 0, got {rtol!r}")
    xp = op.xp
    shape, n = (1, *op.in_shape), math.prod(op.in_shape)
    if v0 is None:
        v = start_vector(op)
    else:
        namespace(("v0", v0), *(("operator parameter", p) for p in op.arrays))
        if v0.dtype != op.dtype:
            raise TypeError(f"v0 has dtype {v0.dtype} but the operator has {op.dtype}")
        if math.prod(v0.shape) != n:
            raise ValueError(f"v0 must hold one signal of shape {op.in_shape} ({n} numbers), "
                             f"got shape {tuple(v0.shape)}")
        v = xp.reshape(v0, shape)
    start = float(xp.linalg.vector_norm(v))
    if not 0 < start < math.inf:
        raise ValueError(f"v0 must be a nonzero finite vector, got norm {start}")
    v = v / start
    value = 0.0
    for it in range(1, iterations + 1):
        w = op._adjoint(op._apply(v))
        nrm = float(xp.linalg.vector_norm(w))
        if nrm == 0.0:
            return NormEstimate(0.0, v, it)
        new = math.sqrt(nrm)
        v = w / nrm
        if abs(new - value) <= rtol * new:
            return NormEstimate(new, v, it)
        value = new
    return NormEstimate(value, v, iterations)
