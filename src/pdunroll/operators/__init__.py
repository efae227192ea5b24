"""Linear analysis operators K: the interface (:mod:`.base`), dense matrices (:mod:`.dense`),
fixed and composite operators (:mod:`.linops`), convolution filter banks (:mod:`.convolution`)
and their starting filters (:mod:`.filters`)."""

from .base import LinearOperator, NormEstimate, estimate_norm
from .convolution import Conv1dFilterBank, Conv2dFilterBank
from .dense import DenseOperator, dct_matrix
from .filters import dct_filters
from .linops import Composition, Diagonal, Gradient2d, Stack

__all__ = ["Composition", "Conv1dFilterBank", "Conv2dFilterBank", "DenseOperator", "Diagonal",
           "Gradient2d", "LinearOperator", "NormEstimate", "Stack", "dct_filters", "dct_matrix",
           "estimate_norm"]
