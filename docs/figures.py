"""The figures of the tutorials: small PNGs in docs/tutorials/figures/, committed.

Run by hand from the repository root after a change that alters them (about a minute on one
CPU core; the image figure needs scikit-image, the ``images`` extra)::

    python docs/figures.py            # all figures
    python docs/figures.py speech toy # some of them

Each figure is drawn at 80 dpi (the learning curves at the 100 dpi of
``plot_learning_curves``) and stored with at most 64 colours, so that it stays under 100 kB.
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import pdunroll as pu  # noqa: E402
from pdunroll.learning.plotting import plot_learning_curves  # noqa: E402

OUT = Path(__file__).resolve().parent / "tutorials" / "figures"
DPI = 80


def _shrink(path: Path) -> Path:
    """Rewrite a PNG with a palette of at most 64 colours (grey levels where it is grey)."""
    from PIL import Image

    img = Image.open(path).convert("RGB")
    arr = np.asarray(img).astype(int)
    grey = np.abs(arr - arr.mean(axis=2, keepdims=True)).max() <= 2
    img = img.convert("L") if grey else img.quantize(64, dither=Image.Dither.NONE)
    img.save(path, optimize=True)
    return path


def _save(fig, name: str) -> Path:
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / name
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return _shrink(path)


def speech() -> list[Path]:
    """Learning curves of a short training run (the figure ``pdunroll train`` writes as
    curves.png) and one test frame: clean, quantized, DCT and learned reconstructions."""
    signals = pu.synthetic_speech(24, seconds=0.5, seed=1)
    tr, va, te = pu.split_signals(signals, (0.6, 0.2, 0.2))
    train, val, test = (pu.speech_frames(s, n=64, bitrate=4) for s in (tr, va, te))
    learner = pu.OperatorLearner(eta=train.eta, iterations=10, epochs=10, batch_size=32,
                                 lr=1e-3, progress=False)
    learner.fit(train.x_tilde, train.x_true, validation=(val.x_tilde, val.x_true))
    curves = _shrink(plot_learning_curves(learner.history_, OUT / "speech-curves.png",
                                          title="speech, n = 64, 4 bits, L = 10: 10 epochs"))

    dct = pu.AnalysisModel(pu.DenseOperator(pu.dct_matrix(64)), f=pu.L1Norm(),
                           g=pu.LinfBall(train.eta))
    x_dct = pu.chambolle_pock(dct, test.x_tilde, iterations=10, omega=10.0).x
    x_learned = learner.predict(test.x_tilde)
    i = int(np.argmax(np.abs(test.x_true).max(axis=1)))  # a loud frame
    t = np.arange(64)
    fig, ax = plt.subplots(figsize=(8, 3))
    def snr(x):
        return f"{pu.snr(x, test.x_true):.2f} dB"

    ax.step(t, test.x_tilde[i], where="mid", color="0.6",
            label=rf"quantized $\tilde x$ ({snr(test.x_tilde)})")
    ax.plot(t, test.x_true[i], "k", lw=1.5, label=r"clean $x^\dagger$")
    ax.plot(t, x_dct[i], "C0--", label=f"DCT ({snr(x_dct)})")
    ax.plot(t, x_learned[i], "C3", label=f"learned ({snr(x_learned)})")
    ax.set(xlabel="sample", ylabel="amplitude",
           title="one test frame; legend: SNR over all test frames")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8, frameon=False)
    fig.tight_layout()
    return [curves, _save(fig, "speech-frame.png")]


def images() -> list[Path]:
    """A noisy 96 x 96 crop of the camera man, denoised with total variation and with the 48
    DCT filters of size 7 x 7."""
    clean = pu.load_images("camera")[0][60:252:2, 150:342:2]  # 96 x 96, every other pixel
    s = 0.1
    noisy = pu.add_noise([clean], s, seed=0)[0]
    ball = pu.L2Ball(s * np.sqrt(clean.size))
    models = {"total variation": pu.AnalysisModel(pu.Gradient2d(clean.shape), f=pu.L1Norm(),
                                                  g=ball),
              "48 DCT filters 7×7": pu.AnalysisModel(
                  pu.Conv2dFilterBank(pu.dct_filters(7), clean.shape), f=pu.L1Norm(), g=ball)}
    panels = {"clean": clean, f"noisy (σ = {s})": noisy}
    for name, model in models.items():
        panels[name] = pu.chambolle_pock(model, noisy[None], iterations=50).x[0]
    fig, axes = plt.subplots(1, 4, figsize=(9, 2.6))
    for ax, (name, img) in zip(axes, panels.items(), strict=True):
        ax.imshow(img, cmap="gray", vmin=0, vmax=1)
        mse = "" if name == "clean" else f"\nMSE {np.mean((img - clean) ** 2):.1e}"
        ax.set_title(name + mse, fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    return [_save(fig, "images-denoising.png")]


def toy() -> list[Path]:
    """The six gradient estimates against the number of back-iterations (after 200 forward
    iterations): error at θ = 0.3, value at θ = 0 with the subdifferential."""
    t = pu.toy.Toy()
    backs = [1, 2, 3, 5, 8, 12, 20, 30, 50, 80, 120, 200]
    exact = t.analytic_gradient(0.3)
    lo, hi = t.subdifferential()
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.2))
    for k, (name, method) in enumerate(pu.toy.METHODS.items()):
        style = dict(color=f"C{k}", marker="os^vDx"[k], ms=4, lw=1, label=name)
        err = [max(abs(method(0.3, forward=200, back=n) - exact), 1e-17) for n in backs]
        a.loglog(backs, err, **style)
        b.semilogx(backs, [method(0.0, forward=200, back=n) for n in backs], **style)
    a.set(xlabel="back-iterations", ylabel="|estimate − L′(0.3)|", title="θ = 0.3 (smooth)")
    b.axhspan(lo, hi, color="0.9", label="subdifferential")
    b.set(xlabel="back-iterations", ylabel="estimate", title="θ = 0 (kink)")
    b.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8, frameon=False)
    fig.tight_layout()
    return [_save(fig, "toy-estimates.png")]


def segmentation() -> list[Path]:
    """Two labels on a 32 x 32 image: the noisy costs' pixelwise decision and the TV model's."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:32, :32]
    labels = (((yy - 14) ** 2 + (xx - 18) ** 2 < 90) | ((yy > 22) & (xx < 12))).astype(int)
    labels = labels[None]
    onehot = np.stack([labels == 0, labels == 1], axis=1).astype(float)
    costs = -onehot + 0.8 * rng.standard_normal(onehot.shape)
    u = pu.chambolle_pock(pu.segmentation_model(costs, tv_weight=0.5), np.zeros_like(costs),
                          iterations=200, weights="uniform").x
    panels = {"true labels": labels[0], "argmin of the noisy costs": costs.argmin(axis=1)[0],
              "TV model (λ = 0.5), L = 200": u.argmax(axis=1)[0]}
    fig, axes = plt.subplots(1, 3, figsize=(7.5, 2.8))
    for ax, (name, img) in zip(axes, panels.items(), strict=True):
        ax.imshow(img, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        acc = "" if name == "true labels" else f"\naccuracy {np.mean(img == labels[0]):.0%}"
        ax.set_title(name + acc, fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    return [_save(fig, "segmentation.png")]


FIGURES = {"speech": speech, "images": images, "toy": toy, "segmentation": segmentation}

if __name__ == "__main__":
    for name in sys.argv[1:] or FIGURES:
        for path in FIGURES[name]():
            print(f"{path.relative_to(Path.cwd())}: {path.stat().st_size / 1000:.0f} kB")
