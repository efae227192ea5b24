"""Multi-label segmentation behind a CNN, trained end to end (Ochs, Ranftl, Brox & Pock
2016, §8).

A tiny torch CNN maps a noisy image to label costs c (batch, labels, H, W); pdunroll's unrolled
ergodic primal-dual algorithm with entropic simplex steps solves

    min_u ⟨c, u⟩ + λ Σ_labels ‖D u_l‖_{2,1}   on the pixelwise simplex

and the loss is the pixelwise cross-entropy of u. The gradient w.r.t. c is pdunroll's
hand-written recursion behind the torch layer ``pdunroll.torch.UnrolledCP`` (``u = layer(0,
g=c)``, then ``loss.backward()``): torch autograd differentiates the loss and the CNN only. A
baseline CNN of the same shape is trained with plain cross-entropy on softmax(−c). Synthetic
data: disks (label 1) and rectangles (label 2) on a background (label 0), intensities 0, ½, 1
plus Gaussian noise.

Writes accuracy.csv (pixel accuracy and mean IoU on held-out images), training.csv (loss per
step) and segmentation.png to --out (default runs/segmentation). Needs torch (an optional
dependency of pdunroll): ``pip install torch==2.13.0``.

    python experiments/segmentation.py --quick      # about a minute on 2 CPU cores
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import numpy as np

import pdunroll as pu

try:
    import torch
except ImportError:  # the script says so in main(); the module stays importable
    torch = None

ROOT = Path(__file__).resolve().parents[1]
LABELS = 3
INTENSITIES = (0.0, 0.5, 1.0)


def synthetic_images(n: int, size: int, noise: float, rng) -> tuple[np.ndarray, np.ndarray]:
    """n images (n, 1, size, size) float32 and their labels (n, size, size): 1–3 disks (label 1)
    and 1–2 rectangles (label 2, drawn on top) on background 0, class intensity + N(0, noise²)."""
    labels = np.zeros((n, size, size), dtype=np.int64)
    yy, xx = np.mgrid[:size, :size]
    for lab in labels:
        for _ in range(rng.integers(1, 4)):
            cy, cx = rng.uniform(0, size, 2)
            rad = rng.uniform(size / 10, size / 4)
            lab[(yy - cy) ** 2 + (xx - cx) ** 2 <= rad**2] = 1
        for _ in range(rng.integers(1, 3)):
            y0, x0 = rng.integers(0, size - size // 5, 2)
            h, w = rng.integers(size // 6, size // 2, 2)
            lab[y0:y0 + h, x0:x0 + w] = 2
    clean = np.asarray(INTENSITIES)[labels]
    images = clean + noise * rng.standard_normal(labels.shape)
    return images[:, None].astype(np.float32), labels


def onehot(labels: np.ndarray) -> np.ndarray:
    """(n, H, W) integer labels ↦ (n, LABELS, H, W) float32 indicator."""
    return (labels[:, None] == np.arange(LABELS)[None, :, None, None]).astype(np.float32)


def make_cnn(width: int = 16, seed: int = 0):
    """Three convolutions (3×3, 3×3, 1×1; receptive field 5×5) from 1 channel to LABELS costs."""
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, width, 3, padding=1), torch.nn.ReLU(),
        torch.nn.Conv2d(width, width, 3, padding=1), torch.nn.ReLU(),
        torch.nn.Conv2d(width, LABELS, 1))


def tv_layer(template_costs, *, tv_weight: float, iterations: int):
    """The TV-on-the-simplex model as a torch layer (``pdunroll.torch.UnrolledCP``): u =
    layer(x̃ = 0, g=c) runs L ergodic CP steps, and its backward is pdunroll's hand-written
    recursion into the costs c (G = LinearTerm(c, EntropicSimplex))."""
    from pdunroll.torch import UnrolledCP

    return UnrolledCP(pu.segmentation_model(template_costs, tv_weight), iterations=iterations,
                      weights="uniform")


def tv_step(net, optimizer, layer, images, target, *, eps: float = 1e-6) -> float:
    """One end-to-end step: c = net(images), u = layer(0, g=c), ℓ = pixelwise cross-entropy of
    u; ``loss.backward()`` runs torch autograd through the loss and the CNN and pdunroll's
    recursion through the layer. Returns ℓ before the step."""
    optimizer.zero_grad()
    costs = net(images)
    u = layer(torch.zeros_like(costs), g=costs)
    pixels = target.shape[0] * target.shape[2] * target.shape[3]
    loss = -(target * torch.log(u + eps)).sum() / pixels
    loss.backward()
    optimizer.step()
    return float(loss.detach())


def cnn_step(net, optimizer, images, labels) -> float:
    """One step of the baseline: cross-entropy of softmax(−c) (all torch autograd)."""
    optimizer.zero_grad()
    loss = torch.nn.functional.cross_entropy(-net(images), labels)
    loss.backward()
    optimizer.step()
    return float(loss.detach())


def tv_segment(costs, *, tv_weight: float, iterations: int):
    """u = ergodic CP solution of the TV model for costs c (torch, no gradient)."""
    model = pu.segmentation_model(costs, tv_weight)
    return pu.chambolle_pock(model, torch.zeros_like(costs), iterations=iterations,
                             weights="uniform").x


def accuracy(scores, labels) -> float:
    """Fraction of pixels whose argmax over axis 1 is the true label."""
    return float((scores.argmax(dim=1) == labels).double().mean())


def mean_iou(scores, labels) -> float:
    """Intersection over union of prediction (argmax over axis 1) and truth, averaged over the
    labels."""
    pred = scores.argmax(dim=1)
    ious = [float(((pred == k) & (labels == k)).sum()) / max(float(((pred == k)
                                                                    | (labels == k)).sum()), 1)
            for k in range(LABELS)]
    return sum(ious) / LABELS


def _train(step, net, data, args, log):
    optimizer = torch.optim.Adam(net.parameters(), lr=args.lr)
    images, labels = data
    target = torch.from_numpy(onehot(labels.numpy()))
    rng = np.random.default_rng(args.seed)
    layer = None
    for i in range(args.steps):
        idx = torch.from_numpy(rng.choice(len(images), args.batch, replace=False))
        if step is tv_step:
            if layer is None:
                layer = tv_layer(torch.zeros((args.batch, LABELS, *images.shape[2:])),
                                 tv_weight=args.tv_weight, iterations=args.L)
            loss = tv_step(net, optimizer, layer, images[idx], target[idx])
        else:
            loss = cnn_step(net, optimizer, images[idx], labels[idx])
        log.append(loss)
        if not args.quiet and (i + 1) % max(1, args.steps // 10) == 0:
            print(f"  step {i + 1}/{args.steps}: loss {loss:.4f}", flush=True)


def _figure(path, images, labels, panels, histories):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = min(3, len(images))
    cols = 2 + len(panels)
    fig, axes = plt.subplots(n + 1, cols, figsize=(2.2 * cols, 2.2 * (n + 1)))
    for i in range(n):
        row = [("noisy image", images[i, 0], "gray"), ("truth", labels[i], "viridis")]
        row += [(name, seg[i], "viridis") for name, seg in panels.items()]
        for ax, (title, img, cmap) in zip(axes[i], row, strict=True):
            ax.imshow(img, cmap=cmap, vmin=None if cmap == "gray" else 0,
                      vmax=None if cmap == "gray" else LABELS - 1)
            ax.set_title(title, fontsize=8)
            ax.axis("off")
    for ax in axes[n, 1:]:
        ax.axis("off")
    ax = axes[n, 0]
    for name, hist in histories.items():
        ax.plot(hist, label=name, lw=0.8)
    ax.set_xlabel("step", fontsize=8)
    ax.set_title("training loss", fontsize=8)
    ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "segmentation",
                        help="output folder (default runs/segmentation)")
    parser.add_argument("--quick", action="store_true",
                        help="small setting: about a minute on 2 CPU cores")
    parser.add_argument("--size", type=int, help="image side (quick 32, else 48)")
    parser.add_argument("--train", type=int, help="training images (quick 64, else 256)")
    parser.add_argument("--test", type=int, default=32, help="held-out images")
    parser.add_argument("--steps", type=int, help="Adam steps per model (quick 150, else 600)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-2)
    parser.add_argument("--L", type=int, default=30, help="unrolled primal-dual iterations")
    parser.add_argument("--tv-weight", type=float, default=0.5, help="λ of the TV term")
    parser.add_argument("--noise", type=float, default=0.6, help="noise standard deviation")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (1 is fastest for these small tensors)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    if torch is None:
        sys.exit("experiments/segmentation.py needs torch for the CNN (an optional dependency "
                 "of pdunroll): pip install torch")
    args.size = args.size or (32 if args.quick else 48)
    args.train = args.train or (64 if args.quick else 256)
    args.steps = args.steps or (150 if args.quick else 600)
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    train_data = [torch.from_numpy(a) for a in synthetic_images(args.train, args.size,
                                                                args.noise, rng)]
    test_images, test_labels = (torch.from_numpy(a) for a in synthetic_images(
        args.test, args.size, args.noise, rng))

    histories, seconds, nets = {}, {}, {}
    for name, step in (("CNN alone", cnn_step), ("CNN + TV (end to end)", tv_step)):
        if not args.quiet:
            print(f"training {name}", flush=True)
        nets[name], histories[name] = make_cnn(seed=args.seed), []
        start = time.perf_counter()
        _train(step, nets[name], train_data, args, histories[name])
        seconds[name] = time.perf_counter() - start

    opts = dict(tv_weight=args.tv_weight, iterations=args.L)
    with torch.no_grad():
        c_cnn = nets["CNN alone"](test_images)
        c_tv = nets["CNN + TV (end to end)"](test_images)
    u_plug = tv_segment(c_cnn, **opts)
    u_tv = tv_segment(c_tv, **opts)
    rows = [
        ("CNN alone", "argmin c", c_cnn.neg(), seconds["CNN alone"]),
        ("CNN alone + TV (not retrained)", "argmax u", u_plug, ""),
        ("CNN + TV (end to end)", "argmin c", c_tv.neg(), ""),
        ("CNN + TV (end to end)", "argmax u", u_tv, seconds["CNN + TV (end to end)"]),
    ]
    rows = [(m, p, accuracy(sc, test_labels), mean_iou(sc, test_labels), t)
            for m, p, sc, t in rows]
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "accuracy.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["model", "prediction", "pixel_accuracy", "mean_iou", "train_seconds",
                         "size",
                         "train_images", "test_images", "steps", "L", "tv_weight", "noise"])
        for row in rows:
            writer.writerow([*row, args.size, args.train, args.test, args.steps, args.L,
                             args.tv_weight, args.noise])
    with open(args.out / "training.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["step", *histories])
        writer.writerows(zip(range(1, args.steps + 1), *histories.values(), strict=True))
    panels = {"CNN alone": c_cnn.argmin(dim=1), "CNN + TV: argmin c": c_tv.argmin(dim=1),
              "CNN + TV: argmax u": u_tv.argmax(dim=1)}
    _figure(args.out / "segmentation.png", test_images.numpy(), test_labels.numpy(),
            {k: v.numpy() for k, v in panels.items()}, histories)
    for model, pred, acc, iou, _ in rows:
        print(f"{model:32s} {pred:9s} pixel accuracy {acc:.4f}  mean IoU {iou:.4f}")
    print(f"wrote {args.out / 'accuracy.csv'}, training.csv, segmentation.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
