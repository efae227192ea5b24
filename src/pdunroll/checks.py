"""Checks for the parts a user writes: :func:`check_operator` for a
:class:`~pdunroll.LinearOperator` and :func:`check_function` for a :class:`~pdunroll.Function`
(docs, tutorial "Your own operator, function and inverse problem").

Every check is one row of a :class:`CheckReport` with a measured error and its tolerance; a
failed row raises :class:`CheckError` naming the check, the error and the tolerance.

Operators (on the operator's own backend, dtype and device): the adjoint dot test
|⟨K x, y⟩ − ⟨x, Kᵀ y⟩| ≤ tol (‖K x‖ ‖y‖ + ‖x‖ ‖Kᵀ y‖); shapes, dtype and device of K x and Kᵀ y;
rows of a batch of 3 equal to the same signals one at a time; ``norm()`` not below a power
iteration's estimate of ‖K‖ by more than 1e-4 (relative; a smaller claim gives too large step
sizes, and the step-size rule's margin 0.99 covers the estimates' own shortfall);
``param_vjp`` against a central difference of Σ ⟨a, K(θ) b⟩ (exact for operators linear in θ).

Functions (NumPy float64 copies for the differences and the minimisation): the Moreau identity
prox_{tf}(z) + t prox_{f*/t}(z/t) = z; the Fenchel–Young equality f(p) + f*(y) = ⟨p, y⟩ at
p = prox_{tf}(z), y = prox_{f*/t}(z/t) = (z − p)/t ∈ ∂f(p); the prox against a numerical
minimisation of f(u) + ‖u − z‖²/(2t) (SciPy's Powell method started at the claimed prox: it
must find nothing
lower); the VJPs of the prox, of its conjugate and of both whole steps (Bregman steps included)
against central differences; the parameter VJPs likewise; the backend's prox against the NumPy
one (dtype and device kept) and batch rows against single signals.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from . import tree
from ._array import Array, array_device, namespace
from .functions.euclidean import Function
from .operators.base import LinearOperator, estimate_norm

__all__ = ["CheckError", "CheckReport", "CheckRow", "check_function", "check_operator"]


@dataclass(frozen=True)
class CheckRow:
    """One check: its ``name``, the measured (relative) ``error``, the ``tolerance``, ``ok``."""

    name: str
    error: float
    tolerance: float

    @property
    def ok(self) -> bool:
        return self.error <= self.tolerance

    def __str__(self) -> str:
        mark = "ok" if self.ok else "FAILED"
        return f"{self.name}: error {self.error:.3g} (tolerance {self.tolerance:.3g}) {mark}"


@dataclass(frozen=True)
class CheckReport:
    """The rows of :func:`check_operator` or :func:`check_function` for ``part``."""

    part: str
    rows: tuple[CheckRow, ...]

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.rows)

    @property
    def failures(self) -> tuple[CheckRow, ...]:
        return tuple(r for r in self.rows if not r.ok)

    def __str__(self) -> str:
        return "\n".join([self.part] + [f"  {r}" for r in self.rows])


class CheckError(AssertionError):
    """A part failed a check; ``report`` holds all rows."""

    def __init__(self, report: CheckReport):
        super().__init__(f"{report.part} failed " + "; ".join(map(str, report.failures)))
        self.report = report


def _finish(report: CheckReport, raise_on_failure: bool) -> CheckReport:
    if raise_on_failure and not report.ok:
        raise CheckError(report)
    return report


def to_numpy(a: Array) -> np.ndarray:
    """A float64 NumPy copy of any array-API array (through DLPack, copied to the CPU where the
    array lives elsewhere)."""
    try:
        out = np.from_dlpack(a)
    except (BufferError, RuntimeError, TypeError, ValueError):
        out = np.from_dlpack(a, device="cpu", copy=True)
    return np.array(out, dtype=np.float64)


def _eps(xp, dtype) -> float:
    return float(xp.finfo(dtype).eps)


def _rel(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300))


# ------------------------------------------------------------------ operators


def check_operator(op: LinearOperator, *, seed: int = 0, norm_iterations: int = 200,
                   raise_on_failure: bool = True) -> CheckReport:
    """Check ``op`` on its own backend, dtype and device (see the module docstring for the
    rows; ``norm_iterations``: of the power iteration the claimed norm is compared with).
    Returns the :class:`CheckReport`; raises :class:`CheckError` on a failed row unless
    ``raise_on_failure=False``."""
    if not isinstance(op, LinearOperator):
        raise TypeError(f"op must be a LinearOperator, got {type(op).__name__}")
    xp, dtype, device = op.xp, op.dtype, op.device
    rng = np.random.default_rng(seed)
    tol = 1e4 * _eps(xp, dtype)

    def arr(shape):
        return xp.asarray(rng.standard_normal(shape), dtype=dtype, device=device)

    rows = []
    x, y = arr((3, *op.in_shape)), arr((3, *op.out_shape))
    kx, kty = op.apply(x), op.adjoint(y)
    kept = all(tuple(o.shape) == (3, *s) and o.dtype == dtype and array_device(o) == device
               for o, s in ((kx, op.out_shape), (kty, op.in_shape)))
    rows.append(CheckRow("apply/adjoint keep shape (batch, *out/in_shape), dtype and device",
                         0.0 if kept else math.inf, 0.0))
    if not kept:
        return _finish(CheckReport(repr(op), tuple(rows)), raise_on_failure)
    nx, ny, nkx, nkty = (to_numpy(a) for a in (x, y, kx, kty))
    scale = np.linalg.norm(nkx) * np.linalg.norm(ny) + np.linalg.norm(nx) * np.linalg.norm(nkty)
    rows.append(CheckRow("adjoint: <K x, y> = <x, K^T y>",
                         abs(float(np.sum(nkx * ny) - np.sum(nx * nkty))) / max(scale, 1e-300),
                         tol))
    single = np.concatenate([to_numpy(op.apply(x[i:i + 1, ...])) for i in range(3)])
    single_t = np.concatenate([to_numpy(op.adjoint(y[i:i + 1, ...])) for i in range(3)])
    rows.append(CheckRow("batch: rows of a batch of 3 = the signals one at a time",
                         max(_rel(single, nkx), _rel(single_t, nkty)), tol))
    estimate = estimate_norm(op, iterations=norm_iterations, rtol=1e-9).value
    claimed = float(op.norm())
    rows.append(CheckRow(f"norm: claimed {claimed:.6g} not below the power-iteration estimate "
                         f"{estimate:.6g}", max(0.0, (estimate - claimed) / max(estimate, 1e-300)),
                         max(tol, 1e-4)))
    leaves = tree.flatten(op.params)
    if leaves:
        a, b = arr((3, *op.out_shape)), arr((3, *op.in_shape))
        direction = [xp.asarray(rng.standard_normal(tuple(p.shape)), dtype=dtype, device=device)
                     for p in leaves]

        def value(sign):
            moved = [p + sign * d for p, d in zip(leaves, direction, strict=True)]
            new = op.with_params(tree.unflatten(op.params, moved))
            return float(np.sum(to_numpy(a) * to_numpy(new.apply(b))))

        fd = (value(1.0) - value(-1.0)) / 2
        grads = tree.flatten(op.param_vjp(a, b))
        got = sum(float(np.sum(to_numpy(g) * to_numpy(d)))
                  for g, d in zip(grads, direction, strict=True))
        rows.append(CheckRow("param_vjp vs central difference of sum <a, K(theta) b>",
                             abs(got - fd) / max(abs(fd), 1e-300), max(tol, 1e-8)))
    return _finish(CheckReport(repr(op), tuple(rows)), raise_on_failure)


# ------------------------------------------------------------------ functions


def _numpy_copy(f: Function) -> Function:
    """``f`` with float64 NumPy copies of its parameters."""
    leaves = tree.flatten(f.params)
    if not leaves:
        return f
    return f.with_params(tree.unflatten(f.params, [to_numpy(p) for p in leaves]))


def _norm(a) -> float:
    return float(np.linalg.norm(np.asarray(a)))


def _dot(a, b) -> float:
    return float(np.sum(np.asarray(a) * np.asarray(b)))


def _tree_dot(grads, directions) -> float:
    return sum(_dot(g, d) for g, d in zip(tree.flatten(grads), directions, strict=True))


def check_function(f: Function, example: Array, *, t: float = 0.7, seed: int = 0,
                   fd_tol: float = 1e-5, raise_on_failure: bool = True) -> CheckReport:
    """Check ``f`` on signals like ``example`` (an array (batch, *signal_shape) of the backend,
    dtype and device ``f`` will see; its values are not used) with step t = ``t`` (see the
    module docstring for the rows). Differences use NumPy float64 copies (step 1e-6 of the
    points' scale; ``fd_tol`` the relative tolerance). Returns the :class:`CheckReport`; raises
    :class:`CheckError` on a failed row unless ``raise_on_failure=False``."""
    if not isinstance(f, Function):
        raise TypeError(f"f must be a pdunroll Function, got {type(f).__name__}")
    xp = namespace(("example", example))
    dtype, device = example.dtype, array_device(example)
    shape = tuple(example.shape)
    rng = np.random.default_rng(seed)
    fn = _numpy_copy(f)
    rows = []
    exact = 1e3 * np.finfo(np.float64).eps

    def rand():
        return rng.standard_normal(shape)

    z = 2.0 * rand()
    p = np.asarray(fn.prox(z, t))
    q = np.asarray(fn.conj_prox(z / t, 1 / t))
    rows.append(CheckRow("Moreau: prox_tf(z) + t prox_{f*/t}(z/t) = z",
                         _rel(p + t * q, z), exact * 10))
    y = q  # = (z − p)/t ∈ ∂f(p) by the identity above, as the function computes it
    fy = float(np.sum(fn.value(p))) + float(np.sum(fn.conj_value(y)))
    rows.append(CheckRow("Fenchel-Young: f(p) + f*(y) = <p, y>, y = prox_{f*/t}(z/t)",
                         abs(fy - _dot(p, y)) / max(1.0, abs(_dot(p, y))), 1e-8))
    rows.append(_minimisation_row(fn, z, p, t))

    # the backend's prox against the NumPy float64 one: dtype, device and values
    zb = xp.asarray(z, dtype=dtype, device=device)
    pb = f.prox(zb, t)
    same = pb.dtype == dtype and array_device(pb) == device and tuple(pb.shape) == shape
    rows.append(CheckRow("prox on the backend keeps shape, dtype and device and matches float64",
                         _rel(to_numpy(pb), p) if same else math.inf, 1e4 * _eps(xp, dtype)))
    if not any(getattr(leaf, "ndim", 0) == len(shape) for leaf in tree.flatten(f.params)):
        single = np.concatenate([np.asarray(_signal(fn, i).prox(z[i:i + 1], t))
                                 for i in range(shape[0])])
        rows.append(CheckRow("batch: prox of the batch = prox of each signal", _rel(single, p),
                             exact))

    rows.extend(_vjp_rows(fn, rand, t, fd_tol))
    if tree.flatten(fn.params):
        rows.extend(_param_rows(fn, rand, t, fd_tol, rng))
    return _finish(CheckReport(repr(f), tuple(rows)), raise_on_failure)


def _signal(fn: Function, i: int) -> Function:
    """``fn`` for signal i alone (its own measurements where parameters are per signal)."""
    return fn.take(np.asarray([i])) if fn.per_signal else fn


def _minimisation_row(fn: Function, z, p, t) -> CheckRow:
    """Powell's method on f(u) + ‖u − z‖²/(2t), signal by signal, started at the claimed prox p:
    the relative decrease it finds (0 if p is the minimiser)."""
    from scipy.optimize import minimize

    worst = 0.0
    for i in range(z.shape[0]):
        zi, pi, fi = z[i:i + 1], p[i:i + 1], _signal(fn, i)

        def objective(u, zi=zi, fi=fi):
            u = u.reshape(zi.shape)
            value = float(fi.value(u)[0]) + float(np.sum((u - zi) ** 2)) / (2 * t)
            return value if math.isfinite(value) else 1e300

        start = objective(pi.ravel())
        res = minimize(objective, pi.ravel(), method="Powell",
                       options={"xtol": 1e-10, "ftol": 1e-13, "maxfev": 20000})
        worst = max(worst, (start - float(res.fun)) / max(1.0, abs(start)))
    return CheckRow("prox vs numerical minimisation (Powell, started at the prox)", worst, 1e-8)


def _fd_error(got: float, want: float, scale: float) -> float:
    """|got − want| relative to |want|, with a floor of 1e-4·``scale`` (the product of the
    cotangent's and the direction's norms) below which a difference is rounding noise (a
    Jacobian that is 0, e.g. a constant conjugate prox)."""
    return abs(got - want) / max(abs(want), 1e-4 * scale, 1e-300)


def _fd(fn_value, point, direction, eps):
    return (fn_value(point + eps * direction) - fn_value(point - eps * direction)) / (2 * eps)


def _vjp_rows(fn: Function, rand, t, fd_tol) -> list[CheckRow]:
    """VJPs of prox, conj_prox and of both whole steps against central differences."""
    rows = []
    eps = 1e-6
    s = 1 / t
    z, v, d, d2 = 2.0 * rand(), rand(), rand(), rand()
    zeros = np.zeros_like(z)
    for name, run, save, vjp in (
            ("prox_vjp", lambda u: fn.prox(u, t), fn.prox_save, fn.prox_vjp),
            ("conj_prox_vjp", lambda u: fn.conj_prox(u, s), fn.conj_prox_save,
             fn.conj_prox_vjp)):
        step = t if name == "prox_vjp" else s
        _, saved = save(z, step)
        got = _dot(vjp(saved, v, step), d)
        want = _fd(lambda u, run=run: _dot(v, run(u)), z, d, eps)
        rows.append(CheckRow(f"{name} vs central difference",
                             _fd_error(got, want, _norm(v) * _norm(d)), fd_tol))
    # whole steps from an interior previous iterate along a = −t·grad (primal) or s·ascent
    # (dual): (∂u/∂prev)ᵀv and (∂u/∂a)ᵀv
    prev_p = np.asarray(fn.prox_step(fn.start(zeros), -t * rand(), t))
    prev_d = np.asarray(fn.conj_prox_step(fn.conj_start(zeros), s * rand(), s))
    for name, prev, run, save, vjp, step in (
            ("prox_step_vjp", prev_p, fn.prox_step, fn.prox_step_save, fn.prox_step_vjp, t),
            ("conj_prox_step_vjp", prev_d, fn.conj_prox_step, fn.conj_prox_step_save,
             fn.conj_prox_step_vjp, s)):
        direction = (0.5 * step if name == "conj_prox_step_vjp" else -0.5 * step) * rand()
        _, saved = save(prev, direction, step)
        e, delta = vjp(saved, v, step)
        got = _dot(e, d) + _dot(delta, d2)
        want = (_fd(lambda u, run=run, direction=direction, step=step: _dot(v, run(u, direction,
                                                                                   step)),
                    prev, d, eps)
                + _fd(lambda g, run=run, prev=prev, step=step: _dot(v, run(prev, g, step)),
                      direction, d2, eps))
        rows.append(CheckRow(f"{name} vs central differences (previous iterate and direction)",
                             _fd_error(got, want, _norm(v) * (_norm(d) + _norm(d2))), fd_tol))
    return rows


def _param_rows(fn: Function, rand, t, fd_tol, rng) -> list[CheckRow]:
    """The parameter VJPs against central differences along a random parameter direction."""
    leaves = [np.asarray(p) for p in tree.flatten(fn.params)]
    directions = [rng.standard_normal(p.shape) for p in leaves]
    eps = 1e-6
    s = 1 / t

    def moved(h):
        return fn.with_params(tree.unflatten(fn.params, [p + h * d for p, d in
                                                          zip(leaves, directions, strict=True)]))

    def fd(value):
        return (value(moved(eps)) - value(moved(-eps))) / (2 * eps)

    z, v = 2.0 * rand(), rand()
    zeros = np.zeros_like(z)
    prev_p = np.asarray(fn.prox_step(fn.start(zeros), -t * rand(), t))
    prev_d = np.asarray(fn.conj_prox_step(fn.conj_start(zeros), s * rand(), s))
    direction = 0.5 * rand()
    cases = (
        ("prox_param_vjp", lambda g: _dot(v, g.prox(z, t)),
         lambda: fn.prox_param_vjp(fn.prox_save(z, t)[1], v, t)),
        ("conj_prox_param_vjp", lambda g: _dot(v, g.conj_prox(z, s)),
         lambda: fn.conj_prox_param_vjp(fn.conj_prox_save(z, s)[1], v, s)),
        ("prox_step_param_vjp", lambda g: _dot(v, g.prox_step(prev_p, direction, t)),
         lambda: fn.prox_step_param_vjp(fn.prox_step_save(prev_p, direction, t)[1], v, t)),
        ("conj_prox_step_param_vjp", lambda g: _dot(v, g.conj_prox_step(prev_d, direction, s)),
         lambda: fn.conj_prox_step_param_vjp(fn.conj_prox_step_save(prev_d, direction, s)[1],
                                             v, s)),
        ("conj_start_param_vjp", lambda g: _dot(v, g.conj_start(zeros)),
         lambda: fn.conj_start_param_vjp(v)),
    )
    rows = []
    for name, value, grad in cases:
        want, g = fd(value), grad()
        got = 0.0 if isinstance(g, tuple) and not g else _tree_dot(g, directions)
        scale = _norm(v) * math.sqrt(sum(_norm(d) ** 2 for d in directions))
        rows.append(CheckRow(f"{name} vs central difference", _fd_error(got, want, scale),
                             fd_tol))
    return rows
