"""Bad input raises a clear error that names the argument and what was expected."""

import numpy as np
import pytest
from problems import speech_like

import pdunroll as pu


@pytest.fixture
def setup(numpy_backend):
    problem = speech_like("linf")
    return problem.model(numpy_backend), problem.x_tilde, problem.x_true


def test_shape_mismatch(setup):
    model, xt, xd = setup
    with pytest.raises(ValueError, match=r"x_tilde must have shape \(batch, 16\)"):
        pu.chambolle_pock(model, xt[:, :5], iterations=3)
    with pytest.raises(ValueError, match="x_true"):
        pu.gradient(model, xt, xd[:2], iterations=3)
    with pytest.raises(ValueError, match="x_tilde must have shape"):
        pu.chambolle_pock(model, xt[0], iterations=3)


def test_mixed_backends(setup, torch_backend):
    model, xt, xd = setup
    with pytest.raises(TypeError, match="all arrays must come from one backend"):
        pu.gradient(model, xt, torch_backend.asarray(xd), iterations=3)


def test_mixed_dtypes(setup):
    model, xt, xd = setup
    with pytest.raises(TypeError, match="x_tilde has dtype float32 but the operator has float64"):
        pu.chambolle_pock(model, xt.astype(np.float32), iterations=3)


def test_integer_input(setup):
    model, xt, _ = setup
    with pytest.raises(TypeError, match="x_tilde must have a real floating dtype"):
        pu.chambolle_pock(model, np.ones(xt.shape, dtype=np.int64), iterations=3)


def test_non_finite_input(setup):
    model, xt, xd = setup
    bad = xt.copy()
    bad[1, 2] = np.nan
    with pytest.raises(ValueError, match="x_tilde contains non-finite values"):
        pu.chambolle_pock(model, bad, iterations=3)
    bad_true = xd.copy()
    bad_true[0, 0] = np.inf
    with pytest.raises(ValueError, match="x_true contains non-finite values"):
        pu.gradient(model, xt, bad_true, iterations=3)
    with pytest.raises(ValueError, match="matrix contains non-finite values"):
        pu.DenseOperator(np.full((3, 3), np.nan))


@pytest.mark.parametrize("value", [0, -2])
def test_iterations_and_b_below_one(setup, value):
    model, xt, xd = setup
    with pytest.raises(ValueError, match="iterations must be an integer >= 1"):
        pu.chambolle_pock(model, xt, iterations=value)
    # b is checked when the method is made
    with pytest.raises(ValueError, match=f"b must be an integer >= 1, got {value}"):
        pu.Truncated(value)
    with pytest.raises(ValueError, match=f"b must be an integer >= 1, got {value}"):
        pu.Asymptotic(value)
    with pytest.raises(TypeError, match="b must be an integer >= 1, got 2.5"):
        pu.Truncated(2.5)
    with pytest.raises(ValueError, match="iterations must be an integer >= 1"):
        pu.gradient(model, xt, xd, iterations=value, method=pu.Truncated(1))


def test_non_integer_iterations(setup):
    model, xt, _ = setup
    with pytest.raises(TypeError, match="iterations must be an integer"):
        pu.chambolle_pock(model, xt, iterations=2.5)


def test_truncated_b_above_iterations(setup):
    model, xt, xd = setup
    with pytest.raises(ValueError, match=r"Truncated\(b=6\) needs b <= iterations \(5\)"):
        pu.gradient(model, xt, xd, iterations=5, method=pu.Truncated(6))
    with pytest.raises(ValueError, match=r"Truncated\(b=6\) needs b <= iterations \(5\)"):
        pu.vjp(model, xt, iterations=5, method=pu.Truncated(6, segments=2))
    pu.gradient(model, xt, xd, iterations=5, method=pu.Truncated(5))  # b = L is allowed
    # the asymptotic method may run more backward steps than forward ones
    pu.gradient(model, xt, xd, iterations=5, method=pu.Asymptotic(50))


@pytest.mark.parametrize("cls", [pu.LinfBall, pu.L2Ball])
@pytest.mark.parametrize("radius", [0.0, -1.0, float("nan"), float("inf")])
def test_bad_radius(cls, radius):
    with pytest.raises(ValueError, match="radius must be a positive finite number"):
        cls(radius)


def test_step_sizes_breaking_the_convergence_condition(setup):
    model, xt, xd = setup
    op = model.operator
    norm = op.norm()
    with pytest.raises(ValueError, match=r"sigma \* tau \* \|\|K\|\|\^2 < 1"):
        pu.step_sizes(op, sigma=1.01 / norm, tau=1.0 / norm)
    with pytest.raises(ValueError, match=r"sigma \* tau \* \|\|K\|\|\^2 < 1"):
        pu.StepSizes(1.01 / norm, 1.0 / norm, 1.0, norm)
    with pytest.raises(ValueError, match="give both sigma and tau"):
        pu.step_sizes(op, sigma=0.1)
    with pytest.raises(ValueError, match=r"theta must lie in \[0, 1\]"):
        pu.step_sizes(op, theta=1.5)
    # a norm below ||K|| would give too large steps: refused by step_sizes and by steps=
    with pytest.raises(ValueError, match="below a lower bound"):
        pu.step_sizes(op, op_norm=0.5 * norm)
    small = pu.StepSizes(0.99 / norm, 0.99 / norm, 1.0, 0.5 * norm)  # consistent in itself
    with pytest.raises(ValueError, match="below a lower bound"):
        pu.chambolle_pock(model, xt, iterations=3, steps=small)
    with pytest.raises(ValueError, match="below a lower bound"):
        pu.gradient(model, xt, xd, iterations=3, steps=small)
    # steps fix sigma and tau: omega besides them is refused, and steps must be StepSizes
    good = pu.step_sizes(op)
    with pytest.raises(ValueError, match="give omega or steps, not both"):
        pu.chambolle_pock(model, xt, iterations=3, omega=2.0, steps=good)
    with pytest.raises(ValueError, match="give omega or steps, not both"):
        pu.gradient(model, xt, xd, iterations=3, omega=2.0, steps=good)
    with pytest.raises(TypeError, match="steps must be a pdunroll.StepRule or pdunroll.StepSizes"):
        pu.chambolle_pock(model, xt, iterations=3, steps=(0.1, 0.1))


def test_unknown_method_and_weights(setup):
    model, xt, xd = setup
    with pytest.raises(TypeError, match="method must be pdunroll.Full()"):
        pu.gradient(model, xt, xd, iterations=3, method="backprop")
    for name, cls in (("truncated", "Truncated"), ("asymptotic", "Asymptotic")):
        with pytest.raises(ValueError, match=rf'method="{name}" needs the number of backward '
                                             rf"steps: use pdunroll.{cls}\(b\)"):
            pu.gradient(model, xt, xd, iterations=3, method=name)
    with pytest.raises(ValueError, match="weights cannot be combined with Asymptotic"):
        pu.gradient(model, xt, xd, iterations=3, method=pu.Asymptotic(2), weights="harmonic")
    with pytest.raises(ValueError, match="weights cannot be combined with Implicit"):
        pu.vjp(model, xt, iterations=3, method="implicit", weights="uniform")
    with pytest.raises(ValueError, match="weights must sum to 1"):
        pu.gradient(model, xt, xd, iterations=3, weights=[0.5, 0.5, 0.5])
    with pytest.raises(ValueError, match="one entry per iteration"):
        pu.gradient(model, xt, xd, iterations=3, weights=[0.5, 0.5])
    with pytest.raises(ValueError, match="give x_true"):
        pu.gradient(model, xt, iterations=3)


def test_model_parts_are_checked():
    with pytest.raises(TypeError, match="operator must be a LinearOperator"):
        pu.AnalysisModel(np.eye(3), pu.L1Norm(), pu.Zero())
    with pytest.raises(TypeError, match="g must be a pdunroll Function"):
        pu.AnalysisModel(pu.DenseOperator(np.eye(3)), pu.L1Norm(), "linf")
    with pytest.raises(ValueError, match="matrix must be 2-D"):
        pu.DenseOperator(np.ones(3))


def test_mixed_devices(setup, torch_backend):
    """Arrays of one backend on two devices (torch's 'meta' device stands in for a GPU)."""
    import torch

    model, xt, _ = setup
    model = pu.AnalysisModel(pu.DenseOperator(torch.asarray(model.operator.params)), model.f,
                             model.g)
    with pytest.raises(ValueError, match="operator parameters is on device cpu but x_tilde is "
                                         "on device meta: move them to one device"):
        pu.chambolle_pock(model, torch.asarray(xt, device="meta"), iterations=3)


@pytest.mark.parametrize("kw,error,match", [
    ({"omega": "10"}, TypeError, "omega must be a positive number"),
    ({"omega": -1.0}, ValueError, "omega must be a positive finite number"),
    ({"omega": float("inf")}, ValueError, "omega must be a positive finite number"),
])
def test_bad_omega_is_named(setup, kw, error, match):
    model, xt, xd = setup
    with pytest.raises(error, match=match):
        pu.chambolle_pock(model, xt, iterations=3, **kw)
    with pytest.raises(error, match=match):
        pu.gradient(model, xt, xd, iterations=3, **kw)
    with pytest.raises(error, match=match):
        pu.step_sizes(model.operator, **kw)


@pytest.mark.parametrize("kw,error,match", [
    ({"omega": "1"}, TypeError, "omega must be a positive number"),  # None: pu.DEFAULT_OMEGA
    ({"theta": None}, TypeError, r"theta must be a number in \[0, 1\]"),
    ({"theta": "x"}, TypeError, r"theta must be a number in \[0, 1\]"),
    ({"theta": float("nan")}, ValueError, r"theta must lie in \[0, 1\]"),
    ({"sigma": "a", "tau": 0.1}, TypeError, "sigma must be a positive number"),
    ({"sigma": 0.1, "tau": np.array([0.1, 0.2])}, TypeError, "tau must be a positive number"),
    ({"sigma": float("nan"), "tau": 0.1}, ValueError, "sigma must be a positive finite number"),
    ({"op_norm": "x"}, TypeError, "op_norm must be a positive number"),
    ({"op_norm": 0.0}, ValueError, "op_norm must be a positive finite number"),
])
def test_bad_step_size_arguments_are_named(setup, kw, error, match):
    """step_sizes names a bad argument; StepSizes made directly checks the same numbers."""
    model, _, _ = setup
    with pytest.raises(error, match=match):
        pu.step_sizes(model.operator, **kw)
    if "omega" not in kw:
        given = {"sigma": 0.1, "tau": 0.1, "theta": 1.0, "op_norm": 1.0, **kw}
        with pytest.raises(error, match=match):
            pu.StepSizes(**given)


def test_step_sizes_needs_an_operator():
    with pytest.raises(TypeError, match="operator must be a LinearOperator"):
        pu.step_sizes(np.eye(3))


@pytest.mark.parametrize("weights", [[float("nan"), 0.5, 0.5], [float("inf"), -float("inf"), 1.0]])
def test_non_finite_weights(setup, weights):
    """NaN made the check |Σ α − 1| > 1e−6 false, so such weights used to pass and gave NaN."""
    model, xt, xd = setup
    with pytest.raises(ValueError, match="weights must be finite"):
        pu.gradient(model, xt, xd, iterations=3, weights=weights)
    with pytest.raises(ValueError, match="weights must be finite"):
        pu.chambolle_pock(model, xt, iterations=3, weights=weights)


def test_ergodic_weights_checks_iterations():
    with pytest.raises(ValueError, match="iterations must be an integer >= 1"):
        pu.ergodic_weights("harmonic", 0)
    with pytest.raises(TypeError, match="weights must be a 1-D sequence"):
        pu.ergodic_weights(np.full((3, 1), 1 / 3), 3)


def test_empty_batch(setup):
    """A batch of zero signals used to crash deep inside the implicit solver (max of an empty
    array) and divide by zero in unrolled_loss."""
    model, xt, xd = setup
    with pytest.raises(ValueError, match=r"x_tilde has an empty batch \(shape \(0, 16\)\)"):
        pu.gradient(model, xt[:0], xd[:0], iterations=3, method=pu.Implicit())
    with pytest.raises(ValueError, match="x_tilde has an empty batch"):
        pu.chambolle_pock(model, xt[:0], iterations=3)
    with pytest.raises(ValueError, match="x_tilde has an empty batch"):
        pu.unrolled_loss(model, xt[:0], xd[:0], iterations=3)


def test_custom_loss_output_is_checked(setup, torch_backend):
    """A gradient of the wrong shape used to broadcast silently against x̂ (a wrong result)."""
    model, xt, _ = setup
    with pytest.raises(TypeError, match="loss must be callable"):
        pu.gradient(model, xt, loss=3, iterations=3)
    bad = [
        (lambda x: 1.0, TypeError, r"loss\(x_hat\) must return a pair \(value, gradient\)"),
        (lambda x: ("a", x), TypeError, "the value returned by loss must be a real number"),
        (lambda x: (1.0, x[:1]), ValueError,
         r"the loss gradient must have the shape of x_hat \(3, 16\), got \(1, 16\)"),
        (lambda x: (1.0, x.astype(np.float32)), TypeError,
         "the loss gradient has dtype float32 but x_hat has float64"),
        (lambda x: (1.0, torch_backend.asarray(x)), TypeError,
         "the loss gradient is a torch array but x_hat is a numpy array"),
        (lambda x: (1.0, x * np.nan), ValueError, "the loss gradient contains non-finite values"),
    ]
    for loss, error, match in bad:
        with pytest.raises(error, match=match):
            pu.gradient(model, xt, loss=loss, iterations=3)
    res = pu.gradient(model, xt, loss=lambda x: (np.sum(x), np.ones_like(x)), iterations=3)
    assert type(res.loss) is float


def test_function_parameters_are_checked(setup, torch_backend):
    """Costs c of a LinearTerm: a float32 c was mixed silently into a float64 run, a torch c into
    a NumPy run failed deep inside, a wrong shape failed with a bare broadcast error or (shape
    (1, n) for a batch of 3) returned a gradient of the wrong shape (3, n)."""
    model, xt, xd = setup
    op = model.operator

    def run(f=None, g=None):
        f = pu.L1Norm() if f is None else f
        g = pu.NonNegative() if g is None else g
        return pu.gradient(pu.AnalysisModel(op, f, g), xt, xd, iterations=3)

    n = xt.shape[1]
    with pytest.raises(TypeError, match="g parameters has dtype float32 but the operator has "
                                        "float64"):
        run(g=pu.LinearTerm(np.ones(n, dtype=np.float32), pu.NonNegative()))
    with pytest.raises(TypeError, match="f parameters is a torch array but x_tilde is a numpy"):
        run(f=pu.LinearTerm(torch_backend.asarray(np.ones(n)), pu.L1Norm()))
    with pytest.raises(ValueError, match=r"the costs c of g must have shape \(16,\) or "
                                         r"\(batch, 16\) = \(3, 16\), got \(5,\)"):
        run(g=pu.LinearTerm(np.ones(5), pu.NonNegative()))
    with pytest.raises(ValueError, match=r"the costs c of f must have shape \(16,\) or "
                                         r"\(batch, 16\) = \(3, 16\), got \(1, 16\)"):
        run(f=pu.LinearTerm(np.ones((1, n)), pu.L1Norm()))
    # both accepted shapes run
    assert run(g=pu.LinearTerm(np.ones(n), pu.NonNegative())).g.shape == (n,)
    assert run(g=pu.LinearTerm(np.ones((3, n)), pu.NonNegative())).g.shape == (3, n)


def test_flags_models_and_callbacks_are_checked(setup):
    """relax_primal="no" used to switch the approximation on (a truthy string); a model that is
    not an AnalysisModel failed with AttributeError; a callback that is not callable only
    after the first step."""
    model, xt, xd = setup
    for make in (lambda: pu.Full(relax_primal="no"), lambda: pu.Truncated(2, relax_primal="no"),
                 lambda: pu.Asymptotic(2, relax_primal="no"),
                 lambda: pu.Implicit(relax_primal="no")):
        with pytest.raises(TypeError, match="relax_primal must be True or False, got 'no'"):
            make()
    with pytest.raises(TypeError, match="strict must be True or False, got 'no'"):
        pu.Implicit(strict="no")
    with pytest.raises(TypeError, match=r"model must be an AnalysisModel\(operator, f, g\), got "
                                        "DenseOperator"):
        pu.gradient(model.operator, xt, xd, iterations=3)
    with pytest.raises(TypeError, match=r"model must be an AnalysisModel"):
        pu.chambolle_pock("model", xt, iterations=3)
    with pytest.raises(TypeError, match="callback must be callable"):
        pu.chambolle_pock(model, xt, iterations=3, callback=3)
    res = pu.gradient(model, xt, xd, iterations=3, method=pu.Full(relax_primal=np.True_))
    assert res.loss > 0 and res.method.relax_primal is True


class _UnknownLipschitz(pu.LeastSquares):
    """A smooth part that does not tell its Lipschitz constant: the step is not checked
    beforehand, only the iterates afterwards."""

    def lipschitz(self):
        return None


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_diverging_forward_backward_is_an_error():
    """step = 100 ≫ 2/Lip: the iterates explode (to 1e87 and beyond); not a returned result."""
    A = np.array([[2.0, 0.5], [0.5, 1.0]])
    smooth = _UnknownLipschitz(pu.DenseOperator(A), np.ones((1, 2)))
    x0 = np.full((1, 2), 0.5)
    with pytest.raises(FloatingPointError, match="forward-backward diverged with step=100: "
                                                 r"the iterates grew to max \|x\| = 9\.\d+e\+15"):
        pu.forward_backward(smooth, pu.Zero(), x0, step=100.0, iterations=60)  # finite, huge
    with pytest.raises(FloatingPointError, match="= inf"):
        pu.forward_backward(smooth, pu.Zero(), x0, step=100.0, iterations=400)  # to inf/nan
    with pytest.raises(FloatingPointError, match="diverged"):
        pu.forward_backward_gradient(smooth, pu.Zero(), x0, np.zeros((1, 2)), step=100.0,
                                     iterations=60)
    ok = pu.forward_backward(smooth, pu.NonNegative(), x0, step=0.3, iterations=200)
    assert np.all(np.isfinite(ok.x)) and float(np.max(ok.residual)) < 1e-8
    # entropic steps from near the boundary grow geometrically at first, downhill: no error
    for iterations in (5, 20, 80):
        pu.forward_backward(smooth, pu.EntropicOrthant(), np.full((1, 2), 1e-9), step=0.3,
                            iterations=iterations)


def test_save_operator_checks_its_settings(tmp_path):
    model = pu.AnalysisModel(pu.DenseOperator(pu.dct_matrix(4)), f=pu.L1Norm(),
                             g=pu.LinfBall(0.1))
    path = tmp_path / "op.npz"
    with pytest.raises(ValueError, match="iterations must be an integer >= 1, got -3"):
        pu.save_operator(path, model, iterations=-3, omega=10.0)
    with pytest.raises(ValueError, match="omega must be a positive finite number, got nan"):
        pu.save_operator(path, model, iterations=3, omega=float("nan"))
    with pytest.raises(ValueError, match="weights"):
        pu.save_operator(path, model, iterations=3, omega=10.0, weights="geometric")
    assert not path.exists()


def test_forward_backward_refuses_steps_beyond_two_over_lipschitz():
    """A = I (Lip = 1), step = 100 on the orthant: x ← max(0, −99x + 100b) oscillates between 0
    and 100b without growing, so no divergence shows, and the result (zeros after an even
    number of steps) is meaningless; the step is refused beforehand, naming the bound."""
    smooth = pu.LeastSquares(pu.DenseOperator(np.eye(3)), np.ones((1, 3)))
    with pytest.raises(ValueError, match=r"step=100 is too large.*step < 2 / Lip = 2 "):
        pu.forward_backward(smooth, pu.NonNegative(), np.zeros((1, 3)), step=100.0,
                            iterations=10)
    with pytest.raises(ValueError, match="step=2 is too large"):
        pu.forward_backward_gradient(smooth, pu.NonNegative(), np.zeros((1, 3)),
                                     np.ones((1, 3)), step=2.0, iterations=10)
    ok = pu.forward_backward(smooth, pu.NonNegative(), np.zeros((1, 3)), step=1.9,
                             iterations=400)
    np.testing.assert_allclose(ok.x, np.ones((1, 3)), atol=1e-6)  # argmin ½‖x − 1‖², x ≥ 0


@pytest.mark.parametrize("g", [pu.EntropicOrthant(), pu.EntropicSimplex(),
                               pu.LinearTerm(np.ones(3), pu.EntropicOrthant())],
                         ids=repr)
def test_entropic_steps_refuse_a_start_on_the_boundary(g):
    """x·e^{−t∇f} started at 0 stays at 0: the start must be an interior point."""
    smooth = pu.LeastSquares(pu.DenseOperator(np.eye(3)), np.ones((1, 3)))
    x0 = np.array([[0.5, 0.0, 0.5]])
    with pytest.raises(ValueError, match="x0 must be positive everywhere"):
        pu.forward_backward(smooth, g, x0, step=0.5, iterations=5)
    with pytest.raises(ValueError, match="x0 must be positive everywhere"):
        pu.forward_backward_gradient(smooth, g, x0, np.ones((1, 3)), step=0.5, iterations=5)
    moved = pu.forward_backward(smooth, g, np.full((1, 3), 0.2), step=0.5, iterations=5).x
    assert not np.allclose(moved, 0.2)


def test_an_operator_refuses_arrays_of_another_backend(torch_backend):
    """NumPy's ``@`` with a torch tensor returns a torch tensor: without a check a NumPy
    operator's apply would silently compute on the wrong backend."""
    import torch

    op = pu.DenseOperator(pu.dct_matrix(8))
    x = torch.ones((2, 8), dtype=torch.float64)
    for call in (lambda: op.apply(x), lambda: op.adjoint(x),
                 lambda: op.param_vjp(x, np.ones((2, 8)))):
        with pytest.raises(TypeError, match=r"x is a torch array|y is a torch array|a is a "
                                            r"torch array.*one backend"):
            call()
    np.testing.assert_allclose(op.apply(np.ones((2, 8))), np.ones((2, 8)) @ pu.dct_matrix(8).T)


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_one_non_finite_entry_is_found_on_every_backend(backend, dtype, value):
    """The finiteness check (max and min on real floating arrays) finds a single NaN or ±inf
    anywhere, and passes the largest finite values (no overflow: nothing is summed)."""
    big = np.full((4, 5), np.finfo(dtype).max, dtype=dtype)
    pu.DenseOperator(backend.asarray(big, dtype))  # finite: accepted
    for index in ((0, 0), (3, 4), (2, 1)):
        bad = big.copy()
        bad[index] = value
        with pytest.raises(ValueError, match="matrix contains non-finite values"):
            pu.DenseOperator(backend.asarray(bad, dtype))


def test_finiteness_check_of_a_tensor_that_requires_grad_warns_nothing():
    """A torch parameter (requires_grad) is checked without a warning about turning a tensor
    that requires grad into a Python number, and a NaN in it is still found."""
    torch = pytest.importorskip("torch", reason="torch is not installed")
    import warnings

    K = torch.eye(4, dtype=torch.float64).requires_grad_()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pu.DenseOperator(K)
    bad = torch.eye(4, dtype=torch.float64)
    bad[1, 2] = float("nan")
    with pytest.raises(ValueError, match="matrix contains non-finite values"):
        pu.DenseOperator(bad.requires_grad_())
