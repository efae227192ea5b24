"""Batched solvers for fixed-point systems (I − N) u = b, one independent system per signal.

A "vector" u is a tuple of arrays that all have the batch on axis 0 (e.g. a primal and a dual
block); N maps such tuples linearly and acts on each signal separately. Every scalar of the
solvers is a batch of scalars, shape (batch,): each signal runs its own Krylov iteration with its
own inner products, Hessenberg matrix and Givens rotations, and all of them advance together.
This keeps the convergence of one signal independent of the others (one long vector for the whole
batch would need a Krylov space rich enough for all batch members at once) and costs one batched
application of N per iteration. The iteration stops when every signal has converged.

* :func:`gmres`: restarted GMRES(restart); the residual ‖b − (I − N) u‖ is minimised over the
  Krylov space, so it never grows; works for any nonsingular I − N (N need not be symmetric
  or contractive).
* :func:`neumann`: the truncated Neumann series u_j = Σ_{i<j} N^i b (Richardson iteration
  u ← b + N u); converges only when the spectral radius of N is below 1.

Both report a :class:`SolveInfo` with the largest relative residual ‖b_i − (I − N) u_i‖/‖b_i‖
over the batch of the returned u (computed, not estimated).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from .._array import Array, check_count
from .._array import xp_of as _xp

__all__ = ["SolveInfo", "gmres", "neumann"]

Vector = tuple  # tuple of arrays with the batch on axis 0

# GMRES stagnates when the largest relative residual fell by less than 1 % over the last
# max(100, 2·restart) Arnoldi steps, or when a whole cycle improved no signal (restarted GMRES
# would then repeat that cycle forever)
_STAGNATION = 0.99
_STAGNATION_WINDOW = 100
# the convergence test reads a residual on the host (a round trip, costly on a GPU): it runs
# every _CHECK_EVERY Arnoldi steps or Neumann terms (and at the end of every GMRES cycle)
_CHECK_EVERY = 10


@dataclass(frozen=True)
class SolveInfo:
    """How a solve of (I − N) u = b ended.

    ``method``: "gmres" or "neumann"; ``iterations``: Arnoldi steps (GMRES; each applies N once,
    and each restart cycle once more for the true residual) or terms of the Neumann sum;
    ``residual``: the largest relative residual ‖b_i − (I − N) u_i‖/‖b_i‖ over the batch (0 for
    a zero right-hand side); ``residuals``: the same per signal, shape (batch,); ``tol``: the
    tolerance asked for; ``status``: "converged", "maxiter" (iteration limit reached),
    "stagnated" (GMRES made no progress, see :func:`gmres`: typical of a singular, inconsistent
    system) or "non-finite".
    """

    method: str
    iterations: int
    residual: float
    residuals: Array
    tol: float
    status: str

    @property
    def converged(self) -> bool:
        return self.status == "converged"


def _batch_scalar(c: Array, like: Array) -> Array:
    return _xp(like).reshape(c, (c.shape[0],) + (1,) * (like.ndim - 1))


def _dot(u: Vector, v: Vector) -> Array:
    xp = _xp(u[0])
    return sum(xp.sum(a * b, axis=tuple(range(1, a.ndim))) for a, b in zip(u, v, strict=True))


def _norm(u: Vector) -> Array:
    return _xp(u[0]).sqrt(_dot(u, u))


def _scale(c: Array, u: Vector) -> Vector:
    return tuple(_batch_scalar(c, a) * a for a in u)


def _axpy(c: Array, u: Vector, v: Vector) -> Vector:
    """v + c u with one scalar c_i per signal."""
    return tuple(b + _batch_scalar(c, a) * a for a, b in zip(u, v, strict=True))


def _sub(u: Vector, v: Vector) -> Vector:
    return tuple(a - b for a, b in zip(u, v, strict=True))


def _safe(x: Array) -> Array:
    """x where x ≠ 0, else 1 (a divisor that is harmless where the quotient is discarded)."""
    xp = _xp(x)
    return xp.where(x != 0, x, xp.ones_like(x))


def _relative(res: Array, bnorm: Array) -> Array:
    xp = _xp(res)
    return xp.where(bnorm > 0, res / _safe(bnorm), xp.zeros_like(res))


def _status(worst: float, tol: float) -> str | None:
    if not math.isfinite(worst):
        return "non-finite"
    return "converged" if worst <= tol else None


def gmres(
    apply_n: Callable[[Vector], Vector],
    b: Vector,
    *,
    tol: float,
    maxiter: int,
    restart: int = 30,
) -> tuple[Vector, SolveInfo]:
    """Solve (I − N) u = b per signal by restarted GMRES, starting from u = 0.

    Each cycle builds an orthonormal Krylov basis V_0..V_j of the current residual r by Arnoldi
    (A = I − N, h_{ij} = ⟨A V_j, V_i⟩, Gram-Schmidt applied twice), reduces the Hessenberg
    matrix to a triangular R by Givens rotations (the rotated right-hand side ‖r‖e_1 tracks the
    residual) and updates u by the least-squares combination of the basis. Per signal, with s the
    largest ‖A V_j‖ seen: R_jj ≤ √ε s marks A as numerically singular on the new direction (that
    column gets coefficient 0 instead of a division by a rounding error), h_{j+1,j} ≤ 100 ε s
    ends the signal's basis (the space holds the solution). A signal whose residual is below
    ``tol`` or whose basis ended gets zero basis vectors and stays put. Stops when every
    signal's relative residual is ≤ ``tol``, after ``maxiter`` Arnoldi steps, or on stagnation
    (typical of a singular system whose right-hand side is not in the range of I − N): a cycle
    that improves no signal, or less than 1 % decrease of the largest residual over the last
    max(100, 2·restart) steps. Each signal keeps its best iterate.
    """
    maxiter = check_count("maxiter", maxiter)
    restart = check_count("restart", restart)
    xp = _xp(b[0])

    def apply_a(v):
        return _sub(v, apply_n(v))

    eps = float(xp.finfo(b[0].dtype).eps)
    bnorm = _norm(b)
    scale = xp.zeros_like(bnorm)  # largest ‖(I − N) V_j‖ so far, per signal
    u = tuple(xp.zeros_like(a) for a in b)
    r, beta = b, bnorm  # residual b − (I − N) u of the current u, computed
    window = max(_STAGNATION_WINDOW, 2 * restart)
    iterations, history, improved = 0, [], True  # history: (iterations, worst) per cycle
    while True:
        rel = _relative(beta, bnorm)
        worst = float(xp.max(rel))
        history.append((iterations, worst))
        earlier = [w for it, w in history if it <= iterations - window]
        status = _status(worst, tol)
        if status is None and iterations >= maxiter:
            status = "maxiter"
        if status is None and (not improved or (earlier and worst > _STAGNATION * earlier[-1])):
            status = "stagnated"
        if status is not None:
            return u, SolveInfo("gmres", iterations, worst, rel, tol, status)
        alive = rel > tol
        zero, one = xp.zeros_like(beta), xp.ones_like(beta)
        basis = [_scale(xp.where(alive, 1 / _safe(beta), zero), r)]
        rhs = [xp.where(alive, beta, zero)]  # rotated ‖r‖ e_1
        cos, sin, columns = [], [], []  # Givens rotations; columns of the triangular R
        cycle = min(restart, maxiter - iterations)
        for j in range(cycle):
            w = apply_a(basis[j])
            iterations += 1
            scale = xp.maximum(scale, _norm(w))
            h = [zero] * len(basis)
            for _ in range(2):  # Gram-Schmidt twice: orthogonal to rounding near breakdown
                for i, v in enumerate(basis):
                    h_ij = _dot(w, v)
                    w = _axpy(-h_ij, v, w)
                    h[i] = h[i] + h_ij
            h_next = _norm(w)
            for i in range(j):
                h[i], h[i + 1] = (cos[i] * h[i] + sin[i] * h[i + 1],
                                  cos[i] * h[i + 1] - sin[i] * h[i])
            rho = xp.sqrt(h[j] * h[j] + h_next * h_next)
            regular = rho > math.sqrt(eps) * scale
            # a singular column: rotate its residual share to the next row and give it R_jj = 0
            cos.append(xp.where(regular, h[j] / _safe(rho), zero))
            sin.append(xp.where(regular, h_next / _safe(rho), one))
            h[j] = xp.where(regular, rho, zero)
            columns.append(h)
            rhs.append(-sin[j] * rhs[j])
            rhs[j] = cos[j] * rhs[j]
            if (j + 1) % _CHECK_EVERY == 0 and j + 1 < cycle and \
                    float(xp.max(_relative(xp.abs(rhs[j + 1]), bnorm))) <= tol:
                break
            alive = alive & regular & (h_next > 100 * eps * scale)
            basis.append(_scale(xp.where(alive, 1 / _safe(h_next), zero), w))
        # back substitution R c = rhs, then u ← u + Σ c_i V_i
        coef = [None] * len(columns)
        for i in reversed(range(len(columns))):
            acc = rhs[i]
            for col in range(i + 1, len(columns)):
                acc = acc - columns[col][i] * coef[col]
            diag = columns[i][i]
            coef[i] = xp.where(diag != 0, acc / _safe(diag), zero)
        new = u
        for i, c in enumerate(coef):
            new = _axpy(c, basis[i], new)
        r_new = _sub(b, apply_a(new))
        beta_new = _norm(r_new)
        better = beta_new < beta  # keep each signal's best iterate: a cycle never makes it worse
        improved = bool(xp.any(better))
        u = tuple(xp.where(_batch_scalar(better, a), a, p) for a, p in zip(new, u, strict=True))
        r = tuple(xp.where(_batch_scalar(better, a), a, p) for a, p in zip(r_new, r, strict=True))
        beta = xp.where(better, beta_new, beta)


def neumann(
    apply_n: Callable[[Vector], Vector],
    b: Vector,
    *,
    tol: float,
    maxiter: int,
) -> tuple[Vector, SolveInfo]:
    """Solve (I − N) u = b by the Neumann series u_j = Σ_{i<j} N^i b = b + N u_{j−1}.

    The residual of u_j is b − (I − N) u_j = u_{j+1} − u_j, so a step can check the previous
    sum; it does for j = 1 and every 10th j (each check is a host round trip). Returns the first
    checked u_j whose relative residual is ≤ ``tol`` for every signal, or u_maxiter
    (``iterations`` = j, the number of terms).
    """
    maxiter = check_count("maxiter", maxiter)
    xp = _xp(b[0])
    bnorm = _norm(b)
    u, terms = b, 1
    while True:
        nxt = tuple(p + q for p, q in zip(b, apply_n(u), strict=True))
        if terms == 1 or terms % _CHECK_EVERY == 0 or terms >= maxiter:
            residuals = _relative(_norm(_sub(nxt, u)), bnorm)
            worst = float(xp.max(residuals))
            status = _status(worst, tol)
            if status is None and terms >= maxiter:
                status = "maxiter"
            if status is not None:
                return u, SolveInfo("neumann", terms, worst, residuals, tol, status)
        u, terms = nxt, terms + 1
