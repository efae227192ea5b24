"""pdunroll: learn analysis operators through an unrolled Chambolle-Pock algorithm.

Solver and reverse-mode gradients are written once against the Python array API standard: the
same code runs on NumPy, CuPy, torch and JAX arrays (and array_api_strict). Importing pdunroll
imports none of torch, cupy or jax.
"""

from .functions import Function, L1Norm, L2Ball, LinfBall, SquaredL2, Zero
from .gradients import MODES, GradientResult, gradient
from .implicit import SOLVERS, ConvergenceError, ConvergenceWarning
from .krylov import SolveInfo, gmres, neumann
from .model import AnalysisModel, StepSizes, step_sizes
from .operators import DenseOperator, LinearOperator, NormEstimate, dct_matrix, estimate_norm
from .solver import CPResult, chambolle_pock, ergodic_weights, primal_dual_gap

__version__ = "0.1.0"

__all__ = [
    "MODES",
    "SOLVERS",
    "AnalysisModel",
    "CPResult",
    "ConvergenceError",
    "ConvergenceWarning",
    "DenseOperator",
    "Function",
    "GradientResult",
    "L1Norm",
    "L2Ball",
    "LinearOperator",
    "LinfBall",
    "NormEstimate",
    "SolveInfo",
    "SquaredL2",
    "StepSizes",
    "Zero",
    "chambolle_pock",
    "dct_matrix",
    "ergodic_weights",
    "estimate_norm",
    "gmres",
    "gradient",
    "neumann",
    "primal_dual_gap",
    "step_sizes",
]
