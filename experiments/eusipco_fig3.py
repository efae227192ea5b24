"""EUSIPCO 2023 Fig. 3 (Brauer & Lorenz, EUSIPCO 2023): full backpropagation vs the asymptotic
("truncated BP") gradient with b = 30 backward steps, across the number of unrolled iterations
L_training, under two conventions.

For each L_training, gradient method and convention an operator is learned from the DCT on IEEE
speech (train/), then evaluated on dev/ with L_inference = L_training and with large
L_inference (the fixed point: 10⁴ and 10⁵ steps on test subsets). Conventions:

* ``exact``: the papers' formulas, pdunroll's defaults: σ = ω·0.99/‖K‖₂, τ = 0.99/(ω‖K‖₂) and
  the exact Jacobian of the ℓ∞ clip;
* ``released``: the authors' released code: steps from the Frobenius norm
  (``pdunroll.StepRule(norm="frobenius")``, its ``tf.linalg.norm(K, ord=2)``), and its
  primal mask 1{|z_P − x̃| ≤ 1} (``released_mask=1.0``); trained and evaluated with its steps.

Writes ``fig3.csv`` (one row per run and seed, rewritten after each; a rerun skips the runs
already in it; runs with other ``--seed`` values add their rows) and ``fig3.png``. A run in
progress keeps its training state in ``checkpoint_L{L}_....npz`` there (after every epoch and
every 5 minutes) and continues from it when the script is run again; the file is removed when
its row is written. The DCT's test errors, the same for every run on one test set, are kept in
``dct_mse.json``, so that later runs into the same folder do not repeat them.

    python experiments/eusipco_fig3.py --quick     # minutes on 2 CPU cores
    python experiments/eusipco_fig3.py             # the paper's setting (days on a CPU)
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

from _common import (
    add_data_args,
    add_scheduler_arg,
    dct_model,
    frames_for,
    np,
    pu,
    pyplot,
    read_csv,
    settings,
    sweep,
    write_csv,
)

from pdunroll.learning.placement import Placement

PAPER = dict(n=320, bitrate=4, L=[10, 20, 30, 40, 60, 80, 100, 200, 500, 1000], b=30,
             lr=1e-5, final_lr=1e-8, epochs=20, batch_size=32, l_inf=10_000, l_inf2=100_000,
             max_train=None, max_test=None, inf_frames=None, inf2_frames=1000,
             dtype="float32")
# quick: frames of n = 128 (5× cheaper products than 320) and lr 1e-3, so that a few hundred
# steps move K visibly (the paper's 1e-5 barely does in a short run)
QUICK = dict(PAPER, n=128, L=[10, 20, 40, 100], lr=1e-3, final_lr=1e-6, epochs=2, max_train=8000,
             max_test=1000, l_inf=1000, l_inf2=None, inf_frames=None)
OMEGA = 10.0
ETA_BACKWARD = 1.0  # the released code's training setting


def variants(b: int) -> dict[str, pu.GradientMethod]:
    """The gradient methods compared, by name; the asymptotic ones run b backward steps."""
    return {"full": pu.Full(), "asymptotic": pu.Asymptotic(b),
            "full-relaxed": pu.Full(relax_primal=True),
            "asymptotic-relaxed": pu.Asymptotic(b, relax_primal=True)}


def with_convention(method: pu.GradientMethod, convention: str,
                    iterations: int) -> pu.GradientMethod:
    """``method`` as the convention runs it with L = ``iterations``. The released code's
    gradient has its primal mask (``released_mask``) and, for the asymptotic ("truncated BP")
    gradient, min(L, b) backward steps: its loop stops at the first unrolled step, so at
    L < b it runs L steps, not b."""
    if convention == "exact":
        return method
    settings_ = {k: v for k, v in method.settings().items() if k != "name"}
    settings_.update(relax_primal=False, released_mask=ETA_BACKWARD)
    if "b" in settings_ and isinstance(method, pu.Asymptotic):
        settings_["b"] = min(settings_["b"], iterations)
    return type(method)(**settings_)


def rule_for(convention: str) -> pu.StepRule:
    """The step rule of a convention: ‖K‖₂ (exact) or the released code's ‖K‖_F, recomputed
    after every training update as the released code does."""
    return pu.StepRule(omega=OMEGA, norm="spectral" if convention == "exact" else "frobenius")


def steps_for(model, convention: str) -> pu.StepSizes:
    return rule_for(convention).sizes(model.operator)


def test_mse(model, x_tilde, x_true, iterations, convention):
    """The test MSE at L_inference = ``iterations``, solved in chunks of signals
    (``pu.reconstruct``; at 14 260 frames 25 % faster per step than one solver call)."""
    x = pu.reconstruct(model, x_tilde, iterations=iterations, steps=steps_for(model, convention))
    return pu.mse(x, x_true)


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_data_args(p, out="eusipco_fig3")
    p.add_argument("--L", type=int, nargs="+", help="L_training values (override)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--lr", type=float, help="initial Adam rate (linear decay to lr/1000)")
    p.add_argument("--max-train", type=int, help="training frames (random subset)")
    p.add_argument("--max-test", type=int, help="test frames (random subset)")
    p.add_argument("--l-inf", type=int, help="L_inference of the first fixed-point column")
    p.add_argument("--inf-frames", type=int, help="test frames for --l-inf (default all)")
    p.add_argument("--l-inf2", type=int,
                   help="L_inference of the second fixed-point column (0: none)")
    p.add_argument("--inf2-frames", type=int, help="test frames for --l-inf2")
    p.add_argument("--dtype", choices=("float32", "float64"))
    p.add_argument("--backend", choices=("numpy", "torch"), default="numpy",
                   help="array library of training and scoring (default numpy)")
    p.add_argument("--compile", action="store_true",
                   help="with --backend torch: compiled training steps (pdunroll.train's "
                        "compile=True)")
    p.add_argument("--variants", nargs="+", choices=sorted(variants(1)),
                   default=["full", "asymptotic"])
    p.add_argument("--conventions", nargs="+", choices=("exact", "released"),
                   default=["exact", "released"])
    add_scheduler_arg(p)
    p.add_argument("--plot", type=Path, metavar="CSV",
                   help="only redraw the figure from a fig3.csv (written next to it)")
    args = p.parse_args(argv)
    if args.compile and args.backend != "torch":
        p.error("--compile needs --backend torch")
    cfg = settings(args, paper=PAPER, quick=QUICK,
                   overrides=("L", "epochs", "lr", "max_train", "max_test", "l_inf",
                              "inf_frames", "l_inf2", "inf2_frames", "dtype"))
    if args.lr is not None:
        cfg["final_lr"] = args.lr / 1000
    return args, cfg


def main(argv=None) -> int:
    args, cfg = parse(argv)
    if args.plot:
        plot(read_csv(args.plot), args.plot.with_suffix(".png"))
        return 0
    train, test = frames_for(args, cfg)
    move = Placement(args.backend, cfg["dtype"]).mover()
    xt, xs = move(train.x_tilde), move(train.x_true)
    tt, ts = move(test.x_tilde), move(test.x_true)
    sub = {1: (tt[:cfg["inf_frames"]], ts[:cfg["inf_frames"]]),
           2: (tt[:cfg["inf2_frames"]], ts[:cfg["inf2_frames"]])}
    print(f"{len(train)} training frames, {len(test)} test frames, n={cfg['n']}, "
          f"bitrate {cfg['bitrate']}; settings {cfg}", flush=True)
    start = dct_model(cfg["n"], train.eta)
    start = start.with_params(move(start.operator.params))
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "fig3.csv"
    rows = read_csv(path)
    done = {(r["L_train"], r["variant"], r["convention"], r.get("seed", 0)) for r in rows}
    jobs = [(L, name, convention) for L in cfg["L"] for convention in args.conventions
            for name in args.variants if (L, name, convention, args.seed) not in done]
    cache = args.out / "dct_mse.json"
    known = json.loads(cache.read_text()) if cache.exists() else {}
    data = {"start": start, "train": (xt, xs), "test": (tt, ts), "sub": sub, "dct": known}
    cfg = dict(cfg, backend=args.backend, compile=args.compile, out=args.out)
    for row, params in sweep(run, jobs, args.scheduler, data=data, cfg=cfg, seed=args.seed,
                             progress=not args.quiet):
        stem = operator_stem(row["L_train"], row["variant"], args.seed, row["convention"])
        np.save(args.out / f"K_{stem}.npy", np.asarray(params))
        rows.append(row)
        print(", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                        for k, v in row.items()), flush=True)
        write_csv(path, rows)
        known[dct_key(tt, ts, row["L_train"], row["convention"])] = row["dct_mse_L"]
        for part in (1, 2):
            if f"L_inf{part}" in row:
                known[dct_key(*sub[part], row[f"L_inf{part}"], row["convention"])] = \
                    row[f"dct_mse_Linf{part}"]
        cache.write_text(json.dumps(known, indent=1))
    plot(rows, args.out / "fig3.png")
    print(f"wrote {path} and {args.out / 'fig3.png'}")
    return 0


def dct_key(x, y, iterations, convention) -> str:
    """Names a DCT test error: L_inference, convention, and the test set by its shape, dtype,
    array type and sums (the DCT's error is the same for every run and seed on it)."""
    return repr((iterations, convention, tuple(x.shape), str(x.dtype), type(x).__module__,
                 float(np.asarray(x).sum()), float(np.asarray(y).sum())))


def _dct_mse(start, x, y, iterations, convention, known):
    key = dct_key(x, y, iterations, convention)
    if key not in known:
        known[key] = test_mse(start, x, y, iterations, convention)
    return known[key]


def run(job, *, data, cfg, seed, progress):
    """One row of the CSV (and the learned operator): train with L_training = L, the gradient
    method ``name`` and ``convention``, then score on the test frames. Here or as a Dask task
    (``--scheduler``): the same function, so the CSV is the same."""
    L, name, convention = job
    start, (xt, xs), (tt, ts), sub = data["start"], data["train"], data["test"], data["sub"]
    method = with_convention(variants(cfg["b"])[name], convention, L)
    checkpoint = cfg["out"] / f"checkpoint_{operator_stem(L, name, seed, convention)}.npz"
    resumed = checkpoint.exists()
    tic = time.perf_counter()
    res = pu.train(start, xt, xs, iterations=L, steps=rule_for(convention),
                   lr=pu.LearningRate(cfg["lr"], "linear", final=cfg["final_lr"]),
                   epochs=cfg["epochs"], batch_size=cfg["batch_size"], seed=seed,
                   progress=progress, method=method, compile=cfg["compile"],
                   checkpoint=checkpoint, resume=resumed)
    # a resumed run: the epochs' times (the interrupted epoch's part before the stop is lost)
    seconds = sum(res.history.epoch_seconds) if resumed else time.perf_counter() - tic
    m = res.final_model
    row = {"L_train": L, "variant": name, "convention": convention, "lr": cfg["lr"],
           "epochs": cfg["epochs"], "seed": seed, "backend": cfg["backend"], "dtype": cfg["dtype"],
           "compiled": int(cfg["compile"]), "resumed": int(resumed),
           "train_seconds": round(seconds, 2), "steps": res.steps,
           "final_train_loss": res.history.epoch_train_loss[-1],
           "test_mse_L": test_mse(m, tt, ts, L, convention),
           "dct_mse_L": _dct_mse(start, tt, ts, L, convention, data["dct"]),
           "quantized_mse": pu.mse(tt, ts), "test_frames": len(tt)}
    for part, key in ((1, "l_inf"), (2, "l_inf2")):
        if cfg[key]:
            x, y = sub[part]
            tic2 = time.perf_counter()
            row[f"test_mse_Linf{part}"] = test_mse(m, x, y, cfg[key], convention)
            row[f"dct_mse_Linf{part}"] = _dct_mse(start, x, y, cfg[key], convention, data["dct"])
            row[f"L_inf{part}"] = cfg[key]
            row[f"Linf{part}_frames"] = len(x)
            row[f"Linf{part}_seconds"] = round(time.perf_counter() - tic2, 1)
    row["snr_gain_db_L"] = 10 * math.log10(row["dct_mse_L"] / row["test_mse_L"])
    checkpoint.unlink()  # the row and the operator are kept
    return row, m.operator.params


def operator_stem(L: int, variant: str, seed: int, convention: str) -> str:
    """How a run's operator (K_{stem}.npy) and its checkpoint are named."""
    return f"L{L}_{variant}{f'_seed{seed}' if seed else ''}_{convention}"


def _label(r) -> str:
    lr = r.get("lr")
    return f"{r['convention']}, Adam {float(lr):g}" if lr not in (None, "") else r["convention"]


def plot(rows, path):
    plt = pyplot()
    cols = [("test_mse_L", "test MSE, L_inference = L_training")]
    for part in (1, 2):
        if any(r.get(f"test_mse_Linf{part}") not in (None, "") for r in rows):
            r0 = next(r for r in rows if r.get(f"L_inf{part}") not in (None, ""))
            cols.append((f"test_mse_Linf{part}", f"test MSE, L_inference = {r0[f'L_inf{part}']}"
                                                  f" ({r0[f'Linf{part}_frames']} frames)"))
    cols.append(("train_seconds", "training time [s]"))
    fig, axes = plt.subplots(1, len(cols), figsize=(5.5 * len(cols), 4.2))
    styles = {"exact": "-", "released": "--"}
    for i, conv in enumerate(dict.fromkeys(_label(r) for r in rows)):
        ls = styles.get(conv.split(",")[0], ":")
        for j, name in enumerate(dict.fromkeys(r["variant"] for r in rows)):
            sel = sorted((r for r in rows if r["variant"] == name and _label(r) == conv),
                         key=lambda r: r["L_train"])
            if not sel:
                continue
            Ls = [r["L_train"] for r in sel]
            for ax, (key, _) in zip(axes, cols, strict=True):
                ax.plot(Ls, [_num(r.get(key)) for r in sel], "o" + ls, color=f"C{2 * i + j}",
                        label=f"{name}, {conv}")
    for conv in dict.fromkeys(r["convention"] for r in rows):
        by_L = {r["L_train"]: r for r in rows if r["convention"] == conv}
        Ls = sorted(by_L)
        for ax, (key, _) in zip(axes[:-1], cols[:-1], strict=True):
            dkey = key.replace("test_", "dct_")
            ax.plot(Ls, [_num(by_L[L].get(dkey)) for L in Ls], "k" + styles.get(conv, ":"),
                    lw=0.8, label=f"DCT, {conv}")
    all_L = sorted({r["L_train"] for r in rows})
    for ax, (_, title) in zip(axes, cols, strict=True):
        ax.set(xscale="log", xlabel="L_training", title=title)
        ax.set_xticks(all_L, [str(L) for L in all_L])
        ax.minorticks_off()
    for ax in axes[:-1]:
        ax.axhline(_num(rows[0]["quantized_mse"]), color="0.6", ls=":", label="quantized")
        ax.set_yscale("log")
    axes[0].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def _num(v) -> float:
    return math.nan if v in (None, "") else float(v)


if __name__ == "__main__":
    sys.exit(main())
