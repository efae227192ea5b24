"""The models of the docs' tutorials at small sizes, for the gradient audit (``pdunroll audit``):
each is (model, x̃, x†, options of the audit) in NumPy float64.

* ``speech``: the DCT model of the speech tutorial (F = ‖·‖₁, G = indicator of the
  quantization cell) on quantized synthetic speech frames (Brauer & Lorenz, EUSIPCO 2023);
* ``denoise``: a DCT filter bank with F = ‖·‖₁ and G = indicator of an ℓ2 ball, as in the image
  tutorial;
* ``segmentation``: the TV-on-the-simplex model of the segmentation tutorial (ergodic, entropic
  steps; Ochs, Ranftl, Brox & Pock 2016) with the one-hot labels as x†.
"""

from __future__ import annotations

from ..data.speech import quantize
from ..operators.dense import dct_matrix
from ..operators.filters import dct_filters
from ..tasks.denoise import denoise_model
from ..tasks.speech import speech_model
from .segmentation import segmentation_model

__all__ = ["PROBLEMS", "tutorial_problem"]

PROBLEMS = ("speech", "denoise", "segmentation")


def tutorial_problem(name: str, *, seed: int = 0):
    """(model, x̃, x†, {"omega" or "weights": ...}) of the tutorial ``name`` (one of
    :data:`PROBLEMS`), small enough to audit in seconds."""
    import numpy as np

    rng = np.random.default_rng(seed)
    if name == "speech":
        n, batch, eta = 16, 4, 1 / 16  # η of the 4-bit quantizer
        t = np.linspace(0, 1, n)
        x = np.stack([0.6 * np.sin(2 * np.pi * (2 + i) * t + i) + 0.2 * rng.standard_normal(n)
                      for i in range(batch)])
        x /= np.abs(x).max()
        K = dct_matrix(n) + 0.05 * rng.standard_normal((n, n))
        return speech_model(n, eta, matrix=K), quantize(x, 4), x, {"omega": 10.0}
    if name == "denoise":
        size, s = 8, 0.1
        x = np.zeros((2, size, size))
        x[:, 2:6, 1:5] = 0.5
        x[1, 4:, 3:] -= 0.3
        noisy = x + s * rng.standard_normal(x.shape)
        filters = dct_filters(3) + 0.05 * rng.standard_normal((8, 3, 3))
        return denoise_model(3, (size, size), s, filters=filters), noisy, x, {}
    if name == "segmentation":
        labels = np.zeros((1, 6, 6), dtype=int)
        labels[:, 1:4, 2:5] = 1
        onehot = np.stack([labels == 0, labels == 1], axis=1).astype(float)
        costs = -onehot + 0.8 * rng.standard_normal(onehot.shape)
        return (segmentation_model(costs, 0.5), np.zeros_like(costs), onehot,
                {"weights": "uniform"})
    raise ValueError(f"problem must be one of {', '.join(PROBLEMS)}, got {name!r}")
