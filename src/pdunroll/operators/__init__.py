"""Linear analysis operators K: the interface (:mod:`.base`), dense matrices (:mod:`.dense`),
fixed and composite operators (:mod:`.linops`), convolution filter banks (:mod:`.convolution`),
their starting filters (:mod:`.filters`) and the fixed forward operators of imaging inverse
problems (:mod:`.imaging`)."""

from .base import LinearOperator, NormEstimate, estimate_norm
from .convolution import Conv1dFilterBank, Conv2dFilterBank
from .dense import DenseOperator, dct_matrix
from .filters import dct_filters
from .imaging import Blur, Mask, ParallelBeam, Subsample, gaussian_kernel
from .linops import Composition, Diagonal, Gradient2d, Stack

__all__ = ["Blur", "Composition", "Conv1dFilterBank", "Conv2dFilterBank", "DenseOperator",
           "Diagonal", "Gradient2d", "LinearOperator", "Mask", "NormEstimate", "ParallelBeam",
           "Stack", "Subsample", "dct_filters", "dct_matrix", "estimate_norm", "gaussian_kernel"]
