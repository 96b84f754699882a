"""The pictures logged with every run: what the network saw (samples.png), how it learned (curves.png) and how
well its confidence matches its accuracy on the test set (reliability.png); `save_figure` for the report's too."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from mixup_sweeps.calibration import Reliability  # noqa: E402


def save_figure(fig: Figure, path: Path, dpi: int = 80, tight: bool = True) -> Path:
    """Lay out, write and close a figure (closing frees it: a sweep draws hundreds). `tight=False` for a
    figure laid out by fixed margins: `tight_layout` draws the figure once more to measure it, which doubled the
    cost of the small figures every run logs (~0.1 s each on a 2-core machine)."""
    if tight:
        fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def soft_label_title(label: np.ndarray, class_names: Sequence[str] = ()) -> str:
    """'0.73 Coat + 0.27 Bag': the classes with weight >= 0.01, largest first."""
    order = [i for i in np.argsort(label)[::-1] if label[i] >= 0.01]
    names = [class_names[i] if i < len(class_names) else str(i) for i in order]
    return " + ".join(f"{label[i]:.2f} {name}" for i, name in zip(order, names))


def save_samples(images: np.ndarray, labels: np.ndarray, path: Path, class_names: Sequence[str] = ()) -> Path:
    """A 3x3 grid of training images after augmentation, titled with their soft labels (the seed's preview);
    a class without a name in `class_names` is shown by its number."""
    fig, axes = plt.subplots(3, 3, figsize=(9, 9.5))
    for ax, image, label in zip(axes.flat, images[:9], labels[:9]):
        ax.imshow(image.squeeze(), cmap="gray", vmin=0.0, vmax=1.0)
        ax.set_title(soft_label_title(label, class_names), fontsize=8)
        ax.axis("off")
    for ax in axes.flat[len(images[:9]) :]:
        ax.axis("off")
    fig.subplots_adjust(left=0.02, right=0.98, bottom=0.02, top=0.96, wspace=0.1, hspace=0.15)
    return save_figure(fig, path, tight=False)


def save_curves(history: list[dict[str, float]], path: Path, title: str = "") -> Path:
    """Loss and accuracy per epoch, training and validation."""
    epochs = np.arange(1, len(history) + 1)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, metric in zip(axes, ("loss", "accuracy")):
        for prefix, style in (("", "-o"), ("val_", "--s")):
            values = [h.get(prefix + metric, np.nan) for h in history]
            ax.plot(epochs, values, style, label=prefix + metric)
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.13, top=0.88 if title else 0.95, wspace=0.25)
    return save_figure(fig, path, tight=False)


def save_reliability(bins: Reliability, path: Path, title: str = "") -> Path:
    """Reliability diagram: accuracy per confidence bin against the diagonal, bin sizes below, ECE in the title."""
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(5, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    centers, width = (bins.edges[:-1] + bins.edges[1:]) / 2, np.diff(bins.edges)
    top.bar(centers, np.nan_to_num(bins.accuracy), width=width, edgecolor="black", alpha=0.7, label="accuracy")
    top.plot([0, 1], [0, 1], "--", color="gray", label="perfect calibration")
    top.plot(centers, bins.confidence, "r.", label="mean confidence")
    top.set_ylabel("accuracy")
    top.set_ylim(0, 1)
    top.legend(loc="upper left")
    top.set_title(f"{title + ': ' if title else ''}test ECE {bins.ece:.4f} ({len(centers)} bins)", fontsize=9)
    bottom.bar(centers, bins.counts, width=width, edgecolor="black", color="gray")
    bottom.set_yscale("log")
    bottom.set_xlabel("confidence (top-class probability)")
    bottom.set_ylabel("images")
    bottom.set_xlim(0, 1)
    fig.subplots_adjust(left=0.15, right=0.96, bottom=0.1, top=0.94, hspace=0.08)
    return save_figure(fig, path, tight=False)
