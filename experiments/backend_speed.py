"""Speed of one training step (batch 32 of IEEE speech frames, n = 320, K = DCT, full
backpropagation) per array backend and dtype: the time per pdunroll.gradient call and the
speed-up over NumPy float64. Writes ``backend_speed.csv``.

    OMP_NUM_THREADS=1 python experiments/backend_speed.py --L 10 100
"""

from __future__ import annotations

import argparse
import sys
import time

from _common import add_data_args, dct_model, ieee_frames, np, pu, write_csv


def convert(name, dtype):
    if name == "numpy":
        return lambda a: np.asarray(a, dtype=dtype)
    if name == "torch":
        import torch

        torch.set_num_threads(1)
        return lambda a: torch.asarray(np.asarray(a, dtype=dtype))
    if name == "jax":
        import jax

        jax.config.update("jax_enable_x64", True)
        return lambda a: jax.numpy.asarray(np.asarray(a, dtype=dtype))
    raise ValueError(name)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_data_args(p, out="backend_speed")
    p.add_argument("--L", type=int, nargs="+", default=[10, 100])
    p.add_argument("--backends", nargs="+", default=["numpy", "torch", "jax"])
    p.add_argument("--seconds", type=float, default=4.0, help="time per measurement")
    args = p.parse_args(argv)
    frames = ieee_frames(args.data, n=320, bitrate=4, max_train=32, max_test=32,
                         seed=args.seed)[0]
    rows = []
    for L in args.L:
        for name in args.backends:
            for dtype in ("float64", "float32"):
                move = convert(name, dtype)
                model = dct_model(320, frames.eta)
                model = model.with_params(move(model.operator.params))
                xt, xs = move(frames.x_tilde), move(frames.x_true)
                steps = pu.step_sizes(model.operator, omega=10.0)
                pu.gradient(model, xt, xs, iterations=L, steps=steps)  # warm-up
                n, tic = 0, time.perf_counter()
                while time.perf_counter() - tic < args.seconds:
                    res = pu.gradient(model, xt, xs, iterations=L, steps=steps)
                    float(res.loss)
                    n += 1
                ms = 1000 * (time.perf_counter() - tic) / n
                rows.append({"L": L, "backend": name, "dtype": dtype, "ms_per_step": round(ms, 2),
                             "calls": n})
                print(rows[-1], flush=True)
    for r in rows:
        base = next(q for q in rows if q["L"] == r["L"] and q["backend"] == "numpy"
                    and q["dtype"] == "float64")
        r["speedup_vs_numpy64"] = round(base["ms_per_step"] / r["ms_per_step"], 2)
    out = write_csv(args.out / "backend_speed.csv", rows)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
