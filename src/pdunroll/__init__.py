"""pdunroll: learn analysis operators through an unrolled Chambolle-Pock algorithm.

Solver and reverse-mode gradients are written once against the Python array API standard: the
same code runs on NumPy, CuPy, torch and JAX arrays (and array_api_strict). Importing pdunroll
imports none of torch, cupy or jax.
"""

from . import tree
from .audit import AuditResult, AuditRow, check_gradients
from .functions import (
    BlockSeparable,
    BoxBregmanL1Norm,
    BoxBregmanLinfBall,
    EntropicOrthant,
    EntropicSimplex,
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
    Translated,
    Zero,
)
from .inverse import inverse_problem
from .model import DEFAULT_OMEGA, AnalysisModel, StepRule, StepSizes, step_sizes
from .operators import (
    Blur,
    Composition,
    Conv1dFilterBank,
    Conv2dFilterBank,
    DenseOperator,
    Diagonal,
    Gradient2d,
    LinearOperator,
    Mask,
    NormEstimate,
    ParallelBeam,
    Stack,
    Subsample,
    dct_filters,
    dct_matrix,
    estimate_norm,
    gaussian_kernel,
)
from .problems import toy
from .problems.segmentation import segmentation_loss, segmentation_model
from .registry import saveable
from .unroll.forward import CPResult, chambolle_pock, ergodic_weights, primal_dual_gap
from .unroll.gradient import Cotangents, GradientResult, gradient, vjp
from .unroll.implicit import ConvergenceError, ConvergenceWarning
from .unroll.krylov import SolveInfo, gmres, neumann
from .unroll.methods import SOLVERS, Asymptotic, Full, GradientMethod, Implicit, Truncated
from .unroll.splitting import (
    FBGradient,
    FBResult,
    LeastSquares,
    SmoothFunction,
    forward_backward,
    forward_backward_gradient,
)

__version__ = "0.1.0"

# training, data and I/O (pdunroll.learning, pdunroll.data) import numpy, scipy or tqdm: loaded
# on first use (PEP 562)
_LAZY = {
    "checks": ("CheckError", "CheckReport", "check_function", "check_operator"),
    "learning.checkpoint": ("CheckpointFile", "load_checkpoint", "load_operator",
                            "save_checkpoint", "save_operator"),
    "learning.state": ("History", "TrainState"),
    "learning.learned": ("LearnedModel", "load_model"),
    "learning.apply": ("apply_files",),
    "data.files": ("read_audio", "read_image", "write_audio", "write_image"),
    "data.speech": ("SpeechFrames", "frame_signals", "quantization_radius", "quantize",
                    "read_wav_folder", "speech_frames", "split_signals", "synthetic_speech"),
    "data.images": ("add_noise", "extract_patches", "image_patches", "load_images"),
    "learning.learner": ("OperatorLearner",),
    "data.metrics": ("mse", "snr"),
    "learning.optimizers": ("SGD", "Adam", "LearningRate", "Optimizer", "grad_norm",
                            "make_optimizer"),
    "learning.training": ("TrainResult", "train"),
    "learning.evaluation": ("reconstruct", "unrolled_loss"),
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
    "SOLVERS",
    "CheckpointFile",
    "Asymptotic",
    "AuditResult",
    "AuditRow",
    "check_gradients",
    "check_function",
    "check_operator",
    "CheckError",
    "CheckReport",
    "Cotangents",
    "Full",
    "GradientMethod",
    "Implicit",
    "Truncated",
    "tree",
    "vjp",
    "SGD",
    "Adam",
    "add_noise",
    "apply_files",
    "AnalysisModel",
    "BlockSeparable",
    "Blur",
    "BoxBregmanL1Norm",
    "BoxBregmanLinfBall",
    "chambolle_pock",
    "Composition",
    "Conv1dFilterBank",
    "Conv2dFilterBank",
    "ConvergenceError",
    "ConvergenceWarning",
    "CPResult",
    "dct_filters",
    "DEFAULT_OMEGA",
    "dct_matrix",
    "DenseOperator",
    "Diagonal",
    "EntropicOrthant",
    "EntropicSimplex",
    "ergodic_weights",
    "estimate_norm",
    "extract_patches",
    "FBGradient",
    "FBResult",
    "forward_backward",
    "forward_backward_gradient",
    "frame_signals",
    "gaussian_kernel",
    "Function",
    "grad_norm",
    "gmres",
    "gradient",
    "Gradient2d",
    "GradientResult",
    "History",
    "image_patches",
    "inverse_problem",
    "L1Norm",
    "L21Norm",
    "L2Ball",
    "LearnedModel",
    "LearningRate",
    "LeastSquares",
    "LinearOperator",
    "LinearTerm",
    "LinfBall",
    "Mask",
    "load_checkpoint",
    "load_images",
    "load_model",
    "load_operator",
    "make_optimizer",
    "mse",
    "neumann",
    "NoiseL2Ball",
    "NonNegative",
    "NormEstimate",
    "OperatorLearner",
    "Optimizer",
    "ParallelBeam",
    "primal_dual_gap",
    "quantization_radius",
    "quantize",
    "read_wav_folder",
    "read_audio",
    "read_image",
    "reconstruct",
    "save_checkpoint",
    "save_operator",
    "segmentation_loss",
    "segmentation_model",
    "Simplex",
    "SmoothFunction",
    "snr",
    "SolveInfo",
    "speech_frames",
    "SpeechFrames",
    "split_signals",
    "saveable",
    "SquaredL2",
    "Stack",
    "Subsample",
    "step_sizes",
    "StepRule",
    "StepSizes",
    "synthetic_speech",
    "toy",
    "train",
    "TrainResult",
    "TrainState",
    "Translated",
    "unrolled_loss",
    "write_audio",
    "write_image",
    "Zero",
]
