"""The choice of `pdunroll train speech`'s defaults for real speech, and the quality targets at
L = 10 and L = 100: the command line itself, run on the IEEE corpus once per configuration.

Short runs (20 000 training frames, 3 epochs) compare ω, the learning rate, the ergodic
weights and an overcomplete operator (m = 640) at L = 10, and rates, gradients and a start from
the L = 10 operator at L = 100; full runs (all 56 699 frames, 8 or 16 epochs) check the best
short settings. Each run is `pdunroll train speech --data DATA --backend torch ... --out
OUT/<name>`; a run whose results.json exists is not run again, so the script resumes. Writes
OUT/speech_defaults.csv (validation SNR of the best epoch, test SNR of the DCT and the learned
operator, gain, wall time).

    python experiments/speech_defaults.py --out runs/speech_defaults        # about 1 h, 1 core
    python experiments/speech_defaults.py --only w30 full_w30               # some runs
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from _common import DEFAULT_DATA, ROOT, read_csv, write_csv

SHORT = ["--max-frames", "20000", "--epochs", "3"]
N = ["--m", "320"]  # K square (m = n), the papers' shape; m = 640 is the default since these runs
L100 = ["-L", "100", "--omega", "30", "--lr", "2e-4"]
ASYMPTOTIC = ["--method", "asymptotic", "--b", "30"]
RUNS = {  # name: arguments after the common ones
    **{f"w{w:g}": [*SHORT, *N, "--omega", str(w)] for w in (1, 3, 10, 20, 30, 40, 50, 100)},
    "w10_lr3e-3": [*SHORT, *N, "--omega", "10", "--lr", "3e-3"],
    "w30_lr5e-4": [*SHORT, *N, "--omega", "30", "--lr", "5e-4"],
    "w30_harmonic": [*SHORT, *N, "--omega", "30", "--weights", "harmonic"],
    "w30_uniform": [*SHORT, *N, "--omega", "30", "--weights", "uniform"],
    "w30_m640": [*SHORT, "--omega", "30", "--m", "640"],
    "full_w10": [*N, "--omega", "10"],
    "full_w30": [*N, "--omega", "30"],
    "full_w40": [*N, "--omega", "40"],
    "full_w30_uniform": [*N, "--omega", "30", "--weights", "uniform"],
    "full_w30_m640": ["--omega", "30", "--m", "640"],
    "full_w30_m640_e16": ["--omega", "30", "--m", "640", "--epochs", "16"],
    "full_L30_w30_m640": ["-L", "30", "--omega", "30", "--m", "640"],
    "L100_asym_w10": [*SHORT, *N, "-L", "100", *ASYMPTOTIC, "--omega", "10"],
    "L100_asym_w30": [*SHORT, *N, "-L", "100", *ASYMPTOTIC, "--omega", "30"],
    "L100_full_w30": [*SHORT, *N, "-L", "100", "--omega", "30"],
    "L100_asym_w30_lr2e-4_m640": [*SHORT, *L100, *ASYMPTOTIC, "--m", "640"],
    "L100_full_w30_lr2e-4_init_m640": [*SHORT, *L100, "--m", "640",
                                       "--init", "{out}/full_w30_m640/operator.npz"],
}


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA,
                   help="IEEE corpus folder with train/ and dev/ (default $PDUNROLL_SPEECH_DIR, "
                        "else ../shared/data/ieee_speech next to the repository)")
    p.add_argument("--out", type=Path, default=ROOT / "runs" / "speech_defaults")
    p.add_argument("--only", nargs="+", choices=sorted(RUNS), help="run only these")
    p.add_argument("--backend", default="torch", help="--backend of the runs (default torch)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse(argv)
    path = args.out / "speech_defaults.csv"
    done = {r["run"]: r for r in read_csv(path)}  # rows of earlier calls (e.g. with --only)
    for name in args.only or RUNS:
        out = args.out / name
        if not (out / "results.json").exists():
            extra = [a.format(out=args.out) for a in RUNS[name]]
            cmd = ["pdunroll", "train", "speech", "--data", str(args.data), "--backend",
                   args.backend, "--quiet", "--out", str(out), *extra]
            print(" ".join(cmd), flush=True)
            subprocess.run(cmd, check=True)
        done[name] = row(name, json.loads((out / "results.json").read_text()))
        print(done[name], flush=True)
        write_csv(path, [done[n] for n in RUNS if n in done])
    print(f"wrote {path}")
    return 0


def row(name: str, r: dict) -> dict:
    test = {t["method"]: t["snr_db"] for t in r["test"]}
    dct = test.get("DCT", test.get("DCT start"))
    s = r["settings"]
    best = r["best_epoch"]
    return {"run": name, "L": s["iterations"], "omega": s["omega"], "method": s["method"]["name"],
            "lr": s["lr"], "epochs": s["epochs"], "weights": s["weights"] or "last",
            "m": r.get("m", r["n"]), "init": "L=10 operator" if r.get("init") else "DCT",
            "train_frames": r["data"]["frames"]["train"],
            "best_epoch": best,
            "val_snr_db": round(r["epochs"][best - 1]["val_snr_db"], 3) if best else "",
            "test_snr_dct_db": round(dct, 3),
            "test_snr_learned_db": round(test["learned operator"], 3),
            "gain_db": round(test["learned operator"] - dct, 3),
            "wall_seconds": r["wall_seconds"]}


if __name__ == "__main__":
    sys.exit(main())
