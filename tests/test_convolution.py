"""Filter-bank operators: adjoint (dot) tests on every backend and dtype, the forward map against
scipy.signal and a NumPy FFT reference, param_vjp against finite differences, norms against the
SVD of the dense matrix."""

import numpy as np
import pytest
import scipy.signal
from linop_checks import dense_matrix, dot_test, param_fd

import pdunroll as pu

BOUNDARIES = ["periodic", "zero", "valid"]


def _filters(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


@pytest.mark.parametrize("boundary", BOUNDARIES)
@pytest.mark.parametrize("kernel", [(3, 3), (2, 4)])
def test_conv2d_adjoint(backend, dtype, boundary, kernel):
    op = pu.Conv2dFilterBank(backend.asarray(_filters((4, *kernel)), dtype), (7, 6), boundary)
    lhs, rhs, scale = dot_test(backend, op, dtype)
    assert abs(lhs - rhs) <= (1e-13 if dtype == "float64" else 1e-5) * scale


@pytest.mark.parametrize("boundary", BOUNDARIES)
@pytest.mark.parametrize("k", [3, 4])
def test_conv1d_adjoint(backend, dtype, boundary, k):
    op = pu.Conv1dFilterBank(backend.asarray(_filters((5, k)), dtype), 11, boundary)
    lhs, rhs, scale = dot_test(backend, op, dtype)
    assert abs(lhs - rhs) <= (1e-13 if dtype == "float64" else 1e-5) * scale


def test_conv2d_output_shapes(numpy_backend):
    h = _filters((48, 7, 7))
    assert pu.Conv2dFilterBank(h, (20, 16), "periodic").out_shape == (48, 20, 16)
    assert pu.Conv2dFilterBank(h, (20, 16), "zero").out_shape == (48, 20, 16)
    assert pu.Conv2dFilterBank(h, (20, 16), "valid").out_shape == (48, 14, 10)
    assert pu.Conv1dFilterBank(_filters((3, 5)), 9, "valid").out_shape == (3, 5)


def _fft_periodic_reference(h, x):
    """Periodic correlation (K x)_c[i] = Σ_p h_c[p] x[i + p − a], a = (k−1)//2, by NumPy FFT."""
    shape, kernel = x.shape[1:], h.shape[1:]
    padded = np.zeros((h.shape[0], *shape))
    padded[(slice(None), *(slice(0, k) for k in kernel))] = h
    anchor = tuple((k - 1) // 2 for k in kernel)
    padded = np.roll(padded, tuple(-a for a in anchor), axis=tuple(range(1, len(shape) + 1)))
    axes = tuple(range(-len(shape), 0))
    spec = np.conj(np.fft.fftn(padded, axes=axes))[None] * np.fft.fftn(x, axes=axes)[:, None]
    return np.real(np.fft.ifftn(spec, axes=axes))


@pytest.mark.parametrize("kernel", [(3, 3), (5, 3), (2, 4)])
def test_conv2d_periodic_matches_fft_reference(backend, dtype, tol, kernel):
    h, x = _filters((3, *kernel)), _filters((2, 9, 8), seed=1)
    op = pu.Conv2dFilterBank(backend.asarray(h, dtype), (9, 8), "periodic")
    got = backend.to_numpy(op.apply(backend.asarray(x, dtype)))
    np.testing.assert_allclose(got, _fft_periodic_reference(h, x), rtol=tol["rtol"],
                               atol=10 * tol["atol"])


@pytest.mark.parametrize("boundary,scipy_args", [("periodic", ("same", "wrap")),
                                                 ("zero", ("same", "fill")),
                                                 ("valid", ("valid", "fill"))])
def test_conv2d_matches_scipy_correlate2d(backend, boundary, scipy_args):
    h, x = _filters((4, 5, 3)), _filters((2, 9, 8), seed=1)
    op = pu.Conv2dFilterBank(backend.asarray(h), (9, 8), boundary)
    got = backend.to_numpy(op.apply(backend.asarray(x)))
    mode, bd = scipy_args
    ref = np.stack([np.stack([scipy.signal.correlate2d(xi, hc, mode=mode, boundary=bd)
                              for hc in h]) for xi in x])
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("boundary,mode", [("zero", "same"), ("valid", "valid")])
def test_conv1d_matches_scipy_correlate(backend, boundary, mode):
    h, x = _filters((3, 5)), _filters((2, 12), seed=1)
    op = pu.Conv1dFilterBank(backend.asarray(h), 12, boundary)
    got = backend.to_numpy(op.apply(backend.asarray(x)))
    ref = np.stack([np.stack([scipy.signal.correlate(xi, hc, mode=mode) for hc in h]) for xi in x])
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("k", [4, 5])
def test_conv1d_periodic_matches_fft_reference(backend, k):
    h, x = _filters((3, k)), _filters((2, 12), seed=1)
    op = pu.Conv1dFilterBank(backend.asarray(h), 12, "periodic")
    got = backend.to_numpy(op.apply(backend.asarray(x)))
    np.testing.assert_allclose(got, _fft_periodic_reference(h, x), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("boundary", BOUNDARIES)
def test_conv2d_param_vjp_matches_finite_differences(backend, boundary):
    h = _filters((3, 3, 2))
    op = pu.Conv2dFilterBank(backend.asarray(h), (6, 5), boundary)
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal((2, *op.out_shape)), rng.standard_normal((2, 6, 5))
    grad = backend.to_numpy(op.param_vjp(backend.asarray(a), backend.asarray(b)))
    assert grad.shape == h.shape
    V = rng.standard_normal(h.shape)
    fd = param_fd(lambda p: pu.Conv2dFilterBank(p, (6, 5), boundary), h, a, b, V)
    assert np.sum(grad * V) == pytest.approx(fd, rel=1e-11)


@pytest.mark.parametrize("boundary", BOUNDARIES)
def test_conv1d_param_vjp_matches_finite_differences(backend, boundary):
    h = _filters((4, 3))
    op = pu.Conv1dFilterBank(backend.asarray(h), 10, boundary)
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal((3, *op.out_shape)), rng.standard_normal((3, 10))
    grad = backend.to_numpy(op.param_vjp(backend.asarray(a), backend.asarray(b)))
    V = rng.standard_normal(h.shape)
    fd = param_fd(lambda p: pu.Conv1dFilterBank(p, 10, boundary), h, a, b, V)
    assert np.sum(grad * V) == pytest.approx(fd, rel=1e-11)


@pytest.mark.parametrize("boundary", BOUNDARIES)
@pytest.mark.parametrize("kernel", [(3, 3), (4, 2)])
def test_conv2d_norm_matches_svd(boundary, kernel):
    op = pu.Conv2dFilterBank(_filters((3, *kernel), seed=5), (7, 6), boundary)
    exact = np.linalg.norm(dense_matrix(op), 2)
    if boundary == "periodic":  # exact formula
        assert op.norm() == pytest.approx(exact, rel=1e-12)
    else:  # power iteration: from below, slow here (σ₂/σ₁ ≈ 0.999 for seed 5, zero boundary)
        assert exact * (1 - 1e-3) <= op.norm() <= exact * (1 + 1e-12)
        assert op.norm(iterations=10_000, rtol=1e-13) == pytest.approx(exact, rel=1e-8)


@pytest.mark.parametrize("boundary", BOUNDARIES)
def test_conv1d_norm_matches_svd(boundary):
    op = pu.Conv1dFilterBank(_filters((4, 5), seed=5), 13, boundary)
    exact = np.linalg.norm(dense_matrix(op), 2)
    assert op.norm(iterations=10_000, rtol=1e-13) == pytest.approx(exact, rel=1e-8)


def test_periodic_norm_on_every_backend(backend, dtype):
    h = _filters((4, 3, 3), seed=2)
    op = pu.Conv2dFilterBank(backend.asarray(h, dtype), (8, 8), "periodic")
    exact = np.linalg.norm(dense_matrix(pu.Conv2dFilterBank(h, (8, 8))), 2)
    assert op.norm() == pytest.approx(exact, rel=1e-12 if dtype == "float64" else 1e-5)


def test_with_params_keeps_geometry(backend):
    op = pu.Conv2dFilterBank(backend.asarray(_filters((2, 3, 3))), (6, 6), "zero")
    new = op.with_params(backend.asarray(_filters((2, 3, 3), seed=9)))
    assert (new.in_shape, new.out_shape, new.boundary) == (op.in_shape, op.out_shape, "zero")
    np.testing.assert_array_equal(backend.to_numpy(new.filters), _filters((2, 3, 3), seed=9))


def test_bad_input_raises_clear_errors():
    with pytest.raises(ValueError, match="boundary"):
        pu.Conv2dFilterBank(_filters((2, 3, 3)), (6, 6), "reflect")
    with pytest.raises(ValueError, match="filters must have shape"):
        pu.Conv2dFilterBank(_filters((3, 3)), (6, 6))
    with pytest.raises(ValueError, match="do not fit"):
        pu.Conv2dFilterBank(_filters((2, 7, 7)), (6, 6))
    with pytest.raises(ValueError, match="image_shape"):
        pu.Conv2dFilterBank(_filters((2, 3, 3)), (6, 6, 6))
    with pytest.raises(TypeError, match="length"):
        pu.Conv1dFilterBank(_filters((2, 3)), 6.5)
    with pytest.raises(ValueError, match="non-finite"):
        pu.Conv1dFilterBank(np.full((2, 3), np.nan), 6)


@pytest.mark.parametrize("shape", [(2, 0), (0, 3)])
def test_empty_filter_banks_are_rejected(shape):
    """Zero taps gave a negative anchor and failed inside apply ("need at least one array to
    stack"); zero filters gave an empty operator of norm 0."""
    with pytest.raises(ValueError, match="filters must have at least one filter"):
        pu.Conv1dFilterBank(np.ones(shape), 6)
    with pytest.raises(ValueError, match="filters must have at least one filter"):
        pu.Conv2dFilterBank(np.ones((*shape, 2)), (6, 6))
