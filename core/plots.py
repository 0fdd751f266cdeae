"""PNG figures of a training run, redrawn after every epoch (core/progress.py): loss / val-accuracy curves and the
routing models' span preferences. Epochs sit on integer ticks."""
import os

import numpy as np

from core.checkpoints import atomic_save


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _integer_epochs(ax):
    from matplotlib.ticker import MaxNLocator
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def training_curves(history, path, title=""):
    """history: core.runlog.read_history's dicts: 'epoch', 'loss' and, when validated, 'val_overall' (percent)."""
    plt = _pyplot()
    epochs = [h["epoch"] for h in history]
    fig, ax = plt.subplots(figsize=(6, 4))
    _integer_epochs(ax)
    ax.plot(epochs, [h["loss"] for h in history], "o-", color="tab:blue", label="train loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("train loss per question (log scale)", color="tab:blue")
    ax.set_yscale("log")
    val = [(h["epoch"], h["val_overall"]) for h in history if h.get("val_overall") is not None]
    if val:
        ax2 = ax.twinx()
        ax2.plot(*zip(*val), "s-", color="tab:orange", label="val accuracy")
        ax2.set_ylabel("val accuracy (%)", color="tab:orange")
    ax.set_title(title)
    fig.tight_layout()
    _save(fig, plt, path)


def routing_weights(weights, orders, path, title="Attention span preferred by each decoder layer"):
    """weights: (decoder layers, len(orders)) mean routing weight; one group of bars per layer."""
    plt = _pyplot()
    weights = np.asarray(weights)
    layers, spans = weights.shape
    fig, ax = plt.subplots(figsize=(max(5, layers * 1.2), 4))
    width = 0.8 / spans
    for j, order in enumerate(orders):
        label = "global" if order == 0 else f"{2 * order + 1}x{2 * order + 1} window"
        ax.bar(np.arange(layers) + j * width, weights[:, j], width, label=label)
    ax.set_xticks(np.arange(layers) + 0.4 - width / 2, [f"layer {i + 1}" for i in range(layers)])
    ax.set_ylabel("mean routing weight (val)")
    ax.set_ylim(0, 1)
    ax.set_title(title)
    ax.legend(fontsize="small")
    fig.tight_layout()
    _save(fig, plt, path)


def _save(fig, plt, path):
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    atomic_save(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    plt.close(fig)
