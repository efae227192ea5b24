"""Inverse problems with a forward operator in the data term (docs, Mathematics: "A forward
operator in the data term"):

    x̂ ∈ argmin_x F(K x) + H(A x − f) + G(x − x̃)

with a learned analysis operator K, a fixed forward operator A (blur, mask, subsampling,
tomography: :mod:`pdunroll.operators.imaging`), measurements f (one per signal) and x̃ a starting
guess (e.g. Aᵀ f, or zeros with G = 0). As an :class:`~pdunroll.AnalysisModel` it is the stacked
operator M = [K; A] (:class:`~pdunroll.Stack`) with the block-separable F(u₁) + H_f(u₂),
H_f(u) = H(u − f) (:class:`~pdunroll.BlockSeparable`, :class:`~pdunroll.Translated`), so the
solver, every gradient method, the layers and training apply unchanged: the gradient w.r.t. K is
the first entry of the operator gradient (A is fixed: its entry is ``()``), the gradient w.r.t.
the measurements f is in ``GradientResult.f[1]``.
"""

from __future__ import annotations

from ._array import Array
from .functions.blocks import BlockSeparable, Translated
from .functions.euclidean import Function, L1Norm, SquaredL2, Zero
from .model import AnalysisModel
from .operators.base import LinearOperator
from .operators.linops import Stack

__all__ = ["inverse_problem"]


def inverse_problem(analysis: LinearOperator, forward: LinearOperator, data: Array, *,
                    h: Function | None = None, f: Function | None = None,
                    g: Function | None = None) -> AnalysisModel:
    """min_x F(K x) + H(A x − f) + G(x − x̃) as an :class:`~pdunroll.AnalysisModel` on
    M = Stack(K, A).

    ``analysis``: K (learnable); ``forward``: A (e.g. :class:`~pdunroll.Blur`); ``data``: the
    measurements f, shape (batch, *A.out_shape), one per signal; ``h``: H (default
    ``SquaredL2()``, ½‖A x − f‖²; also e.g. ``L1Norm(w)``, ``L2Ball(ρ)``, ``LinfBall(ρ)``
    without parameters of its own); ``f``: F (default ``L1Norm()``); ``g``: G on x − x̃ (default
    ``Zero()``: then x̃ is only the starting point, e.g. ``A.adjoint(data)``). Solve it with
    ``chambolle_pock(model, x_tilde, ...)`` for a starting guess x_tilde of shape
    (batch, *K.in_shape); ``model.f.take(indices)`` selects the measurements of a minibatch
    (:func:`pdunroll.train` does this itself). In the torch layer the measurements of a call
    are F's parameters, ``UnrolledCP(model, ...)(x_tilde, f=((), measurements))``, and get
    their gradient from it.
    """
    for name, op in (("analysis", analysis), ("forward", forward)):
        if not isinstance(op, LinearOperator):
            raise TypeError(f"{name} must be a LinearOperator, got {type(op).__name__}")
    if tuple(analysis.in_shape) != tuple(forward.in_shape):
        raise ValueError(f"forward takes signals of shape {forward.in_shape} but analysis takes "
                         f"{analysis.in_shape}: both act on the same x")
    h = SquaredL2() if h is None else h
    f = L1Norm() if f is None else f
    g = Zero() if g is None else g
    operator = Stack(analysis, forward)
    dual = BlockSeparable((f, Translated(h, data)), (analysis.out_shape, forward.out_shape))
    return AnalysisModel(operator, dual, g)
