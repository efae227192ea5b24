"""A learned model as one object: the model and everything its reconstructions depend on.

:class:`LearnedModel` holds the :class:`~pdunroll.AnalysisModel` (operator, F and G with their
parameters), the number of Chambolle-Pock steps L, the step rule (:class:`~pdunroll.StepRule`:
ω, which ‖K‖, θ, margin), the ergodic
output weights, the gradient method it was trained with, the task's metadata and the training
data's fingerprint. ``.reconstruct(x̃)`` runs x̂ = A_L(K, x̃) exactly as in training unless told
otherwise; ``.save(path)`` / :func:`load_model` keep all of it in one ``.npz`` file (docs,
"Saving and applying models").
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path

from .._array import Array, check_count, check_flag, namespace
from ..functions.euclidean import L2Ball, NoiseL2Ball
from ..model import AnalysisModel, StepRule, StepSizes, step_rule
from ..unroll.forward import ergodic_weights, solve
from ..unroll.methods import GradientMethod, method_from_settings
from .checkpoint import read_model_file, write_model_file

__all__ = ["LearnedModel", "load_model"]

BATCH_SIZE = 2048  # signals per Chambolle-Pock call of reconstruct


def _json(name: str, value):
    """``value`` if it is JSON (a dict for metadata and data), else a TypeError naming it."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise TypeError(f"{name} must be a dict of JSON values, got {type(value).__name__}")
    try:
        return json.loads(json.dumps(value))
    except (TypeError, ValueError) as err:
        raise TypeError(f"{name} must hold JSON values only: {err}") from err


@dataclass(frozen=True, init=False)
class LearnedModel:
    """A trained :class:`~pdunroll.AnalysisModel` with what its reconstructions depend on.

    ``LearnedModel(model, iterations, steps=None, *, omega=None, weights=None, method=None,
    metadata=None, data=None)``. ``iterations``: L; ``steps``: the step rule
    (:class:`~pdunroll.StepRule`: σ = ω·margin/‖K‖, τ = margin/(ω‖K‖) with ‖K‖ the
    ``"spectral"`` or ``"frobenius"`` norm and extrapolation θ; default ``StepRule()``), with
    ``omega=w`` shorthand for ``steps=StepRule(omega=w)`` as in every entry point; ``weights``:
    the ergodic output weights (None: the last iterate); ``method``: the gradient method of
    training (a record; reconstruction does not use it); ``metadata``: what the task records
    (e.g. speech n, m, bitrate; denoising σ, patch size); ``data``: the training data's
    fingerprint. The dtype is the operator's.
    """

    model: AnalysisModel
    iterations: int
    steps: StepRule
    weights: object = None
    method: GradientMethod | None = None
    metadata: dict = field(default_factory=dict)
    data: dict | None = None
    # step sizes per signal shape, made once (‖K‖ of a 640×320 K: 0.1 s by power iteration)
    _sizes: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __init__(self, model: AnalysisModel, iterations: int, steps: StepRule | None = None, *,
                 omega: float | None = None, weights=None, method: GradientMethod | None = None,
                 metadata: dict | None = None, data: dict | None = None):
        def put(name, value):
            object.__setattr__(self, name, value)

        if not isinstance(model, AnalysisModel):
            raise TypeError(f"model must be an AnalysisModel(operator, f, g), got "
                            f"{type(model).__name__}")
        put("model", model)
        put("iterations", check_count("iterations", iterations))
        rule = step_rule(omega, steps)
        if not isinstance(rule, StepRule):
            raise TypeError("steps must be a pdunroll.StepRule (a model keeps the rule, which "
                            "makes σ and τ for the operator at each signal shape), got "
                            "StepSizes")
        put("steps", rule)
        if weights is not None and not isinstance(weights, str):
            weights = [float(w) for w in weights]
        ergodic_weights(weights, self.iterations)  # a clear error for unknown weights
        put("weights", weights)
        if method is not None and not isinstance(method, GradientMethod):
            raise TypeError(f"method must be a GradientMethod (e.g. pu.Full()) or None, got "
                            f"{type(method).__name__}")
        put("method", method)
        put("metadata", _json("metadata", metadata) or {})
        put("data", _json("data", data))
        put("_sizes", {})

    # ------------------------------------------------------------ what it is

    @property
    def operator(self):
        """The learned operator K."""
        return self.model.operator

    @property
    def dtype(self):
        """The dtype it computes in (the operator's)."""
        return self.model.operator.dtype

    @property
    def settings(self) -> dict:
        """Everything but the arrays, as JSON values: ``solver`` (iterations, the step rule's
        omega, norm, theta and margin, weights), ``method``, ``metadata``, ``data``, ``dtype``,
        ``in_shape``."""
        return {"solver": {"iterations": self.iterations, **self.steps.settings(),
                           "weights": self.weights},
                "method": None if self.method is None else self.method.settings(),
                "metadata": self.metadata, "data": self.data,
                "dtype": str(self.dtype).split(".")[-1],
                "in_shape": list(self.operator.in_shape)}

    def __repr__(self) -> str:
        return (f"LearnedModel({self.operator!r}, f={self.model.f!r}, g={self.model.g!r}, "
                f"L={self.iterations}, steps={self.steps!r}, weights={self.weights!r})")

    # ------------------------------------------------------------ made from training

    @classmethod
    def from_training(cls, result, config=None, *, metadata: dict | None = None,
                      data: dict | None = None, final: bool = False) -> LearnedModel:
        """The model a :func:`pdunroll.train` ``result`` learned (its best model by validation
        loss; ``final=True``: the model after the last update) with the settings it was
        trained with: ``config`` a :class:`~pdunroll.learning.config.TrainConfig` (default:
        train's defaults) or a dict of train's keywords (iterations, omega, weights, method)."""
        from .config import TrainConfig

        if config is None:
            config = TrainConfig()
        elif isinstance(config, dict):
            config = TrainConfig(**config)
        elif not isinstance(config, TrainConfig):
            raise TypeError(f"config must be a TrainConfig or a dict of train's keywords, got "
                            f"{type(config).__name__}")
        model = result.final_model if check_flag("final", final) else result.model
        method = config.method
        if isinstance(method, str):
            method = method_from_settings({"name": method})
        return cls(model, config.iterations, omega=config.omega, weights=config.weights,
                   method=method, metadata=metadata or {}, data=data)

    # ------------------------------------------------------------ files

    def save(self, path) -> Path:
        """Write the model and its settings to the ``.npz`` file ``path`` atomically (no
        pickles); :func:`load_model` reads it back."""
        settings = self.settings
        del settings["dtype"], settings["in_shape"]  # the file's own entries
        return write_model_file(path, self.model, settings)

    # ------------------------------------------------------------ use

    def at_shape(self, shape: tuple[int, ...]) -> LearnedModel:
        """The same model for signals of shape ``shape``: the operator's ``at_shape`` (filter
        banks and the image gradient apply to any size; dense operators to their own only),
        F and G unchanged (a :class:`~pdunroll.NoiseL2Ball` follows the size by itself)."""
        shape = tuple(int(n) for n in shape)
        if shape == tuple(self.operator.in_shape):
            return self
        op = self.operator.at_shape(shape)
        for name in ("f", "g"):
            part = getattr(self.model, name)
            if type(part) is L2Ball:
                raise ValueError(
                    f"the model's {name} is an L2Ball of fixed radius {part.radius:g}, made for "
                    f"signals of shape {tuple(self.operator.in_shape)}: on shape {shape} it would "
                    "be another model; use NoiseL2Ball(sigma, c), whose radius c·σ·√N follows "
                    "the size")
        return replace(self, model=AnalysisModel(op, self.model.f, self.model.g))

    def step_sizes(self, shape: tuple[int, ...] | None = None) -> StepSizes:
        """σ, τ, θ of the step rule for the operator at ``shape`` (default: its own), ‖K‖
        computed once per shape."""
        shape = tuple(self.operator.in_shape) if shape is None else tuple(shape)
        if shape not in self._sizes:
            op = self.at_shape(shape).operator
            self._sizes[shape] = self.steps.sizes(op)
        return self._sizes[shape]

    def reconstruct(self, x_tilde: Array, *, iterations: int | None = None,
                    batch_size: int | None = None, progress: bool = False) -> Array:
        """x̂ = A_L(K, x̃) with the model's L, step rule and output weights (``iterations``
        overrides L; explicit weights fit only their own L).

        ``x_tilde``: a batch (N, *shape) or one signal ``shape``; a shape other than the
        operator's ``in_shape`` uses :meth:`at_shape` (any image size for a filter bank). Its
        namespace and device must be the model's (load it with ``load_model(path, xp=...,
        device=...)``). A real floating dtype other than the model's is converted to the
        model's dtype for the solve and the result converted back: the model computes as it
        was trained. ``batch_size``: signals per solver call (default 2048; memory grows with
        it); ``progress``: a tqdm bar over the batches. Returns x̂ in x̃'s shape and dtype.
        """
        xp = namespace(("x_tilde", x_tilde), ("the model's operator", self.operator.arrays[0]))
        L = self.iterations if iterations is None else check_count("iterations", iterations)
        chunk = BATCH_SIZE if batch_size is None else check_count("batch_size", batch_size)
        progress = check_flag("progress", progress)
        alphas = ergodic_weights(self.weights, L)
        d = len(self.operator.in_shape)
        single = x_tilde.ndim == d
        x = xp.reshape(x_tilde, (1, *x_tilde.shape)) if single else x_tilde
        if x.ndim != d + 1:
            raise ValueError(f"x_tilde must be one signal of {d} axes or a batch (N, ...) of "
                             f"them for this model (operator for shape {self.operator.in_shape})"
                             f", got shape {tuple(x_tilde.shape)}")
        model = self.at_shape(tuple(x.shape[1:]))
        x = xp.astype(x, self.dtype) if x.dtype != self.dtype else x
        model.model.check_signals(x_tilde=x)
        steps = self.step_sizes(tuple(x.shape[1:]))
        n = x.shape[0]
        starts = range(0, n, chunk)
        if progress:
            from tqdm.auto import tqdm

            starts = tqdm(starts, total=math.ceil(n / chunk), unit="batch",
                          desc="reconstructing", dynamic_ncols=True)
        parts = [solve(model.model, x[i:min(i + chunk, n), ...], steps, L, alphas=alphas).x
                 for i in starts]
        out = parts[0] if len(parts) == 1 else xp.concat(parts)
        out = xp.astype(out, x_tilde.dtype) if out.dtype != x_tilde.dtype else out
        return out[0, ...] if single else out


def load_model(path, *, xp=None, device=None) -> LearnedModel:
    """The :class:`LearnedModel` of an operator file: written by ``LearnedModel.save``,
    :func:`pdunroll.save_operator` or ``pdunroll train`` (``operator.npz`` of a run folder), of
    any format version; or of a training checkpoint (``checkpoint.npz``, e.g. of a run stopped
    by Ctrl-C: its best model so far, with the run's L, ω, weights and method). Arrays go to
    namespace ``xp`` (NumPy by default) on ``device``.

    Settings a file lacks take the values it was written under: files of
    :func:`~pdunroll.save_operator` record L, ω and the weights; the norm is then the spectral
    one and θ = 1 (what every pdunroll version used). The G = L2Ball(σ√N) of a denoising
    model written before :class:`~pdunroll.NoiseL2Ball` existed becomes NoiseL2Ball(σ) (the
    same radius at the trained size, and one that follows the size on others)."""
    model, settings = read_model_file(path, xp=xp, device=device, checkpoints=True)
    if "config" in settings:  # a checkpoint: the run's configuration
        config = settings["config"]
        rule = config.get("steps") or {}  # the rule where it is not StepRule(omega)
        if config.get("omega") is None:
            raise ValueError(f"{path} is a checkpoint of a run with fixed step sizes: its "
                             "model has no step rule to reconstruct with")
        solver = {"iterations": config.get("iterations"), "omega": config["omega"],
                  "weights": config.get("weights"), **rule}
        meta, method, data = config.get("run") or {}, config.get("method"), config.get("data")
    else:
        solver = settings.get("solver", {})
        meta = settings.get("metadata", {})
        method = settings.get("method")
        if method is None and isinstance(meta.get("settings"), dict):  # pdunroll train's record
            method = meta["settings"].get("method")
        data = settings.get("data", meta.get("fingerprint"))
    model = _noise_ball(model, meta)
    try:
        rule = StepRule(omega=solver["omega"], norm=solver.get("norm", "spectral"),
                        theta=solver.get("theta", 1.0), margin=solver.get("margin", 0.99))
        return LearnedModel(
            model, solver["iterations"], rule, weights=solver.get("weights"),
            method=None if method is None else method_from_settings(method),
            metadata=meta, data=data)
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{path} has damaged solver settings: {err}") from err


def _noise_ball(model: AnalysisModel, meta: dict) -> AnalysisModel:
    """``model`` with G = NoiseL2Ball(σ) where G is an L2Ball of radius exactly σ√N for the
    recorded noise level σ (``metadata["sigma"]``) and N entries per signal: the denoising
    models of pdunroll train before the ball followed the size."""
    sigma = meta.get("sigma")
    if type(model.g) is not L2Ball or not isinstance(sigma, float | int) or sigma <= 0:
        return model
    ball = NoiseL2Ball(sigma)
    if ball.radius_of_size(math.prod(model.operator.in_shape)) != model.g.radius:
        return model
    return AnalysisModel(model.operator, model.f, ball)
