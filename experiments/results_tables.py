"""The tables of the docs' Results page (docs/results.md) from the CSVs the experiment scripts
wrote under docs/_static/results/: prints Markdown to paste (or to diff against the page).

    python experiments/results_tables.py
    python experiments/results_tables.py --merge-fig3 OUT.csv RUN_DIR:LR [RUN_DIR:LR ...]
"""

from __future__ import annotations

import csv
import math
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parents[1] / "docs" / "_static" / "results"


def rows(name):
    path = RESULTS / name
    if not path.exists():
        return []
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def table(header, body):
    out = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in body]
    return "\n".join(out)


def db(mse_ref, mse):
    return f"{10 * math.log10(float(mse_ref) / float(mse)):+.2f}"


def fig3():
    body = []
    for r in rows("eusipco_fig3/fig3.csv"):
        q = float(r["quantized_mse"])
        body.append([r["L_train"], r["convention"], r["variant"], r.get("lr", ""), r["steps"],
                     f"{float(r['test_mse_L']):.3e}", f"{float(r['dct_mse_L']):.3e}",
                     db(r["dct_mse_L"], r["test_mse_L"]), db(q, r["test_mse_L"]),
                     f"{float(r['test_mse_Linf1']):.3e}", f"{float(r['dct_mse_Linf1']):.3e}",
                     r["train_seconds"]])
    return table(["L_train", "convention", "gradient", "Adam rate", "steps", "test MSE (L_inf = L)",
                  "DCT (L)", "gain over DCT [dB]", "gain over x̃ [dB]",
                  "test MSE (L_inf = 10⁴)", "DCT (10⁴)", "training [s]"], body)


def _operator(name):
    return (name.replace("eusipco_fig3_n320_exact_lr5e-4/", "exact, Adam 5e-4: ")
            .replace("eusipco_fig3_n320/", "Adam 2e-3: "))


def _linf_order(row):
    """Convention, then its DCT, then by run folder, L_training and gradient."""
    folder, _, stem = row["operator"].rpartition("/")
    if not folder:  # DCT_exact, DCT_released
        return row["convention"], 0, "", 0, ""
    _, length, variant = stem.split("_")[:3]  # K_L{L}_{variant}_{convention}
    return row["convention"], 1, folder, int(length[1:]), variant


def linf(name="eusipco_fig3/linf.csv", l_inf="10⁵"):
    """The fixed-point column: test MSE at a large L_inference, and the gain over the DCT of the
    same convention where the CSV has that DCT row; sorted by convention and L_training."""
    got = sorted(rows(name), key=_linf_order)
    dct = {r["convention"]: r["test_mse"] for r in got if r["operator"].startswith("DCT_")}
    body = [[_operator(r["operator"]), r["convention"], r["frames"],
             f"{float(r['test_mse']):.3e}",
             db(dct[r["convention"]], r["test_mse"]) if r["convention"] in dct else "",
             r["seconds"]] for r in got]
    return table(["operator", "convention (step sizes)", "test frames",
                  f"test MSE, L_inference = {l_inf}", "gain over DCT [dB]", "seconds"], body)


def linf_all():
    return linf("eusipco_fig3/linf_1e4_all.csv", "10⁴")


def fig12():
    body = [[r["d"], r["weighting"], f"{float(r['initial_train_loss']):.4f}",
             f"{float(r['final_train_loss']):.4f}", f"{float(r['last_epoch_mean_grad_norm']):.4f}",
             f"{float(r['test_mse']):.3e}", r["train_seconds"]]
            for r in rows("ergodic_fig12/fig12.csv")]
    return table(["d", "unrolling", "train loss, DCT", "train loss, learned",
                  "mean ‖∇_K‖, last epoch", "test MSE", "training [s]"], body)


def denoise():
    body = [[r["sigma_255"], r["model"], r["factor"], r["psnr_camera"], r["psnr_coins"],
             r["psnr_chelsea"], r["psnr_mean"], r["ssim_mean"]]
            for r in rows("denoise/denoise.csv")]
    return table(["σ·255", "model", "radius factor c (validation)", "PSNR camera",
                  "PSNR coins", "PSNR chelsea", "mean PSNR [dB]", "mean SSIM"], body)


def speech_defaults():
    body = [[r["run"], r["L"], r["omega"], r["method"], r["lr"], r["weights"], r["m"], r["init"],
             r["train_frames"], r["epochs"], r["best_epoch"], r["val_snr_db"],
             r["test_snr_dct_db"], r["test_snr_learned_db"], f"{float(r['gain_db']):+.2f}",
             r["wall_seconds"]]
            for r in rows("speech_defaults/speech_defaults.csv")]
    return table(["run", "L", "ω", "gradient", "Adam rate", "output", "m", "start",
                  "train frames", "epochs", "best epoch", "val SNR [dB]", "test SNR, DCT [dB]",
                  "test SNR, learned [dB]", "gain [dB]", "wall [s]"], body)


def speed():
    body = [[r["L"], r["backend"], r["dtype"], r["ms_per_step"], r["speedup_vs_numpy64"]]
            for r in rows("backend_speed.csv")]
    return table(["L", "backend", "dtype", "ms per gradient", "speed-up"], body)


def conventions():
    body = []
    for r in rows("conventions/conventions.csv"):
        for norm in ("spectral", "frobenius"):
            body.append([r["L"], norm, f"{float(r[f'median_gap_{norm}']):.3g}",
                         f"{float(r[f'{norm}_mask_exact_ones']):.1%}",
                         f"{float(r[f'{norm}_mask_released_ones']):.1%}",
                         f"{float(r[f'{norm}_grad_released_vs_exact']):.1%}",
                         f"{float(r[f'{norm}_grad_relaxed_vs_released']):.1%}"])
    return table(["L", "step sizes from", "median gap", "exact mask: ones",
                  "released mask: ones", "‖∇ released − ∇ exact‖ / ‖∇ exact‖",
                  "‖∇ relaxed − ∇ released‖ / ‖∇ released‖"], body)


def merge_fig3(out: Path, sources: list[str]) -> None:
    """Concatenate fig3.csv files of several runs (``DIR:LR``: the Adam rate of the run, for
    CSVs written before the script recorded it) into ``out``; later sources win per
    (L_train, convention, variant, lr)."""
    merged = {}
    for src in sources:
        folder, _, lr = src.partition(":")
        for r in rows_at(Path(folder) / "fig3.csv"):
            r.setdefault("lr", lr)
            r["lr"] = r["lr"] or lr
            merged[(r["L_train"], r["convention"], r["variant"], r["lr"])] = r
    body = sorted(merged.values(), key=lambda r: (int(r["L_train"]), r["convention"],
                                                  r["variant"], r["lr"]))
    keys = list(dict.fromkeys(k for r in body for k in r))
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=keys)
        writer.writeheader()
        writer.writerows({k: r.get(k, "") for k in keys} for r in body)


def rows_at(path: Path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def main() -> int:
    if sys.argv[1:2] == ["--merge-fig3"]:
        merge_fig3(Path(sys.argv[2]), sys.argv[3:])
        return 0
    for title, fn in (("speech Fig. 3", fig3), ("Fig. 3 at 1e5", linf),
                      ("Fig. 3 at 1e4, all test frames", linf_all), ("ergodic Fig. 1-2", fig12),
                      ("denoising", denoise), ("speech defaults", speech_defaults),
                      ("backend speed", speed),
                      ("conventions", conventions)):
        print(f"<!-- {title} -->\n{fn()}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
