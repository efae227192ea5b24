"""DenseOperator, the power-iteration norm estimate and the DCT initialisation."""

import numpy as np
import pytest
import scipy.fft

import pdunroll as pu


def test_dct_matrix_is_orthonormal_dct2(backend, dtype, tol):
    C = pu.dct_matrix(24, xp=backend.xp, dtype=backend.dtype(dtype), device=backend.device)
    ref = scipy.fft.dct(np.eye(24), norm="ortho", axis=0)
    np.testing.assert_allclose(backend.to_numpy(C), ref, atol=10 * tol["atol"])


def test_dense_dot_test(backend, dtype, tol):
    rng = np.random.default_rng(0)
    K, x, y = rng.standard_normal((7, 5)), rng.standard_normal((3, 5)), rng.standard_normal((3, 7))
    op = pu.DenseOperator(backend.asarray(K, dtype))
    kx = backend.to_numpy(op.apply(backend.asarray(x, dtype)))
    kty = backend.to_numpy(op.adjoint(backend.asarray(y, dtype)))
    np.testing.assert_allclose(kx, x @ K.T, rtol=tol["rtol"] * 10, atol=tol["atol"] * 10)
    assert np.sum(kx * y) == pytest.approx(np.sum(x * kty), rel=tol["rtol"] * 10)


def test_dense_param_vjp_is_the_outer_product_sum(backend):
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((4, 6)), rng.standard_normal((4, 3))
    op = pu.DenseOperator(backend.asarray(rng.standard_normal((6, 3))))
    got = backend.to_numpy(op.param_vjp(backend.asarray(a), backend.asarray(b)))
    np.testing.assert_allclose(got, a.T @ b, rtol=1e-13)


@pytest.mark.parametrize("shape", [(30, 20), (20, 30), (25, 25)])
def test_norm_estimate_matches_svd(backend, shape):
    K = np.random.default_rng(2).standard_normal(shape)
    est = pu.estimate_norm(pu.DenseOperator(backend.asarray(K)), iterations=5000, rtol=1e-12)
    exact = np.linalg.svd(K, compute_uv=False)[0]
    assert est.value == pytest.approx(exact, rel=1e-6)
    assert est.value <= exact * (1 + 1e-12)  # a Rayleigh quotient never overshoots


def test_norm_estimate_warm_start_needs_fewer_iterations(numpy_backend):
    rng = np.random.default_rng(3)
    K = rng.standard_normal((40, 40))
    first = pu.estimate_norm(pu.DenseOperator(K), rtol=1e-10, iterations=5000)
    moved = pu.DenseOperator(K + 1e-4 * rng.standard_normal((40, 40)))
    cold = pu.estimate_norm(moved, rtol=1e-10, iterations=5000)
    warm = pu.estimate_norm(moved, v0=first.vector, rtol=1e-10, iterations=5000)
    assert warm.iterations < cold.iterations
    assert warm.value == pytest.approx(np.linalg.svd(moved.matrix, compute_uv=False)[0], rel=1e-7)


def test_with_params_keeps_type_and_shape(numpy_backend):
    op = pu.DenseOperator(pu.dct_matrix(5))
    new = op.with_params(2 * op.params)
    assert isinstance(new, pu.DenseOperator) and new.in_shape == (5,) and new.out_shape == (5,)
    assert new.norm() == pytest.approx(2.0)


def test_norm_estimate_checks_its_start_vector_and_rtol(numpy_backend, torch_backend):
    """A zero start vector used to return a NaN norm after all iterations; a wrong-sized,
    other-backend or other-dtype one failed inside reshape or matmul."""
    op = pu.DenseOperator(np.random.default_rng(4).standard_normal((3, 4)))
    with pytest.raises(ValueError, match="v0 must be a nonzero finite vector"):
        pu.estimate_norm(op, v0=np.zeros(4))
    with pytest.raises(ValueError, match="v0 must be a nonzero finite vector"):
        pu.estimate_norm(op, v0=np.full(4, np.nan))
    with pytest.raises(ValueError, match=r"v0 must hold one signal of shape \(4,\)"):
        pu.estimate_norm(op, v0=np.ones(5))
    with pytest.raises(TypeError, match="v0 has dtype float32"):
        pu.estimate_norm(op, v0=np.ones(4, dtype=np.float32))
    with pytest.raises(TypeError, match="one backend"):
        pu.estimate_norm(op, v0=torch_backend.asarray(np.ones(4)))
    with pytest.raises(ValueError, match="rtol must be a finite number >= 0"):
        pu.estimate_norm(op, rtol=-1.0)
    exact = np.linalg.norm(op.matrix, 2)
    assert pu.estimate_norm(op, v0=np.ones((1, 4)), rtol=0.0,
                            iterations=2000).value == pytest.approx(exact, rel=1e-10)


def test_with_params_moves_an_operator_to_another_dtype_and_the_solver_then_names_old_signals():
    """Accepted on purpose (docs, "Reliability"): with_params with float32 parameters gives a
    float32 operator (how the command line's --dtype converts a model); float64 signals are then
    refused by name rather than silently promoted, and a wrong shape is still refused."""
    K = pu.dct_matrix(8)
    op32 = pu.DenseOperator(K).with_params(K.astype(np.float32))
    assert op32.dtype == np.float32 and op32.apply(np.ones((1, 8), np.float32)).dtype == np.float32
    model = pu.AnalysisModel(op32, f=pu.L1Norm(), g=pu.LinfBall(0.1))
    with pytest.raises(TypeError, match="x_tilde has dtype float64 but the operator has float32"):
        pu.chambolle_pock(model, np.ones((1, 8)), iterations=3)
    with pytest.raises(ValueError, match=r"params must have shape \(8, 8\)"):
        pu.DenseOperator(K).with_params(K[:4])


class _EarlierContract(pu.LinearOperator):
    """An operator written before the products existed: ``apply`` and ``adjoint`` only."""

    def __init__(self, matrix):
        self.params, self.in_shape, self.out_shape = matrix, (matrix.shape[1],), (matrix.shape[0],)

    def apply(self, x):
        return x @ self.params.T

    def adjoint(self, y):
        return y @ self.params

    def param_vjp(self, a, b):
        return a.T @ b

    def with_params(self, params):
        return _EarlierContract(params)


class _LoggedDense(pu.DenseOperator):
    """A subclass overriding the checked ``apply`` through ``super()``, as before."""

    calls = 0

    def apply(self, x):
        type(self).calls += 1
        return super().apply(x)


def test_products_and_checked_methods_pair_up_for_every_way_of_subclassing():
    """``apply``/``adjoint`` check and call the products; an operator of the earlier contract
    (``apply``/``adjoint`` only) has them as its products, and a subclass overriding ``apply``
    through ``super()`` is what the solver calls, without recursing; both give DenseOperator's
    gradient (to rounding: the earlier operator's σK multiplies each product by σ)."""
    rng = np.random.default_rng(5)
    K = np.eye(5, 4) + 0.3 * rng.standard_normal((5, 4))
    xt, x = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    steps = pu.step_sizes(pu.DenseOperator(K), omega=1.0)
    want = pu.gradient(pu.AnalysisModel(pu.DenseOperator(K), pu.L1Norm(), pu.LinfBall(0.3)),
                       xt, x, iterations=7, steps=steps)
    for op in (_EarlierContract(K), _LoggedDense(K)):
        got = pu.gradient(pu.AnalysisModel(op, pu.L1Norm(), pu.LinfBall(0.3)), xt, x,
                          iterations=7, steps=steps)
        np.testing.assert_allclose(got.operator, want.operator, rtol=1e-13, atol=1e-15)
    assert _LoggedDense.calls >= 7  # one per forward step at least: the override is used
    with pytest.raises(ValueError, match=r"DenseOperator.apply: x must have shape \(batch, 4\)"):
        pu.DenseOperator(K).apply(xt[:, :3])
    with pytest.raises(ValueError, match=r"_LoggedDense.adjoint: y must have shape"):
        _LoggedDense(K).adjoint(xt)
    with pytest.raises(TypeError, match="abstract"):
        type("NoProducts", (pu.LinearOperator,), {"param_vjp": None, "with_params": None})()
