"""The nonsmooth convex functions F and G of a model: Euclidean proximal steps
(:mod:`.euclidean`), Bregman proximal steps (:mod:`.bregman`), and functions of stacked outputs
and of measurements (:mod:`.blocks`)."""

from .blocks import BlockSeparable, Translated
from .bregman import BoxBregmanL1Norm, BoxBregmanLinfBall, EntropicOrthant, EntropicSimplex
from .euclidean import (
    Function,
    L1Norm,
    L2Ball,
    L21Norm,
    LinearTerm,
    LinfBall,
    NoiseL2Ball,
    NonNegative,
    Simplex,
    SquaredL2,
    Zero,
)

__all__ = ["BlockSeparable", "BoxBregmanL1Norm", "BoxBregmanLinfBall", "EntropicOrthant",
           "EntropicSimplex", "Function", "L1Norm", "L21Norm", "L2Ball", "LinearTerm", "LinfBall",
           "NoiseL2Ball", "NonNegative", "Simplex", "SquaredL2", "Translated", "Zero"]
