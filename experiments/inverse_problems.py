"""Deblurring and inpainting with a learned analysis operator in the model
min_x F(K x) + ½‖A x − f‖² (docs, Mathematics: "A forward operator in the data term"), against
total variation with the same solver.

* deblurring: A = Gaussian blur, σ_blur = 1.6 (11 × 11 kernel), "valid" boundary (the data are
  the blur of the whole scene: no pixel outside the image is assumed), 1 % noise (σ = 0.01 on
  [0, 1]); start x̃ = the data extended by its edge values;
* inpainting: A = a mask keeping 50 % of the pixels (independent per image), 1 % noise; start
  x̃ = the observed pixels, the missing ones filled by normalised Gaussian smoothing.

Models, all with F on K x and H = ½‖·‖², L Chambolle-Pock steps from x̃, G = 0: "learned
filters" (48 filters 7 × 7 from the scaled 2-D DCT filters, F = ‖·‖₁, zero boundary), "DCT
filters" (the start), "TV" (K = Gradient2d, F = λ‖·‖_{2,1}). The free scale of every model (λ of
TV, the starting scale of the filters) is chosen on validation crops; the filters are trained by
:func:`pdunroll.train` (Adam, full backpropagation) on crops of train400 (the last 20 images held
out for validation) and tested on Set12. PSNR and SSIM (scikit-image, data range 1) on the image
without a border of 6 pixels. Writes OUT/inverse_problems.csv, a row per problem and model as
each is finished (a rerun skips the rows already there and reuses OUT/filters_<problem>.npy),
and the learned filters as OUT/filters_<problem>.png.

    python experiments/inverse_problems.py --out runs/inverse
"""

from __future__ import annotations

import argparse
import csv
import os
import time
from pathlib import Path

from _common import ROOT, np, pu, write_csv
from skimage import io
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from pdunroll.learning.plotting import plot_filters

IMAGES = Path(os.environ.get("PDUNROLL_IMAGES_DIR", ROOT.parent / "shared" / "data" / "images"))
NOISE = 0.01
BLUR = 1.6
BORDER = 6


def read_folder(folder: Path, count: int | None = None) -> list[np.ndarray]:
    files = sorted(folder.glob("*.png"))[:count]
    if not files:
        raise FileNotFoundError(f"no PNG images in {folder}")
    return [io.imread(f).astype(np.float64) / 255 for f in files]


def crops(images, size, count, rng) -> np.ndarray:
    out = []
    for _ in range(count):
        img = images[rng.integers(len(images))]
        i, j = (rng.integers(n - size + 1) for n in img.shape)
        out.append(img[i:i + size, j:j + size])
    return np.stack(out)


class Problem:
    """The forward operator, the data and the start x̃ of one problem for images of one
    shape (a batch shares the mask: each test image is solved on its own)."""

    def __init__(self, name, shape, rng, dtype):
        self.name, self.shape, self.dtype = name, shape, dtype
        if name == "deblur":
            self.A = pu.Blur(pu.gaussian_kernel(BLUR).astype(dtype), shape, "valid")
        else:
            self.A = pu.Mask((rng.random(shape) < 0.5).astype(dtype))
        self.rng = rng

    def measure(self, x):
        f = self.A.apply(x)
        return (f + NOISE * self.rng.standard_normal(f.shape)).astype(self.dtype)

    def start(self, f):
        if self.name == "deblur":
            pad = (self.shape[0] - f.shape[1]) // 2
            return np.pad(f, ((0, 0), (pad, pad), (pad, pad)), mode="edge")
        from scipy.ndimage import gaussian_filter

        m = np.asarray(self.A.mask)
        smooth = np.stack([gaussian_filter(fi, 2.0) for fi in f]) / gaussian_filter(m, 2.0)
        return (m * f + (1 - m) * smooth).astype(self.dtype)


def model_for(kind, problem, f, scale, filters=None):
    shape, dt = problem.shape, problem.dtype
    if kind == "tv":
        K, F = pu.Gradient2d(shape, dtype=np.dtype(dt)), pu.L21Norm(scale, group_axis=1)
    else:
        h = scale * pu.dct_filters(7).astype(dt) if filters is None else filters
        K, F = pu.Conv2dFilterBank(h, shape, "zero"), pu.L1Norm()
    return pu.inverse_problem(K, problem.A, f, f=F)


def steps_for(model, omega):
    """σ, τ from the bound ‖M‖² ≤ ‖K‖² + ‖A‖² (a filter bank's ‖K‖ from 1.02 × its exact
    periodic norm on a 256 × 256 grid, which bounds the zero-boundary norm of any size)."""
    K, A = model.operator.operators
    if isinstance(K, pu.Gradient2d):
        k = K.norm()
    else:
        k = 1.02 * pu.Conv2dFilterBank(K.params, (256, 256), "periodic").norm()
    return pu.step_sizes(model.operator, omega=omega, op_norm=float(np.hypot(k, A.norm())))


def solve(kind, problem, f, scale, L, omega, filters=None):
    m = model_for(kind, problem, f, scale, filters)
    return pu.chambolle_pock(m, problem.start(f), iterations=L, steps=steps_for(m, omega)).x


def scores(x_hat, clean):
    b = BORDER
    p = [peak_signal_noise_ratio(c[b:-b, b:-b], np.clip(x, 0, 1)[b:-b, b:-b], data_range=1.0)
         for x, c in zip(x_hat, clean, strict=True)]
    s = [structural_similarity(c[b:-b, b:-b], np.clip(x, 0, 1)[b:-b, b:-b], data_range=1.0)
         for x, c in zip(x_hat, clean, strict=True)]
    return p, s


def test_images(name, clean, L, omega, kind, scale, filters, seed, dtype):
    """Every test image with its own problem (own mask or blur geometry, own noise)."""
    x_hat = []
    for i, img in enumerate(clean):
        problem = Problem(name, img.shape, np.random.default_rng(seed + 100 + i), dtype)
        f = problem.measure(img[None].astype(dtype))
        x_hat.append(solve(kind, problem, f, scale, L, omega, filters)[0])
    return x_hat


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--problems", nargs="+", choices=("deblur", "inpaint"),
                   default=["deblur", "inpaint"])
    p.add_argument("--L", type=int, default=30, help="Chambolle-Pock steps (train and test)")
    p.add_argument("--omega", type=float, default=1.0, help="σ/τ balance of the solver")
    p.add_argument("--steps", type=int, default=300, help="training steps (Adam)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--patch", type=int, default=40, help="training crop size")
    p.add_argument("--lr", type=float, default=0.03,
                   help="Adam rate relative to the filters' starting scale (linear decay to "
                        "lr/100)")
    p.add_argument("--val-crops", type=int, default=16, help="validation crops (64 × 64)")
    p.add_argument("--tv-scales", type=float, nargs="+", default=[0.003, 0.01, 0.03],
                   help="λ of TV tried on validation")
    p.add_argument("--filter-scales", type=float, nargs="+", default=[0.01, 0.03, 0.1],
                   help="starting scales of the DCT filters tried on validation")
    p.add_argument("--test", type=int, default=12, help="Set12 images tested (first n)")
    p.add_argument("--train-images", type=int, default=380,
                   help="train400 images for training (the last 20 validate)")
    p.add_argument("--images", type=Path, default=IMAGES,
                   help="folder with train400/ and set12/ (default $PDUNROLL_IMAGES_DIR, else "
                        "../shared/data/images next to the repository)")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=ROOT / "runs" / "inverse_problems")
    p.add_argument("--quick", action="store_true",
                   help="a tiny setting (a minute): L 5, 3 steps, 2 test images cropped")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    if args.quick:
        args.L, args.steps, args.batch_size, args.patch = 5, 3, 2, 24
        args.val_crops, args.test, args.train_images = 2, 2, 4
        args.tv_scales, args.filter_scales = args.tv_scales[:2], args.filter_scales[:2]
    return args


def main(argv=None) -> int:
    args = parse(argv)
    dt = args.dtype
    path = args.out / "inverse_problems.csv"
    rows = []
    if path.exists():
        with open(path, newline="") as fh:
            rows = list(csv.DictReader(fh))
    done = {(r["problem"], r["model"]) for r in rows}
    train_all = read_folder(args.images / "train400")
    train_imgs, val_imgs = train_all[:args.train_images], train_all[-20:]
    clean_test = read_folder(args.images / "set12", args.test)
    if args.quick:
        clean_test = [img[:48, :48] for img in clean_test]
    args.out.mkdir(parents=True, exist_ok=True)
    for name in args.problems:
        rng = np.random.default_rng(args.seed)
        val_clean = crops(val_imgs, 64, args.val_crops, rng).astype(dt)
        val_problem = Problem(name, (64, 64), np.random.default_rng(args.seed + 1), dt)
        val_f = val_problem.measure(val_clean)

        def validate(kind, scale, filters=None, problem=val_problem, f=val_f, clean=val_clean):
            x = solve(kind, problem, f, scale, args.L, args.omega, filters)
            return float(np.mean(scores(x, clean)[0]))

        tv_val = {s: validate("tv", s) for s in args.tv_scales}
        dct_val = {s: validate("dct", s) for s in args.filter_scales}
        tv_scale, dct_scale = max(tv_val, key=tv_val.get), max(dct_val, key=dct_val.get)
        base = {"problem": name, "L": args.L, "omega": args.omega, "noise": NOISE,
                "blur_sigma": BLUR if name == "deblur" else "", "missing": 0.5
                if name == "inpaint" else "", "dtype": dt, "test_images": len(clean_test)}
        if (name, "start x̃") not in done:
            starts = []
            for i, img in enumerate(clean_test):
                problem = Problem(name, img.shape, np.random.default_rng(args.seed + 100 + i),
                                  dt)
                starts.append(problem.start(problem.measure(img[None].astype(dt)))[0])
            rows.append({**base, "model": "start x̃", **_summary(*scores(starts, clean_test))})
            _write(path, rows)

        def test(label, kind, scale, filters, val, name=name, base=base, **extra):
            if (name, label) in done:
                return
            tic = time.perf_counter()
            x_hat = test_images(name, clean_test, args.L, args.omega, kind, scale, filters,
                                args.seed, dt)
            row = {**base, "model": label, "scale": scale, "val_psnr": round(val, 3),
                   "test_seconds": round(time.perf_counter() - tic, 1),
                   **_summary(*scores(x_hat, clean_test)), **extra}
            print(row, flush=True)
            rows.append(row)
            _write(path, rows)

        # the baselines first: their rows are there while the filters train
        test("TV", "tv", tv_scale, None, tv_val[tv_scale])
        test("DCT filters", "dct", dct_scale, None, dct_val[dct_scale])
        if (name, "learned filters") in done:
            continue
        saved = args.out / f"filters_{name}.npy"
        if saved.exists():
            learned, train_seconds, n_steps = np.load(saved).astype(dt), "reused", ""
        else:
            n = args.steps * args.batch_size
            clean_p = crops(train_imgs, args.patch, n, rng).astype(dt)
            problem = Problem(name, (args.patch,) * 2, np.random.default_rng(args.seed + 2), dt)
            f = problem.measure(clean_p)
            start = model_for("dct", problem, f, dct_scale)
            lr = args.lr * dct_scale  # Adam's steps have the size of the rate
            tic = time.perf_counter()
            res = pu.train(start, problem.start(f), clean_p, iterations=args.L,
                           omega=args.omega, lr=pu.LearningRate(lr, "linear", final=lr / 100),
                           epochs=1, batch_size=args.batch_size, seed=args.seed,
                           progress=not args.quiet)
            train_seconds = round(time.perf_counter() - tic, 1)
            learned, n_steps = res.final_model.operator.params[0], res.steps
            np.save(saved, learned)
        plot_filters(learned, args.out / f"filters_{name}.png",
                     title=f"{len(learned)} learned filters ({name})")
        test("learned filters", "dct", 1.0, learned, validate("dct", 1.0, learned),
             train_steps=n_steps or args.steps, train_seconds=train_seconds, patch=args.patch,
             batch_size=args.batch_size)
    print(f"wrote {path}")
    return 0


def _write(path, rows):
    write_csv(path, rows)


def _summary(p, s):
    out = {"psnr_mean": round(float(np.mean(p)), 3), "ssim_mean": round(float(np.mean(s)), 4)}
    out.update({f"psnr_{i + 1:02d}": round(float(v), 2) for i, v in enumerate(p)})
    return out


if __name__ == "__main__":
    raise SystemExit(main())
