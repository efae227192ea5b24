"""Fixed forward operators A of imaging inverse problems (the data term H(A x − f), docs,
Mathematics: "A forward operator in the data term"): blur by a given kernel, a pixel mask
(inpainting), subsampling (super-resolution, after a blur through :class:`Composition`) and a
small parallel-beam tomography projector.

All act on images (batch, H, W), are written against the array API and have no trainable
parameters (``params = ()``, ``param_vjp`` returns ``()``); their ``arrays`` (the kernel, the
mask, the projection matrix, or a one-element template) fix namespace, dtype and device. Each has
an exact norm or an upper bound of it, cheap to evaluate, so that step sizes are never too large.
"""

from __future__ import annotations

import math

from .._array import (
    Array,
    array_device,
    check_count,
    check_finite,
    default_namespace,
    namespace,
)
from ..registry import saveable
from .base import FixedOperator, check_batch
from .convolution import BOUNDARIES, Conv2dFilterBank

__all__ = ["Blur", "Mask", "ParallelBeam", "Subsample", "gaussian_kernel"]


def _image_shape(image_shape) -> tuple[int, int]:
    if not hasattr(image_shape, "__len__") or len(image_shape) != 2:
        raise ValueError(f"image_shape must be (H, W), got {image_shape!r}")
    return tuple(check_count("image_shape entries", n) for n in image_shape)


class _Fixed(FixedOperator):
    """A forward operator without parameters."""

    def param_vjp(self, a: Array, b: Array) -> tuple:
        check_batch(self, "param_vjp", "a", a, self.out_shape)
        check_batch(self, "param_vjp", "b", b, self.in_shape)
        return ()

    def with_params(self, params):
        if not (isinstance(params, tuple) and not params):
            raise ValueError(f"{type(self).__name__} has no parameters: params must be (), got "
                             f"{params!r}")
        return self


def gaussian_kernel(sigma: float, size: int | None = None, *, xp=None, dtype=None,
                    device=None) -> Array:
    """The normalised Gaussian kernel h[i, j] ∝ exp(−(i² + j²)/(2σ²)), Σ h = 1, of size × size
    (default the odd size 2⌈3σ⌉ + 1). NumPy float64 unless ``xp``, ``dtype``, ``device`` say
    otherwise."""
    sigma = float(sigma)
    if not (sigma > 0 and math.isfinite(sigma)):
        raise ValueError(f"sigma must be a positive finite number, got {sigma!r}")
    size = 2 * math.ceil(3 * sigma) + 1 if size is None else check_count("size", size)
    xp = default_namespace(xp)
    dtype = xp.float64 if dtype is None else dtype
    t = xp.arange(size, dtype=dtype, device=device) - (size - 1) / 2
    g = xp.exp(-(t * t) / (2 * sigma * sigma))
    h = xp.reshape(g, (size, 1)) * xp.reshape(g, (1, size))
    return h / xp.sum(h)


@saveable
class Blur(_Fixed):
    """A x = h ⋆ x: correlation of images (batch, H, W) with one kernel h (k₁, k₂), with the
    boundaries of :class:`Conv2dFilterBank` (``"periodic"``, ``"zero"``: output (H, W);
    ``"valid"``: (H − k₁ + 1, W − k₂ + 1)). For a symmetric kernel (e.g.
    :func:`gaussian_kernel`) correlation and convolution agree.

    ``norm()``: exact for periodic boundaries (max |ĥ| over the frequencies of the grid); an
    upper bound otherwise, the same maximum on the periodic grid that A is a restriction of
    ((H + k₁ − 1) × (W + k₂ − 1) for "zero", H × W for "valid").
    """

    def __init__(self, kernel: Array, image_shape: tuple[int, int], boundary: str = "periodic"):
        xp = namespace(("kernel", kernel))
        if kernel.ndim != 2:
            raise ValueError(f"kernel must have shape (k1, k2), got {tuple(kernel.shape)}")
        if boundary not in BOUNDARIES:
            raise ValueError(f"boundary must be one of {BOUNDARIES}, got {boundary!r}")
        check_finite(xp, kernel=kernel)
        shape = _image_shape(image_shape)
        self.kernel, self.boundary = kernel, boundary
        self._bank = Conv2dFilterBank(xp.reshape(kernel, (1, *kernel.shape)), shape, boundary)
        self.in_shape, self.out_shape = shape, self._bank.out_shape[1:]

    @property
    def arrays(self) -> tuple:
        return (self.kernel,)

    def _apply(self, x: Array) -> Array:
        return self._bank._apply(x)[:, 0, ...]

    def _adjoint(self, y: Array) -> Array:
        return self._bank._adjoint(self.xp.expand_dims(y, axis=1))

    def norm(self, *, iterations: int = 500, rtol: float = 1e-7) -> float:
        if self.boundary == "periodic":
            return self._bank.norm()
        k1, k2 = self.kernel.shape
        h, w = self.in_shape
        grid = (h + k1 - 1, w + k2 - 1) if self.boundary == "zero" else (h, w)
        return Conv2dFilterBank(self._bank.params, grid, "periodic").norm()

    def to_config(self, writer) -> dict:
        return {"kernel": writer.array(self.kernel), "image_shape": list(self.in_shape),
                "boundary": self.boundary}

    @classmethod
    def from_config(cls, config, reader) -> Blur:
        return cls(reader.array(config["kernel"]), tuple(config["image_shape"]),
                   config["boundary"])

    def __repr__(self) -> str:
        return (f"Blur(kernel={'x'.join(map(str, self.kernel.shape))}, shape={self.in_shape}, "
                f"boundary={self.boundary!r}, dtype={self.dtype})")


@saveable
class Mask(_Fixed):
    """A x = m ⊙ x for a 0/1 mask m of one image's shape (1: observed pixel): inpainting. The
    output keeps the image's shape (missing pixels are 0), Aᵀ = A, ‖A‖ = max m (exact)."""

    def __init__(self, mask: Array):
        xp = namespace(("mask", mask))
        if mask.ndim < 1 or 0 in mask.shape:
            raise ValueError(f"mask must have the shape of one signal (no empty axis), got "
                             f"{tuple(mask.shape)}")
        if not bool(xp.all((mask == 0) | (mask == 1))):
            raise ValueError("mask must hold only 0 (missing) and 1 (observed)")
        self.mask = mask
        self.in_shape = self.out_shape = tuple(mask.shape)

    @property
    def arrays(self) -> tuple:
        return (self.mask,)

    def _apply(self, x: Array) -> Array:
        return self.mask * x

    def _adjoint(self, y: Array) -> Array:
        return self.mask * y

    def norm(self, *, iterations: int = 500, rtol: float = 1e-7) -> float:
        return float(self.xp.max(self.mask))

    def to_config(self, writer) -> dict:
        return {"mask": writer.array(self.mask)}

    @classmethod
    def from_config(cls, config, reader) -> Mask:
        return cls(reader.array(config["mask"]))

    def __repr__(self) -> str:
        return f"Mask(shape={self.in_shape}, observed={int(self.xp.sum(self.mask))})"


@saveable
class Subsample(_Fixed):
    """A x = x[:, ::s, ::s]: every s-th pixel of every s-th row, images (batch, H, W) ↦
    (batch, ⌈H/s⌉, ⌈W/s⌉); Aᵀ puts the samples back among zeros. ‖A‖ = 1 (exact). For
    super-resolution, blur first: ``Composition(Subsample(shape, s), Blur(h, shape))``."""

    def __init__(self, image_shape: tuple[int, int], factor: int, *, xp=None, dtype=None,
                 device=None):
        self.in_shape = _image_shape(image_shape)
        self.factor = check_count("factor", factor)
        self.out_shape = tuple(math.ceil(n / self.factor) for n in self.in_shape)
        self._place(xp, dtype, device)

    def _apply(self, x: Array) -> Array:
        s = self.factor
        return x[:, ::s, ::s]

    def _adjoint(self, y: Array) -> Array:
        xp, s = self.xp, self.factor
        (h, w), (p, q) = self.in_shape, self.out_shape
        batch = y.shape[0]
        # (batch, p, 1, q, 1) next to zeros → (batch, p, s, q, s) → (batch, p s, q s), cropped
        z = xp.zeros((batch, p, s - 1, q), dtype=y.dtype, device=array_device(y))
        rows = xp.concat([xp.expand_dims(y, axis=2), z], axis=2)
        z = xp.zeros((batch, p, s, q, s - 1), dtype=y.dtype, device=array_device(y))
        full = xp.concat([xp.expand_dims(rows, axis=4), z], axis=4)
        return xp.reshape(full, (batch, p * s, q * s))[:, :h, :w]

    def norm(self, *, iterations: int = 500, rtol: float = 1e-7) -> float:
        return 1.0

    def to_config(self, writer) -> dict:
        return {"image_shape": list(self.in_shape), "factor": self.factor,
                "dtype": str(self.dtype).split(".")[-1]}

    @classmethod
    def from_config(cls, config, reader) -> Subsample:
        return cls(tuple(config["image_shape"]), config["factor"], xp=reader.xp,
                   dtype=reader.dtype(config["dtype"]), device=reader.device)

    def __repr__(self) -> str:
        return f"Subsample(shape={self.in_shape}, factor={self.factor}, dtype={self.dtype})"


@saveable
class ParallelBeam(_Fixed):
    """Parallel-beam tomography: images (batch, N, N) ↦ sinograms (batch, n_angles, D), D =
    ⌈√2 N⌉ + 1 detector bins of pixel width centred on the image centre, as one dense matrix
    product (for images up to about 64 × 64: the matrix has n_angles·D·N² entries).

    Strip integrals: pixel (i, j), the unit square centred at (x, y) = (j − c, c − i),
    c = (N − 1)/2, projects at angle θ around t = x cos θ + y sin θ to a trapezoid of unit area
    (the convolution of boxes of widths |cos θ| and |sin θ|); bin d (the unit interval around
    t = d − (D − 1)/2) receives the part of it that falls in the bin. So every projection keeps
    the total of the image, and a smooth image's projections are its line integrals up to
    O(pixel²). ``angles``: a count n (θ_a = π a / n, as scikit-image's ``radon`` with
    ``theta=np.linspace(0, 180, n, endpoint=False)``) or a 1-D array of angles in radians.

    ``norm()``: ‖A‖ = largest singular value of the matrix (computed once, exactly, by the
    array API's ``linalg.matrix_norm``).
    """

    def __init__(self, size: int, angles, *, xp=None, dtype=None, device=None):
        n = check_count("size", size)
        if isinstance(angles, int) and not isinstance(angles, bool):
            xp = default_namespace(xp)
            dtype = xp.float64 if dtype is None else dtype
            count = check_count("angles", angles)
            theta = xp.arange(count, dtype=dtype, device=device) * (math.pi / count)
        else:
            xp = namespace(("angles", angles))
            if angles.ndim != 1 or angles.shape[0] == 0:
                raise ValueError(f"angles must be a count or a 1-D array of angles in radians, "
                                 f"got shape {tuple(angles.shape)}")
            check_finite(xp, angles=angles)
            dtype = angles.dtype if dtype is None else dtype
            device = array_device(angles) if device is None else device
            theta = xp.astype(angles, dtype)
        bins = math.ceil(math.sqrt(2) * n) + 1
        c = (n - 1) / 2
        grid = xp.arange(n, dtype=dtype, device=device) - c
        x = xp.reshape(xp.broadcast_to(xp.reshape(grid, (1, n)), (n, n)), (1, 1, n * n))
        y = xp.reshape(xp.broadcast_to(-xp.reshape(grid, (n, 1)), (n, n)), (1, 1, n * n))
        cos = xp.reshape(xp.cos(theta), (-1, 1, 1))
        sin = xp.reshape(xp.sin(theta), (-1, 1, 1))
        d = xp.reshape(xp.arange(bins, dtype=dtype, device=device), (1, bins, 1))
        # offset of bin d from the pixel's projection, clipped where the weight is 0 anyway
        delta = xp.clip(d - (x * cos + y * sin + (bins - 1) / 2), -2.0, 2.0)
        weights = _strip_weights(xp, delta, xp.abs(cos), xp.abs(sin))
        self.matrix = xp.reshape(weights, (theta.shape[0] * bins, n * n))
        self.angles = theta
        self.in_shape, self.out_shape = (n, n), (theta.shape[0], bins)
        self._norm = None

    @property
    def arrays(self) -> tuple:
        return (self.matrix,)

    def _apply(self, x: Array) -> Array:
        xp = self.xp
        flat = xp.reshape(x, (x.shape[0], math.prod(self.in_shape)))
        return xp.reshape(flat @ xp.matrix_transpose(self.matrix), (x.shape[0], *self.out_shape))

    def _adjoint(self, y: Array) -> Array:
        xp = self.xp
        flat = xp.reshape(y, (y.shape[0], math.prod(self.out_shape)))
        return xp.reshape(flat @ self.matrix, (y.shape[0], *self.in_shape))

    def norm(self, *, iterations: int = 500, rtol: float = 1e-7) -> float:
        if self._norm is None:
            self._norm = float(self.xp.linalg.matrix_norm(self.matrix, ord=2))
        return self._norm

    def to_config(self, writer) -> dict:
        return {"size": self.in_shape[0], "angles": writer.array(self.angles)}

    @classmethod
    def from_config(cls, config, reader) -> ParallelBeam:
        return cls(config["size"], reader.array(config["angles"]))

    def __repr__(self) -> str:
        return (f"ParallelBeam(size={self.in_shape[0]}, angles={self.out_shape[0]}, "
                f"bins={self.out_shape[1]}, dtype={self.dtype})")


def _strip_weights(xp, delta: Array, a: Array, b: Array) -> Array:
    """∫ over the unit bin at offset ``delta`` of the density box_a ∗ box_b (boxes of widths a, b
    and unit area): (box_1 ∗ box_a ∗ box_b)(delta) = D_1 D_a D_b [x₊²/2] / (a b), with
    D_w f(x) = f(x + w/2) − f(x − w/2). Where b is below ε^(1/3) of the dtype the box of width
    b is taken as a point (error O(b²), below the rounding of the difference quotient)."""
    small = float(xp.finfo(delta.dtype).eps) ** (1 / 3)
    a, b = xp.maximum(a, b), xp.minimum(a, b)  # a ≥ 1/√2
    thin = b < small
    b_safe = xp.where(thin, xp.ones_like(b), b)

    def diff(f, w):
        return lambda t: f(t + w / 2) - f(t - w / 2)

    def quad(t):
        t = xp.clip(t, 0.0, None)
        return t * t / 2

    def ramp(t):
        return xp.clip(t, 0.0, None)

    three = diff(diff(diff(quad, 1.0), a), b_safe)(delta) / (a * b_safe)
    two = diff(diff(ramp, 1.0), a)(delta) / a
    return xp.where(thin, two, three)
