"""Reproduce seed 004 Figures 4-6 on the exact 1-D bilevel toy problem (pdunroll.toy).

    python experiments/toy_1d.py [--out runs/toy] [--forward 200]

Writes to --out:
  fig4_energy_and_backiterations.png  energy E(x^k) − E* along the forward iterations (top) and
                                      the gradient estimate along back-iterations 1..L (bottom),
                                      at ϑ = 0.3 (left) and ϑ = 0 (right)
  fig5_theta03.png, fig6_theta0.png   ℒ(ϑ) with the tangent of every method's estimate for
                                      5, 10, 20, 50, 100, 200 back-iterations (the analytic
                                      tangent, resp. the subdifferential cone, shaded)
  gradients.csv                       theta, method, forward, back, estimate, reference, error
                                      (ϑ = 0: reference = "[lo, hi]", error = distance to it)
  energy.csv                          theta, method, iteration, energy gap
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from pdunroll import toy  # noqa: E402

BACKS = (5, 10, 20, 50, 100, 200)
THETAS = (0.3, 0.0)
UNROLLED = ("Proj.GD", "Proj.GD2", "Bregman-FB", "Bregman-FB2")
COLORS = dict(zip(toy.METHODS, ("tab:gray", "tab:blue", "tab:cyan", "tab:red", "tab:orange",
                                "tab:purple"), strict=True))


def reference(problem: toy.Toy, theta: float):
    return problem.analytic_gradient(theta) if theta else problem.subdifferential()


def error(estimate: float, ref) -> float:
    if isinstance(ref, tuple):
        lo, hi = ref
        return max(0.0, lo - estimate, estimate - hi)
    return abs(estimate - ref)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("--out", type=Path, default=Path("runs/toy"))
    parser.add_argument("--forward", type=int, default=200, help="forward iterations L")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    problem, L = toy.TOY, args.forward
    backs = tuple(b for b in BACKS if b <= L)

    rows = []
    estimates = {}  # (theta, method, back) -> estimate
    for theta in THETAS:
        ref = reference(problem, theta)
        for name, method in toy.METHODS.items():
            bs = range(1, L + 1) if name in UNROLLED else backs
            for b in bs:
                est = method(theta, L, b)
                estimates[theta, name, b] = est
                if b in backs:
                    rows.append([theta, name, L, b, f"{est:.17g}",
                                 str(list(ref)) if isinstance(ref, tuple) else f"{ref:.17g}",
                                 f"{error(est, ref):.3e}"])
    with open(args.out / "gradients.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["theta", "method", "forward", "back", "estimate", "reference", "error"])
        w.writerows(rows)

    traces = {theta: toy.energies(theta, L) for theta in THETAS}
    with open(args.out / "energy.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["theta", "method", "iteration", "energy_gap"])
        for theta, tr in traces.items():
            for name, values in tr.items():
                w.writerows([theta, name, k + 1, f"{v:.6e}"] for k, v in enumerate(values))

    fig, axes = plt.subplots(2, 2, figsize=(11, 7))
    for col, theta in enumerate(THETAS):
        ax = axes[0, col]
        for name, values in traces[theta].items():
            vals = np.maximum(np.asarray(values), 1e-17)
            ax.semilogy(np.arange(1, L + 1), vals, label=name, color=COLORS[name])
        ax.set(title=f"energy, ϑ = {theta}", xlabel="forward iteration", ylabel="E(x^k) − E*")
        ax.legend(fontsize=8)
        ax = axes[1, col]
        for name in UNROLLED:
            ax.plot(np.arange(1, L + 1), [estimates[theta, name, b] for b in range(1, L + 1)],
                    label=name, color=COLORS[name],
                    linestyle="--" if name.endswith("2") else "-")
        ref = reference(problem, theta)
        if isinstance(ref, tuple):
            ax.axhspan(*ref, color="lightgreen", alpha=0.4, label="subdifferential")
        else:
            ax.axhline(ref, color="k", linewidth=0.8, label="analytic")
        ax.set(title=f"gradient along back-iterations, ϑ = {theta}", xlabel="back-iterations",
               ylabel="dℒ/dϑ estimate", xscale="log")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out / "fig4_energy_and_backiterations.png", dpi=120)
    plt.close(fig)

    for theta, fname in zip(THETAS, ("fig5_theta03.png", "fig6_theta0.png"), strict=True):
        ref = reference(problem, theta)
        fig, axes = plt.subplots(2, 3, figsize=(12, 7), sharey=True)
        grid = np.linspace(theta - 0.3, theta + 0.3, 301)
        curve = np.array([problem.loss(t) for t in grid])
        for ax, b in zip(axes.ravel(), backs, strict=False):
            ax.plot(grid, curve, color="k", linewidth=1.5, label="ℒ(ϑ)")
            base = problem.loss(theta)
            slopes = ref if isinstance(ref, tuple) else (ref, ref)
            ax.fill_between(grid, base + slopes[0] * (grid - theta),
                            base + slopes[1] * (grid - theta), color="lightgreen", alpha=0.5,
                            label="subdifferential" if isinstance(ref, tuple) else None)
            for name in toy.METHODS:
                ax.plot(grid, base + estimates[theta, name, b] * (grid - theta),
                        color=COLORS[name], linewidth=0.9, label=name)
            ax.set(title=f"ϑ = {theta}, {b} back-iterations", xlabel="ϑ",
                   ylim=(curve.min() - 0.05, curve.max() + 0.05))
        axes[0, 0].legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(args.out / fname, dpi=120)
        plt.close(fig)

    print(f"wrote {args.out}/: gradients.csv, energy.csv and 3 figures")
    print(f"{'method':16s} " + " ".join(f"{'|err| b=' + str(b):>12s}" for b in backs))
    for theta in THETAS:
        print(f"theta = {theta}")
        for name in toy.METHODS:
            errs = [error(estimates[theta, name, b], reference(problem, theta)) for b in backs]
            print(f"{name:16s} " + " ".join(f"{e:12.3e}" for e in errs))


if __name__ == "__main__":
    main()
