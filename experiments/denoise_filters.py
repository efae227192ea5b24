"""Image denoising with 48 learned 7×7 filters (the numerical example of Brauer & Lorenz,
"Asymptotic analysis of unrolled convex optimization algorithms"): x̂ = argmin_u ‖K u‖₁ s.t.
‖u − x̃‖₂ ≤ c σ √#pixels, solved by L Chambolle-Pock steps.

K is learned from the 48 2-D DCT filters (7² − 1, the constant one left out) on noisy patches of
some of scikit-image's bundled images, and tested on whole bundled images that training never
saw, at each noise level σ. Baselines with the same data term and the same solver: the noisy
input, total variation (K = ``Gradient2d``, F = ``L21Norm``) and the DCT filters. Under the
ball constraint the weight of F does not change the minimiser (at finite L it acts as ω), so
the one free parameter of every row, the radius factor c, is chosen on validation patches of
other images. PSNR and SSIM from scikit-image (data range 1). Writes ``denoise.csv`` (a row per
σ and model, rewritten after each σ; a rerun skips the σ already in it) and ``denoise.png``.

    python experiments/denoise_filters.py --sigma 25 --steps 300
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

from _common import ROOT, np, pu, pyplot, write_csv
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from pdunroll.data import images as di

TRAIN = ("astronaut", "coffee", "rocket", "moon", "grass", "gravel", "brick")
VALIDATION = ("clock", "immunohistochemistry")
TEST = ("camera", "coins", "chelsea")
FACTORS = (0.8, 0.9, 1.0, 1.1)  # --factors overrides


def model_for(kind: str, shape, sigma: float, factor: float, filters=None, dtype="float32",
              boundary="zero"):
    radius = factor * sigma * float(np.sqrt(np.prod(shape)))
    if kind == "tv":
        op = pu.Gradient2d(tuple(shape), dtype=np.dtype(dtype))
        return pu.AnalysisModel(op, pu.L21Norm(1.0, group_axis=1), pu.L2Ball(radius))
    h = pu.dct_filters(7).astype(dtype) if filters is None else filters
    return pu.AnalysisModel(pu.Conv2dFilterBank(h, tuple(shape), boundary), pu.L1Norm(),
                            pu.L2Ball(radius))


def steps_for(model, omega: float, filters) -> pu.StepSizes:
    """Step sizes from an upper bound of ‖K‖: for a filter bank 1.02 × its exact periodic norm
    on a 256 × 256 grid (≈ the supremum of its symbol, which bounds the zero-boundary norm of
    any image size), instead of a power iteration on a whole image."""
    if filters is None and isinstance(model.operator, pu.Gradient2d):
        return pu.step_sizes(model.operator, omega=omega)
    h = model.operator.params
    bound = 1.02 * pu.Conv2dFilterBank(h, (256, 256), "periodic").norm()
    return pu.step_sizes(model.operator, omega=omega, op_norm=bound)


def denoise(kind, noisy, sigma, factor, L, omega, filters=None, boundary="zero"):
    """Every image of the list ``noisy`` (or a stack of equal patches) with its own model."""
    if isinstance(noisy, np.ndarray) and noisy.ndim == 3:
        m = model_for(kind, noisy.shape[1:], sigma, factor, filters, noisy.dtype, boundary)
        return pu.chambolle_pock(m, noisy, iterations=L, steps=steps_for(m, omega, filters)).x
    out = []
    for img in noisy:
        m = model_for(kind, img.shape, sigma, factor, filters, img.dtype, boundary)
        out.append(pu.chambolle_pock(m, img[None], iterations=L,
                                     steps=steps_for(m, omega, filters)).x[0])
    return out


def psnr_ssim(x_hat, clean):
    p = [peak_signal_noise_ratio(c, np.clip(x, 0, 1), data_range=1.0)
         for x, c in zip(x_hat, clean, strict=True)]
    s = [structural_similarity(c, np.clip(x, 0, 1), data_range=1.0)
         for x, c in zip(x_hat, clean, strict=True)]
    return p, s


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sigma", type=float, nargs="+", default=[15, 25],
                   help="noise levels on the 0..255 scale (default 15 25)")
    p.add_argument("--L", type=int, default=30, help="Chambolle-Pock steps (train and test)")
    p.add_argument("--omega", type=float, default=10.0,
                   help="σ/τ balance of the solver, train and test (default 10: at L = 30 the "
                        "best of 0.3–100 for TV on the validation images; 1 before)")
    p.add_argument("--steps", type=int, default=300, help="training steps (Adam)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--patch", type=int, default=32)
    p.add_argument("--boundary", choices=("zero", "valid"), default="zero",
                   help="filter responses of the filter banks: zero extension (output = image "
                        "size) or only where the 7×7 window lies inside the image")
    p.add_argument("--lr", type=float, default=1e-2, help="Adam rate (linear decay to lr/100)")
    p.add_argument("--method", choices=("full", "asymptotic"), default="full")
    p.add_argument("--b", type=int, default=30, help="backward steps of --method asymptotic")
    p.add_argument("--val-patches", type=int, default=32,
                   help="validation patches of the patch size (0: the whole validation images)")
    p.add_argument("--factors", type=float, nargs="+",
                   help=f"radius factors c tried on validation (default {FACTORS})")
    p.add_argument("--reuse", action="store_true",
                   help="take the learned filters from OUT/filters_sigma*.npy of an earlier "
                        "run instead of training (the evaluation only, e.g. with --factors)")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=ROOT / "runs" / "denoise_filters")
    p.add_argument("--quiet", action="store_true")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse(argv)
    dt = np.dtype(args.dtype)
    path = args.out / "denoise.csv"
    rows = []
    if path.exists():
        with open(path, newline="") as fh:
            rows = list(csv.DictReader(fh))
    done = {float(r["sigma_255"]) for r in rows}
    clean_test = di.load_images(TEST)
    method = pu.Full() if args.method == "full" else pu.Asymptotic(args.b)
    for s255 in args.sigma:
        if s255 in done:
            continue
        sigma = s255 / 255
        n_train = args.steps * args.batch_size
        noisy_p, clean_p = di.image_patches(di.load_images(TRAIN), size=args.patch,
                                            sigma=sigma, seed=args.seed)
        reps = -(-n_train // len(clean_p))  # fresh noise on repeated patches
        pairs = [di.image_patches(di.load_images(TRAIN), size=args.patch, sigma=sigma,
                                  seed=args.seed + 10 * i) for i in range(reps)]
        noisy_p = np.concatenate([p[0] for p in pairs])[:n_train].astype(dt)
        clean_p = np.concatenate([p[1] for p in pairs])[:n_train].astype(dt)
        if args.val_patches:
            val_noisy, val_clean = di.image_patches(di.load_images(VALIDATION), size=args.patch,
                                                    sigma=sigma, max_patches=args.val_patches,
                                                    seed=args.seed + 3)
            val_noisy, val_clean = val_noisy.astype(dt), val_clean.astype(dt)
        else:
            val_clean = di.load_images(VALIDATION)
            val_noisy = [x.astype(dt) for x in di.add_noise(val_clean, sigma, seed=args.seed + 3)]
        noisy_test = [x.astype(dt) for x in di.add_noise(clean_test, sigma, seed=args.seed + 5)]
        start = model_for("dct", (args.patch, args.patch), sigma, 1.0, dtype=dt,
                          boundary=args.boundary)
        saved = args.out / f"filters_sigma{s255:g}.npy"
        if args.reuse:
            learned, train_seconds, n_steps = np.load(saved).astype(dt), "reused", "reused"
        else:
            tic = time.perf_counter()
            res = pu.train(start, noisy_p, clean_p, iterations=args.L, omega=args.omega,
                           method=method,
                           lr=pu.LearningRate(args.lr, "linear", final=args.lr / 100),
                           epochs=1, batch_size=args.batch_size, seed=args.seed,
                           progress=not args.quiet)
            train_seconds = round(time.perf_counter() - tic, 1)
            learned, n_steps = res.final_model.operator.params, res.steps
            args.out.mkdir(parents=True, exist_ok=True)
            np.save(saved, learned)
        models = {"TV": ("tv", None), "DCT filters": ("dct", None),
                  "learned filters": ("dct", learned)}
        row_base = {"sigma_255": s255, "L": args.L, "omega": args.omega,
                    "train_steps": n_steps, "train_patches": n_train, "patch": args.patch,
                    "train_seconds": train_seconds, "boundary": args.boundary,
                    "validation": f"{args.val_patches} patches" if args.val_patches else "images"}
        p, s = psnr_ssim(noisy_test, clean_test)
        new = [{**row_base, "model": "noisy input", "factor": "", **_scores(p, s)}]
        for name, (kind, filters) in models.items():
            val = {}
            for c in args.factors or FACTORS:
                x = denoise(kind, val_noisy, sigma, c, args.L, args.omega, filters,
                            args.boundary)
                val[c] = float(np.mean(psnr_ssim(x, val_clean)[0]))
            best = max(val, key=val.get)
            tic = time.perf_counter()
            x_hat = denoise(kind, noisy_test, sigma, best, args.L, args.omega, filters,
                            args.boundary)
            p, s = psnr_ssim(x_hat, clean_test)
            new.append({**row_base, "model": name, "factor": best, "val_psnr": val[best],
                        "test_seconds": round(time.perf_counter() - tic, 1), **_scores(p, s)})
            print(new[-1], flush=True)
            if name == "learned filters" and s255 == args.sigma[-1]:
                figure(args.out / "denoise.png", clean_test[0], noisy_test[0], x_hat[0],
                       learned, s255, new)
        rows.extend(new)
        keys = list(dict.fromkeys(k for r in rows for k in r))
        write_csv(path, [{k: r.get(k, "") for k in keys} for r in rows])
    print(f"wrote {path}")
    return 0


def _scores(p, s):
    out = {f"psnr_{n}": round(v, 3) for n, v in zip(TEST, p, strict=True)}
    out.update({f"ssim_{n}": round(v, 4) for n, v in zip(TEST, s, strict=True)})
    out.update(psnr_mean=round(float(np.mean(p)), 3), ssim_mean=round(float(np.mean(s)), 4))
    return out


def figure(path, clean, noisy, x_hat, filters, s255, rows):
    plt = pyplot()
    fig = plt.figure(figsize=(14, 4))
    for i, (img, title) in enumerate(((clean, "clean"), (noisy, f"noisy σ = {s255:g}/255"),
                                      (x_hat, "learned filters"))):
        ax = fig.add_subplot(1, 4, i + 1)
        ax.imshow(np.clip(img, 0, 1), cmap="gray", vmin=0, vmax=1)
        ax.set(title=title, xticks=[], yticks=[])
    grid = np.ones((6 * 8 + 5, 8 * 8 + 7))
    for k, h in enumerate(np.asarray(filters)):
        i, j = divmod(k, 8)
        grid[i * 9:i * 9 + 7, j * 9:j * 9 + 7] = (h - h.min()) / (np.ptp(h) + 1e-12)
    ax = fig.add_subplot(1, 4, 4)
    ax.imshow(grid, cmap="gray")
    ax.set(title="48 learned 7×7 filters", xticks=[], yticks=[])
    fig.tight_layout()
    fig.savefig(path, dpi=68)
    plt.close(fig)
    from PIL import Image  # a 64-grey palette keeps it under 100 kB: the docs embed it

    Image.open(path).convert("L").quantize(64).save(path, optimize=True)


if __name__ == "__main__":
    sys.exit(main())
