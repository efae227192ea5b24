"""pdunroll: learn analysis operators through an unrolled Chambolle-Pock algorithm.

Solver and reverse-mode gradients are written once against the Python array API standard: the
same code runs on NumPy, CuPy, torch and JAX arrays (and array_api_strict). Importing pdunroll
imports none of torch, cupy or jax.
"""

from .functions import Function, L1Norm, L2Ball, LinfBall, SquaredL2, Zero
from .gradients import MODES, GradientResult, gradient
from .model import AnalysisModel, StepSizes, step_sizes
from .operators import DenseOperator, LinearOperator, NormEstimate, dct_matrix, estimate_norm
from .solver import CPResult, chambolle_pock, ergodic_weights, primal_dual_gap

__version__ = "0.1.0"

# training, data and I/O import numpy, scipy or tqdm: loaded on first use (PEP 562)
_LAZY = {
    "checkpoint": ("History", "TrainState", "load_checkpoint", "load_operator",
                   "save_checkpoint", "save_operator"),
    "learner": ("OperatorLearner",),
    "metrics": ("mse", "snr"),
    "optimizers": ("SGD", "Adam", "LearningRate", "Optimizer", "grad_norm", "make_optimizer"),
    "training": ("TrainResult", "reconstruct", "train", "unrolled_loss"),
}
_LAZY_NAMES = {name: module for module, names in _LAZY.items() for name in names}


def __getattr__(name):
    if name in _LAZY_NAMES:
        import importlib

        value = getattr(importlib.import_module(f".{_LAZY_NAMES[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'pdunroll' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY_NAMES))

__all__ = [
    "MODES",
    "SGD",
    "Adam",
    "History",
    "LearningRate",
    "Optimizer",
    "OperatorLearner",
    "TrainResult",
    "TrainState",
    "grad_norm",
    "load_checkpoint",
    "load_operator",
    "make_optimizer",
    "mse",
    "reconstruct",
    "save_checkpoint",
    "save_operator",
    "snr",
    "train",
    "unrolled_loss",
    "AnalysisModel",
    "CPResult",
    "DenseOperator",
    "Function",
    "GradientResult",
    "L1Norm",
    "L2Ball",
    "LinearOperator",
    "LinfBall",
    "NormEstimate",
    "SquaredL2",
    "StepSizes",
    "Zero",
    "chambolle_pock",
    "dct_matrix",
    "ergodic_weights",
    "estimate_norm",
    "gradient",
    "primal_dual_gap",
    "step_sizes",
]
