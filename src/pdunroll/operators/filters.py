"""Starting filter banks for convolutional analysis operators."""

from __future__ import annotations

from .._array import check_count, default_namespace
from .dense import dct_matrix

__all__ = ["dct_filters"]


def dct_filters(k: int, *, xp=None, dtype=None, device=None):
    """The k² − 1 separable 2-D DCT-II filters h_{ab}[i, j] = C[a, i] C[b, j] of size k×k
    without the constant one (a = b = 0): shape (k² − 1, k, k), e.g. 48 filters for k = 7.
    NumPy float64 unless ``xp``, ``dtype`` and ``device`` say otherwise."""
    k = check_count("k", k, minimum=2)
    c = dct_matrix(k, xp=xp, dtype=dtype, device=device)
    xp = default_namespace(xp)
    bank = xp.reshape(c, (k, 1, k, 1)) * xp.reshape(c, (1, k, 1, k))
    return xp.reshape(bank, (k * k, k, k))[1:, ...]
