"""The fixed forward operators of imaging inverse problems (Blur, Mask, Subsample,
ParallelBeam): adjoint dot tests on every backend and dtype, values against NumPy/SciPy
references, norms against the SVD of the dense matrix (exact, or an upper bound close to it)."""

import numpy as np
import pytest
from linop_checks import dense_matrix, dot_test
from scipy import ndimage

import pdunroll as pu

SHAPE = (7, 6)


def _kernel(backend=None, dtype="float64"):
    h = np.random.default_rng(3).random((3, 4)) + 0.1
    return h if backend is None else backend.asarray(h, dtype)


def _operators(backend, dtype):
    kw = {"xp": backend.xp, "dtype": backend.dtype(dtype), "device": backend.device}
    mask = (np.random.default_rng(1).random(SHAPE) < 0.5).astype(float)
    h = _kernel(backend, dtype)
    return {
        "blur-periodic": pu.Blur(h, SHAPE, "periodic"),
        "blur-zero": pu.Blur(h, SHAPE, "zero"),
        "blur-valid": pu.Blur(h, SHAPE, "valid"),
        "mask": pu.Mask(backend.asarray(mask, dtype)),
        "subsample": pu.Subsample(SHAPE, 2, **kw),
        "subsample3": pu.Subsample(SHAPE, 3, **kw),
        "blur-subsample": pu.Composition(pu.Subsample(SHAPE, 2, **kw), pu.Blur(h, SHAPE, "zero")),
        "tomography": pu.ParallelBeam(6, 5, **kw),
    }


NAMES = [
    "blur-periodic", "blur-zero", "blur-valid", "mask", "subsample", "subsample3",
    "blur-subsample", "tomography"]


@pytest.mark.parametrize("name", NAMES)
def test_adjoint(backend, dtype, name):
    op = _operators(backend, dtype)[name]
    lhs, rhs, scale = dot_test(backend, op, dtype)
    assert abs(lhs - rhs) <= (1e-13 if dtype == "float64" else 1e-5) * scale
    # fixed: nothing to learn
    ones = backend.asarray(np.ones((1, *op.in_shape)), dtype)
    assert pu.tree.flatten(op.params) == []
    assert pu.tree.flatten(op.param_vjp(op.apply(ones), ones)) == []


@pytest.mark.parametrize("name", NAMES)
def test_norm_is_exact_or_an_upper_bound(numpy_backend, name):
    op = _operators(numpy_backend, "float64")[name]
    exact = np.linalg.norm(dense_matrix(op), 2)
    claimed = op.norm()
    if name == "blur-subsample":  # a composition: power iteration, from below
        assert claimed == pytest.approx(exact, rel=1e-5)
    elif name in ("blur-zero", "blur-valid"):
        assert claimed >= exact * (1 - 1e-12)
    else:
        assert claimed == pytest.approx(exact, rel=1e-10)


@pytest.mark.parametrize("boundary", ["zero", "valid"])
def test_blur_norm_bound_is_close_on_larger_images(boundary):
    op = pu.Blur(pu.gaussian_kernel(1.6), (40, 36), boundary)
    exact = np.linalg.norm(dense_matrix(op), 2)
    assert exact * (1 - 1e-12) <= op.norm() <= 1.05 * exact


@pytest.mark.parametrize("boundary,mode", [("periodic", "wrap"), ("zero", "constant")])
def test_blur_values_match_scipy_correlate(boundary, mode):
    h = _kernel()
    x = np.random.default_rng(0).standard_normal((2, *SHAPE))
    got = pu.Blur(h, SHAPE, boundary).apply(x)
    # anchor (k − 1)//2 as the filter banks; SciPy's origin shifts its centre k//2 to it
    want = np.stack([ndimage.correlate(xi, h, mode=mode, origin=(-1 + (3 % 2), -1 + (4 % 2)))
                     for xi in x])
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_subsample_and_mask_values(numpy_backend):
    x = np.random.default_rng(0).standard_normal((2, *SHAPE))
    np.testing.assert_array_equal(pu.Subsample(SHAPE, 3).apply(x), x[:, ::3, ::3])
    m = np.zeros(SHAPE)
    m[::2] = 1
    np.testing.assert_array_equal(pu.Mask(m).apply(x), x * m)


def test_tomography_keeps_the_total_and_integrates_along_lines():
    n, s, (x0, y0) = 32, 2.5, (4.0, -3.0)  # a Gaussian blob off centre (x right, y up)
    angles = 12
    op = pu.ParallelBeam(n, angles)
    c = (n - 1) / 2
    xs, ys = np.meshgrid(np.arange(n) - c, c - np.arange(n))
    img = np.exp(-((xs - x0) ** 2 + (ys - y0) ** 2) / (2 * s * s))
    sino = op.apply(img[None])[0]
    np.testing.assert_allclose(sino.sum(axis=1), img.sum(), rtol=1e-12)
    # its line integrals: √(2π) s exp(−(t − t₀)²/(2s²)), t₀ = x₀ cos θ + y₀ sin θ
    bins = op.out_shape[1]
    t = np.arange(bins) - (bins - 1) / 2
    for a in range(angles):
        theta = np.pi * a / angles
        t0 = x0 * np.cos(theta) + y0 * np.sin(theta)
        want = np.sqrt(2 * np.pi) * s * np.exp(-((t - t0) ** 2) / (2 * s * s))
        assert np.max(np.abs(sino[a] - want)) < 0.03 * want.max(), a


def test_tomography_takes_an_array_of_angles(backend):
    angles = backend.asarray([0.0, 0.5 * np.pi])
    op = pu.ParallelBeam(4, angles)
    x = np.arange(16.0).reshape(1, 4, 4)
    sino = backend.to_numpy(op.apply(backend.asarray(x)))[0]
    bins = op.out_shape[1]  # 7 bins, the image's 4 columns/rows on bins 1.5 ± 1.5 + 1.5
    # θ = 0: t = x, the column sums on bins; θ = π/2: t = y, the row sums, top row last
    cols, rows = x[0].sum(axis=0), x[0].sum(axis=1)[::-1]
    centre = (bins - 1) / 2
    for profile, sums in ((sino[0], cols), (sino[1], rows)):
        want = np.zeros(bins)
        for j, s in enumerate(sums):
            u = j - 1.5 + centre
            lo = int(np.floor(u))
            want[lo] += s * (1 - (u - lo))
            if lo + 1 < bins:
                want[lo + 1] += s * (u - lo)
        np.testing.assert_allclose(profile, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("bad,match", [
    (lambda: pu.Blur(np.ones(3), (4, 4)), "kernel must have shape"),
    (lambda: pu.Blur(np.ones((2, 2)), (4, 4), "mirror"), "boundary must be one of"),
    (lambda: pu.Mask(np.full((3, 3), 0.5)), "mask must hold only 0"),
    (lambda: pu.Subsample((4, 4), 0), "factor must be"),
    (lambda: pu.ParallelBeam(4, np.ones((2, 2))), "angles must be a count"),
    (lambda: pu.Subsample((4, 4), 2).with_params(np.ones(1)), "has no parameters"),
])
def test_bad_inputs(bad, match):
    with pytest.raises((ValueError, TypeError), match=match):
        bad()


def test_a_torch_dtype_without_xp_picks_torch():
    """Fixed operators share one constructor of their placement (FixedOperator): a dtype of
    another library given without ``xp`` chooses that library, for Subsample as for
    Gradient2d."""
    torch = pytest.importorskip("torch", reason="torch is not installed")
    for op in (pu.Subsample((6, 5), 2, dtype=torch.float32), pu.Gradient2d((6, 5),
                                                                           dtype=torch.float32)):
        assert op.dtype == torch.float32
        assert isinstance(op.apply(torch.ones((1, 6, 5))), torch.Tensor)
