"""The tables of the docs' Results pages from the CSVs the experiment scripts wrote under
docs/_static/results/: prints Markdown to paste (or to diff against the pages).

    python experiments/results_tables.py              # docs/results.md: the compact tables
    python experiments/results_tables.py --appendix   # docs/results-appendix.md
    python experiments/results_tables.py --merge-fig3 OUT.csv RUN_DIR:LR [RUN_DIR:LR ...]

The main page's tables have at most six columns (they fit the page width); the appendix keeps
every run and setting.
"""

from __future__ import annotations

import csv
import json
import math
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parents[1] / "docs" / "_static" / "results"

# the exact convention's Adam rate shown on the main page (its first rate, 2e-3, is in the appendix)
# and the run folder of its operators in linf_1e4_all.csv
FIG3_EXACT_LR = "0.0005"
FIG3_EXACT_RUN = "eusipco_fig3_n320_exact_lr5e-4"
# the speech targets: the target, the committed model, its `pdunroll evaluate --json` on all
# dev/ frames and the least gain over the DCT in dB
SPEECH_TARGETS = (("L = 10", "operator_L10.npz", "L10_dev.json", 2.5),
                  ("L = 100", "operator_L100.npz", "L100_dev.json", 1.5),
                  ("L_inference = 10⁴", "operator_fixed_point.npz", "fixed_point_1e4_dev.json",
                   1.5))
# the 1-D toy problem's methods on the main page, by their names in gradients.csv
TOY_METHODS = {"Proj.GD": "Proj. GD", "Bregman-FB": "Bregman FB",
               "Bregman-FB-impl": "Bregman FB, implicit", "Smoothed-impl": "smoothed, implicit"}
TOY_BACK = ("5", "10", "20", "50", "200")


def rows(name):
    path = RESULTS / name
    if not path.exists():
        return []
    return rows_at(path)


def rows_at(path: Path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def table(header, body):
    out = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in body]
    return "\n".join(out)


def db(mse_ref, mse):
    """10 log₁₀ of the reference MSE over the MSE: the gain in dB."""
    return f"{10 * math.log10(float(mse_ref) / float(mse)):+.2f}"


def sci(x):
    """A small error as 4.9e−3 (0 stays 0)."""
    x = float(x)
    if x == 0:
        return "0"
    mantissa, exponent = f"{x:.1e}".split("e")
    return f"{mantissa}e{int(exponent)}".replace("-", "−")


# ---------------------------------------------------------------- the main page's tables


def fig3_main():
    """Exact convention: gain over the DCT at L_inference = L_training (all test frames) and at
    L_inference = 10⁴ (all test frames), per gradient; the training time."""
    got = [r for r in rows("eusipco_fig3/fig3.csv")
           if r["convention"] == "exact" and r.get("lr") == FIG3_EXACT_LR]
    linf = {r["operator"]: r for r in rows("eusipco_fig3/linf_1e4_all.csv")}
    dct = linf.get("DCT_exact")
    body = []
    for L in sorted({int(r["L_train"]) for r in got}):
        by = {r["variant"]: r for r in got if int(r["L_train"]) == L}
        cells = [str(L)]
        for v in ("full", "asymptotic"):
            cells.append(db(by[v]["dct_mse_L"], by[v]["test_mse_L"]) if v in by else "")
        for v in ("full", "asymptotic"):
            r = linf.get(f"{FIG3_EXACT_RUN}/K_L{L}_{v}_exact")
            cells.append(db(dct["test_mse"], r["test_mse"]) if r and dct else "")
        cells.append(" / ".join(f"{float(by[v]['train_seconds']):.0f}"
                                for v in ("full", "asymptotic") if v in by))
        body.append(cells)
    return table(["L_training", "full BP, L_inf = L [dB]", "asymptotic, L_inf = L [dB]",
                  "full BP, L_inf = 10⁴ [dB]", "asymptotic, L_inf = 10⁴ [dB]",
                  "training, full / asym. [s]"], body)


def mean_std(values) -> str:
    """Gains in dB over seeds: +0.47 for one, +0.47 ± 0.02 (3) for several (sample std)."""
    if len(values) == 1:
        return f"{values[0]:+.2f}"
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
    return f"{mean:+.2f} ± {std:.2f} ({len(values)})"


def _span(values) -> str:
    """Seconds as 918, or as their range 266–918 (none: –)."""
    if not values:
        return "–"
    low, high = min(values), max(values)
    return f"{low:.0f}" if round(low) == round(high) else f"{low:.0f}–{high:.0f}"


def fig3_paper_main():
    """Fig. 3 at the paper's training length, exact convention: the gain over the DCT at
    L_inference = L_training and 10⁴ (all test frames), mean ± std over the seeds run; the
    training times (their range: the machine's load varied)."""
    got = rows("eusipco_fig3/paper/fig3_exact.csv")
    body = []
    for L in sorted({int(r["L_train"]) for r in got}):
        by = {v: [r for r in got if int(r["L_train"]) == L and r["variant"] == v]
              for v in ("full", "asymptotic")}
        cells = [str(L)]
        for key in ("L", "Linf1"):
            for v in ("full", "asymptotic"):
                gains = [10 * math.log10(float(r[f"dct_mse_{key}"]) / float(r[f"test_mse_{key}"]))
                         for r in by[v] if r.get(f"test_mse_{key}")]
                cells.append(mean_std(gains) if gains else "")
        cells.append(" / ".join(_span([float(r["train_seconds"]) for r in by[v]])
                                for v in ("full", "asymptotic")))
        body.append(cells)
    return table(["L_training", "full BP, L_inf = L [dB]", "asymptotic, L_inf = L [dB]",
                  "full BP, L_inf = 10⁴ [dB]", "asymptotic, L_inf = 10⁴ [dB]",
                  "training, full / asym. [s]"], body)


def conventions_main():
    body = []
    for r in rows("conventions/conventions.csv"):
        for norm in ("spectral", "frobenius"):
            body.append([r["L"], norm, f"{float(r[f'median_gap_{norm}']):.3g}",
                         f"{float(r[f'{norm}_mask_exact_ones']):.1%} / "
                         f"{float(r[f'{norm}_mask_released_ones']):.1%}",
                         f"{float(r[f'{norm}_grad_released_vs_exact']):.0%}",
                         f"{float(r[f'{norm}_grad_relaxed_vs_released']):.0%}"])
    return table(["L", "steps from", "median gap", "mask ones: exact / released",
                  "∇ released vs exact", "∇ relaxed vs released"], body)


def fig12_main():
    got = rows("ergodic_fig12/fig12.csv")
    body = []
    for d in dict.fromkeys(r["d"] for r in got):
        by = {r["weighting"]: r for r in got if r["d"] == d}
        cells = [d]
        for key, fmt in (("final_train_loss", ".4f"), ("last_epoch_mean_grad_norm", ".3f")):
            cells += [format(float(by[w][key]), fmt) if w in by else ""
                      for w in ("plain", "ergodic")]
        cells.append(" / ".join(f"{float(by[w]['test_mse']):.2e}"
                                for w in ("plain", "ergodic") if w in by))
        body.append(cells)
    return table(["d", "train loss, plain", "train loss, ergodic", "‖∇_K‖, plain",
                  "‖∇_K‖, ergodic", "test MSE, plain / ergodic"], body)


def fig12_long_main():
    """The 10-epoch runs, three seeds (ergodic_fig12/long/seed<s>/fig12.csv): the final
    training loss, the last epoch's mean ‖∇_K‖ and the test MSE, mean ± sample std over the
    seeds (their number in brackets when not all three)."""
    got = [dict(r, seed=path.parent.name) for path in
           sorted((RESULTS / "ergodic_fig12" / "long").glob("seed*/fig12.csv"))
           for r in rows_at(path)]
    seeds = len({r["seed"] for r in got})

    def cell(values, fmt):
        mean = sum(values) / len(values)
        text = format(mean, fmt)
        if len(values) > 1:
            std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
            text += f" ± {format(std, fmt)}"
        return text + (f" ({len(values)})" if len(values) < seeds else "")

    body = []
    for d in dict.fromkeys(r["d"] for r in got):
        cells = [d]
        for key, fmt, scale in (("final_train_loss", ".4f", 1),
                                ("last_epoch_mean_grad_norm", ".3f", 1),
                                ("test_mse", ".1f", 1e4)):
            for w in ("plain", "ergodic"):
                values = [scale * float(r[key]) for r in got
                          if r["d"] == d and r["weighting"] == w]
                cells.append(cell(values, fmt) if values else "")
        body.append(cells[:5] + [" / ".join(c for c in cells[5:] if c)])
    return table(["d", "train loss, plain", "train loss, ergodic", "‖∇_K‖, plain",
                  "‖∇_K‖, ergodic", "test MSE ×10⁴, plain / ergodic"], body)


def denoise_set12_main():
    """Set12 whole images, PSNR / SSIM means: ``pdunroll evaluate --json`` of the committed
    models (denoise/set12/sigma<σ>_L<L>.json), a row per σ and L."""
    body = []
    for path in sorted((RESULTS / "denoise" / "set12").glob("sigma*_L*.json"),
                       key=lambda p: [int(v) for v in p.stem[5:].split("_L")]):
        record = json.loads(path.read_text())
        mean = record["rows"][-1]
        cells = [f"{mean[m]['psnr_db']:.2f} / {mean[m]['ssim']:.3f}"
                 for m in ("TV", "DCT start", "learned operator")]
        gain = mean["learned operator"]["psnr_db"] - mean["TV"]["psnr_db"]
        body.append([path.stem[5:].split("_L")[0], record["iterations"], *cells, f"{gain:+.2f}"])
    return table(["σ·255", "L", "TV", "DCT start", "learned", "learned − TV [dB]"], body)


def toy_main(theta="0.3"):
    got = [r for r in rows("toy/gradients.csv") if r["theta"] == theta]
    body = []
    for method, label in TOY_METHODS.items():
        err = {r["back"]: r["error"] for r in got if r["method"] == method}
        body.append([label] + [sci(err[b]) if b in err else "" for b in TOY_BACK])
    return table(["method"] + [f"b = {b}" for b in TOY_BACK], body)


def speech_targets_main():
    """Each target's committed operator on all dev/ frames (its ``evaluate --json``) against
    the n×n DCT at the same L and ω; the fixed-point operator was scored without the DCT
    (``--no-baseline``), whose error at 10⁴ steps is in linf_1e4_all.csv (at the fixed point
    ω does not matter)."""
    import pdunroll as pu

    dct_1e4 = next(float(r["test_mse"]) for r in rows("eusipco_fig3/linf_1e4_all.csv")
                   if r["operator"] == "DCT_exact")
    body = []
    for target, model, name, least in SPEECH_TARGETS:
        got = json.loads((RESULTS / "speech" / name).read_text())
        mse = {r["method"]: r["mse"] for r in got["rows"]}
        snr_q, mse_q = next((r["snr_db"], r["mse"]) for r in got["rows"]
                            if r["method"] == "quantized input")
        learned, dct = mse["learned operator"], mse.get("DCT", dct_1e4)
        gain = 10 * math.log10(dct / learned)
        omega = pu.load_model(RESULTS / "speech" / model).steps.omega
        body.append([target, f"{{download}}`{model} <_static/results/speech/{model}>`",
                     f"{got['iterations']}, {omega:g}",
                     f"{snr_q + 10 * math.log10(mse_q / learned):.2f} / "
                     f"{snr_q + 10 * math.log10(mse_q / dct):.2f}",
                     f"{gain:+.2f}", f"{'**met**' if gain >= least else 'not met'} "
                                     f"(≥ +{least:g})"])
    return table(["target", "operator", "L, ω", "learned / DCT [dB]", "gain [dB]", "met?"],
                 body)


def speed_main():
    got = rows("backend_speed.csv")
    body = []
    for L in dict.fromkeys(r["L"] for r in got):
        for backend in dict.fromkeys(r["backend"] for r in got if r["L"] == L):
            by = {r["dtype"]: r for r in got if r["L"] == L and r["backend"] == backend}
            body.append([L, backend] + [by[d]["ms_per_step"] if d in by else ""
                                        for d in ("float64", "float32")]
                        + [by["float32"]["speedup_vs_numpy64"] if "float32" in by else ""])
    return table(["L", "backend", "float64 [ms]", "float32 [ms]",
                  "float32 speed-up over NumPy float64"], body)


def inverse_main():
    """Deblurring and inpainting on Set12: PSNR and SSIM means, the learned rows' training."""
    names = {"start x̃": "start x̃ (data, filled in)"}
    body = [[r["problem"], names.get(r["model"], r["model"]), f"{float(r['psnr_mean']):.2f}",
             f"{float(r['ssim_mean']):.3f}",
             f"{r['train_steps']} steps, {float(r['train_seconds']):.0f} s"
             if r.get("train_steps") else ""]
            for r in rows("inverse/inverse_problems.csv")]
    return table(["problem", "model", "test PSNR [dB]", "test SSIM", "training"], body)


MAIN = (("EUSIPCO Fig. 3, exact convention", fig3_main),
        ("EUSIPCO Fig. 3 at the paper's length", fig3_paper_main),
        ("the released code's conventions", conventions_main),
        ("ergodic Fig. 1-2", fig12_main),
        ("ergodic Fig. 1-2, 10 epochs", fig12_long_main),
        ("denoising on Set12", denoise_set12_main),
        ("deblurring and inpainting", inverse_main),
        ("toy Fig. 4-5, theta = 0.3", toy_main),
        ("speech quality targets", speech_targets_main),
        ("training throughput", speed_main))


# ---------------------------------------------------------------- the appendix's tables


def fig3(convention, lr):
    """One convention and Adam rate of the reduced Fig. 3 runs: test MSE at L_inference =
    L_training on all test frames and at 10⁴ on the first 256, gains over the DCT and x̃."""
    body = []
    for r in rows("eusipco_fig3/fig3.csv"):
        if r["convention"] != convention or r.get("lr") != lr:
            continue
        body.append([r["L_train"], r["variant"], r["steps"], f"{float(r['test_mse_L']):.3e}",
                     db(r["dct_mse_L"], r["test_mse_L"]), db(r["quantized_mse"], r["test_mse_L"]),
                     f"{float(r['test_mse_Linf1']):.3e}",
                     db(r["dct_mse_Linf1"], r["test_mse_Linf1"]), r["train_seconds"]])
    return table(["L_train", "gradient", "steps", "test MSE (L_inf = L)", "gain over DCT [dB]",
                  "gain over x̃ [dB]", "test MSE (10⁴, 256 frames)", "gain over DCT (10⁴) [dB]",
                  "training [s]"], body)


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


def denoise(name="denoise/denoise.csv"):
    """Per σ and model: the radius factor chosen on validation, PSNR per test image, the means."""
    body = [[r["sigma_255"], r["model"], r["factor"], r["psnr_camera"], r["psnr_coins"],
             r["psnr_chelsea"], r["psnr_mean"], r["ssim_mean"]]
            for r in rows(name)]
    return table(["σ·255", "model", "c (validation)", "PSNR camera", "PSNR coins",
                  "PSNR chelsea", "mean PSNR [dB]", "mean SSIM"], body)


def speech_defaults(full):
    """The command line's runs: the short ones (20 000 frames) or the full ones (all frames)."""
    got = [r for r in rows("speech_defaults/speech_defaults.csv")
           if (r["train_frames"] != "20000") == full]
    body = [[r["run"], r["L"], r["omega"], r["method"], r["lr"], r["weights"], r["m"], r["init"],
             f"{r['best_epoch']} / {r['epochs']}", r["val_snr_db"],
             f"{float(r['test_snr_learned_db']):.2f} / {float(r['test_snr_dct_db']):.2f}",
             f"{float(r['gain_db']):+.2f}", f"{float(r['wall_seconds']):.0f}"]
            for r in got]
    return table(["run", "L", "ω", "gradient", "Adam rate", "output", "m", "start",
                  "best / epochs", "val SNR [dB]", "test SNR, learned / DCT [dB]", "gain [dB]",
                  "wall [s]"], body)


APPENDIX = (("Fig. 3, exact convention, Adam 5e-4", lambda: fig3("exact", "0.0005")),
            ("Fig. 3, exact convention, Adam 2e-3", lambda: fig3("exact", "0.002")),
            ("Fig. 3, released convention, Adam 2e-3", lambda: fig3("released", "0.002")),
            ("Fig. 3 at 1e5, 128 test frames", linf),
            ("Fig. 3 at 1e4, all test frames", linf_all),
            ("ergodic Fig. 1-2, all columns", fig12),
            ("denoising, omega = 1", denoise),
            ("denoising, omega = 1, radius on whole validation images",
             lambda: denoise("denoise/denoise_validation_images.csv")),
            ("denoising, omega = 1, valid responses",
             lambda: denoise("denoise/denoise_valid_boundary_sigma25.csv")),
            ("denoising, omega = 1, L = 50", lambda: denoise("denoise/denoise_L50_sigma25.csv")),
            ("denoising, omega = 10", lambda: denoise("denoise/denoise_omega10_sigma25.csv")),
            ("speech command line, short runs", lambda: speech_defaults(full=False)),
            ("speech command line, full runs", lambda: speech_defaults(full=True)))


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


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--merge-fig3"]:
        merge_fig3(Path(argv[1]), argv[2:])
        return 0
    for title, fn in APPENDIX if argv[:1] == ["--appendix"] else MAIN:
        print(f"<!-- {title} -->\n{fn()}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
