"""Parameter trees: one module walks them for optimizers, gradients, checkpoint files and
forward-backward; composite operators (nested to any depth) train like dense ones."""

import numpy as np
import pytest

import pdunroll as pu
from pdunroll import tree


def test_flatten_unflatten_round_trip_any_depth():
    a, b, c = np.ones(2), np.zeros((2, 2)), np.arange(3.0)
    t = (a, ((), (b, (c,))), ())
    leaves = tree.flatten(t)
    assert [x is y for x, y in zip(leaves, [a, b, c], strict=True)] == [True] * 3
    back = tree.unflatten(t, [2 * x for x in leaves])
    assert back[1][0] == () and back[2] == ()
    np.testing.assert_array_equal(back[1][1][1][0], 2 * c)
    assert tree.flatten(()) == [] and tree.unflatten((), []) == ()
    with pytest.raises(ValueError, match="more arrays"):
        tree.unflatten((a,), [a, b])


def test_arithmetic_is_leaf_by_leaf_and_checks_structure():
    u = (np.ones(2), (np.full(3, 2.0),))
    v = (np.full(2, 3.0), (np.ones(3),))
    np.testing.assert_array_equal(tree.add(u, v)[1][0], np.full(3, 3.0))
    np.testing.assert_array_equal(tree.scale(0.5, u)[0], np.full(2, 0.5))
    np.testing.assert_array_equal(tree.axpy(2.0, u, v)[1][0], np.full(3, 5.0))
    np.testing.assert_array_equal(tree.axpy(2.0, u)[1][0], np.full(3, 4.0))
    with pytest.raises(ValueError, match="different structure"):
        tree.add(u, (np.ones(2),))


def _composite(backend, dtype, kind):
    rng = np.random.default_rng(1)
    a = lambda x: backend.asarray(x, dtype)  # noqa: E731
    if kind == "composition":  # weighted TV: K = D ∘ diag(w), params ((), w)
        op = pu.Composition(pu.Gradient2d((6, 6), xp=backend.xp, dtype=backend.dtype(dtype),
                                          device=backend.device),
                            pu.Diagonal(a(1 + 0.1 * rng.random((6, 6)))))
        f = pu.L21Norm(0.05)
    else:  # K = [A; B C], params (A, (B, C))
        n = 6
        op = pu.Stack(pu.DenseOperator(a(np.eye(n) + 0.1 * rng.standard_normal((n, n)))),
                      pu.Composition(pu.DenseOperator(a(0.3 * rng.standard_normal((4, n)))),
                                     pu.DenseOperator(a(np.eye(n) + 0.1 * rng.standard_normal(
                                         (n, n))))))
        f = pu.L1Norm()
    return pu.AnalysisModel(op, f, pu.LinfBall(0.1))


@pytest.mark.parametrize("kind", ["composition", "stack"])
def test_composite_operators_train_on_every_backend(backend, kind):
    """Was: TypeError 'tuple is not a supported array type' (one-level tree helpers)."""
    dtype = "float64"
    model = _composite(backend, dtype, kind)
    rng = np.random.default_rng(2)
    shape = (16, *model.operator.in_shape)
    x = np.clip(0.3 * rng.standard_normal(shape), -1, 1)
    xt = backend.asarray(x + rng.uniform(-0.1, 0.1, shape), dtype)
    x = backend.asarray(x, dtype)
    before = pu.unrolled_loss(model, xt, x, iterations=5)
    res = pu.train(model, xt, x, iterations=5, lr=3e-2, epochs=3, batch_size=8, progress=False,
                   optimizer="adam")
    structure = [np.shape(p) for p in tree.flatten(res.final_model.operator.params)]
    assert structure == [np.shape(p) for p in tree.flatten(model.operator.params)]
    assert pu.unrolled_loss(res.final_model, xt, x, iterations=5) < before
