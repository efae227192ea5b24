"""Image denoising with a filter bank (Brauer & Lorenz): F = ‖·‖₁ of the responses of k² − 1
filters of k×k, G = indicator of {‖x − x̃‖₂ ≤ σ √#pixels}, filters started as 2-D DCT filters;
the data sets of a run: patches of scikit-image's bundled images or of the user's image files,
or of a folder of images split by file, with white Gaussian noise of a recorded σ and seed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from .._array import array_device, xp_of
from ..functions.euclidean import L1Norm, L21Norm, NoiseL2Ball
from ..model import AnalysisModel
from ..operators.convolution import BOUNDARIES, Conv2dFilterBank
from ..operators.filters import dct_filters
from ..operators.linops import Gradient2d
from .base import TaskData, learned_name, recorded_files, split_files

__all__ = ["TEST_IMAGES", "TRAINING", "TRAIN_IMAGES", "DenoiseOptions",
           "datasets", "denoise_model", "evaluation_files", "evaluation_images", "evaluation_rows",
           "evaluation_set", "image_files", "image_rows", "named_images", "read_images",
           "tv_model"]

TRAIN_IMAGES = ("camera", "coins", "moon", "astronaut", "brick", "grass")
TEST_IMAGES = ("page", "clock")
TEST_PATCHES = 200
# the command line's training defaults; lr: one epoch on 400 patches of train400 (σ = 0.1)
# lowered the validation loss at 1e-2 and 3e-3 (25.15 → 25.20 dB test PSNR) but raised it at 3e-2
TRAINING = {"omega": 10.0, "lr": 1e-2, "warmup": 0.0, "epochs": 3, "batch_size": 8}


def denoise_model(kernel: int, shape: tuple[int, int], sigma: float, filters=None, *,
                  radius_factor: float = 1.0, boundary: str = "periodic", xp=None, dtype=None,
                  device=None) -> AnalysisModel:
    """The denoising model for images of ``shape``: ``filters`` (default: the k² − 1 2-D DCT
    filters of ``kernel``×``kernel``) with the ``boundary`` of
    :class:`~pdunroll.Conv2dFilterBank` (``"valid"``: only the responses whose window lies
    inside the image, no wrap-around edges in small patches), F = ‖·‖₁, G = indicator of the
    ℓ2 ball of radius c σ √(H·W) around the noisy image (c = ``radius_factor``; c = 1: the
    expected noise norm; :class:`~pdunroll.NoiseL2Ball`, which follows the size of the image
    it is applied to). ``xp``, ``dtype``, ``device``: where the filters are made (default:
    NumPy float64, or where ``filters`` are)."""
    if filters is None:
        h = dct_filters(kernel, xp=xp, dtype=dtype, device=device)
    else:
        h = filters if xp is None else xp.asarray(filters, dtype=dtype, device=device)
    return AnalysisModel(Conv2dFilterBank(h, tuple(shape), boundary), f=L1Norm(),
                         g=NoiseL2Ball(sigma, radius_factor))


def tv_model(shape: tuple[int, int], sigma: float, *, radius_factor: float = 1.0, xp=None,
             dtype=None, device=None) -> AnalysisModel:
    """Total variation with the same data term: K = the forward differences
    (:class:`~pdunroll.Gradient2d`), F = ‖·‖_{2,1} over the two directions (isotropic TV),
    G = the ℓ2 ball of radius c σ √(H·W). With a ball as G the weight of F does not change the
    minimiser, so c is TV's only setting."""
    return AnalysisModel(Gradient2d(tuple(shape), xp=xp, dtype=dtype, device=device),
                         f=L21Norm(group_axis=1),
                         g=NoiseL2Ball(sigma, radius_factor))


def read_images(paths) -> list:
    """Grey float64 images of image files (:func:`pdunroll.read_image`: png or tif of 8 or 16
    bits scaled to [0, 1], float tif and ``.npy`` as they are), colour converted to luminance
    (an alpha channel dropped)."""
    import numpy as np

    from ..data.files import read_image

    out = []
    for path in paths:
        pixels = read_image(path).pixels
        if pixels.ndim == 3:
            if pixels.shape[-1] >= 3:
                from skimage.color import rgb2gray

                pixels = rgb2gray(pixels[..., :3])
            else:  # grey, or grey and alpha
                pixels = pixels[..., 0]
        out.append(np.asarray(pixels, dtype=np.float64))
    return out


def image_files(folder: Path) -> list[Path]:
    """The image files of a folder (by suffix, sorted by name); none is an error."""
    from ..data.files import IMAGE_SUFFIXES  # numpy: not when the command line starts

    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"image folder {folder} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    return files


def named_images(names, option: str) -> list:
    """Images by scikit-image name or file path (``option`` names the argument in errors)."""
    from ..data.images import IMAGE_NAMES, load_images

    out = []
    for name in names:
        if name in IMAGE_NAMES:
            out.extend(load_images([name]))
        elif Path(name).is_file():
            out.extend(read_images([name]))
        else:
            raise ValueError(f"{option}: unknown image {name!r}: neither an image file nor one "
                             f"of scikit-image's images ({', '.join(IMAGE_NAMES)})")
    return out


@dataclass(frozen=True)
class DenoiseOptions:
    """The data options of a denoising run (the command line's ``train denoise`` options):
    training and test images by scikit-image name or file (``images``, ``test_images``), or a
    folder ``data`` of image files split by file; noise ``sigma`` on [0, 1] intensities;
    ``patch``×``patch`` patches, at most ``max_patches`` for training and validation;
    ``kernel``: the filters' size; ``radius_factor``: c of the data term's ball radius
    c σ √#pixels; ``boundary`` of the filter responses (:func:`denoise_model`); ``seed`` of
    noise, patches, split and shuffling."""

    images: tuple = TRAIN_IMAGES
    test_images: tuple = TEST_IMAGES
    data: Path | None = None
    sigma: float = 0.1
    patch: int = 32
    max_patches: int = 470
    kernel: int = 5
    radius_factor: float = 1.0
    boundary: str = "periodic"
    seed: int = 0

    def resolved(self) -> DenoiseOptions:
        if self.boundary not in BOUNDARIES:
            raise ValueError(f"--boundary must be one of {', '.join(BOUNDARIES)}, "
                             f"got {self.boundary!r}")
        if self.kernel > self.patch:
            raise ValueError(f"--kernel {self.kernel} is larger than --patch {self.patch}")
        if self.data is not None and not Path(self.data).is_dir():
            raise ValueError(f"--data {self.data} is not a folder")
        if self.data is None:
            def key(name):  # a file by where it is, a scikit-image image by its name
                return str(Path(name).resolve()) if Path(name).is_file() else str(name)

            both = sorted(set(self.test_images) & {*self.images} | {
                t for t in self.test_images if key(t) in {key(i) for i in self.images}})
            if both:
                raise ValueError(f"--images and --test-images share {', '.join(both)}: the "
                                 "test would score the training data; choose other test images")
        return self

    def record(self) -> dict:
        out = asdict(self)
        out.update(images=list(self.images), test_images=list(self.test_images),
                   data=None if self.data is None else str(self.data))
        return out

    @property
    def parameter_shape(self) -> tuple:
        return (self.kernel ** 2 - 1, self.kernel, self.kernel)


def _patch_sets(meta: dict):
    """Training and validation patches of the training images, test patches of the test
    images: (noisy, clean) pairs, as recorded in ``meta``."""
    from ..data import images as ds

    size, sigma, seed = meta["patch"], meta["sigma"], meta["seed"]
    noisy, clean = ds.image_patches(named_images(meta["images"], "--images"), size=size,
                                    sigma=sigma, max_patches=meta["max_patches"], seed=seed)
    n_val = max(1, round(0.15 * len(clean)))
    test = ds.image_patches(named_images(meta["test_images"], "--test-images"), size=size,
                            sigma=sigma, max_patches=TEST_PATCHES, seed=seed + 7)
    return (noisy[n_val:], clean[n_val:]), (noisy[:n_val], clean[:n_val]), test


def _folder_sets(opts: DenoiseOptions):
    """Patches of a folder of images split by file: training and validation patches of the
    training and validation files (at most ``max_patches`` together, 85/15), test patches of
    the test files; the split for the records."""
    from ..data import images as ds

    def read(folder):
        files = image_files(folder)
        return read_images(files), files, None

    split = split_files(Path(opts.data), read, seed=opts.seed)
    n_train = max(1, round(0.85 * opts.max_patches))
    caps = (n_train, max(1, opts.max_patches - n_train), TEST_PATCHES)
    sets = tuple(ds.image_patches([img for img, _ in part], size=opts.patch, sigma=opts.sigma,
                                  max_patches=cap, seed=opts.seed + 7 * i)
                 for i, (part, cap) in enumerate(zip(split.parts, caps, strict=True)))
    return sets, split


def datasets(opts: DenoiseOptions) -> TaskData:
    """Training, validation and test patch pairs, the DCT filter start, the records and the
    fingerprint of a denoising run."""
    from ..data.fingerprint import file_digests

    shape = (opts.patch, opts.patch)
    meta = {"task": "denoise", **{k: v for k, v in opts.record().items() if k != "data"}}
    if opts.data is None:
        sets = _patch_sets(meta)
        files = [Path(n) for n in (*opts.images, *opts.test_images) if Path(n).is_file()]
        fingerprint = {"kind": "images", **{k: v for k, v in meta.items() if k != "task"}}
        if files:
            fingerprint["files"] = file_digests(files, Path.cwd())
        source, test_source = ", ".join(opts.images), ", ".join(opts.test_images)
    else:
        sets, split = _folder_sets(opts)
        del meta["images"], meta["test_images"]
        counts = dict(zip(("train", "validation", "test"), map(len, split.parts), strict=True))
        meta["data"] = {"kind": "image files", "folder": str(split.root), "split": split.how,
                        "files": counts}
        meta["test_set"] = {"kind": "image files", "folder": str(split.root),
                            "files": split.digests[2]}
        fingerprint = {"kind": "image files", "files": {**split.digests[0], **split.digests[1]},
                       "test_files": split.digests[2],
                       **{k: v for k, v in meta.items()
                          if k in ("sigma", "patch", "max_patches", "kernel", "radius_factor",
                                   "seed")}}
        source = f"{opts.data} ({sum(counts.values())} images, {split.how})"
        test_source = f"its {counts['test']} test images"
    start = denoise_model(opts.kernel, shape, opts.sigma, radius_factor=opts.radius_factor,
                          boundary=opts.boundary)
    text = (f"patches {opts.patch}×{opts.patch} of {source} with noise σ = {opts.sigma:g}: "
            f"{len(sets[0][0])} training, {len(sets[1][0])} validation; test "
            f"{len(sets[2][0])} patches of {test_source}; {start.operator.out_shape[0]} "
            f"filters {opts.kernel}×{opts.kernel}")
    return TaskData(sets, start, [("DCT start", start)], meta, fingerprint, text)


def evaluation_set(meta: dict):
    """The test patches a denoising run was scored on, read again: (noisy, clean) and a
    title."""
    if "test_images" in meta:
        return _patch_sets(meta)[2], f"test patches of {', '.join(meta['test_images'])}"
    opts = DenoiseOptions(data=Path(meta["test_set"]["folder"]), sigma=meta["sigma"],
                          patch=meta["patch"], max_patches=meta["max_patches"],
                          kernel=meta["kernel"], seed=meta["seed"])
    return _folder_sets(opts)[0][2], f"test patches of {meta['test_set']['folder']}"


def evaluation_rows(source: str, model: AnalysisModel, meta: dict):
    """The test patches of a denoising run read again and the rows of ``pdunroll evaluate``'s
    table: the DCT filter start and the learned filters, both with the radius factor c of
    ``meta``. Returns (test pair, rows, title)."""
    test, title = evaluation_set(meta)

    def filter_model(filters):
        return denoise_model(meta["kernel"], (meta["patch"], meta["patch"]), meta["sigma"],
                             filters, radius_factor=meta.get("radius_factor", 1.0),
                             boundary=model.operator.boundary)

    return test, [("DCT start", filter_model(None)),
                  (learned_name(meta), filter_model(model.operator.params))], title


def evaluation_files(source: str, meta: dict, data: Path | None = None):
    """The image files ``pdunroll evaluate`` scores: every image of the folder ``data``, or the
    run's own test files (read again and checked against their digests); ``source`` names the
    operator file in errors. Returns the paths and a title."""
    if data is not None:
        if not data.is_dir():
            raise ValueError(f"--data {data} is not a folder")
        paths = image_files(data)
        return paths, f"{data}: all {len(paths)} images"
    test = meta.get("test_set")
    if not isinstance(test, dict):
        raise ValueError(f"{source} was trained on scikit-image's images or given files: "
                         "give a folder of test images with --data")
    paths = recorded_files(source, test, "test images", "give a folder with --data")
    return paths, (f"the test set of {source}: {len(paths)} image{'s' if len(paths) > 1 else ''}"
                   f" of {test['folder']}")


def evaluation_images(source: str, meta: dict, *, data: Path | None = None,
                      sigma: float | None = None):
    """Whole images to denoise, as ``pdunroll evaluate`` scores them (:func:`evaluation_files`),
    with white Gaussian noise of σ (default: the training σ) seeded by the run's seed. Returns
    a list of (name, noisy, clean), σ and a title."""
    import numpy as np

    sigma = meta["sigma"] if sigma is None else sigma
    paths, where = evaluation_files(source, meta, data)
    rng = np.random.default_rng(meta["seed"] + 11)
    images = [(p.name, img + sigma * rng.standard_normal(img.shape), img)
              for p, img in zip(paths, read_images(paths), strict=True)]
    small = [name for name, _, img in images if min(img.shape) < meta["kernel"]]
    if small:
        raise ValueError(f"images smaller than the {meta['kernel']}×{meta['kernel']} filters: "
                         f"{', '.join(small)}")
    return images, sigma, f"{where}, noise σ = {sigma:g} (seed {meta['seed'] + 11})"


def image_rows(model: AnalysisModel, meta: dict, sigma: float) -> list:
    """The models ``pdunroll evaluate`` compares on whole images, as (name, factory) with
    ``factory(x)`` the model for a batch x of one image, made with x's backend, dtype and
    device: total variation, the DCT filter start and the learned filters (with the boundary
    of the saved filter bank), each with the ℓ2 ball of the image's size and the run's radius
    factor c."""
    filters, kernel, boundary = model.operator.params, meta["kernel"], model.operator.boundary
    c = meta.get("radius_factor", 1.0)  # runs before the option existed used c = 1

    def where(x) -> dict:
        return {"xp": xp_of(x), "dtype": x.dtype, "device": array_device(x)}

    return [("TV", lambda x: tv_model(x.shape[1:], sigma, radius_factor=c, **where(x))),
            ("DCT start", lambda x: denoise_model(kernel, x.shape[1:], sigma, radius_factor=c,
                                                  boundary=boundary, **where(x))),
            (learned_name(meta), lambda x: denoise_model(kernel, x.shape[1:], sigma, filters,
                                                         radius_factor=c, boundary=boundary,
                                                         **where(x)))]
