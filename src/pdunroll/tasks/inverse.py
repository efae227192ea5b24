"""Deblurring and inpainting with a learned filter bank (the command line's ``train deblur`` and
``train inpaint``; docs, "Your own inverse problem"):

    x̂ ∈ argmin_x ‖K x‖₁ + ½‖A x − f‖₂²

(:func:`pdunroll.inverse_problem` with F = ‖·‖₁ and H = ½‖·‖²) for measurements
f = A x† + white Gaussian noise of standard deviation σ. K: the k² − 1 2-D DCT filters of k×k
times the weight λ to start (the filters' scale is the regulariser's weight, and training
learns it), zero boundary; λ = 100 σ² by default (the weight of ‖K x‖₁ against ½‖A x − f‖²
grows with the noise variance; 0.01 at σ = 0.01 was the best of 0.003, 0.01, 0.03 for the DCT
filters on validation crops of train400, docs' Results page). Total variation, the baseline of
``pdunroll evaluate``, has the same data term and weight: λ‖∇x‖_{2,1}. A:

* ``deblur``: the Gaussian blur of σ_blur (:func:`pdunroll.gaussian_kernel`, k_b × k_b) with
  the "valid" boundary: the data are the blur of the whole scene, H − k_b + 1 by W − k_b + 1
  values of an H×W image, and no pixel outside the image is assumed; the start x̃ is f extended
  by its edge values to H×W. A blurred image of H×W is restored as the centre of an
  (H + k_b − 1) × (W + k_b − 1) one, the part that its pixels see, so the result has its size;
* ``inpaint``: a mask of the observed pixels (:class:`pdunroll.Mask`, each pixel missing with
  probability ``missing``); x̃ is the observed pixels, the missing ones filled by normalised
  Gaussian smoothing (σ = 2) of the observed ones.

A run's patches share one forward operator (one mask per run for inpainting); whole images in
``pdunroll evaluate`` each get their own mask and noise. The saved model holds K, A (the blur
kernel; for inpainting the run's mask, which only fixes the problem) and the data term, with one
measurement of zeros in place of the training data: :func:`restore` rebuilds it for each image's
measurements (and mask).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path

from .._array import array_device, check_count, to_numpy, xp_of
from ..functions.euclidean import L1Norm, L21Norm
from ..inverse import inverse_problem
from ..model import AnalysisModel
from ..operators.convolution import Conv2dFilterBank
from ..operators.filters import dct_filters
from ..operators.imaging import Blur, Mask, gaussian_kernel
from ..operators.linops import Gradient2d
from ..unroll.forward import ergodic_weights, solve
from . import denoise
from .base import TaskData, learned_name

__all__ = ["PROBLEMS", "START_NAME", "TRAINING", "InverseOptions", "datasets",
           "evaluation_images", "filter_bank", "forward_operator", "image_rows", "inverse_model",
           "norm_bound", "restore", "start_image"]

PROBLEMS = ("deblur", "inpaint")
START_NAME = "degraded input"  # the tables' name of x̃
FILL_SIGMA = 2.0  # inpainting's start: the normalised Gaussian smoothing of the observed pixels
WEIGHT = 100.0  # λ = WEIGHT σ² by default
# the command line's training defaults, measured with the other defaults on train400 → Set12
# (deblurring, L = 10): ω = 0.3 and Adam 1e-3 reached a validation loss of 3.0705 against 3.1551
# at ω = 1 and 3e-4 (start 3.0749 against 3.1693: at L = 10 the solver gets further at ω = 0.3);
# 3e-3 made the first epoch worse than the start
TRAINING = {"omega": 0.3, "lr": 1e-3, "warmup": 0.0, "epochs": 3, "batch_size": 8}


@dataclass(frozen=True)
class InverseOptions:
    """The data options of a deblurring or inpainting run (``problem``): the images as for
    denoising (:class:`~pdunroll.tasks.denoise.DenoiseOptions`: ``images``, ``test_images``,
    a folder ``data``, ``patch``, ``max_patches``, ``kernel``, ``seed``); ``noise``: σ of the
    measurements' white Gaussian noise on [0, 1] intensities; ``blur_sigma``: σ_blur of the
    Gaussian blur (deblur); ``missing``: the probability of a pixel to be missing (inpaint);
    ``weight``: λ of λ‖K x‖₁ (the DCT start's scale and TV's weight; default 100 σ²)."""

    problem: str = "deblur"
    images: tuple = denoise.TRAIN_IMAGES
    test_images: tuple = denoise.TEST_IMAGES
    data: Path | None = None
    noise: float = 0.01
    blur_sigma: float = 1.6
    missing: float = 0.5
    patch: int = 32
    max_patches: int = 470
    kernel: int = 5
    weight: float | None = None
    seed: int = 0

    def resolved(self) -> InverseOptions:
        if self.problem not in PROBLEMS:
            raise ValueError(f"problem must be one of {', '.join(PROBLEMS)}, got "
                             f"{self.problem!r}")
        self.images_options().resolved()  # --kernel, --data, --images and --test-images
        if self.problem == "deblur":
            size = gaussian_kernel(self.blur_sigma).shape[0]
            if size >= self.patch:
                raise ValueError(f"--blur-sigma {self.blur_sigma:g} makes a {size}×{size} kernel:"
                                 f" --patch must be larger than {size}, got {self.patch}")
        elif not 0 <= self.missing < 1:
            raise ValueError(f"--missing must be a fraction in [0, 1), got {self.missing!r}")
        if self.weight is None:
            return replace(self, weight=WEIGHT * self.noise ** 2)
        return self

    def images_options(self) -> denoise.DenoiseOptions:
        """The image options as denoising's (the same images, patches and split; its noise σ
        is this noise)."""
        return denoise.DenoiseOptions(
            images=tuple(self.images), test_images=tuple(self.test_images), data=self.data,
            sigma=self.noise, patch=self.patch, max_patches=self.max_patches,
            kernel=self.kernel, seed=self.seed)

    def record(self) -> dict:
        out = asdict(self)
        out.update(images=list(self.images), test_images=list(self.test_images),
                   data=None if self.data is None else str(self.data))
        if self.problem == "deblur":
            del out["missing"]
        else:
            del out["blur_sigma"]
        return out

    @property
    def parameter_shape(self) -> tuple:
        return (self.kernel ** 2 - 1, self.kernel, self.kernel)


# ---------------------------------------------------------------- the problem


def _where(a) -> dict:
    return {"xp": xp_of(a), "dtype": a.dtype, "device": array_device(a)}


def _like(a, values):
    """NumPy ``values`` as an array of ``a``'s namespace, dtype and device."""
    return xp_of(a).asarray(values, dtype=a.dtype, device=array_device(a))


def forward_operator(problem: str, shape: tuple[int, int], *, blur_sigma: float | None = None,
                     kernel=None, mask=None):
    """A for images of ``shape``: the "valid" Gaussian blur of ``blur_sigma`` (or of the array
    ``kernel``), or the :class:`~pdunroll.Mask` ``mask``."""
    if problem == "deblur":
        return Blur(gaussian_kernel(blur_sigma) if kernel is None else kernel, shape, "valid")
    return Mask(mask)


def inverse_model(analysis, forward, f, *, tv_weight: float | None = None) -> AnalysisModel:
    """The model of measurements ``f`` (batch, *A.out_shape): F(K x) + ½‖A x − f‖² with
    K = ``analysis`` and F = ‖·‖₁, or for ``tv_weight`` λ (K = :class:`~pdunroll.Gradient2d`)
    F = λ‖·‖_{2,1} over the two directions."""
    f_fn = L1Norm() if tv_weight is None else L21Norm(tv_weight, group_axis=1)
    return inverse_problem(analysis, forward, f, f=f_fn)


def norm_bound(model: AnalysisModel) -> float:
    """An upper bound of ‖[K; A]‖ for step sizes without power iterations on whole images:
    √(‖K‖² + ‖A‖²), for a zero-boundary filter bank ‖K‖ ≤ the exact norm of its filters on the
    periodic (H + k − 1) × (W + k − 1) grid (the bank is a restriction of that one), else K's
    own ``norm()``; ‖A‖ the forward operator's (a blur's bound, a mask's exact norm)."""
    import math

    K, A = _parts(model)
    if isinstance(K, Conv2dFilterBank):
        grid = tuple(n + k - 1 for n, k in zip(K.in_shape, K.kernel_shape, strict=True))
        k_norm = Conv2dFilterBank(K.params, grid, "periodic").norm()
    else:
        k_norm = K.norm()
    return math.hypot(k_norm, A.norm())


def filter_bank(shape, kernel: int, weight: float, filters=None, *,
                like=None) -> Conv2dFilterBank:
    """K: ``filters`` (default: λ = ``weight`` times the k² − 1 DCT filters of
    ``kernel``×``kernel``, made where ``like`` is) on images of ``shape`` with zero
    boundary."""
    if filters is None:
        filters = weight * dct_filters(kernel, **({} if like is None else _where(like)))
    return Conv2dFilterBank(filters, tuple(shape), "zero")


def start_image(problem: str, f, forward):
    """x̃ of NumPy measurements ``f`` (batch, *A.out_shape) for the NumPy operator
    ``forward``: the blurred images extended by their edge values, or the observed pixels with
    the missing ones filled by normalised Gaussian smoothing."""
    import numpy as np
    from scipy.ndimage import gaussian_filter

    if problem == "deblur":
        k1, k2 = forward.kernel.shape
        return np.pad(f, ((0, 0), (k1 // 2, k1 - 1 - k1 // 2), (k2 // 2, k2 - 1 - k2 // 2)),
                      mode="edge")
    m = np.asarray(forward.mask, dtype=np.float64)
    weight = np.maximum(gaussian_filter(m, FILL_SIGMA), 1e-12)
    smooth = np.stack([gaussian_filter(m * fi, FILL_SIGMA) for fi in f]) / weight
    return m * f + (1 - m) * smooth


def _measure(forward, clean, noise: float, rng):
    """f = A x† + noise (NumPy)."""
    f = forward.apply(clean)
    return f + noise * rng.standard_normal(f.shape)


def _random_mask(shape, missing: float, rng):
    import numpy as np

    return (rng.random(shape) >= missing).astype(np.float64)


# ---------------------------------------------------------------- a run's data


def datasets(opts: InverseOptions) -> TaskData:
    """Training, validation and test patches (x̃, x†) of denoising's images and split, their
    measurements through one forward operator, the DCT filter start (the model of the
    training measurements), the records and the fingerprint of a deblurring or inpainting
    run."""
    import numpy as np

    dn = denoise.datasets(opts.images_options())  # the same patches, split and records
    clean = [pair[1] for pair in dn.sets]
    rng = np.random.default_rng(opts.seed + 3)
    shape = (opts.patch, opts.patch)
    mask = _random_mask(shape, opts.missing, rng) if opts.problem == "inpaint" else None
    A = forward_operator(opts.problem, shape, blur_sigma=opts.blur_sigma, mask=mask)
    measured = [_measure(A, x, opts.noise, rng) for x in clean]
    sets = tuple((start_image(opts.problem, f, A), x) for f, x in zip(measured, clean,
                                                                       strict=True))
    record = opts.record()
    ours = {k: record[k] for k in ("noise", "blur_sigma", "missing", "weight") if k in record}
    denoising = ("sigma", "radius_factor")  # the denoising record's own entries
    meta = {**{k: v for k, v in dn.meta.items() if k not in denoising}, "task": opts.problem,
            **ours}
    fingerprint = {**{k: v for k, v in dn.fingerprint.items() if k not in denoising},
                   "problem": opts.problem, **ours}
    start = inverse_model(filter_bank(shape, opts.kernel, opts.weight), A, measured[0])
    what = (f"Gaussian blur σ_blur = {opts.blur_sigma:g} ({A.kernel.shape[0]}×"
            f"{A.kernel.shape[1]}, valid)" if opts.problem == "deblur"
            else f"{opts.missing:.0%} of the pixels missing")
    text = dn.text.replace(f"with noise σ = {opts.noise:g}",
                           f"with {what}, noise σ = {opts.noise:g}") + f", λ = {opts.weight:g}"

    def signals(model: AnalysisModel, part: int | None) -> AnalysisModel:
        """``model`` (moved where it computes) with the measurements of set ``part`` (0, 1, 2:
        training, validation, test), or for None with one measurement of zeros (the saved
        model)."""
        here = model.f.params[1]
        f = np.zeros((1, *A.out_shape)) if part is None else measured[part]
        return AnalysisModel(model.operator, model.f.with_params(((), _like(here, f))),
                             model.g)

    return TaskData(sets, start, [("DCT start", start)], meta, fingerprint, text,
                    signals=signals, start_name=START_NAME)


# ---------------------------------------------------------------- whole images


def _parts(model: AnalysisModel):
    """K and A of a deblurring or inpainting model (on its namespace and device)."""
    K, A = model.operator.operators
    return K, A


def restore(learned, f, *, mask=None, iterations: int | None = None):
    """Deblur or inpaint NumPy images ``f`` (batch, H, W) of any size with a saved model
    (:func:`pdunroll.load_model` of a ``train deblur`` / ``train inpaint`` run) as it was
    trained: the model rebuilt for f (a blurred image is restored at its own size, see the
    module docstring), the start x̃ of f, L steps of the model's step rule with ‖[K; A]‖
    bounded by :func:`norm_bound`. ``mask``: inpainting's observed pixels
    (H, W) (values above 0.5 observed; the values of f elsewhere are ignored). Returns NumPy
    float64 images of f's shape."""
    import numpy as np

    meta = learned.metadata
    problem = meta.get("task")
    if problem not in PROBLEMS:
        raise ValueError(f"the model was not trained by pdunroll train deblur / inpaint "
                         f"(task {problem!r})")
    f = np.asarray(f, dtype=np.float64)
    if f.ndim != 3:
        raise ValueError(f"f must be a batch of images (batch, H, W), got shape {f.shape}")
    K, A = _parts(learned.model)
    if problem == "deblur":
        kernel = np.asarray(to_numpy(A.kernel), dtype=np.float64)
        k1, k2 = kernel.shape
        shape = (f.shape[1] + k1 - 1, f.shape[2] + k2 - 1)
        host = Blur(kernel, shape, "valid")
    else:
        if mask is None:
            raise ValueError("an inpainting model needs the mask of the observed pixels: give "
                             "mask= (pdunroll apply: --mask FILE)")
        mask = np.asarray(mask, dtype=np.float64)
        if mask.shape != f.shape[1:]:
            raise ValueError(f"the mask has shape {mask.shape} but the image {f.shape[1:]}: "
                             "give the mask of this image")
        mask = (mask > 0.5).astype(np.float64)
        shape, host = f.shape[1:], Mask(mask)
        f = f * mask
    here = K.params
    forward = (Blur(_like(here, kernel), shape, "valid") if problem == "deblur"
               else Mask(_like(here, mask)))
    model = inverse_model(K.at_shape(shape), forward, _like(here, f))
    x_tilde = _like(here, start_image(problem, f, host))
    L = learned.iterations if iterations is None else check_count("iterations", iterations)
    steps = learned.steps.sizes(model.operator, op_norm=norm_bound(model))
    x_hat = solve(model, x_tilde, steps, L, alphas=ergodic_weights(learned.weights, L)).x
    x_hat = np.asarray(to_numpy(x_hat), dtype=np.float64)
    if problem == "deblur":
        r1, r2 = k1 // 2, k2 // 2
        x_hat = x_hat[:, r1:r1 + f.shape[1], r2:r2 + f.shape[2]]
    return x_hat


def evaluation_images(source: str, meta: dict, *, data: Path | None = None,
                      noise: float | None = None):
    """Whole images to restore, as ``pdunroll evaluate`` scores them: every image of the folder
    ``data``, the run's own test files (read again and checked against their digests) or its
    test images by name; each with its own forward operator (its own mask) and noise of σ
    (default: the training σ), seeded by the run's seed. Returns a list of (name, x̃, clean,
    (A, f)) with NumPy A and f, σ and a title."""
    import numpy as np

    noise = meta["noise"] if noise is None else noise
    if data is None and "test_set" not in meta:
        clean = list(zip(meta["test_images"], denoise.named_images(meta["test_images"],
                                                                   "--test-images"),
                         strict=True))
        where = f"the test images {', '.join(meta['test_images'])}"
    else:
        paths, where = denoise.evaluation_files(source, meta, data)
        clean = [(p.name, img) for p, img in zip(paths, denoise.read_images(paths),
                                                 strict=True)]
    rng = np.random.default_rng(meta["seed"] + 11)
    out = []
    need = meta["kernel"]  # pixels per side: the filters' (a blur also needs one value)
    if meta["task"] == "deblur":
        need = max(need, gaussian_kernel(meta["blur_sigma"]).shape[0] + 1)
    for name, img in clean:
        if min(img.shape) < need:
            raise ValueError(f"image {name} of {img.shape[0]}×{img.shape[1]} pixels is smaller "
                             f"than the {need}×{need} that the filters and the blur need")
        mask = (_random_mask(img.shape, meta["missing"], rng) if meta["task"] == "inpaint"
                else None)
        A = forward_operator(meta["task"], img.shape, blur_sigma=meta.get("blur_sigma"),
                             mask=mask)
        f = _measure(A, img[None], noise, rng)
        out.append((name, start_image(meta["task"], f, A)[0], img, (A, f)))
    return out, noise, f"{where}, noise σ = {noise:g} (seed {meta['seed'] + 11})"


def image_rows(model: AnalysisModel, meta: dict) -> list:
    """The models ``pdunroll evaluate`` compares on whole images, as (name, factory) with
    ``factory(x, (A, f))`` the model of one image's NumPy forward operator and measurements,
    made with x's backend, dtype and device: total variation and the DCT filter start with the
    run's weight λ, and the learned filters, each with the same data term ½‖A x − f‖²."""
    import numpy as np

    K, _ = _parts(model)
    filters = np.asarray(to_numpy(K.params))
    weight = meta["weight"]

    def made(kind):
        def factory(x, problem):
            A, f = problem
            shape = tuple(x.shape[1:])
            forward = (Blur(_like(x, A.kernel), shape, "valid") if meta["task"] == "deblur"
                       else Mask(_like(x, A.mask)))
            if kind == "TV":
                return inverse_model(Gradient2d(shape, **_where(x)), forward, _like(x, f),
                                     tv_weight=weight)
            K_ = filter_bank(shape, meta["kernel"], weight,
                             None if kind == "DCT" else _like(x, filters), like=x)
            return inverse_model(K_, forward, _like(x, f))
        return factory

    return [("TV", made("TV")), ("DCT start", made("DCT")),
            (learned_name(meta), made("learned"))]
