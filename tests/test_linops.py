"""Gradient2d, Diagonal, Composition and Stack: adjoint tests on every backend and dtype,
parameter VJPs against finite differences, norms against the SVD of the dense matrix, and
parameter-free / composite operators inside a model (solver and gradient)."""

import numpy as np
import pytest
from linop_checks import dense_matrix, dot_test, param_fd

import pdunroll as pu
from pdunroll.operators.base import ScaledOperator

SHAPE = (5, 4)


def _rand(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def _gradient(backend, dtype="float64", shape=SHAPE):
    return pu.Gradient2d(shape, xp=backend.xp, dtype=backend.dtype(dtype), device=backend.device)


def _operators(backend, dtype):
    """One of each kind, on ``backend``; composites mix fixed and learnable parts."""
    grad = _gradient(backend, dtype)
    diag = pu.Diagonal(backend.asarray(_rand((2, *SHAPE)) + 2, dtype))
    conv = pu.Conv2dFilterBank(backend.asarray(_rand((3, 2, 2), 1), dtype), SHAPE, "valid")
    dense = pu.DenseOperator(backend.asarray(_rand((6, 76), 2), dtype))
    return {
        "gradient": grad,
        "diagonal": diag,
        "composition": pu.Composition(diag, grad),
        "stack": pu.Stack(grad, conv),
        "nested": pu.Composition(dense, pu.Stack(conv, grad)),
    }


@pytest.mark.parametrize("name", ["gradient", "diagonal", "composition", "stack", "nested"])
def test_adjoint(backend, dtype, name):
    op = _operators(backend, dtype)[name]
    lhs, rhs, scale = dot_test(backend, op, dtype)
    assert abs(lhs - rhs) <= (1e-13 if dtype == "float64" else 1e-5) * scale


def test_gradient2d_values(backend):
    u = _rand((2, *SHAPE))
    got = backend.to_numpy(_gradient(backend).apply(backend.asarray(u)))
    rows = np.concatenate([np.diff(u, axis=1), np.zeros((2, 1, SHAPE[1]))], axis=1)
    cols = np.concatenate([np.diff(u, axis=2), np.zeros((2, SHAPE[0], 1))], axis=2)
    np.testing.assert_allclose(got, np.stack([rows, cols], axis=1), rtol=1e-14, atol=1e-14)


@pytest.mark.parametrize("shape", [(5, 4), (1, 6), (8, 8)])
def test_gradient2d_norm_is_exact(shape):
    op = pu.Gradient2d(shape)
    assert op.norm() == pytest.approx(np.linalg.norm(dense_matrix(op), 2), rel=1e-12)


CHANNELS = (3, 5, 4)


def test_channel_gradient2d_adjoint(backend, dtype):
    op = _gradient(backend, dtype, CHANNELS)
    assert op.out_shape == (3, 2, 5, 4)
    lhs, rhs, scale = dot_test(backend, op, dtype)
    assert abs(lhs - rhs) <= (1e-13 if dtype == "float64" else 1e-5) * scale


def test_channel_gradient2d_acts_on_each_channel(backend):
    """(batch, C, H, W) ↦ (batch, C, 2, H, W): channel c of the output is the 2-D gradient of
    channel c of the input, for K and Kᵀ."""
    u, y = _rand((2, *CHANNELS)), _rand((2, 3, 2, 5, 4), 1)
    op, single = _gradient(backend, shape=CHANNELS), pu.Gradient2d(SHAPE)
    got = backend.to_numpy(op.apply(backend.asarray(u)))
    back = backend.to_numpy(op.adjoint(backend.asarray(y)))
    for c in range(3):
        np.testing.assert_allclose(got[:, c], single.apply(u[:, c]), rtol=1e-14, atol=1e-14)
        np.testing.assert_allclose(back[:, c], single.adjoint(y[:, c]), rtol=1e-14, atol=1e-14)


@pytest.mark.parametrize("shape", [(2, 5, 4), (3, 1, 6)])
def test_channel_gradient2d_norm_is_exact(shape):
    op = pu.Gradient2d(shape)
    assert op.norm() == pytest.approx(np.linalg.norm(dense_matrix(op), 2), rel=1e-12)


def test_gradient2d_rejects_bad_shape():
    with pytest.raises(ValueError, match="image_shape"):
        pu.Gradient2d((2, 3, 4, 5))


@pytest.mark.parametrize("name", ["diagonal", "composition", "stack", "nested"])
def test_norm_matches_svd(numpy_backend, name):
    op = _operators(numpy_backend, "float64")[name]
    rel = 1e-12 if name == "diagonal" else 1e-5  # exact vs power iteration
    assert op.norm() == pytest.approx(np.linalg.norm(dense_matrix(op), 2), rel=rel)


def test_fixed_operator_has_no_params(backend, dtype):
    op = _gradient(backend, dtype)
    assert op.params == ()
    rng = np.random.default_rng(0)
    a = backend.asarray(rng.standard_normal((1, *op.out_shape)), dtype)
    b = backend.asarray(rng.standard_normal((1, *SHAPE)), dtype)
    assert op.param_vjp(a, b) == ()
    assert op.with_params(()) is op
    assert op.dtype == backend.dtype(dtype)
    assert isinstance(op.xp.zeros((1,), dtype=op.dtype), type(a))  # the backend's namespace
    with pytest.raises(ValueError, match="no parameters"):
        op.with_params(a)


def _flat(tree):
    return np.concatenate([np.ravel(t) for t in _leaves(tree)]) if _leaves(tree) else np.zeros(0)


def _leaves(tree):
    if isinstance(tree, tuple):
        return [leaf for t in tree for leaf in _leaves(t)]
    return [tree]


def _unflat(vector, like):
    if isinstance(like, tuple):
        out, start = [], 0
        for t in like:
            n = len(_flat(t))
            out.append(_unflat(vector[start:start + n], t))
            start += n
        return tuple(out)
    return vector.reshape(np.shape(like))


@pytest.mark.parametrize("name", ["diagonal", "composition", "stack", "nested"])
def test_param_vjp_matches_finite_differences(backend, numpy_backend, name):
    op = _operators(backend, "float64")[name]
    ref = _operators(numpy_backend, "float64")[name]
    rng = np.random.default_rng(4)
    a, b = rng.standard_normal((2, *op.out_shape)), rng.standard_normal((2, *op.in_shape))
    grad = backend.to_numpy(op.param_vjp(backend.asarray(a), backend.asarray(b)))
    params = ref.params
    assert [np.shape(g) for g in _leaves(grad)] == [np.shape(p) for p in _leaves(params)]
    flat = _flat(params)
    V = rng.standard_normal(flat.shape)
    fd = param_fd(lambda p: ref.with_params(_unflat(p, params)), flat, a, b, V, eps=1e-4)
    assert np.dot(_flat(grad), V) == pytest.approx(fd, rel=1e-7)


def test_composition_and_stack_check_their_parts(numpy_backend):
    grad = pu.Gradient2d(SHAPE)
    with pytest.raises(ValueError, match="at least two"):
        pu.Composition(grad)
    with pytest.raises(ValueError, match="returns"):
        pu.Composition(grad, grad)
    with pytest.raises(ValueError, match="takes signals"):
        pu.Stack(grad, pu.Gradient2d((4, 4)))
    with pytest.raises(TypeError, match="dtype"):
        pu.Stack(grad, pu.Gradient2d(SHAPE, dtype=np.float32))
    with pytest.raises(TypeError, match="LinearOperator"):
        pu.Stack(grad, np.ones(3))
    with pytest.raises(ValueError, match="one entry per operator"):
        pu.Composition(pu.Diagonal(np.ones((2, *SHAPE))), grad).with_params((np.ones(3),))


def test_tv_model_runs_and_differentiates(backend, numpy_backend):
    """A weighted-TV denoiser with a parameter-free part: solver, gradient structure, and the
    gradient w.r.t. the weights against finite differences."""
    rng = np.random.default_rng(7)
    x_true = np.kron(np.eye(2), np.ones((3, 3)))[None]
    x_tilde = x_true + 0.2 * rng.standard_normal((1, 6, 6))
    w0 = 0.3 + 0.05 * rng.standard_normal((2, 6, 6))

    def model_for(bk, w):
        grad = pu.Gradient2d((6, 6), xp=bk.xp, dtype=bk.dtype("float64"), device=bk.device)
        return pu.AnalysisModel(pu.Composition(pu.Diagonal(bk.asarray(w)), grad), pu.L1Norm(),
                                pu.SquaredL2(4.0))

    model = model_for(backend, w0)
    xt, xd = backend.asarray(x_tilde), backend.asarray(x_true)
    steps = pu.step_sizes(model_for(numpy_backend, w0).operator, omega=2.0)
    res = pu.chambolle_pock(model, xt, iterations=30,
                            steps=pu.step_sizes(model.operator, op_norm=steps.op_norm))
    assert backend.to_numpy(res.x).shape == (1, 6, 6)
    assert float(np.max(backend.to_numpy(res.gap))) < 1e-2 * float(np.sum(x_tilde**2))
    kw = dict(iterations=8, steps=steps)
    out = pu.gradient(model, xt, xd, **kw)
    grad_w, grad_fixed = out.operator
    assert grad_fixed == ()
    V = rng.standard_normal(w0.shape)
    eps = 1e-6
    fd = (pu.gradient(model_for(backend, w0 + eps * V), xt, xd, **kw).loss
          - pu.gradient(model_for(backend, w0 - eps * V), xt, xd, **kw).loss) / (2 * eps)
    assert np.sum(backend.to_numpy(grad_w) * V) == pytest.approx(fd, rel=1e-6)


def _all_operators(backend):
    ops = dict(_operators(backend, "float64"))
    ops["dense"] = pu.DenseOperator(backend.asarray(_rand((3, 4), 3)))
    ops["conv1d"] = pu.Conv1dFilterBank(backend.asarray(_rand((2, 3), 4)), 10, "periodic")
    ops["conv2d"] = pu.Conv2dFilterBank(backend.asarray(_rand((2, 3, 2), 5)), SHAPE, "zero")
    return ops


def _grown(shape):
    return (*shape[:-1], shape[-1] + 2)


@pytest.mark.parametrize("name", ["gradient", "diagonal", "composition", "stack", "nested",
                                  "dense", "conv1d", "conv2d"])
def test_wrong_signal_shapes_raise_instead_of_broadcasting(backend, name):
    """A signal of the wrong size or without the batch axis names the method and argument (it
    used to broadcast (Diagonal), be sliced (periodic filter banks, Gradient2d) or lose the batch
    axis (DenseOperator) into a wrong result without an error)."""
    op = _all_operators(backend)[name]
    kind = type(op).__name__
    x, y = _rand((2, *op.in_shape)), _rand((2, *op.out_shape))
    for bad_x in (_rand((2, *_grown(op.in_shape))), _rand(op.in_shape)):
        with pytest.raises(ValueError, match=rf"{kind}.apply: x must have shape \(batch, "):
            op.apply(backend.asarray(bad_x))
        with pytest.raises(ValueError, match=rf"{kind}.param_vjp: b must have shape"):
            op.param_vjp(backend.asarray(y), backend.asarray(bad_x))
    for bad_y in (_rand((2, *_grown(op.out_shape))), _rand(op.out_shape)):
        with pytest.raises(ValueError, match=rf"{kind}.adjoint: y must have shape \(batch, "):
            op.adjoint(backend.asarray(bad_y))
        with pytest.raises(ValueError, match=rf"{kind}.param_vjp: a must have shape"):
            op.param_vjp(backend.asarray(bad_y), backend.asarray(x))


@pytest.mark.parametrize("name", ["diagonal", "dense", "conv1d", "conv2d", "composition"])
def test_with_params_rejects_another_shape(numpy_backend, name):
    """with_params keeps the geometry: new parameters of another shape used to build a silently
    different operator (another in_shape, out_shape or number of filters)."""
    op = _all_operators(numpy_backend)[name]
    part = op.operators[0] if name == "composition" else op
    wrong = np.ones(_grown(part.params.shape))
    kind = type(part).__name__
    with pytest.raises(ValueError, match=rf"{kind}.with_params: params must have shape "
                                         rf"\({part.params.shape[0]}, "):
        op.with_params((wrong, ()) if name == "composition" else wrong)
    same = op.with_params(op.params)
    assert (same.in_shape, same.out_shape) == (op.in_shape, op.out_shape)


def test_empty_dense_and_diagonal_operators_are_rejected():
    with pytest.raises(ValueError, match=r"matrix must have m, n >= 1, got shape \(0, 3\)"):
        pu.DenseOperator(np.ones((0, 3)))
    with pytest.raises(ValueError, match=r"weights must have .* got shape \(2, 0\)"):
        pu.Diagonal(np.ones((2, 0)))
    with pytest.raises(ValueError, match="weights must have at least one axis"):
        pu.Diagonal(np.ones(()))


def test_image_shape_that_is_not_a_sequence_is_named():
    """An int image_shape raised "'int' object is not iterable" without naming the argument."""
    with pytest.raises(ValueError, match="image_shape must be"):
        pu.Gradient2d(5)
    with pytest.raises(ValueError, match="image_shape must be"):
        pu.Conv2dFilterBank(_rand((2, 3, 3)), 6)
    assert pu.Conv2dFilterBank(_rand((2, 3, 3)), np.array([6, 5])).in_shape == (6, 5)


@pytest.mark.parametrize("name", ["gradient", "diagonal", "composition", "stack", "nested",
                                  "dense", "conv1d", "conv2d"])
@pytest.mark.parametrize("c", [0.37, -2.5])
def test_scaled_is_c_times_the_operator(backend, name, c):
    """op.scaled(c) (the solver's σK and −τK, made once per call) applies c K and c Kᵀ, keeps
    the parameters' derivative of K (σ and −τ scale the ∇K products instead) and leaves op as
    it was; c may be a 0-d array of the backend."""
    op = _all_operators(backend)[name]
    x = backend.asarray(_rand((3, *op.in_shape), 6))
    y = backend.asarray(_rand((3, *op.out_shape), 7))
    before = (backend.to_numpy(op.apply(x)), backend.to_numpy(op.adjoint(y)))
    for scale in (c, op.xp.asarray(c, dtype=op.dtype, device=op.device)):
        scaled = op.scaled(scale)
        assert tuple(scaled.in_shape) == tuple(op.in_shape)
        assert tuple(scaled.out_shape) == tuple(op.out_shape)
        np.testing.assert_allclose(backend.to_numpy(scaled.apply(x)), c * before[0],
                                   rtol=1e-13, atol=1e-13)
        np.testing.assert_allclose(backend.to_numpy(scaled.adjoint(y)), c * before[1],
                                   rtol=1e-13, atol=1e-13)
    np.testing.assert_array_equal(backend.to_numpy(op.apply(x)), before[0])
    np.testing.assert_array_equal(backend.to_numpy(op.adjoint(y)), before[1])


def test_scaled_operator_wraps_any_operator(numpy_backend):
    """The generic c K of an operator without a cheaper form: products, the parameter VJP c
    times K's, with_params and scaling it again."""
    diag = pu.Diagonal(_rand(SHAPE) + 2)
    scaled = ScaledOperator(diag, 3.0)
    a, b = _rand((2, *SHAPE), 1), _rand((2, *SHAPE), 2)
    np.testing.assert_allclose(scaled.param_vjp(a, b), 3.0 * diag.param_vjp(a, b))
    w = _rand(SHAPE, 3)
    np.testing.assert_allclose(scaled.with_params(w).apply(b), 3.0 * w * b)
    np.testing.assert_allclose(scaled.scaled(-2.0).apply(b), -6.0 * diag.apply(b))
    grad = _gradient(numpy_backend)
    assert isinstance(grad.scaled(2.0), ScaledOperator)
    np.testing.assert_allclose(grad.scaled(2.0).apply(b), 2.0 * grad.apply(b))
