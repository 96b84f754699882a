"""The report's figures: test accuracy against α with intervals, learning curves averaged over seeds, and (for
runs with per-epoch probes) test accuracy and memorized share against the epoch, per noise level."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.axes import Axes

from mixup_sweeps import plots, statistics
from mixup_sweeps.plots import plt
from mixup_sweeps.report.summary import TABLE_KEYS, readable, tables
from mixup_sweeps.sweeps.baseline import DEFAULT_BASELINE, Baseline, missing
from mixup_sweeps.train import probes

PLOTS = ("accuracy_vs_alpha.png", "learning_curves.png")  # every report
MEMORIZATION_PLOT = "memorization.png"  # reports of runs with trainer.test_every_epoch or a memorization probe


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


def _is_baseline(rows: pd.DataFrame, baseline: Baseline) -> pd.Series:
    """Which rows (groups or runs) are the report's baseline."""
    return pd.Series([baseline.includes(row) for _, row in rows.iterrows()], index=rows.index, dtype=bool)


def plot_accuracy_vs_alpha(
    summary: pd.DataFrame, keys: list[str], path: Path, baseline: Baseline = DEFAULT_BASELINE
) -> Path:
    """Mean test accuracy with its 95 % CI per alpha; the baseline's groups as horizontal bands."""

    def draw(ax: Axes, rows: pd.DataFrame) -> None:
        base = rows[_is_baseline(rows, baseline)]
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


def _mean_band(values: pd.DataFrame) -> pd.DataFrame:
    """Per step: mean over the runs and its 95 % t-interval (`statistics.t_interval`; no band for a single run)."""
    intervals = values.groupby("step")["value"].agg(statistics.t_interval)
    return pd.DataFrame(
        {"mean": [i.mean for i in intervals], "low": [i.low for i in intervals], "high": [i.high for i in intervals]},
        index=intervals.index,
    )


def _line_labels(runs: pd.DataFrame) -> pd.Series:
    """A run's line in the memorization figure: its augmentation (and model, when several), not its noise."""
    keys = [k for k in runs.columns if k.startswith("aug.") and k != "aug.name" and runs[k].dropna().nunique() > 1]
    keys = ["aug.name", *sorted(keys)] if "aug.name" in runs else keys
    if "model.name" in runs and runs["model.name"].nunique() > 1:
        keys.insert(0, "model.name")
    return pd.Series(
        [
            " ".join(readable(k, row[k]) for k in keys if not missing(row[k])) or "all runs"
            for _, row in runs.iterrows()
        ],
        index=runs.index,
    )


def plot_memorization(
    runs: pd.DataFrame, histories: dict[str, pd.DataFrame], path: Path, baseline: Baseline = DEFAULT_BASELINE
) -> Path | None:
    """Per noise level (columns): test accuracy and memorized share of the corrupted labels against the epoch
    (rows), one line per augmentation, mean over seeds with a 95 % band. None when no run has the probes."""
    rows = [
        (name, histories[name])
        for name in (probes.EPOCH_TEST_ACCURACY, probes.MEMORIZED)
        if name in histories and not histories[name].empty
    ]
    if not rows:
        return None
    probed = runs[runs["run_id"].isin(pd.concat([frame["run_id"] for _, frame in rows]))].copy()
    probed["line"] = _line_labels(probed)
    noise_key = "dataset.label_noise"
    levels = sorted(probed[noise_key].dropna().unique()) if noise_key in probed else [None]
    baseline_lines = set(probed.loc[_is_baseline(probed, baseline), "line"])
    baseline_first = sorted(probed["line"].unique(), key=lambda line: (line not in baseline_lines, line))
    colors = {line: f"C{i}" for i, line in enumerate(baseline_first)}
    fig, axes = plt.subplots(len(rows), len(levels), figsize=(5 * len(levels), 3.6 * len(rows)), squeeze=False)
    for column, level in enumerate(levels):
        at_level = probed if level is None else probed[probed[noise_key] == level]
        for row, (metric, frame) in enumerate(rows):
            ax = axes[row][column]
            for line in baseline_first:
                group = at_level[at_level["line"] == line]
                values = frame[frame["run_id"].isin(group["run_id"])]
                if values.empty:
                    continue
                band = _mean_band(values)
                ax.plot(band.index, band["mean"], color=colors[line], label=f"{line} (n={group['run_id'].nunique()})")
                low, high = band["low"].clip(0, 1), band["high"].clip(0, 1)  # shares: the band stops at 0 and 1
                ax.fill_between(band.index, low, high, color=colors[line], alpha=0.2, lw=0)
            noise = "" if level is None else f"label noise {level:g}: "
            ax.set_title(f"{noise}{metric}", fontsize=10)
            ax.set_xlabel("epoch")
            ax.grid(alpha=0.3)
            if metric == probes.MEMORIZED:
                ax.set_ylim(-0.02, 1.02)
                if not ax.lines:
                    ax.text(0.5, 0.5, "no corrupted labels", ha="center", va="center", transform=ax.transAxes)
            if ax.lines:
                ax.legend(fontsize=7)
    fig.suptitle("mean over seeds, 95 % band; memorized = share of probed corrupted examples predicted as their "
                 "corrupted label", fontsize=9)  # fmt: skip
    return plots.save_figure(fig, path, dpi=100)
