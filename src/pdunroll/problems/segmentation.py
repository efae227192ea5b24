"""Multi-label segmentation with per-label total variation (Ochs et al. 2016, §8):

    min_u ⟨c, u⟩ + λ Σ_labels ‖D u_l‖_{2,1}   s.t.  u(pixel) in the simplex over the labels,

u and the costs c of shape (batch, labels, H, W). As an :class:`~pdunroll.AnalysisModel`
min_x F(Kx) + G(x − x̃): K = :class:`~pdunroll.Gradient2d` ((labels, H, W) ↦ (labels, 2, H, W)),
F = :class:`~pdunroll.L21Norm` (λ, group_axis=2), G = ``LinearTerm(c, EntropicSimplex(axis=1))``
(entropic primal steps; docs, Mathematics: "Bregman proximity") and **x̃ = 0**: G acts on x − x̃ and
F on x, so only x̃ = 0 puts both on the same u (then u = x = r). Run it as the ergodic primal-dual
algorithm (``weights="uniform"``); ``gradient(...).g`` is ∇ℓ w.r.t. the costs c, e.g. to train a
network that outputs c. The label of a pixel is argmax_l u_l (argmin_l c_l without the TV term).
"""

from __future__ import annotations

from collections.abc import Callable

from .._array import (
    Array,
    array_device,
    check_finite,
    check_flag,
    check_positive,
    namespace,
    xp_of,
)
from ..functions.bregman import EntropicSimplex
from ..functions.euclidean import L21Norm, LinearTerm, Simplex
from ..model import AnalysisModel
from ..operators.linops import Gradient2d

__all__ = ["segmentation_loss", "segmentation_model"]


def segmentation_model(costs: Array, tv_weight: float, *, entropic: bool = True) -> AnalysisModel:
    """The per-label TV segmentation model for costs c of shape (batch, labels, H, W) (one per
    image). ``entropic=False`` uses Euclidean projections on the simplex instead of entropic
    steps (piecewise smooth in c, and no interior start). Solve it with x̃ = 0, e.g.
    ``chambolle_pock(model, zeros_like(c), iterations=L, weights="uniform").x``."""
    xp = namespace(("costs", costs))
    if costs.ndim != 4:
        raise ValueError(f"costs must have shape (batch, labels, H, W), got {tuple(costs.shape)}")
    if costs.shape[1] < 2:
        raise ValueError(f"costs need at least 2 labels along axis 1, got {costs.shape[1]}")
    check_finite(xp, costs=costs)
    tv = Gradient2d(tuple(costs.shape[1:]), xp=xp, dtype=costs.dtype, device=array_device(costs))
    simplex = EntropicSimplex(axis=1) if check_flag("entropic", entropic) else Simplex(axis=1)
    return AnalysisModel(tv, L21Norm(check_positive("tv_weight", tv_weight), group_axis=2),
                         LinearTerm(costs, simplex))


def segmentation_loss(onehot: Array, *, eps: float = 1e-6) -> Callable[[Array], tuple[float,
                                                                                 Array]]:
    """Pixelwise cross-entropy ℓ(u) = −(1/N) Σ onehot ⊙ log(u + ε) over the N = batch·H·W
    pixels, as ``loss(u) -> (value, ∇ℓ = −onehot / (N (u + ε)))`` for :func:`pdunroll.gradient`.
    ``onehot``: the true labels, shape (batch, labels, H, W) with one 1 per pixel."""
    xp = namespace(("onehot", onehot))
    if onehot.ndim != 4:
        raise ValueError(f"onehot must have shape (batch, labels, H, W), got "
                         f"{tuple(onehot.shape)}")
    check_finite(xp, onehot=onehot)
    eps = check_positive("eps", eps)
    pixels = onehot.shape[0] * onehot.shape[2] * onehot.shape[3]

    def loss(u):
        if u.shape != onehot.shape:
            raise ValueError(f"u has shape {tuple(u.shape)} but onehot has "
                             f"{tuple(onehot.shape)}")
        xu, shifted = xp_of(u), u + eps
        value = -float(xu.sum(onehot * xu.log(shifted))) / pixels
        return value, -onehot / (pixels * shifted)

    return loss
