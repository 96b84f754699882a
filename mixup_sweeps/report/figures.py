"""The report's figures: test accuracy against α with intervals, and learning curves averaged over seeds."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.axes import Axes

from mixup_sweeps import plots
from mixup_sweeps.plots import plt
from mixup_sweeps.report.summary import TABLE_KEYS, readable, tables
from mixup_sweeps.sweep import DEFAULT_BASELINE, missing

PLOTS = ("accuracy_vs_alpha.png", "learning_curves.png")


def _figure_per_table(
    frame: pd.DataFrame, draw: Callable[[Axes, pd.DataFrame], None], xlabel: str, ylabel: str, path: Path
) -> Path:
    """One panel per dataset/model table: `draw(ax, rows)` plots, this labels, titles and saves."""
    panels = tables(frame)
    fig, axes = plt.subplots(1, len(panels), figsize=(8 * len(panels), 5.5), squeeze=False)
    for ax, (table, rows) in zip(axes[0], panels):
        draw(ax, rows)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(" / ".join(str(t) for t in table))
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    return plots.save_figure(fig, path, dpi=110)


def plot_accuracy_vs_alpha(summary: pd.DataFrame, keys: list[str], path: Path) -> Path:
    """Mean test accuracy with its 95 % CI per alpha; the baseline as a horizontal band."""

    def draw(ax: Axes, rows: pd.DataFrame) -> None:
        base = rows[rows.get("aug.name", pd.Series(index=rows.index, dtype=object)) == DEFAULT_BASELINE.value]
        for _, b in base.iterrows():
            ax.axhline(b["test_accuracy_mean"], color="gray", lw=1)
            if not math.isnan(b["test_accuracy_ci_low"]):
                ax.axhspan(b["test_accuracy_ci_low"], b["test_accuracy_ci_high"], color="gray", alpha=0.2)
            ax.plot([], [], color="gray", label=f"{b['label']} (mean, 95% CI)")
        mixed = rows.drop(base.index)
        if "aug.alpha" not in mixed or not mixed["aug.alpha"].notna().any():
            return
        # one line per combination of the other keys that differ among the mixup groups (as in the labels)
        extra = [k for k in keys if k not in ("aug.alpha", "aug.name", *TABLE_KEYS) and mixed[k].dropna().nunique() > 1]
        lines = mixed.groupby(extra, dropna=False) if extra else [((), mixed)]
        for key, line in lines:
            line = line.dropna(subset=["aug.alpha"]).sort_values("aug.alpha")
            err = np.vstack([line["test_accuracy_mean"] - line["test_accuracy_ci_low"],
                             line["test_accuracy_ci_high"] - line["test_accuracy_mean"]])  # fmt: skip
            values = key if isinstance(key, tuple) else (key,)
            label = " ".join(readable(k, v) for k, v in zip(extra, values) if not missing(v))
            ax.errorbar(line["aug.alpha"], line["test_accuracy_mean"], yerr=np.nan_to_num(err), marker="o",
                        capsize=4, label=f"mixup {label}".strip())  # fmt: skip
        alphas = sorted(mixed["aug.alpha"].dropna().unique())
        ax.set_xscale("log")
        ax.set_xticks(alphas, [f"{a:g}" for a in alphas])
        ax.minorticks_off()

    return _figure_per_table(summary, draw, "aug.alpha", "test accuracy (mean, 95% CI)", path)


def plot_learning_curves(runs: pd.DataFrame, curves: pd.DataFrame, path: Path) -> Path:
    """Validation accuracy per epoch, averaged over the seeds of each group (runs carry the group `label`)."""

    def draw(ax: Axes, rows: pd.DataFrame) -> None:
        for label, group in rows.groupby("label", sort=False):
            mean = group.groupby("step")["value"].mean()
            ax.plot(mean.index, mean.values, marker=".", label=label)

    merged = curves.merge(runs[["run_id", "label", *(k for k in TABLE_KEYS if k in runs)]], on="run_id")
    return _figure_per_table(merged, draw, "epoch", "val_accuracy (mean over seeds)", path)
