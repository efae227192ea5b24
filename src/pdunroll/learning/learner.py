"""A scikit-learn-style estimator around :func:`pdunroll.train`."""

from __future__ import annotations

from .._array import Array, array_device, xp_of
from ..data.metrics import mse
from ..functions.euclidean import L1Norm, LinfBall
from ..model import AnalysisModel
from ..operators.dense import DenseOperator, dct_matrix
from .training import TrainResult, reconstruct, train

__all__ = ["OperatorLearner"]


class OperatorLearner:
    """Learn an analysis operator; ``fit`` / ``predict`` / ``score`` as in scikit-learn.

    ``model`` is the starting model; if omitted, ``eta`` must be given and the speech
    dequantization model is used: K = orthonormal DCT-II (in the dtype and device of the data),
    F = ‖·‖₁, G = indicator of {‖x − x̃‖_∞ ≤ eta}. All other keywords go to :func:`train`.

    After ``fit``: ``model_`` (best by validation loss), ``result_`` (the :class:`TrainResult`)
    and ``history_``.
    """

    def __init__(self, model: AnalysisModel | None = None, *, eta: float | None = None,
                 iterations: int = 10, omega: float = 10.0, weights=None, **train_options):
        if model is None and eta is None:
            raise ValueError("give a starting model or eta (the speech model's ℓ∞ radius)")
        self.model, self.eta = model, eta
        self.iterations, self.omega, self.weights = iterations, omega, weights
        self.train_options = train_options

    def _start(self, x: Array) -> AnalysisModel:
        if self.model is not None:
            return self.model
        K = dct_matrix(x.shape[1], xp=xp_of(x), dtype=x.dtype, device=array_device(x))
        return AnalysisModel(DenseOperator(K), f=L1Norm(), g=LinfBall(self.eta))

    def fit(self, x_tilde: Array, x_true: Array, *, validation=None,
            resume: bool = False) -> OperatorLearner:
        """Train from pairs (x̃_i, x†_i); ``validation=(x̃, x†)`` enables best-model selection
        and early stopping; ``resume`` continues from the ``checkpoint`` option."""
        self.result_: TrainResult = train(
            self._start(x_tilde), x_tilde, x_true, validation=validation,
            iterations=self.iterations, omega=self.omega, weights=self.weights, resume=resume,
            **self.train_options)
        self.model_ = self.result_.model
        self.history_ = self.result_.history
        return self

    def _fitted(self) -> AnalysisModel:
        if not hasattr(self, "model_"):
            raise RuntimeError("this OperatorLearner is not fitted yet: call fit first")
        return self.model_

    def predict(self, x_tilde: Array, *, iterations: int | None = None) -> Array:
        """Reconstructions A_L(K, x̃) (L = the training L unless ``iterations`` is given)."""
        model = self._fitted()
        model.check_signals(x_tilde=x_tilde)
        return reconstruct(model, x_tilde,
                           iterations=self.iterations if iterations is None else iterations,
                           omega=self.omega, weights=self.weights)

    def score(self, x_tilde: Array, x_true: Array) -> float:
        """Negative mean squared error of the reconstructions (higher is better)."""
        return -mse(self.predict(x_tilde), x_true)
