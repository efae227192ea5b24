"""The fixed-point column of EUSIPCO Fig. 3 at a very large L_inference (10⁵) for operators that
``eusipco_fig3.py`` saved (``K_L{L}_{variant}_{convention}.npy``) and for the DCT, on the first
``--frames`` test frames (the frames of that script's subsets; 0: all 14 260): test MSE with each
convention's own step sizes. Writes ``--out`` (default ``linf.csv`` in the first run folder; a
row per operator, rewritten after each; reruns skip the operators already in it, so an
interrupted run resumes). With ``--only`` the operators run in the order given.

    python experiments/eusipco_linf.py runs/eusipco_fig3_n320 --l-inf 100000 --frames 16
    python experiments/eusipco_linf.py runs/eusipco_fig3_n320 --l-inf 10000 --frames 0 \
        --out runs/linf_1e4_all.csv --only DCT_exact eusipco_fig3_n320/K_L10_full_released
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

from _common import DEFAULT_DATA, dct_model, ieee_frames, np, write_csv
from eusipco_fig3 import test_mse


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", type=Path, nargs="+", help="folders with K_*.npy")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--l-inf", type=int, default=100_000)
    p.add_argument("--frames", type=int, default=16, help="first test frames (0: all)")
    p.add_argument("--out", type=Path, help="the CSV (default: linf.csv in the first run folder)")
    p.add_argument("--only", nargs="*",
                   help="DCT_exact, DCT_released or RUN_FOLDER_NAME/K_stem to evaluate, in this "
                        "order (default all)")
    p.add_argument("--n", type=int, default=320, help="frame length of the operators")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    test = ieee_frames(args.data, n=args.n, bitrate=4, max_train=32, max_test=None,
                       seed=args.seed)[1]
    frames = args.frames or None
    xt = test.x_tilde[:frames].astype(np.float32)
    xs = test.x_true[:frames].astype(np.float32)
    out = args.out or args.runs[0] / "linf.csv"
    rows = list(csv.DictReader(open(out, newline=""))) if out.exists() else []
    done = {r["operator"] for r in rows}
    dct = dct_model(args.n, test.eta)
    jobs = [(f"DCT_{c}", dct.with_params(dct.operator.params.astype(np.float32)), c)
            for c in ("exact", "released")]
    for run in args.runs:
        for path in sorted(run.glob("K_L*.npy")):
            jobs.append((f"{run.name}/{path.stem}", dct.with_params(np.load(path)),
                         path.stem.rsplit("_", 1)[1]))
    if args.only:
        order = {name: i for i, name in enumerate(args.only)}
        jobs = sorted((j for j in jobs if j[0] in order), key=lambda j: order[j[0]])
    for name, model, convention in jobs:
        if name in done:
            continue
        tic = time.perf_counter()
        rows.append({"operator": name, "convention": convention, "L_inf": args.l_inf,
                     "frames": len(xt), "test_mse": test_mse(model, xt, xs, args.l_inf,
                                                             convention),
                     "seconds": round(time.perf_counter() - tic, 1)})
        print(rows[-1], flush=True)
        write_csv(out, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
