"""pdunroll: learn analysis operators through an unrolled Chambolle-Pock algorithm.

Solver and reverse-mode gradients are written once against the Python array API standard: the
same code runs on NumPy, CuPy, torch and JAX arrays (and array_api_strict). Importing pdunroll
imports none of torch, cupy or jax.
"""

from . import toy
from .bregman import BoxBregmanL1Norm, BoxBregmanLinfBall, EntropicOrthant, EntropicSimplex
from .convolution import Conv1dFilterBank, Conv2dFilterBank
from .functions import (
    Function,
    L1Norm,
    L2Ball,
    L21Norm,
    LinearTerm,
    LinfBall,
    NonNegative,
    Simplex,
    SquaredL2,
    Zero,
)
from .gradients import MODES, GradientResult, gradient
from .linops import Composition, Diagonal, Gradient2d, Stack
from .model import AnalysisModel, StepSizes, step_sizes
from .operators import DenseOperator, LinearOperator, NormEstimate, dct_matrix, estimate_norm
from .solver import CPResult, chambolle_pock, ergodic_weights, primal_dual_gap
from .splitting import (
    FB_MODES,
    FBGradient,
    FBResult,
    LeastSquares,
    SmoothFunction,
    forward_backward,
    forward_backward_gradient,
)

__version__ = "0.1.0"

__all__ = [
    "FB_MODES",
    "AnalysisModel",
    "BoxBregmanL1Norm",
    "BoxBregmanLinfBall",
    "CPResult",
    "Composition",
    "Conv1dFilterBank",
    "Conv2dFilterBank",
    "DenseOperator",
    "Diagonal",
    "EntropicOrthant",
    "EntropicSimplex",
    "FBGradient",
    "FBResult",
    "Function",
    "Gradient2d",
    "GradientResult",
    "L1Norm",
    "L21Norm",
    "L2Ball",
    "LeastSquares",
    "LinearOperator",
    "LinearTerm",
    "LinfBall",
    "MODES",
    "NonNegative",
    "NormEstimate",
    "Simplex",
    "SmoothFunction",
    "SquaredL2",
    "Stack",
    "StepSizes",
    "Zero",
    "chambolle_pock",
    "dct_matrix",
    "ergodic_weights",
    "estimate_norm",
    "forward_backward",
    "forward_backward_gradient",
    "gradient",
    "primal_dual_gap",
    "step_sizes",
    "toy",
]
