"""The released code's conventions against the papers' (Brauer & Lorenz, EUSIPCO 2023, and its
released code): on a batch of IEEE speech frames (n = 320, 4 bits, K = DCT + small noise),

* the median primal-dual gap after L steps with σ, τ from ‖K‖₂ (pdunroll's default) and from
  ‖K‖_F (``step_sizes(norm="frobenius")``, the released code's ``tf.linalg.norm``);
* the relative distance in ∇_K between the exact gradient, the released primal mask
  (``released_mask=1.0``) and the all-ones relaxation (``relax_primal=True``), and the fraction
  of primal mask entries that are 1 in each.

Writes ``conventions.csv``.

    python experiments/conventions.py --L 10 100 1000
"""

from __future__ import annotations

import argparse
import sys

from _common import add_data_args, dct_model, ieee_frames, np, pu, write_csv


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_data_args(p, out="conventions")
    p.add_argument("--L", type=int, nargs="+", default=[10, 100, 1000])
    p.add_argument("--batch", type=int, default=32)
    args = p.parse_args(argv)
    frames = ieee_frames(args.data, n=320, bitrate=4, max_train=args.batch, max_test=8,
                         seed=args.seed)[0]
    model = dct_model(320, frames.eta)
    rng = np.random.default_rng(args.seed)
    model = model.with_params(model.operator.params + 0.002 * rng.standard_normal((320, 320)))
    xt, xs = frames.x_tilde, frames.x_true
    rows = []
    for L in args.L:
        row = {"L": L, "frames": len(xt)}
        for norm in ("spectral", "frobenius"):
            steps = pu.step_sizes(model.operator, omega=10.0, norm=norm)
            res = pu.chambolle_pock(model, xt, iterations=L, steps=steps)
            row[f"median_gap_{norm}"] = float(np.median(res.gap))
            if norm == "frobenius":
                row["sigma_ratio_spectral_over_frobenius"] = (
                    pu.step_sizes(model.operator, omega=10.0).sigma / steps.sigma)
            # the primal masks at the last step: exact 1{|z_P| ≤ η}, released 1{|z_P − x̃| ≤ 1}
            grads = {}
            for name, method in (("exact", pu.Full()),
                                 ("released", pu.Full(released_mask=1.0)),
                                 ("relaxed", pu.Full(relax_primal=True))):
                grads[name] = pu.gradient(model, xt, xs, iterations=L, method=method,
                                          steps=steps).operator
            for a, b in (("released", "exact"), ("relaxed", "released"), ("relaxed", "exact")):
                row[f"{norm}_grad_{a}_vs_{b}"] = float(
                    np.linalg.norm(grads[a] - grads[b]) / np.linalg.norm(grads[b]))
            r_prev = pu.chambolle_pock(model, xt, iterations=L - 1, steps=steps).r
            y = res.y
            z_p = r_prev - steps.tau * (y @ model.operator.matrix)
            row[f"{norm}_mask_exact_ones"] = float(np.mean(np.abs(z_p) <= frames.eta))
            row[f"{norm}_mask_released_ones"] = float(np.mean(np.abs(z_p - xt) <= 1.0))
        rows.append(row)
        print(row, flush=True)
    out = write_csv(args.out / "conventions.csv", rows)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
