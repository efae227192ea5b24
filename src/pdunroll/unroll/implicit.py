"""Fixed-point (implicit) gradients: the reverse recursion summed to infinity at the fixed point.

At a fixed point (r*, y*) of the Chambolle-Pock map T the step Jacobians, y^k = y* and
x̃ + r̄^{k−1} = x̂ no longer depend on k, and one reverse step (docs, Mathematics: "Full reverse
mode", with the ε/δ split of Bregman steps, see :mod:`pdunroll.unroll.reverse`) is a fixed linear
map of the state s = (v, e, d) = (adjoint reaching r^k, ε_D^{k+1}, δ_D^{k+1}):

    step(s):  (ε_P, δ_P) = VJP of the primal step at v,
              (ε_D', δ_D') = VJP of the dual step at e − τ K δ_P,   δ̄_D' = δ_D' + θ (δ_D' − d)
    N(s) = (ε_P + σ Kᵀ δ̄_D', ε_D', δ_D')      (the state of the step before)

(For Euclidean proxes ε = δ = J_proxᵀ(·), so e = d throughout.) The recursion starts at
s₀ = (g, 0, 0). The b backward steps of the asymptotic gradient (docs, Mathematics: "Truncated and
asymptotic gradients") have the sums step(Σ_{j<b} N^j s₀), since step is linear: a Neumann series
with b terms. Its limit b → ∞, u = (I − N)⁻¹ s₀, is the fixed-point gradient (I − ∂T)ᵀ w = ∂ℓ (docs,
Mathematics: "Fixed-point (implicit) gradients") in these coordinates:

    (Δ_P, Δ_D) = (δ_P, δ_D) of step(u),   ∇_K = σ Δ_D x̂ᵀ − τ y* Δ_Pᵀ,   ∇_x̃ = g + σ Kᵀ Δ_D,

and the F, G parameter gradients are the parameter VJPs of step(u).

(I − N) u = s₀ is solved per signal by GMRES (default; restarted every 30 steps, it keeps 31
vectors of the size of (x, y, y) per signal) or by the Neumann series itself (2 such vectors;
converges only where the asymptotic recursion does), see :mod:`pdunroll.unroll.krylov`. For
nonsmooth F, G the system can be singular (Brauer & Lorenz, "Ergodic bilevel optimization",
Theorem 2: 0/1 prox derivatives; a lower-level solution that is not unique): the solver then
stalls, and
:func:`solve_adjoint` raises :class:`ConvergenceError` (or warns with :class:`ConvergenceWarning`
when ``strict=False``) instead of returning an unconverged gradient silently.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

from .._array import Array
from .._array import xp_of as _xp
from .krylov import SolveInfo, gmres, neumann

__all__ = ["ConvergenceError", "ConvergenceWarning", "solve", "solve_adjoint"]

DEFAULT_MAXITER = 1000


class ConvergenceError(RuntimeError):
    """The fixed-point system of an implicit gradient was not solved to tolerance.
    ``info`` holds the :class:`~pdunroll.unroll.krylov.SolveInfo`."""

    def __init__(self, message: str, info: SolveInfo):
        super().__init__(message)
        self.info = info


class ConvergenceWarning(RuntimeWarning):
    """An implicit gradient is returned although its fixed-point system was not solved to
    tolerance (``strict=False``)."""


def default_tol(xp, dtype) -> float:
    """max(1e−10, 1000 ε) of ``dtype``: 1e−10 in float64, about 1.2e−4 in float32."""
    return max(1e-10, 1000 * float(xp.finfo(dtype).eps))


def solve(apply_n: Callable[[tuple], tuple], rhs: tuple, method) -> tuple[tuple, SolveInfo]:
    """Solve (I − N) u = ``rhs`` per signal as ``method`` (an :class:`~pdunroll.Implicit`) says
    (:func:`~pdunroll.gmres` or :func:`~pdunroll.neumann`, its tol and maxiter). Raises
    :class:`ConvergenceError` when the solver misses tol, or warns with
    :class:`ConvergenceWarning` if not ``method.strict``."""
    first = rhs[0]
    tol = default_tol(_xp(first), first.dtype) if method.tol is None else method.tol
    maxiter = DEFAULT_MAXITER if method.maxiter is None else method.maxiter
    run = gmres if method.solver == "gmres" else neumann
    u, info = run(apply_n, rhs, tol=tol, maxiter=maxiter)
    if not info.converged:
        message = (
            f"implicit gradient: the {info.method} solve of the fixed-point system "
            f"(I − ∂T)ᵀ w = ∂ℓ stopped ({info.status}) after {info.iterations} iterations with "
            f"relative residual {info.residual:.3g} > tol={info.tol:.3g}. The system may be "
            "singular (nonsmooth F or G, a lower-level solution that is not unique: see the "
            "docs' Mathematics page, 'Fixed-point (implicit) gradients') or the forward pass not "
            "yet at a fixed point. Use Full() or Asymptotic(b), more forward iterations or a "
            "larger maxiter" + ("" if info.method == "gmres" else ", solver='gmres'")
            + "; Implicit(strict=False) returns this unconverged gradient with a warning."
        )
        if method.strict:
            raise ConvergenceError(message, info)
        warnings.warn(message, ConvergenceWarning, stacklevel=5)  # the caller of gradient()
    return u, info


def solve_adjoint(
    step: Callable[[Array, Array, Array], tuple[Array, ...]],
    adjoint: Callable[[Array], Array],
    g_out: Array,
    dual_like: Array,
    method,
) -> tuple[tuple[Array, Array, Array], SolveInfo]:
    """u = (I − N)⁻¹ (g, 0, 0) = Σ_{j≥0} N^j (g, 0, 0): the states (v, e, d) of all steps of the
    reverse recursion continued forever at the fixed point, summed; step(u) then gives the sums.

    ``step(v, e, d)`` → (ε_P, δ_P, ε_D, δ_D, δ̄_D) is one reverse step with the final Jacobians,
    ``adjoint`` is σKᵀ, ``g_out`` = ∇ℓ(x̂), ``dual_like`` any array of the dual's shape.
    Returns (u, info); see :func:`solve` for what happens when the solve fails.
    """

    def apply_n(u):
        e_p, _, e_d, d_d, d_dbar = step(*u)
        return e_p + adjoint(d_dbar), e_d, d_d

    zero = _xp(g_out).zeros_like(dual_like)
    return solve(apply_n, (g_out, zero, zero), method)
