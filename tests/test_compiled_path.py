"""The compiled path (``compile=`` of the torch layer, of train and ``--compile`` of the command
line): torch.compile of pdunroll's own forward loop and hand-written reverse pass gives the
eager path's values and gradients, compiles once per shape (a second call of the same shape
does not recompile, a new shape does), and runs eagerly after one warning where no compiler
works. The inductor tests are tiny (n = 3, L = 2): compiling costs seconds per program."""

import warnings

import pytest
from conftest import relative_error

torch = pytest.importorskip("torch", reason="torch is not installed (pip install torch)")

from torch._dynamo.testing import CompileCounter  # noqa: E402

import pdunroll as pu  # noqa: E402
import pdunroll.torch as put  # noqa: E402
from pdunroll.learning.training import LocalGradient  # noqa: E402
from pdunroll.torch import UnrolledCP, unrolled  # noqa: E402

N, B, L = 3, 2, 2


def _data(dtype=torch.float64, batch=B, seed=0):
    g = torch.Generator().manual_seed(seed)
    K = torch.eye(N, dtype=dtype) + 0.3 * torch.randn(N, N, generator=g, dtype=dtype)
    xt = torch.randn(batch, N, generator=g, dtype=dtype)
    c = 0.1 * torch.randn(batch, N, generator=g, dtype=dtype)
    return K, xt, c


def _model(K, c):
    return pu.AnalysisModel(pu.DenseOperator(K), pu.L1Norm(), pu.LinearTerm(c, pu.SquaredL2()))


def _layer_gradients(compile, K, xt, c, x_true):
    """x̂ of UnrolledCP and the gradients of ½‖x̂ − x†‖² w.r.t. K, x̃ and G's costs c."""
    layer = UnrolledCP(_model(K, c), iterations=L, compile=compile)
    xl, cl = xt.clone().requires_grad_(), c.clone().requires_grad_()
    x_hat = layer(xl, g=cl)
    (0.5 * ((x_hat - x_true) ** 2).sum()).backward()
    return x_hat.detach(), layer.operator_params[0].grad, xl.grad, cl.grad


@pytest.fixture
def fresh():
    """No compiled programs and no recorded compiler failure from earlier tests."""
    torch._dynamo.reset()
    put._COMPILED.clear()
    put._UNAVAILABLE.clear()
    yield
    torch._dynamo.reset()
    put._COMPILED.clear()
    put._UNAVAILABLE.clear()


def test_inductor_layer_gives_the_eager_values_and_gradients(fresh):
    """float64: x̂ and the gradients of the operator, x̃ and G's parameters to 1e-12; the
    forward loop is one program and the reverse pass another (no graph break)."""
    K, xt, c = _data()
    x_true = torch.randn(B, N, generator=torch.Generator().manual_seed(9), dtype=K.dtype)
    want = _layer_gradients(False, K, xt, c, x_true)
    graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    got = _layer_gradients(True, K, xt, c, x_true)
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] - graphs == 2
    assert not put._UNAVAILABLE
    for a, b in zip(got, want, strict=True):
        assert relative_error(a, b) <= 1e-12


@pytest.mark.parametrize("method", [pu.Full(released_mask=0.5), pu.Full(segments=2)],
                         ids=["masks", "segments"])
def test_inductor_layer_hands_the_tape_over_exactly(fresh, method):
    """G = the ℓ∞ ball, whose steps save bool masks (two per step with the released mask),
    and segment starts (constants beside tensors): x̂ and the gradients of K and x̃ of the
    compiled layer are the eager ones to 1e-12 (float64)."""
    K, xt, _ = _data()
    x_true = torch.randn(B, N, generator=torch.Generator().manual_seed(9), dtype=K.dtype)
    out = []
    for compile in (False, True):
        K_leaf, x_leaf = K.clone().requires_grad_(), xt.clone().requires_grad_()
        model = pu.AnalysisModel(pu.DenseOperator(K_leaf), pu.L1Norm(), pu.LinfBall(0.2))
        x_hat = unrolled(model, x_leaf, iterations=4, method=method, compile=compile)
        (0.5 * ((x_hat - x_true) ** 2).sum()).backward()
        out.append((x_hat.detach(), K_leaf.grad, x_leaf.grad))
    assert not put._UNAVAILABLE
    for a, b in zip(*out, strict=True):
        assert relative_error(a, b) <= 1e-12


def test_the_tape_crosses_to_the_reverse_program_without_bool_arrays():
    """The forward kernel hands its state over as a skeleton of constants and a flat list of
    tensors, bool masks as 0/1 floats where compiled (inductor's CPU code writes and reads bool
    arrays several times slower than floats); the reverse kernel unpacks the same tree with the
    masks as bools again. Eager (no mask dtype) keeps the bools."""
    from collections import deque

    from pdunroll.unroll.plan import make_plan

    K, xt, _ = _data()
    model = pu.AnalysisModel(pu.DenseOperator(K), pu.L1Norm(), pu.LinfBall(0.2))
    plan = make_plan(pu.Full(), L, None, pu.step_sizes(model.operator))
    _, skeleton, tensors = put._forward_kernel(model, xt, plan, K.dtype)
    assert tensors and all(t.dtype == K.dtype for t in tensors)
    assert put._MASK in repr(skeleton)
    _, _, eager = put._forward_kernel(model, xt, plan, None)
    assert any(t.dtype == torch.bool for t in eager)
    mask, a = xt > 0, xt + 1
    tree = (deque([(a, mask, None)]), [(3, a, (mask,))], None)
    packed = []
    back = put._unpack(put._pack(tree, packed, K.dtype), packed)
    assert [t.dtype for t in packed] == [K.dtype] * 4
    assert isinstance(back[0], deque) and isinstance(back[1], list)
    assert back[0][0][2] is None and back[1][0][0] == 3 and back[2] is None
    for got, want in ((back[0][0][0], a), (back[0][0][1], mask), (back[1][0][2][0], mask)):
        assert got.dtype == want.dtype and torch.equal(got, want)


def test_inductor_training_gives_the_eager_run(fresh):
    """float32: the same losses and operator as the eager run to float32's rounding (one
    program for the one minibatch shape, reused by the second step)."""
    K, xt, _ = _data(torch.float32, batch=4)
    x_true = torch.randn(4, N, generator=torch.Generator().manual_seed(3), dtype=K.dtype)
    model = pu.AnalysisModel(pu.DenseOperator(K), pu.L1Norm(), pu.LinfBall(0.2))
    runs = [pu.train(model, xt, x_true, iterations=L, epochs=2, batch_size=4, lr=1e-2,
                     progress=False, compile=compile) for compile in (False, True)]
    assert not put._UNAVAILABLE
    eager, compiled = (r.history.step_loss for r in runs)
    assert compiled == pytest.approx(eager, rel=1e-5)
    assert relative_error(runs[1].final_model.operator.params,
                          runs[0].final_model.operator.params) <= 1e-5


def test_one_compile_per_shape_layer(fresh):
    """Two programs (forward, reverse) at the first call of a shape; the same shape again, with
    a new ‖K‖ and new step sizes after each update, compiles nothing (a new shape compiles a
    new program: the training test below)."""
    count = CompileCounter()
    K, xt, c = _data()
    layer = UnrolledCP(_model(K, c), iterations=L, compile={"backend": count})
    opt = torch.optim.SGD(layer.parameters(), lr=0.1)
    frames = []
    for seed in range(3):
        layer(_data(seed=seed)[1], g=c).square().sum().backward()
        opt.step()  # K, ‖K‖ and the step sizes change
        opt.zero_grad()
        frames.append(count.frame_count)
    assert frames == [2, 2, 2]
    # inside a user's torch.compile the layer is a graph break that runs its own programs (each
    # call refreshes ‖K‖ by a few power iterations: equal to rounding)
    outer = torch.compile(lambda x: torch.tanh(layer(x, g=c)).sum(), backend="eager")
    got = outer(xt).detach()
    assert count.frame_count == 2
    assert relative_error(got, torch.tanh(layer(xt, g=c)).sum().detach()) <= 1e-12


def test_one_compile_per_shape_training(fresh):
    """train: one program per minibatch shape (4 pairs in batches of 3 and 1: a new shape is a
    new program), over epochs and updates of K."""
    count = CompileCounter()
    K, xt, _ = _data(batch=4)
    model = pu.AnalysisModel(pu.DenseOperator(K), pu.L1Norm(), pu.LinfBall(0.2))
    eager = pu.train(model, xt, xt + 0.1, iterations=L, epochs=3, batch_size=3,
                     progress=False)
    res = pu.train(model, xt, xt + 0.1, iterations=L, epochs=3, batch_size=3, progress=False,
                   compile={"backend": count})
    assert res.steps == 6 and count.frame_count == 2
    assert res.history.step_loss == pytest.approx(eager.history.step_loss, rel=1e-12)


def test_without_a_compiler_one_warning_then_eager(fresh, monkeypatch):
    """A missing C++ compiler (inductor's CPU backend) is reported once, naming the cause and
    the switch; the layer then runs eagerly with the eager values."""
    monkeypatch.setattr("torch._inductor.config.cpp.cxx", ("/nonexistent/c++",))
    # compile, don't load what an earlier test compiled
    monkeypatch.setattr("torch._inductor.config.fx_graph_cache", False)
    monkeypatch.setattr("torch._functorch.config.enable_autograd_cache", False)
    K, xt, c = _data()
    x_true = torch.zeros(B, N, dtype=K.dtype)
    want = _layer_gradients(False, K, xt, c, x_true)
    with pytest.warns(RuntimeWarning, match=r"C\+\+ compiler.*compile=False") as record:
        got = _layer_gradients(True, K, xt, c, x_true)
    assert len([w for w in record if issubclass(w.category, RuntimeWarning)]) == 1
    assert put._UNAVAILABLE and "C++" in put._UNAVAILABLE[0]
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        again = _layer_gradients(True, K, xt, c, x_true)
    for a, b, e in zip(got, want, again, strict=True):
        assert torch.equal(a, b) and torch.equal(e, b)


def test_where_torch_compile_refuses_one_warning_then_eager(fresh, monkeypatch):
    """torch.compile itself refusing (as it does on a Python it does not support): the same
    one warning with its cause, and the eager results."""
    def refuse(*args, **kwargs):
        raise RuntimeError("torch.compile is not supported on Python 3.99+")

    monkeypatch.setattr(torch, "compile", refuse)
    K, xt, c = _data()
    x_true = torch.zeros(B, N, dtype=K.dtype)
    with pytest.warns(RuntimeWarning, match=r"not supported on Python 3\.99\+\); it runs eagerly"):
        got = _layer_gradients(True, K, xt, c, x_true)
    for a, b in zip(got, _layer_gradients(False, K, xt, c, x_true), strict=True):
        assert torch.equal(a, b)


def test_the_device_chooses_cuda_graphs_for_one_graph_calls():
    """inductor everywhere; CUDA graphs (mode="reduce-overhead") only for a whole training step
    on CUDA, not for the layer, whose tape outlives the next launch."""
    cpu, cuda = torch.device("cpu"), torch.device("cuda", 0)
    assert put._options(True, cpu, one_graph=True) == {"backend": "inductor", "mode": None}
    assert put._options(True, cuda, one_graph=False) == {"backend": "inductor", "mode": None}
    assert put._options(True, cuda, one_graph=True) == {"backend": "inductor",
                                                       "mode": "reduce-overhead"}
    assert put._options(False, cuda, one_graph=True) is None
    assert put._options({"mode": "max-autotune"}, cpu, one_graph=True) == {"mode": "max-autotune"}


def test_bad_compile_arguments_name_the_argument():
    K, xt, c = _data()
    with pytest.raises(TypeError, match="compile must be True, False or a dict"):
        UnrolledCP(_model(K, c), iterations=L, compile="yes")
    with pytest.raises(ValueError, match=r"unknown torch.compile keyword\(s\) \['dynamic'"):
        unrolled(_model(K, c), xt, iterations=L, compile={"dynamic": True})
    model = pu.AnalysisModel(pu.DenseOperator(K.numpy()), pu.L1Norm(), pu.LinfBall(0.2))
    with pytest.raises(ValueError, match="compile= needs the model and data as torch tensors"):
        pu.train(model, xt.numpy(), xt.numpy(), iterations=L, epochs=1, progress=False,
                 compile=True)
    tmodel = pu.AnalysisModel(pu.DenseOperator(K), pu.L1Norm(), pu.LinfBall(0.2))
    with pytest.raises(ValueError, match="without client and minibatch_gradient"):
        pu.train(tmodel, xt, xt, iterations=L, epochs=1, progress=False, compile=True,
                 minibatch_gradient=LocalGradient)


def test_command_line_compile_flag(fresh, tmp_path, monkeypatch, capsys):
    """--compile with --backend torch trains through the compiled steps (counted; the eager
    backend of torch.compile keeps the test fast); other backends refuse it."""
    import json

    from pdunroll import cli

    count = CompileCounter()
    monkeypatch.setattr(put, "_options", lambda compile, device, one_graph:
                        {"backend": count} if compile else None)
    tiny = ["--signals", "4", "--seconds", "0.25", "--n", "16", "--iterations", "2",
            "--epochs", "1", "--batch-size", "16", "--quiet", "--dtype", "float64"]
    out = tmp_path / "compiled"
    assert cli.main(["train", "speech", "--out", str(out), *tiny, "--backend", "torch",
                     "--compile"]) == 0
    assert count.frame_count >= 1
    assert json.loads((out / "results.json").read_text())["test"]
    assert cli.main(["train", "speech", "--out", str(tmp_path / "np"), *tiny,
                     "--compile"]) == 2
    assert "--compile compiles the steps with torch.compile: it needs --backend torch" in \
        capsys.readouterr().err
