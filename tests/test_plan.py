"""The plan of an unrolled gradient (pdunroll.unroll.plan): checked when made, a misplaced or
invalid argument named there; immutable; the one configuration argument of the kernels."""

import dataclasses

import numpy as np
import pytest

import pdunroll as pu
from pdunroll.unroll.gradient import gradient_unchecked, squared_loss
from pdunroll.unroll.plan import Plan, make_plan


def test_swapped_or_invalid_arguments_are_named_when_the_plan_is_made():
    with pytest.raises(TypeError, match="method must be pdunroll.Full()"):
        make_plan(10, pu.Full())  # L and method swapped
    with pytest.raises(TypeError, match="method must be a pdunroll GradientMethod"):
        Plan(10, pu.Full())
    with pytest.raises(TypeError, match="iterations must be an integer"):
        Plan(pu.Full(), pu.Truncated(3))
    with pytest.raises(ValueError, match=r"Truncated\(b=5\) needs b <= iterations \(3\)"):
        make_plan(pu.Truncated(5), 3)
    with pytest.raises(ValueError, match="weights cannot be combined with Asymptotic"):
        make_plan(pu.Asymptotic(2), 3, "harmonic")
    with pytest.raises(ValueError, match="alphas must be a tuple of L = 3 ergodic weights"):
        Plan(pu.Full(), 3, (0.5, 0.5))
    with pytest.raises(TypeError, match="steps must be pdunroll StepSizes or None"):
        make_plan(pu.Full(), 3, None, "harmonic")  # weights given as steps
    with pytest.raises(TypeError, match="x_wanted must be True or False"):
        make_plan(pu.Full(), 3, x_wanted="no")


def test_a_plan_is_frozen_and_with_steps_makes_a_new_one():
    plan = make_plan("full", 4, "uniform")
    assert plan.method == pu.Full() and plan.b == 4 and plan.alphas == (0.25,) * 4
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.iterations = 5
    steps = pu.StepSizes(0.5, 0.5, 1.0, 1.0)
    timed = plan.with_steps(steps)
    assert timed.steps is steps and plan.steps is None and timed.alphas == plan.alphas
    assert make_plan(pu.Truncated(2), 4).b == 2


def test_the_kernel_with_a_plan_is_pu_gradient():
    rng = np.random.default_rng(0)
    model = pu.AnalysisModel(pu.DenseOperator(pu.dct_matrix(6)), pu.L1Norm(), pu.LinfBall(0.1))
    xt, x = rng.standard_normal((3, 6)), rng.standard_normal((3, 6))
    steps = pu.step_sizes(model.operator, omega=2.0)
    for method, weights in ((pu.Full(), "harmonic"), (pu.Asymptotic(3), None)):
        want = pu.gradient(model, xt, x, iterations=5, method=method, weights=weights,
                           steps=steps)
        got = gradient_unchecked(model, xt, squared_loss(x),
                                 make_plan(method, 5, weights, steps, x_wanted=False))
        np.testing.assert_array_equal(got.operator, want.operator)
        assert got.x_tilde is None and got.loss == want.loss
