"""The one step-size rule: σ = ω·margin/‖K‖, τ = margin/(ω‖K‖), made by pu.StepRule for every
entry point, and a training run that follows it step by step."""

import numpy as np
import pytest

import pdunroll as pu


def _model(K, eta=0.1):
    return pu.AnalysisModel(pu.DenseOperator(K), pu.L1Norm(), pu.LinfBall(eta))


def _data(n=8, batch=6, seed=0):
    rng = np.random.default_rng(seed)
    K = pu.dct_matrix(n) + 0.2 * rng.standard_normal((n, n))
    x = rng.standard_normal((batch, n))
    return K, x + 0.05 * rng.standard_normal((batch, n)), x


def test_rule_makes_the_formula_from_the_spectral_or_frobenius_norm():
    K, _, _ = _data()
    op = pu.DenseOperator(K)
    s2, sf = np.linalg.norm(K, 2), np.linalg.norm(K)
    for rule, norm in ((pu.StepRule(omega=3.0, margin=0.9), s2),
                       (pu.StepRule(omega=3.0, norm="frobenius", theta=0.5), sf)):
        steps = rule.sizes(op)
        assert steps.op_norm == pytest.approx(norm, rel=1e-6)
        assert steps.sigma == pytest.approx(3.0 * rule.margin / norm, rel=1e-6)
        assert steps.tau == pytest.approx(rule.margin / (3.0 * norm), rel=1e-6)
        assert steps.theta == rule.theta
        assert steps.sigma * steps.tau * steps.op_norm ** 2 == pytest.approx(rule.margin ** 2)


def test_settings_round_trip_and_the_library_default():
    rule = pu.StepRule(omega=30.0, norm="frobenius", theta=0.5, margin=0.95)
    assert pu.StepRule.from_settings(rule.settings()) == rule
    assert pu.StepRule().omega == pu.DEFAULT_OMEGA
    with pytest.raises(ValueError, match="unknown step rule settings"):
        pu.StepRule.from_settings({"omega": 1.0, "sigma": 2.0})


@pytest.mark.parametrize("kw,error,match", [
    ({"omega": True}, TypeError, "omega must be a positive number"),
    ({"omega": "3"}, TypeError, "omega must be a positive number"),
    ({"omega": 0.0}, ValueError, "omega must be a positive finite number"),
    ({"omega": float("nan")}, ValueError, "omega must be a positive finite number"),
    ({"norm": "nuclear"}, ValueError, "norm must be one of"),
    ({"norm": 2}, ValueError, "norm must be one of"),
    ({"theta": 1.5}, ValueError, r"theta must lie in \[0, 1\]"),
    ({"theta": False}, TypeError, r"theta must be a number in \[0, 1\]"),
    ({"margin": 1.0}, ValueError, r"margin must lie in \(0, 1\)"),
    ({"margin": None}, TypeError, r"margin must be a number in \(0, 1\)"),
])
def test_bad_rule_fields_are_named(kw, error, match):
    with pytest.raises(error, match=match):
        pu.StepRule(**kw)


def test_omega_is_shorthand_for_a_rule_everywhere():
    K, xt, x = _data()
    model = _model(K)
    a = pu.chambolle_pock(model, xt, iterations=7, omega=4.0)
    b = pu.chambolle_pock(model, xt, iterations=7, steps=pu.StepRule(omega=4.0))
    np.testing.assert_array_equal(a.x, b.x)
    assert a.steps == b.steps
    default = pu.chambolle_pock(model, xt, iterations=7)
    assert default.steps == pu.StepRule().sizes(model.operator)
    ga = pu.gradient(model, xt, x, iterations=7, omega=4.0)
    gb = pu.gradient(model, xt, x, iterations=7, steps=pu.StepRule(omega=4.0))
    np.testing.assert_array_equal(ga.operator, gb.operator)
    ra = pu.reconstruct(model, xt, iterations=7, omega=4.0)
    np.testing.assert_array_equal(ra, a.x)
    rb = pu.reconstruct(model, xt, iterations=7, steps=a.steps)
    np.testing.assert_array_equal(rb, a.x)
    for call in (lambda: pu.chambolle_pock(model, xt, iterations=3, omega=2.0,
                                           steps=pu.StepRule()),
                 lambda: pu.reconstruct(model, xt, iterations=3, omega=2.0, steps=a.steps),
                 lambda: pu.train(model, xt, x, iterations=3, omega=2.0, steps=pu.StepRule(),
                                  progress=False)):
        with pytest.raises(ValueError, match="give omega or steps, not both"):
            call()
    with pytest.raises(ValueError, match="op_norm with a step rule"):
        pu.reconstruct(model, xt, iterations=3, steps=a.steps, op_norm=2.0)


def test_train_follows_the_rule_step_by_step():
    """Every step's loss equals pu.gradient with the StepSizes the rule makes from that step's
    ‖K‖ (float64, 1e-12): the recursion written out with explicit step sizes and SGD."""
    K, xt, x = _data()
    n, lr, omega = xt.shape[0], 0.05, 3.0
    res = pu.train(_model(K), xt, x, iterations=10, steps=pu.StepRule(omega=omega),
                   optimizer="sgd", lr=lr, epochs=4, batch_size=n, progress=False)
    norm = pu.estimate_norm(pu.DenseOperator(K)).value
    for k in range(4):
        steps = pu.StepSizes(omega * 0.99 / norm, 0.99 / (omega * norm), 1.0, norm)
        ref = pu.gradient(_model(K), xt, x, iterations=10, steps=steps)
        assert res.history.step_loss[k] == pytest.approx(ref.loss / n, rel=1e-12)
        K = K - lr * ref.operator / n
        norm = res.history.step_op_norm[k]
        assert norm == pytest.approx(np.linalg.norm(K, 2), rel=1e-6)
        assert norm / 0.99 >= np.linalg.norm(K, 2)  # the margin covers the estimate
    np.testing.assert_allclose(res.final_model.operator.params, K, rtol=1e-12, atol=1e-14)


def test_train_with_fixed_steps_keeps_them():
    K, xt, x = _data()
    n, lr = xt.shape[0], 0.05
    steps = pu.step_sizes(pu.DenseOperator(K), omega=2.0)
    res = pu.train(_model(K), xt, x, iterations=10, steps=steps, optimizer="sgd", lr=lr,
                   epochs=3, batch_size=n, progress=False)
    for k in range(3):
        ref = pu.gradient(_model(K), xt, x, iterations=10, steps=steps)
        assert res.history.step_loss[k] == pytest.approx(ref.loss / n, rel=1e-12)
        K = K - lr * ref.operator / n


def test_frobenius_rule_in_training_follows_the_frobenius_norm():
    """The released code's convention (docs, "Gradient modes"): ‖K‖_F after every update."""
    K, xt, x = _data()
    n, lr, rule = xt.shape[0], 0.05, pu.StepRule(omega=10.0, norm="frobenius")
    res = pu.train(_model(K), xt, x, iterations=10, steps=rule, optimizer="sgd", lr=lr,
                   epochs=3, batch_size=n, progress=False)
    for k in range(3):
        steps = rule.sizes(pu.DenseOperator(K))
        ref = pu.gradient(_model(K), xt, x, iterations=10, steps=steps)
        assert res.history.step_loss[k] == pytest.approx(ref.loss / n, rel=1e-12)
        K = K - lr * ref.operator / n
        assert res.history.step_op_norm[k] == pytest.approx(np.linalg.norm(K), rel=1e-12)


@pytest.mark.parametrize("iterations", [10, 30])
def test_warm_started_refresh_stays_within_the_margin(backend, iterations):
    """‖K‖ refreshed by the layer's (10) and the training loop's (30) number of warm-started
    power iterations after each change of K: estimate / margin ≥ σ_max of an exact SVD, so
    σ τ σ_max² ≤ 1. The changes (each entry ± 0.005, ‖K‖ changing by up to 4 % a step) are
    larger than training steps make; a DCT plus noise has clustered singular values, the
    slow case of a power iteration."""
    rng = np.random.default_rng(3)
    K = pu.dct_matrix(32) + 0.05 * rng.standard_normal((32, 32))
    rule = pu.StepRule()
    est = rule.initial_norm(pu.DenseOperator(backend.asarray(K)))
    vector = est.vector
    for _ in range(30):
        K = K + 0.005 * rng.standard_normal(K.shape)
        norm, vector = rule.refresh(pu.DenseOperator(backend.asarray(K)), vector, iterations)
        exact = np.linalg.norm(K, 2)
        assert float(norm) <= exact * (1 + 1e-12)
        assert float(norm) / rule.margin >= exact
        steps = rule.for_norm(norm)
        assert float(steps.sigma) * float(steps.tau) * exact ** 2 <= 1
