"""Figures of training runs (matplotlib, imported only when a figure is drawn; Agg backend)."""

from __future__ import annotations

from pathlib import Path

from .state import History

__all__ = ["plot_filters", "plot_learning_curves"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_learning_curves(history: History, path, *, title: str = "") -> Path:
    """Save a PNG with the minibatch loss (and its epoch means), the validation loss per
    epoch, ‖∇_K‖ per step and the learning rate; return its path."""
    plt = _pyplot()
    fig, (ax_loss, ax_grad) = plt.subplots(1, 2, figsize=(11, 4))
    steps = range(1, len(history.step_loss) + 1)
    per_epoch = len(history.step_loss) / max(len(history.epoch_train_loss), 1)
    ends = [per_epoch * (e + 1) for e in range(len(history.epoch_train_loss))]
    ax_loss.semilogy(steps, history.step_loss, color="0.75", lw=0.6, label="minibatch")
    ax_loss.semilogy(ends, history.epoch_train_loss, "o-", label="training (epoch mean)")
    val = [(x, v) for x, v in zip(ends, history.epoch_val_loss, strict=True) if v is not None]
    if history.initial_val_loss is not None:
        val.insert(0, (0, history.initial_val_loss))
    if val:
        ax_loss.semilogy(*zip(*val, strict=True), "s-", label="validation")
    ax_loss.set(xlabel="step", ylabel="loss  mean ½‖x̂ − x†‖²", title=title or "learning curves")
    ax_loss.legend()
    ax_grad.semilogy(steps, history.step_grad_norm, lw=0.6, label="‖∇_K‖")
    ax_grad.set(xlabel="step", ylabel="gradient norm")
    ax_lr = ax_grad.twinx()
    ax_lr.semilogy(steps, history.step_lr, color="C3", lw=1.0, label="learning rate")
    ax_lr.set_ylabel("learning rate", color="C3")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_filters(filters, path, *, title: str = "") -> Path:
    """Save the filters of a bank (NumPy array of shape (count, k, k)) as a gray PNG grid,
    eight to a row, each scaled to its own range; return its path."""
    import numpy as np

    filters = np.asarray(filters, dtype=np.float64)
    if filters.ndim != 3:
        raise ValueError(f"filters must have shape (count, k, k), got {filters.shape}")
    count, k, w = filters.shape
    cols = min(8, count)
    rows = -(-count // cols)
    grid = np.ones((rows * (k + 1) + 1, cols * (w + 1) + 1))
    for i, h in enumerate(filters):
        r, c = divmod(i, cols)
        grid[1 + r * (k + 1):1 + r * (k + 1) + k, 1 + c * (w + 1):1 + c * (w + 1) + w] = \
            (h - h.min()) / (np.ptp(h) or 1.0)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(cols, rows))
    ax.imshow(grid, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set(title=title or f"{count} filters {k}×{w}", xticks=[], yticks=[])
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80, bbox_inches="tight")
    plt.close(fig)
    return path
