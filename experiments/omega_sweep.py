"""The step-size ratio ω of an L-step speech network, chosen on validation frames: the SNR of
saved speech models (and of the DCT frame they started from) on the validation files of the
command line's split of train/ (85/15 by file, the split ``pdunroll train speech`` validates
on), at L iterations for each ω (σ = ω·0.99/‖K‖, τ = 0.99/(ω‖K‖)). At a small ω the L steps
have nearly converged; a large ω makes the primal steps small, and L of them move x̂ as far as
fewer steps of a smaller ω.

    python experiments/omega_sweep.py docs/_static/results/speech/operator_L10.npz -L 100 \
        --omega 30 100 200 300 400 500 700 --out runs/omega_L100.csv
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from _common import DEFAULT_DATA, write_csv

import pdunroll as pu
from pdunroll.learning.placement import Placement
from pdunroll.tasks import speech


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("models", type=Path, nargs="+", help="saved speech models (.npz)")
    p.add_argument("-L", "--iterations", type=int, required=True)
    p.add_argument("--omega", type=float, nargs="+", required=True)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA,
                   help="IEEE corpus folder with train/ (default as the other experiments)")
    p.add_argument("--backend", choices=("numpy", "torch"), default="torch")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    p.add_argument("--out", type=Path, required=True, help="CSV, one row per model and ω")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse(argv)
    loaded = {path.stem: pu.load_model(path) for path in args.models}
    n, m = (next(iter(loaded.values())).metadata[k] for k in ("n", "m"))
    data = speech.datasets(speech.SpeechOptions(data=args.data, n=n, m=m).resolved())
    move = Placement(args.backend, args.dtype).mover()
    x_tilde, x_true = (move(a) for a in data.sets[1])
    models = {"DCT frame start": data.start, **{k: v.model for k, v in loaded.items()}}
    models = {k: v.with_params(move(v.operator.params)) for k, v in models.items()}
    print(f"{x_tilde.shape[0]} validation frames of {args.data / 'train'}, L = "
          f"{args.iterations}", flush=True)
    rows = []
    for omega in args.omega:
        for name, model in models.items():
            x = pu.reconstruct(model, x_tilde, iterations=args.iterations, omega=omega)
            rows.append({"model": name, "L": args.iterations, "omega": omega,
                         "snr_db": round(pu.snr(x, x_true), 3),
                         "frames": x_tilde.shape[0], "backend": args.backend,
                         "dtype": args.dtype})
            print(f"ω = {omega:g}: {name} {rows[-1]['snr_db']:.2f} dB", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_csv(args.out, rows)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
