"""EUSIPCO 2023 Fig. 3 (seed 001): full backpropagation vs the asymptotic ("truncated BP")
gradient with b = 30 backward steps, across the number of unrolled iterations L_training.

For each L_training and gradient variant an operator is learned from the DCT on IEEE speech
(train/), then evaluated on dev/ with L_inference = L_training and with L_inference large (the
fixed point). Variants: exact prox masks and ``relax_primal=True`` (the released TF code's
eta_backward = 1: the ℓ∞ clip is the identity in the backward pass). Writes ``fig3.csv`` (one
row per run, rewritten after each run) and ``fig3.png``.

    python experiments/eusipco_fig3.py --quick     # minutes on 2 CPU cores
    python experiments/eusipco_fig3.py             # the paper's setting (days on a CPU)
"""

from __future__ import annotations

import argparse
import sys
import time

from _common import (
    add_data_args,
    add_scheduler_arg,
    dct_model,
    frames_for,
    pu,
    pyplot,
    settings,
    sweep,
    test_mse,
    write_csv,
)

PAPER = dict(n=320, bitrate=4, L=[10, 20, 30, 40, 60, 80, 100, 200, 500, 1000], b=30,
             lr=1e-5, final_lr=1e-8, epochs=20, batch_size=32, l_inf=100_000,
             max_train=None, max_test=None)
# quick: frames of n = 128 (5× cheaper products than 320) and lr 1e-3, so that a few hundred
# steps move K visibly (the paper's 1e-5 barely does in a short run, DESIGN §9)
QUICK = dict(PAPER, n=128, L=[10, 20, 40, 100], lr=1e-3, final_lr=1e-6, epochs=2, max_train=8000,
             max_test=1000, l_inf=1000)


def variants(b: int) -> dict[str, pu.GradientMethod]:
    """The gradient methods compared, by name; the asymptotic ones run b backward steps."""
    return {
        "full": pu.Full(),
        "asymptotic": pu.Asymptotic(b),
        "full-relaxed": pu.Full(relax_primal=True),
        "asymptotic-relaxed": pu.Asymptotic(b, relax_primal=True),
    }


VARIANTS = variants(PAPER["b"])


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_data_args(p, out="eusipco_fig3")
    add_scheduler_arg(p)
    p.add_argument("--L", type=int, nargs="+", help="L_training values (override)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--max-train", type=int, help="training frames (random subset)")
    p.add_argument("--max-test", type=int, help="test frames (random subset)")
    p.add_argument("--l-inf", type=int, help="L_inference for the fixed-point column")
    p.add_argument("--variants", nargs="+", choices=sorted(VARIANTS), default=list(VARIANTS))
    args = p.parse_args(argv)
    cfg = settings(args, paper=PAPER, quick=QUICK,
                   overrides=("L", "epochs", "lr", "max_train", "max_test", "l_inf"))
    if args.lr is not None:
        cfg["final_lr"] = args.lr / 1000
    return args, cfg


def main(argv=None) -> int:
    args, cfg = parse(argv)
    train, test = frames_for(args, cfg)
    print(f"{len(train)} training frames, {len(test)} test frames, n={cfg['n']}, "
          f"bitrate {cfg['bitrate']}; settings {cfg}", flush=True)
    start = dct_model(cfg["n"], train.eta)
    quantized = pu.mse(test.x_tilde, test.x_true)
    dct_inf = test_mse(start, test, cfg["l_inf"])
    rows = []
    jobs = [(L, name) for L in cfg["L"] for name in args.variants]
    for row in sweep(run, jobs, args.scheduler, train=train, test=test, cfg=cfg,
                     seed=args.seed, progress=not args.quiet,
                     common={"dct_mse_Linf": dct_inf, "quantized_mse": quantized}):
        rows.append(row)
        print(", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                        for k, v in row.items()), flush=True)
        write_csv(args.out / "fig3.csv", rows)
    plot(rows, args.out / "fig3.png", cfg)
    print(f"wrote {args.out / 'fig3.csv'} and {args.out / 'fig3.png'}")
    return 0


def run(job, *, train, test, cfg, seed, progress, common) -> dict:
    """One row of the CSV: learn an operator with L_training = L and the variant ``name``."""
    L, name = job
    start = dct_model(cfg["n"], train.eta)
    tic = time.perf_counter()
    res = pu.train(start, train.x_tilde, train.x_true, iterations=L, omega=10.0,
                   lr=pu.LearningRate(cfg["lr"], "linear", final=cfg["final_lr"]),
                   epochs=cfg["epochs"], batch_size=cfg["batch_size"], seed=seed,
                   progress=progress, method=variants(cfg["b"])[name])
    seconds = time.perf_counter() - tic
    return {"L_train": L, "variant": name, "train_seconds": round(seconds, 2),
            "steps": res.steps, "final_train_loss": res.history.epoch_train_loss[-1],
            "test_mse_L": test_mse(res.final_model, test, L),
            "test_mse_Linf": test_mse(res.final_model, test, cfg["l_inf"]),
            "dct_mse_L": test_mse(start, test, L), "dct_mse_Linf": common["dct_mse_Linf"],
            "quantized_mse": common["quantized_mse"], "L_inf": cfg["l_inf"]}


def plot(rows, path, cfg):
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for name in dict.fromkeys(r["variant"] for r in rows):
        sel = [r for r in rows if r["variant"] == name]
        Ls = [r["L_train"] for r in sel]
        axes[0].plot(Ls, [r["test_mse_L"] for r in sel], "o-", label=name)
        axes[1].plot(Ls, [r["test_mse_Linf"] for r in sel], "o-", label=name)
        axes[2].plot(Ls, [r["train_seconds"] for r in sel], "o-", label=name)
    Ls = sorted({r["L_train"] for r in rows})
    dct_L = {r["L_train"]: r["dct_mse_L"] for r in rows}
    axes[0].plot(Ls, [dct_L[L] for L in Ls], "k--", label="DCT")
    axes[1].axhline(rows[0]["dct_mse_Linf"], color="k", ls="--", label="DCT")
    for ax in axes[:2]:
        ax.axhline(rows[0]["quantized_mse"], color="0.6", ls=":", label="quantized")
    titles = ("test MSE, L_inference = L_training",
              f"test MSE, L_inference = {cfg['l_inf']}", "training time [s]")
    for ax, title in zip(axes, titles, strict=True):
        ax.set(xscale="log", xlabel="L_training", title=title)
        ax.set_xticks(Ls, [str(L) for L in Ls])
        ax.minorticks_off()
        ax.legend(fontsize=8)
    axes[0].set_yscale("log")
    axes[1].set_yscale("log")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
