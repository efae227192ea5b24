"""Check once, then compute: the Chambolle-Pock loop and every reverse recursion run without a
host synchronisation (no bool(), float(), int() or .item() of an array), so they can be traced
and compiled. Checked with array_api_strict arrays whose conversions to Python raise."""

import numpy as np
import pytest

import pdunroll as pu
from pdunroll.unroll.gradient import vjp_unchecked
from pdunroll.unroll.plan import make_plan

xps = pytest.importorskip("array_api_strict", reason="array_api_strict is not installed")


@pytest.fixture
def no_host_sync(monkeypatch):
    def refuse(self, *args):
        raise AssertionError("host synchronisation inside the loop")

    array = type(xps.asarray(0.0))
    for name in ("__bool__", "__float__", "__int__", "__index__", "__complex__", "item"):
        if hasattr(array, name):
            monkeypatch.setattr(array, name, refuse)


def _model(bregman: bool):
    rng = np.random.default_rng(0)
    K = xps.asarray((np.eye(6) + 0.2 * rng.standard_normal((6, 6))).tolist())
    f = pu.BoxBregmanL1Norm(1.0) if bregman else pu.L1Norm()
    g = pu.BoxBregmanLinfBall(0.2) if bregman else pu.LinfBall(0.2)
    model = pu.AnalysisModel(pu.DenseOperator(K), f, g)
    x = rng.uniform(-0.5, 0.5, (4, 6))
    return model, xps.asarray((x + rng.uniform(-0.1, 0.1, x.shape)).tolist()), \
        xps.asarray(x.tolist())


METHODS = [pu.Full(), pu.Full(segments=2), pu.Truncated(3), pu.Asymptotic(4),
           pu.Full(relax_primal=True)]


@pytest.mark.parametrize("bregman", [False, True], ids=["euclidean", "bregman"])
@pytest.mark.parametrize("method", METHODS, ids=repr)
def test_forward_and_reverse_never_synchronise(method, bregman, request):
    model, xt, x = _model(bregman)
    steps = pu.step_sizes(model.operator, omega=2.0)  # checks (with syncs) happen here, once
    weights = "harmonic" if method.stores_steps else None
    plan = make_plan(method, 8, weights, steps)
    want = pu.vjp(model, xt, iterations=8, method=method, steps=steps,
                  weights=weights)[1](x - xt)
    request.getfixturevalue("no_host_sync")
    x_hat, pullback = vjp_unchecked(model, xt, plan)
    got = pullback(x - xt)
    with pytest.raises(AssertionError, match="host synchronisation"):
        bool(x_hat[0, 0] > 0)  # the guard is active
    np.testing.assert_allclose(np.asarray(got.operator), np.asarray(want.operator), rtol=1e-12)


class _Syncs:
    """Counts the host round trips of array_api_strict arrays (every conversion to Python or
    NumPy), or of torch tensors."""

    NAMES = ("__bool__", "__float__", "__int__", "__index__", "__complex__", "item",
             "__array__", "__dlpack__", "tolist", "numpy")

    def __init__(self, monkeypatch, array_type):
        self.count = 0
        for name in self.NAMES:
            original = getattr(array_type, name, None)
            if original is not None:
                monkeypatch.setattr(array_type, name, self._counting(original))

    def _counting(self, original):
        def method(*args, **kwargs):
            self.count += 1
            return original(*args, **kwargs)

        return method


def _train_syncs(monkeypatch, **kw):
    model, xt, x = _model(False)
    xt, x = xps.concat([xt, xt * 0.5, xt * 0.25]), xps.concat([x, x * 0.5, x * 0.25])
    syncs = _Syncs(monkeypatch, type(xt))
    at = []
    pu.train(model, xt, x, iterations=8, epochs=1, batch_size=4, progress=False,
             callback=lambda info: at.append(syncs.count), **kw)
    return [b - a for a, b in zip(at, at[1:], strict=False)]


@pytest.mark.parametrize("kw", [{}, {"steps": pu.StepRule(norm="frobenius")},
                                {"optimizer": "sgd", "norm_iterations": 30}],
                         ids=["adam", "frobenius", "sgd"])
def test_a_training_step_makes_one_host_round_trip(monkeypatch, kw):
    """Per step one combined transfer of (loss, gradient norm, ‖K‖) for logging; the ‖K‖
    refresh stays on the device and the new operator's values are not re-checked."""
    per_step = _train_syncs(monkeypatch, **kw)
    assert len(per_step) == 2 and per_step == [1, 1]


def test_a_dask_workers_step_makes_no_host_round_trip(monkeypatch):
    from pdunroll.learning.distributed import _part_gradient

    model, xt, x = _model(False)
    steps = pu.step_sizes(model.operator, omega=2.0)
    syncs = _Syncs(monkeypatch, type(xt))
    loss, grad = _part_gradient((xt, x), model, np.array([0, 2, 3]),
                                make_plan(pu.Full(), 8, None, steps, x_wanted=False))
    assert syncs.count == 0
    want = pu.gradient(model, xps.take(xt, xps.asarray([0, 2, 3]), axis=0),
                       xps.take(x, xps.asarray([0, 2, 3]), axis=0), iterations=8, steps=steps)
    assert float(loss) == pytest.approx(want.loss, rel=1e-12)


def test_the_torch_layer_makes_no_host_round_trip_after_its_first_call(monkeypatch):
    torch = pytest.importorskip("torch", reason="torch is not installed")
    from pdunroll.torch import UnrolledCP

    rng = np.random.default_rng(1)
    K = torch.tensor(np.eye(6) + 0.2 * rng.standard_normal((6, 6)))
    layer = UnrolledCP(pu.AnalysisModel(pu.DenseOperator(K), pu.L1Norm(), pu.LinfBall(0.2)),
                       iterations=8)
    xt = torch.tensor(rng.uniform(-0.5, 0.5, (4, 6)))
    layer(xt).sum().backward()  # the first call estimates ‖K‖ to convergence
    syncs = _Syncs(monkeypatch, torch.Tensor)
    for _ in range(3):
        layer(xt).sum().backward()
    assert syncs.count == 0


@pytest.mark.parametrize("solver", ["gmres", "neumann"])
def test_krylov_solvers_check_convergence_every_tenth_step(monkeypatch, solver):
    """A convergence test reads a residual on the host: every 10th step, not every step."""
    rng = np.random.default_rng(2)
    mats = xps.asarray((0.1 * rng.standard_normal((3, 40, 40))).tolist())
    b = (xps.asarray(rng.standard_normal((3, 40)).tolist()),)

    def apply_n(u):
        return (xps.sum(mats * u[0][:, None, :], axis=2),)

    syncs = _Syncs(monkeypatch, type(b[0]))
    if solver == "gmres":
        _, info = pu.gmres(apply_n, b, tol=1e-300, maxiter=60, restart=30)
    else:
        _, info = pu.neumann(apply_n, b, tol=1e-300, maxiter=60)
    assert info.iterations == 60 and info.status == "maxiter"
    assert syncs.count <= 10  # 60 steps


def _counting(monkeypatch, module, name, counts):
    real = getattr(module, name)

    def counted(*args, **kwargs):
        counts[name] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, counted)


def _operators():
    rng = np.random.default_rng(3)
    K = xps.asarray((np.eye(6) + 0.2 * rng.standard_normal((6, 6))).tolist())
    w = xps.asarray(rng.uniform(0.5, 1.5, 6).tolist())
    return {"dense": pu.DenseOperator(K),
            "composition": pu.Composition(pu.Diagonal(w), pu.DenseOperator(K)),
            "stack": pu.Stack(pu.DenseOperator(K), pu.Diagonal(w)),
            # no scaled form of its own: σK is a ScaledOperator
            "gradient": pu.Gradient2d((2, 3), xp=xps, dtype=xps.float64)}


@pytest.mark.parametrize("kind", ["dense", "composition", "stack", "gradient"])
@pytest.mark.parametrize("method", [pu.Full(), pu.Full(segments=2), pu.Asymptotic(4)],
                         ids=repr)
def test_checks_and_namespace_lookups_happen_once_per_call(monkeypatch, kind, method):
    """Check once, then compute: a gradient call checks its signals and finds their namespace
    at the entry point; its forward loop and reverse recursion call the operators' unchecked
    products (composite and scaled operators too) and look no namespace up (the proxes' per
    array type is known), so the counts do not grow with L."""
    import array_api_compat

    import pdunroll.operators.base as base

    op = _operators()[kind]
    model = pu.AnalysisModel(op, pu.L1Norm(), pu.LinfBall(0.2))
    rng = np.random.default_rng(4)
    shape = (3, *op.in_shape)
    xt = xps.asarray(rng.uniform(-0.5, 0.5, shape).tolist())
    x = xps.asarray(rng.uniform(-0.5, 0.5, shape).tolist())
    steps = pu.step_sizes(op, omega=2.0)
    pu.gradient(model, xt, x, iterations=2, method=method, steps=steps)  # types seen once
    counts = {"check_batch": 0, "array_namespace": 0}
    _counting(monkeypatch, base, "check_batch", counts)
    _counting(monkeypatch, array_api_compat, "array_namespace", counts)
    per_call = []
    for L in (6, 12):
        counts.update(check_batch=0, array_namespace=0)
        pu.gradient(model, xt, x, iterations=L, method=method, steps=steps)
        per_call.append(dict(counts))
    assert per_call[0] == per_call[1]


@pytest.mark.parametrize("method", [pu.Full(), pu.Asymptotic(4), pu.Implicit(tol=1e-8)],
                         ids=repr)
def test_forward_backward_checks_its_products_once_per_call(monkeypatch, method):
    """The same for forward-backward splitting: LeastSquares checks x at the entry (its value)
    and runs the loop's gradients and Hessian products unchecked."""
    import pdunroll.operators.base as base

    rng = np.random.default_rng(5)
    A = pu.DenseOperator(xps.asarray((np.eye(6) + 0.2 * rng.standard_normal((6, 6))).tolist()))
    b = xps.asarray(rng.uniform(-0.5, 0.5, (3, 6)).tolist())
    x0 = xps.asarray(rng.uniform(-0.5, 0.5, (3, 6)).tolist())
    smooth = pu.LeastSquares(A, b, ridge=0.5)
    counts = {"check_batch": 0}
    _counting(monkeypatch, base, "check_batch", counts)
    per_call = []
    for L in (6, 12):
        counts.update(check_batch=0)
        pu.forward_backward_gradient(smooth, pu.L1Norm(0.1), x0, step=0.5, iterations=L,
                                     method=method, x_true=x0)
        per_call.append(counts["check_batch"])
    assert per_call[0] == per_call[1] > 0
