"""The exact 1-D benchmark of Ochs et al. (2016), §7 (docs, Mathematics §8): every unrolled and
fixed-point method converges to the analytic derivative at ϑ = 0.3 and stays in the
subdifferential at ϑ = 0."""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

import numpy as np
import pytest
from oracles import directional_fd

import pdunroll as pu
from pdunroll import toy

BACKS = (5, 10, 20, 50, 100, 200)
EXACT_METHODS = ("Proj.GD", "Proj.GD2", "Bregman-FB", "Bregman-FB2", "Bregman-FB-impl")


def test_analytic_gradient_matches_finite_differences():
    for theta in (0.3, 0.7, -0.4, 1.5):
        fd = directional_fd(lambda t: toy.TOY.loss(float(t)), np.float64(theta), 1.0, eps=1e-6)
        assert toy.TOY.analytic_gradient(theta) == pytest.approx(fd, rel=1e-8, abs=1e-10)
    lo, hi = toy.TOY.subdifferential()
    assert (lo, hi) == pytest.approx((toy.TOY.lam * toy.TOY.b * -toy.TOY.target, 0.0))
    with pytest.raises(ValueError, match="subdifferential"):
        toy.TOY.analytic_gradient(0.0)


@pytest.mark.parametrize("name", EXACT_METHODS)
def test_methods_converge_to_the_analytic_gradient_at_0_3(name):
    """200 forward and 200 back-iterations: error ≤ 1e-12 (measured ≈ 1e-16); the error
    shrinks with the number of back-iterations for the unrolled methods."""
    method, want = toy.METHODS[name], toy.TOY.analytic_gradient(0.3)
    errors = [abs(method(0.3, 200, b) - want) for b in BACKS]
    assert errors[-1] <= 1e-12
    if not name.endswith("impl"):
        assert errors[0] > 1e-3 and errors[2] < errors[0] / 1000


def test_smoothed_impl_error_is_the_barrier_bias():
    """Smoothed-impl is exact for the log-barrier problem: its error is O(μ), not O(1/L)."""
    want = toy.TOY.analytic_gradient(0.3)
    err = abs(toy.smoothed_impl(0.3, 200) - want)
    err_small = abs(toy.smoothed_impl(0.3, 200, toy=toy.Toy(mu=1e-5)) - want)
    assert 1e-5 < err < 1e-3
    assert err_small < err / 50


@pytest.mark.parametrize("name", list(toy.METHODS))
def test_every_estimate_lies_in_the_subdifferential_at_0(name):
    lo, hi = toy.TOY.subdifferential()
    for b in BACKS:
        est = toy.METHODS[name](0.0, 200, b)
        assert lo - 1e-12 <= est <= hi + 1e-12


def test_projected_gradient_picks_a_boundary_and_bregman_the_interior_at_0():
    """Seed 004 Fig. 6: Proj.GD(2) estimate a subgradient at the boundary (here 0: the
    projection's derivative at the kink z = 0 is taken as 0), the other methods inside."""
    lo, hi = toy.TOY.subdifferential()
    assert toy.proj_gd(0.0) in (pytest.approx(lo, rel=1e-12), pytest.approx(hi, abs=1e-12))
    assert toy.proj_gd2(0.0) in (pytest.approx(lo, rel=1e-12), pytest.approx(hi, abs=1e-12))
    for method in (toy.bregman_fb, toy.bregman_fb2, toy.bregman_fb_impl, toy.smoothed_impl):
        assert lo + 0.1 < method(0.0) < hi - 0.1


@pytest.mark.parametrize("g", [pu.NonNegative(), pu.EntropicOrthant()], ids=repr)
def test_unrolled_estimate_is_the_derivative_of_the_unrolled_loss(g):
    """back = forward: the exact derivative of ϑ ↦ ½(x^L(ϑ) − g)², by central differences."""
    L = 30

    def loss(theta):
        x = pu.forward_backward(toy.TOY.smooth(float(theta)), g, np.asarray([[toy.TOY.x0]]),
                                step=toy.TOY.step, iterations=L).x
        return 0.5 * float((x[0, 0] - toy.TOY.target) ** 2)

    method = toy.bregman_fb if isinstance(g, pu.EntropicOrthant) else toy.proj_gd
    fd = directional_fd(loss, np.float64(0.3), 1.0, eps=1e-6)
    assert method(0.3, L, L) == pytest.approx(fd, rel=1e-8)


def test_energies_decrease_to_the_optimum():
    tr = toy.energies(0.3, 200)
    assert tr["Proj.GD"][-1] < 1e-15 and tr["Bregman-FB"][-1] < 1e-15
    assert tr["Smoothed-impl"][-1] < 1e-5  # the barrier problem's optimum is off by O(μ)
    tr0 = toy.energies(0.0, 200)
    assert tr0["Proj.GD"][0] == 0.0  # one step at ϑ = 0 (Ochs et al. 2016, Fig. 4)
    assert 0 < tr0["Bregman-FB"][-1] < tr0["Bregman-FB"][10]  # sublinear at the kink


def test_script_writes_figures_and_csv(tmp_path):
    path = Path(__file__).resolve().parents[1] / "experiments" / "toy_1d.py"
    spec = importlib.util.spec_from_file_location("toy_1d", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(["--out", str(tmp_path), "--forward", "20"])
    for name in ("fig4_energy_and_backiterations.png", "fig5_theta03.png", "fig6_theta0.png"):
        assert (tmp_path / name).stat().st_size > 10_000
    with open(tmp_path / "gradients.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 2 * 6 * 3  # 2 thetas, 6 methods, back in (5, 10, 20)
    assert {r["method"] for r in rows} == set(toy.METHODS)
    assert all(float(r["error"]) == 0 for r in rows if float(r["theta"]) == 0)
