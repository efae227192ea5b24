"""The radius factor c of each denoising row, chosen on held-out training images: the mean PSNR
and SSIM of total variation, the DCT filter start and the learned filters of a saved denoising
model, each with the ℓ2 ball c σ √#pixels, on the whole validation images of the model's run
(its data folder split by file as ``pdunroll train denoise`` splits it, noise of the run's σ),
for each c. Under the ball constraint c is the only setting of every row; this picks it for
each row without looking at the test images (``pdunroll evaluate --radius-factor c`` then
scores them).

    python experiments/denoise_radius.py docs/_static/results/denoise/model_sigma25.npz \
        --data runs/denoise_data --factors 0.85 0.9 0.95 1.0 -L 100 --omega 30 \
        --out runs/denoise_radius_sigma25.csv
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from _common import np, write_csv

import pdunroll as pu
from pdunroll.learning.evaluation import image_table
from pdunroll.learning.placement import Placement
from pdunroll.tasks import denoise
from pdunroll.tasks.base import split_files


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("model", type=Path, help="a model file of pdunroll train denoise --data")
    p.add_argument("--data", type=Path, default=None,
                   help="the run's data folder (default: the one it recorded)")
    p.add_argument("--factors", type=float, nargs="+", required=True, help="c values tried")
    p.add_argument("-L", "--iterations", type=int, required=True)
    p.add_argument("--omega", type=float, default=None, help="default: the model's")
    p.add_argument("--max-images", type=int, default=None,
                   help="the first this many validation images (default all)")
    p.add_argument("--backend", choices=("numpy", "torch"), default="torch")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    p.add_argument("--out", type=Path, required=True, help="CSV, one row per c and model")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse(argv)
    learned = pu.load_model(args.model)
    meta = learned.metadata
    folder = args.data if args.data is not None else Path(meta["data"]["folder"])
    split = split_files(folder, lambda f: (denoise.image_files(f),) * 2 + (None,),
                        seed=meta["seed"])
    paths = [p for _, p in split.parts[1]][:args.max_images]
    rng = np.random.default_rng(meta["seed"] + 13)
    sigma = meta["sigma"]
    images = [(p.name, img + sigma * rng.standard_normal(img.shape), img)
              for p, img in zip(paths, denoise.read_images(paths), strict=True)]
    steps = learned.steps if args.omega is None else pu.StepRule.from_settings(
        {**learned.steps.settings(), "omega": args.omega})
    print(f"{len(images)} validation images of {folder}, σ = {sigma:g}, L = "
          f"{args.iterations}, ω = {steps.omega:g}", flush=True)
    rows = []
    for c in args.factors:
        table = image_table(images, denoise.image_rows(learned.model, {**meta,
                                                                       "radius_factor": c},
                                                       sigma),
                            iterations=args.iterations, steps=steps,
                            move=Placement(args.backend, args.dtype).mover())
        for name, quality in table[-1].items():
            if name in ("image", "noisy input"):  # the input does not depend on c
                continue
            rows.append({"model": name, "radius_factor": c, "psnr_db": round(quality["psnr_db"], 4),
                         "ssim": round(quality["ssim"], 5), "images": len(images),
                         "L": args.iterations, "omega": steps.omega, "sigma": sigma,
                         "backend": args.backend, "dtype": args.dtype})
            print(f"c = {c:g}: {name} {quality['psnr_db']:.3f} dB / {quality['ssim']:.4f}",
                  flush=True)
    for name in dict.fromkeys(r["model"] for r in rows if r["radius_factor"] == args.factors[0]):
        best = max((r for r in rows if r["model"] == name), key=lambda r: r["psnr_db"])
        print(f"best c for {name}: {best['radius_factor']:g} ({best['psnr_db']:.3f} dB)")
    write_csv(args.out, rows)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
