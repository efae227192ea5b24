"""A scikit-learn estimator around :func:`pdunroll.train`.

With scikit-learn installed (the ``sklearn`` extra), :class:`OperatorLearner` is a
``BaseEstimator`` and ``RegressorMixin``: scikit-learn's own ``get_params``/``set_params``, repr,
tags and ``NotFittedError``, so ``clone``, ``GridSearchCV`` and pipelines work as for any
estimator. Without it, a small base class implements the same parameter protocol and repr, so
the learner behaves the same.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable
from pathlib import Path

from scipy.sparse import issparse

from .._array import Array, array_device, check_positive, namespace, xp_of
from ..data.metrics import mse
from ..model import AnalysisModel
from ..tasks.speech import speech_model
from .evaluation import reconstruct
from .threads import thread_limit
from .training import TrainResult, train

try:  # optional: the sklearn extra
    from sklearn.base import BaseEstimator, RegressorMixin
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.metadata_routing import UNUSED
except ImportError:  # the same protocol without scikit-learn (tests hide it to check this)
    BaseEstimator = RegressorMixin = None

    class NotFittedError(ValueError, AttributeError):
        """Raised by ``predict``/``score`` before ``fit`` (scikit-learn's class when
        installed)."""

__all__ = ["NotFittedError", "OperatorLearner"]

# the options of train() that are arguments of fit(), not learner parameters (every other option
# of train() is a parameter of OperatorLearner, with train's default: a test checks this)
FIT_ONLY = ("validation", "resume")


class _Params:
    """The scikit-learn parameter protocol without scikit-learn: parameters are the keyword
    arguments of ``__init__``, stored unchanged under their own names."""

    @classmethod
    def _get_param_names(cls) -> list[str]:
        return sorted(p.name for p in inspect.signature(cls.__init__).parameters.values()
                      if p.name != "self" and p.kind != p.VAR_KEYWORD)

    def get_params(self, deep: bool = True) -> dict:
        return {name: getattr(self, name) for name in self._get_param_names()}

    def set_params(self, **params):
        valid = self._get_param_names()
        for name, value in params.items():
            if name not in valid:
                raise ValueError(f"invalid parameter {name!r} for {type(self).__name__}: "
                                 f"valid parameters are {', '.join(valid)}")
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:  # like scikit-learn's: only the parameters that differ
        defaults = {p.name: p.default
                    for p in inspect.signature(type(self).__init__).parameters.values()}
        changed = [f"{k}={v!r}" for k, v in self.get_params().items()
                   if not (v is defaults[k] or (type(v) is type(defaults[k])
                                                and repr(v) == repr(defaults[k])))]
        return f"{type(self).__name__}({', '.join(changed)})"


_Bases: tuple[type, ...] = (_Params,) if BaseEstimator is None else (RegressorMixin,
                                                                     BaseEstimator)


def _check_batch(name: str, x) -> Array:
    """An array of real floating dtype holding a batch (n_signals, *signal_shape)."""
    if issparse(x):
        raise TypeError(f"{name} is a sparse matrix: sparse input is not supported, give a "
                        "dense array of signals")
    namespace((name, x))
    if x.ndim < 2:
        raise ValueError(f"{name} must be a batch of signals of shape (n_signals, *signal_shape), "
                         f"got a {x.ndim}-D array of shape {tuple(x.shape)}; for one signal "
                         "pass x[None]")
    return x


@contextlib.contextmanager
def _connected(client):
    """The ``client`` parameter as a Client for one call (None stays None)."""
    if client is None:
        yield None
        return
    from .distributed import connected

    with connected(client) as c:
        yield c


class OperatorLearner(*_Bases):
    """Learn an analysis operator; ``fit`` / ``predict`` / ``score`` as in scikit-learn.

    ``model`` is the starting model; if omitted, ``eta`` must be given and the speech
    dequantization model is used: K = orthonormal DCT-II (in the dtype and device of the data),
    F = ‖·‖₁, G = indicator of {‖x − x̃‖_∞ ≤ eta}. The other parameters are those of
    :func:`train` (``validation`` and ``resume`` are arguments of :meth:`fit`). As scikit-learn
    requires, the constructor only stores them; they are checked by :meth:`fit`.

    "Samples" are pairs of signals: ``fit(x_tilde, x_true)`` takes degraded and clean signals of
    one shape (n_signals, *signal_shape), like a regressor whose target has the shape of its
    input; ``score`` is the negative mean squared error. So ``sklearn.base.clone``,
    ``GridSearchCV`` (e.g. over ``lr`` or ``method``) and ``cross_val_score`` split and score
    pairs. After ``fit``: ``model_`` (best by validation loss), ``result_`` (the
    :class:`TrainResult`) and ``history_``; before it, ``predict`` raises ``NotFittedError``.

    ``loss``: ``loss(x_hat, x_true) -> (value, gradient)`` replacing the squared loss in
    training (as in :func:`train`); ``score`` stays the negative mean squared error.

    ``threads``: BLAS and OpenMP threads of ``fit`` and ``predict`` (default 1; None: the
    libraries' own setting; :mod:`pdunroll.learning.threads`).

    ``compile``: torch tensors only, the training steps as a ``torch.compile`` program (as in
    :func:`train`).

    ``client``: a Dask distributed ``Client``, or a scheduler address (connected for each
    ``fit`` and ``predict``; an address, unlike a ``Client``, survives ``clone``): training and
    prediction run on its workers (:mod:`pdunroll.learning.distributed`).
    """

    def __init__(self, model: AnalysisModel | None = None, *, eta: float | None = None,
                 iterations: int = 10, method="full", weights=None, omega: float | None = None,
                 steps=None, optimizer="adam", lr=1e-3, epochs: int = 10, batch_size: int = 32,
                 patience: int | None = None, seed: int = 0, norm_iterations: int = 30,
                 checkpoint: str | Path | None = None, progress: bool = True,
                 callback: Callable[[dict], object] | None = None,
                 minibatch_gradient: Callable | None = None, client=None,
                 threads: int | None = 1, loss: Callable | None = None,
                 compile: bool | dict = False):
        self.model, self.eta = model, eta
        self.iterations, self.method, self.weights, self.omega = iterations, method, weights, omega
        self.steps = steps
        self.optimizer, self.lr, self.epochs, self.batch_size = optimizer, lr, epochs, batch_size
        self.patience, self.seed, self.norm_iterations = patience, seed, norm_iterations
        self.checkpoint, self.progress, self.callback = checkpoint, progress, callback
        self.minibatch_gradient = minibatch_gradient
        self.client, self.threads, self.loss = client, threads, loss
        self.compile = compile

    @classmethod
    def from_config(cls, config, model: AnalysisModel | None = None, **parameters
                    ) -> OperatorLearner:
        """A learner with the settings of a :class:`~pdunroll.learning.config.TrainConfig`
        (e.g. ``TrainConfig.from_checkpoint(path)``: the run a checkpoint was written by) and
        any other parameters (``eta``, ``checkpoint``, ``client``, ...)."""
        from .config import TrainConfig

        if not isinstance(config, TrainConfig):
            raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
        return cls(model, **config.options(), **parameters)

    if BaseEstimator is not None:
        # no argument of fit/predict/score is per-sample metadata for routing: scikit-learn then
        # adds no set_fit_request/... methods (x_tilde and x_true are X and y under other names)
        __metadata_request__fit = dict.fromkeys(("x_tilde", "x_true", "validation", "resume"),
                                                UNUSED)
        __metadata_request__predict = dict.fromkeys(("x_tilde", "iterations"), UNUSED)
        __metadata_request__score = dict.fromkeys(("x_tilde", "x_true"), UNUSED)

        def __sklearn_tags__(self):
            tags = super().__sklearn_tags__()
            tags.target_tags.required = True  # x_true: the clean signals
            tags.target_tags.single_output = False  # one target value per input value
            tags.target_tags.multi_output = True
            return tags

    def _start(self, x: Array) -> AnalysisModel:
        if self.model is not None:
            return self.model
        if self.eta is None:
            raise ValueError("OperatorLearner needs a starting model or eta (the speech model's "
                             "ℓ∞ radius): set model= or eta=")
        eta = check_positive("eta", self.eta)
        if x.ndim != 2:
            raise ValueError("x_tilde must have shape (n_signals, n_samples) for the default "
                             f"speech model (eta=), got {tuple(x.shape)}: give model= for other "
                             "signal shapes")
        return speech_model(x.shape[1], eta, xp=xp_of(x), dtype=x.dtype, device=array_device(x))

    def _train_options(self) -> dict:
        names = [n for n in self._get_param_names() if n not in ("model", "eta")]
        return {n: getattr(self, n) for n in names}

    def fit(self, x_tilde: Array, x_true: Array, *, validation=None,
            resume: bool = False) -> OperatorLearner:
        """Train from pairs (x̃_i, x†_i); ``validation=(x̃, x†)`` enables best-model selection
        and early stopping; ``resume`` continues from the ``checkpoint`` parameter."""
        _check_batch("x_tilde", x_tilde)
        if x_true is None:  # scikit-learn's wording, which its estimator checks look for
            raise ValueError(f"{type(self).__name__} requires y to be passed, but the target y "
                             "is None: give x_true, the clean signals (shape of x_tilde)")
        _check_batch("x_true", x_true)
        options = self._train_options()
        with _connected(options.pop("client")) as client:
            self.result_: TrainResult = train(self._start(x_tilde), x_tilde, x_true,
                                              validation=validation, resume=resume,
                                              client=client, **options)
        self.model_ = self.result_.model
        self.history_ = self.result_.history
        return self

    def _fitted(self) -> AnalysisModel:
        if not hasattr(self, "model_"):
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet: call fit "
                                 "first")
        return self.model_

    def predict(self, x_tilde: Array, *, iterations: int | None = None) -> Array:
        """Reconstructions A_L(K, x̃) (L = the training L unless ``iterations`` is given)."""
        model = self._fitted()
        _check_batch("x_tilde", x_tilde)
        model.check_signals(x_tilde=x_tilde)
        with _connected(self.client) as client, thread_limit(self.threads):
            return reconstruct(model, x_tilde,
                               iterations=self.iterations if iterations is None else iterations,
                               omega=self.omega, steps=self.steps, weights=self.weights,
                               client=client)

    def score(self, x_tilde: Array, x_true: Array) -> float:
        """Negative mean squared error of the reconstructions (higher is better)."""
        prediction = self.predict(x_tilde)
        _check_batch("x_true", x_true)
        self.model_.check_signals(x_tilde=x_tilde, x_true=x_true)
        return -mse(prediction, x_true)
