"""Clean and noisy gray images from scikit-image's bundled data, and their patches."""

from __future__ import annotations

import math

import numpy as np

from .._array import check_count

__all__ = ["IMAGE_NAMES", "add_noise", "extract_patches", "image_patches", "load_images"]

IMAGE_NAMES = ("astronaut", "brick", "camera", "cell", "chelsea", "clock", "coffee", "coins",
               "grass", "gravel", "immunohistochemistry", "moon", "page", "rocket", "text")


def load_images(names=("camera", "coins", "moon", "astronaut")) -> list[np.ndarray]:
    """Gray float64 images in [0, 1] from scikit-image's bundled data (colour → luminance)."""
    try:
        from skimage import color, data, util
    except ImportError as err:
        raise ImportError("image data need scikit-image: pip install scikit-image (from a checkout "
                          "also: pip install -e '.[images]')") from err
    if isinstance(names, str):
        names = (names,)
    images = []
    for name in names:
        if name not in IMAGE_NAMES:
            raise ValueError(f"unknown image {name!r}: choose from {', '.join(IMAGE_NAMES)}")
        img = getattr(data, name)()
        if img.ndim == 3:
            img = color.rgb2gray(img[..., :3])
        images.append(util.img_as_float64(img))
    return images


def add_noise(images, sigma: float, seed: int = 0) -> list[np.ndarray]:
    """Images plus white Gaussian noise of standard deviation ``sigma`` (intensity scale
    [0, 1]; not clipped)."""
    if not (sigma >= 0 and math.isfinite(sigma)):
        raise ValueError(f"sigma must be a non-negative number, got {sigma}")
    rng = np.random.default_rng(check_count("seed", seed, minimum=0))
    return [img + sigma * rng.standard_normal(img.shape) for img in images]


def extract_patches(image: np.ndarray, size: int, stride: int | None = None) -> np.ndarray:
    """Square patches (N, size, size) of a 2-D image on a grid with step ``stride`` (default:
    non-overlapping)."""
    size = check_count("size", size)
    stride = size if stride is None else check_count("stride", stride)
    if image.ndim != 2:
        raise ValueError(f"image must be 2-D (gray), got shape {image.shape}")
    h, w = image.shape
    if size > min(h, w):
        raise ValueError(f"patch size {size} exceeds the image shape {image.shape}")
    return np.stack([image[i:i + size, j:j + size]
                     for i in range(0, h - size + 1, stride)
                     for j in range(0, w - size + 1, stride)])


def image_patches(images, *, size: int, sigma: float, max_patches: int | None = None,
                  seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Noisy and clean non-overlapping patches (N, size, size) of ``images``: a seeded random
    subset of at most ``max_patches``, white Gaussian noise of standard deviation ``sigma``."""
    clean = np.concatenate([extract_patches(img, size) for img in images])
    rng = np.random.default_rng(check_count("seed", seed, minimum=0))
    if max_patches is not None and len(clean) > check_count("max_patches", max_patches):
        clean = clean[np.sort(rng.choice(len(clean), max_patches, replace=False))]
    return add_noise([clean], sigma, seed=seed + 1)[0], clean
