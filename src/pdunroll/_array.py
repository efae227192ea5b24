"""The one place that talks to array-api-compat: namespaces, devices, dtypes and input checks.

Every public function of pdunroll takes its arrays from the user, finds their namespace and
device here, and creates new arrays with ``dtype=`` and ``device=`` of its inputs. Nothing here
imports torch, cupy or jax: array-api-compat recognises their arrays without importing them.
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib
import math
import numbers
import sys
from typing import Any

import array_api_compat
from array_api_compat import device as array_device
from array_api_compat import size as array_size

__all__ = [
    "Array",
    "array_device",
    "array_size",
    "check_count",
    "check_finite",
    "check_flag",
    "check_positive",
    "default_namespace",
    "is_host_device",
    "namespace",
    "to_host",
    "to_numpy",
    "trusted_values",
    "xp_of",
]

Array = Any  # any array of a namespace that follows the array API standard


def namespace(*named: tuple[str, Array]):
    """Return the namespace shared by the named arrays; raise naming the odd one out.

    ``named`` are ``(argument name, array)`` pairs, e.g. ``namespace(("x_tilde", x), ("K", K))``.
    Also checks that every array lives on the same device and has a real floating dtype of
    32 or 64 bits (float16 is refused: its ε ≈ 1e−3 breaks the solvers' tolerances).
    """
    xp = None
    first = None
    for name, a in named:
        try:
            a_xp = _namespace_of(a)
        except TypeError as err:
            raise TypeError(f"{name} must be an array (numpy, torch, cupy, jax, ...), got "
                            f"{type(a).__name__}") from err
        if xp is None:
            xp, first = a_xp, (name, a)
            continue
        if a_xp is not xp:
            raise TypeError(
                f"{name} is a {_lib(a)} array but {first[0]} is a {_lib(first[1])} array: "
                "all arrays must come from one backend"
            )
        # a traced JAX value (inside jax.jit, jax.grad, jax.vjp) has no device yet: None
        if None not in (array_device(a), array_device(first[1])) and (
                array_device(a) != array_device(first[1])):
            raise ValueError(
                f"{name} is on device {array_device(a)} but {first[0]} is on device "
                f"{array_device(first[1])}: move them to one device"
            )
    for name, a in named:
        if not xp.isdtype(a.dtype, "real floating") or a.dtype not in (xp.float32, xp.float64):
            raise TypeError(f"{name} must have a real floating dtype (float32 or float64), got "
                            f"{a.dtype}")
    return xp


def default_namespace(xp=None, dtype=None):
    """The namespace a constructor that makes arrays creates them with
    (:func:`~pdunroll.dct_matrix`, :func:`~pdunroll.dct_filters`,
    :class:`~pdunroll.Gradient2d`, loaded operators, the toy problem): ``xp``; else the
    namespace a ``dtype`` given without it belongs to (``torch.float32``: torch's), else NumPy.
    A library's own module given as ``xp`` (``torch``, ``cupy``, ``dask.array``, whose creation
    functions do not all follow the standard, e.g. CuPy's take no ``device=``) becomes its
    array-api-compat namespace, the one :func:`namespace` finds for its arrays. NumPy >= 2.1 is
    its own complete array-API namespace (see :func:`_namespace_of`); it is imported here, on
    first use, not when pdunroll is imported."""
    if xp is None and dtype is not None:
        xp = _dtype_namespace(dtype)
    if xp is None:
        import numpy as xp
    for is_it, compat in ((array_api_compat.is_torch_namespace, "torch"),
                          (array_api_compat.is_cupy_namespace, "cupy"),
                          (array_api_compat.is_dask_namespace, "dask.array")):
        if is_it(xp):
            return importlib.import_module(f"array_api_compat.{compat}")
    return xp


def _dtype_namespace(dtype):
    """The namespace of the library a dtype object comes from (already imported: the dtype
    was made by it), found through a one-element array of that library; None for NumPy's
    dtypes and anything NumPy understands (names, Python types, JAX's scalar types)."""
    lib = sys.modules.get(type(dtype).__module__.split(".")[0])
    if lib is None or lib.__name__ in ("numpy", "builtins") or not hasattr(lib, "zeros"):
        return None
    try:
        return _namespace_of(lib.zeros((1,), dtype=dtype))
    except (TypeError, ValueError):
        return None


def is_host_device(device) -> bool:
    """True for a CPU: NumPy's ``"cpu"``, torch's ``cpu``, JAX's CPU devices, array_api_strict's
    default device (and a traced JAX value's unknown device, ``None``)."""
    if device is None:
        return True
    kind = getattr(device, "type", None) or getattr(device, "platform", None)
    if isinstance(kind, str):
        return kind == "cpu"
    return "cpu" in str(device).lower()


def xp_of(x: Array):
    """The namespace of one array (inputs were already checked by :func:`namespace`)."""
    return _namespace_of(x)


_NAMESPACES: dict[type, Any] = {}  # array type → its namespace, found once per process


def _namespace_of(a: Array):
    """NumPy itself for NumPy arrays, else array-api-compat's namespace of the array (its
    wrapper for torch, CuPy and Dask; the array's own ``__array_namespace__`` for
    array_api_strict, JAX and other standard arrays). The fast path is NumPy's only: were
    CuPy's arrays to declare a namespace of their own, they would still get the wrapper.
    The answer depends on the array's type only, so it is looked up once per type: the
    solvers' loops ask for it at every step (the functions' proxes), where array-api-compat's
    tests of the array's library would cost more than a small elementwise pass.

    The one namespace policy: NumPy arrays use NumPy itself, which is why pyproject requires
    NumPy >= 2.1 (the first release whose own namespace has everything pdunroll calls, e.g.
    ``cumulative_sum``; tests check every ``xp.<name>`` of the package against it). Going
    through array-api-compat's NumPy wrapper instead measured 7-9 % slower forward passes at
    the speech size (batch 32, n = 320, float32) and 1-2 % slower full gradients."""
    kind = type(a)
    xp = _NAMESPACES.get(kind)
    if xp is None:
        # ndarray and NumPy scalars, not subclasses elsewhere
        xp = (sys.modules["numpy"] if kind.__module__ == "numpy"
              else array_api_compat.array_namespace(a))
        _NAMESPACES[kind] = xp
    return xp


_TRUSTED = contextvars.ContextVar("pdunroll_trusted_values", default=False)


@contextlib.contextmanager
def trusted_values():
    """Within this context :func:`check_finite` checks nothing: for the steps of a loop whose
    inputs were checked once at its public entry point (the training loop's new parameters, the
    torch layer's calls), where reading values would be a host round trip per step."""
    token = _TRUSTED.set(True)
    try:
        yield
    finally:
        _TRUSTED.reset(token)


def _all_finite(xp, a: Array) -> bool | None:
    """Whether ``a`` is finite, or None where its values cannot be read now: a lazy array
    (array-api-compat's ``is_lazy_array``: Dask, ...), a JAX value inside ``jax.jit``,
    ``jax.grad`` or ``jax.vmap``. array-api-compat calls every JAX array lazy; an eager one is
    read (inside a trace even a concrete array's reduction is traced, and reading it raises
    JAX's ``TypeError``)."""
    if array_api_compat.is_jax_array(a):
        if isinstance(a, sys.modules["jax"].core.Tracer):
            return None
        try:
            return _finite(xp, a)
        except TypeError:  # jax.errors.ConcretizationTypeError: under a trace
            return None
    if array_api_compat.is_lazy_array(a):
        return None
    return _finite(xp, a)


def _finite(xp, a: Array) -> bool:
    """Whether every value of ``a`` is finite. For a real floating array that is whether
    max(a)·0 + min(a)·0 is (0 exactly then; the standard's ``max`` and ``min`` propagate NaN,
    and inf·0 is NaN): two reductions, no array of ``a``'s size, where ``all(isfinite(a))``
    makes a bool one, which torch's CPU kernels make slowly (one thread, float32: a 320 × 320
    matrix 203 µs against 20 µs, a 32 × 320 batch 26 against 12 µs; NumPy 11 against 14 µs and
    3.2 against 5.4 µs). The host reads the 0-d bool ``isfinite`` of it, which carries no
    gradient (torch warns when a tensor that requires grad becomes a Python number)."""
    if xp.isdtype(a.dtype, "real floating") and array_size(a):
        return bool(xp.isfinite(xp.max(a) * 0.0 + xp.min(a) * 0.0))
    return bool(xp.all(xp.isfinite(a)))


def check_finite(xp, **arrays: Array) -> None:
    """Raise ``ValueError`` naming the first argument that holds NaN or infinity.

    Arrays whose values cannot be read (traced under ``jax.jit``, lazy) are skipped, so that
    operators and functions can be built from traced parameters inside a jitted function;
    within :func:`trusted_values` nothing is checked."""
    if _TRUSTED.get():
        return
    for name, a in arrays.items():
        if _all_finite(xp, a) is False:
            raise ValueError(f"{name} contains non-finite values (NaN or inf)")


def to_host(xp, *scalars: Array) -> tuple[float, ...]:
    """The 0-d arrays ``scalars`` as Python floats in one transfer (one host round trip for
    all: the training loop's loss, gradient norm and ‖K‖ per step)."""
    import numpy as np

    values = np.asarray(to_numpy(xp.stack([xp.reshape(s, ()) for s in scalars])))
    return tuple(float(v) for v in values)


def to_numpy(a: Array):
    """A NumPy array with the values of ``a`` (any backend and device, not copied where it
    can be shared): host arrays by DLPack; device arrays moved to the host first (JAX by its
    ``__array__``, which reads any device; torch and CuPy by array-api-compat's
    ``to_device(a, "cpu")``, for CuPy its ``.get()``)."""
    import numpy as np

    if isinstance(a, np.ndarray):
        return a
    try:
        return np.from_dlpack(a)
    except (TypeError, RuntimeError, BufferError, ValueError, AttributeError):
        pass  # not on the host
    if array_api_compat.is_jax_array(a):
        return np.asarray(a)
    host = array_api_compat.to_device(a, "cpu")
    return host if isinstance(host, np.ndarray) else np.from_dlpack(host)


def as_float(name: str, value, expected: str) -> float:
    """``value`` as a float, else a TypeError saying ``name`` must be ``expected``. Strings,
    booleans and complex numbers are refused although ``float`` would take them: they are a
    wrong type, not a number."""
    try:
        if isinstance(value, str | bytes | complex) or _is_bool(value) or "complex" in str(
                getattr(value, "dtype", "")):
            raise TypeError
        return float(value)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{name} must be {expected}, got {value!r}") from err


def check_positive(name: str, value, *, allow_inf: bool = False) -> float:
    """Return ``value`` as a float if it is a positive number, else raise naming ``name``."""
    v = as_float(name, value, "a positive number")
    if not (v > 0) or (math.isinf(v) and not allow_inf) or math.isnan(v):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return v


def check_count(name: str, value, *, minimum: int = 1) -> int:
    """Return ``value`` as an int if it is an integer >= ``minimum``, else raise naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value}")
    return int(value)


def check_flag(name: str, value) -> bool:
    """Return ``value`` as a bool if it is True or False (also NumPy's), else raise naming
    ``name`` (a string such as "no" would otherwise count as true, and 1 or 0 hides a
    misplaced argument)."""
    ok = _is_bool(value)
    if not ok:
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def _is_bool(value) -> bool:
    """Whether ``value`` is a Python bool or a 0-d boolean (NumPy's ``bool_``, a 0-d tensor)."""
    return isinstance(value, bool) or (getattr(value, "shape", None) == ()
                                       and str(getattr(value, "dtype", "")) in ("bool",
                                                                                "torch.bool"))


def _lib(a: Array) -> str:
    return type(a).__module__.split(".")[0]
