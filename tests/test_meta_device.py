"""torch's ``meta`` device (shapes, no data) where an operation allows it: the Chambolle-Pock
loop and the reverse recursions create every array on the device of their inputs, so they run on
meta tensors and return meta tensors of the right shapes. The public entry points and the
constructors of operators with parameters check values (finite entries), which meta tensors do
not have: the TV model (Gradient2d has no parameters) through the unchecked core is what runs."""

import pytest

import pdunroll as pu
from pdunroll.unroll.gradient import vjp_unchecked
from pdunroll.unroll.plan import make_plan

torch = pytest.importorskip("torch", reason="torch is not installed")
import array_api_compat.torch as xp  # noqa: E402

META = torch.device("meta")


def _tv(g):
    return pu.AnalysisModel(pu.Gradient2d((6, 7), xp=xp, dtype=torch.float32, device=META),
                            pu.L21Norm(0.1), g)


def test_constructors_with_parameters_refuse_meta_tensors_clearly():
    with pytest.raises(RuntimeError, match="meta"):
        pu.DenseOperator(torch.empty(12, 8, device=META))


@pytest.mark.parametrize("g", [pu.LinfBall(0.2), pu.BoxBregmanLinfBall(0.2)], ids=repr)
@pytest.mark.parametrize("method", [pu.Full(), pu.Full(segments=2), pu.Truncated(2),
                                    pu.Asymptotic(3)], ids=repr)
def test_solver_and_recursions_stay_on_meta(g, method):
    model = _tv(g)
    op = model.operator
    x = torch.empty((2, *op.in_shape), dtype=op.dtype, device=META)
    assert op.apply(x).shape == (2, *op.out_shape) and op.apply(x).device == META
    assert op.adjoint(op.apply(x)).device == META
    steps = pu.StepSizes(0.3, 0.3, 1.0, 1.5)  # no norm estimate: meta tensors have no values
    x_hat, pullback = vjp_unchecked(model, x, make_plan(method, 4, None, steps))
    cot = pullback(torch.empty_like(x_hat))
    assert x_hat.device == META and x_hat.shape == x.shape
    assert cot.x_tilde.device == META and cot.x_tilde.shape == x.shape
    for grad, param in zip(pu.tree.flatten(cot.operator), pu.tree.flatten(op.params),
                           strict=True):
        assert grad.device == META and grad.shape == param.shape
