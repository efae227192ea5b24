"""Check once, then compute: the Chambolle-Pock loop and every reverse recursion run without a
host synchronisation (no bool(), float(), int() or .item() of an array), so they can be traced
and compiled. Checked with array_api_strict arrays whose conversions to Python raise."""

import numpy as np
import pytest

import pdunroll as pu
from pdunroll.unroll.gradient import check_unrolling, vjp_unchecked

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
    method, L, b, alphas = check_unrolling(method, 8, "harmonic" if
                                           method.takes_weights else None)
    want = pu.vjp(model, xt, iterations=L, method=method, steps=steps,
                  weights=None if alphas is None else "harmonic")[1](x - xt)
    request.getfixturevalue("no_host_sync")
    x_hat, pullback = vjp_unchecked(model, xt, L, method, b, alphas, steps)
    got = pullback(x - xt)
    with pytest.raises(AssertionError, match="host synchronisation"):
        bool(x_hat[0, 0] > 0)  # the guard is active
    np.testing.assert_allclose(np.asarray(got.operator), np.asarray(want.operator), rtol=1e-12)
