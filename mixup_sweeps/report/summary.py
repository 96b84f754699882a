"""The numbers of a report: groups (the config keys that vary), their statistics over seeds, the paired
differences to each group's baseline, and the names people read for the groups."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import pandas as pd

from mixup_sweeps import statistics
from mixup_sweeps.config import PLUMBING_PREFIXES, SEED
from mixup_sweeps.sweeps.baseline import DEFAULT_BASELINE, Baseline, baselines_of, missing
from mixup_sweeps.train import probes

TABLE_KEYS = ("dataset.name", "model.name")  # runs differing in these are never averaged together
# metric -> its column prefix; test_accuracy_best (the best-validation epoch's) -> best_delta_*
DELTA_METRICS = {"test_accuracy": "delta", "test_ece": "ece_delta", probes.TEST_ACCURACY_BEST: "best_delta"}
SEEDS_FOR = (0.005, 0.01)  # half widths for which the report says how many seeds a comparison needs
# n/a where runs lack them: calibration (older runs), best epoch (trainer.test_every_epoch), memorized (last epoch)
SUMMARY_METRICS = (
    "test_accuracy", "test_loss", "test_ece", "test_nll", probes.TEST_ACCURACY_BEST, probes.BEST_EPOCH,
    probes.MEMORIZED,
)  # fmt: skip


def group_keys(runs: pd.DataFrame, params: Sequence[str]) -> list[str]:
    """Config keys whose value differs between runs (missing counts as a value), minus seed and plumbing."""
    varying = [
        k for k in params
        if k != SEED and not k.startswith(PLUMBING_PREFIXES) and runs[k].nunique(dropna=False) > 1
    ]  # fmt: skip
    return [k for k in TABLE_KEYS if k in runs] + sorted((k for k in varying if k not in TABLE_KEYS), key=_key_order)


def best_observed_baseline(runs: pd.DataFrame, keys: Sequence[str], baseline: Baseline) -> Baseline | None:
    """The baseline to use when no run is in `baseline`'s group (an α grid has no aug=none): the group with the
    best mean test accuracy, when the groups differ in one key only (so KEY=VALUE names that group). None when
    `baseline`'s runs are there, or several keys vary (no single group to name)."""
    if baseline.key in runs and any(baseline.includes({baseline.key: v}) for v in runs[baseline.key]):
        return None
    varying = [k for k in keys if k not in TABLE_KEYS]
    if len(varying) != 1 or "test_accuracy" not in runs:
        return None
    (key,) = varying
    means = runs.groupby(runs[key].astype(str))["test_accuracy"].mean()
    return Baseline(key, str(means.idxmax()))


def _key_order(key: str) -> tuple[int, str, bool, str]:
    """Config order: dataset, model, aug, trainer, then the rest; within a group `name` first."""
    sections = ("dataset", "model", "aug", "trainer")
    section, _, rest = key.partition(".")
    return (sections.index(section) if section in sections else len(sections), section, rest != "name", rest)


def tables(frame: pd.DataFrame) -> list[tuple[tuple[Any, ...], pd.DataFrame]]:
    """The frame split by dataset and model: one table (and one figure panel) each."""
    keys = [k for k in TABLE_KEYS if k in frame]
    if not keys:
        return [((), frame)]
    return [(k if isinstance(k, tuple) else (k,), g) for k, g in frame.groupby(keys, dropna=False, sort=True)]


def matches(frame: pd.DataFrame, row: pd.Series | dict[str, Any], keys: Iterable[str]) -> pd.Series:
    """Rows of `frame` whose values equal `row`'s for every key (a missing value matches a missing one)."""
    mask = pd.Series(True, index=frame.index)
    for k in keys:
        mask &= frame[k].isna() if missing(row[k]) else (frame[k] == row[k])
    return mask


def _label(keys: Sequence[str], values: Sequence[Any]) -> str:
    shown = [f"{k}={v}" for k, v in zip(keys, values) if k not in TABLE_KEYS and not missing(v)]
    return ",".join(shown) or "all runs"


def summarize(
    runs: pd.DataFrame,
    keys: list[str],
    curves: pd.DataFrame,
    epoch_seconds: pd.DataFrame,
    baseline: Baseline = DEFAULT_BASELINE,
    until: dict[str, Any] | None = None,
) -> pd.DataFrame:
    """One row per group: n, test accuracy/loss statistics, best mean val accuracy, and delta vs baseline."""
    rows = []
    grouped = runs.groupby(keys, dropna=False, sort=True) if keys else [((), runs)]
    for values, group in grouped:
        values = values if isinstance(values, tuple) else (values,)
        row = dict(zip(keys, values))
        row["group"] = _label(keys, values)
        if "aug.name" in group and "aug.name" not in keys:  # the same for all: kept for readable labels
            row["aug.name"] = group["aug.name"].iloc[0]
        row["n"] = len(group)
        for metric in SUMMARY_METRICS:
            interval = statistics.t_interval(group[metric] if metric in group else [])
            row.update({f"{metric}_mean": interval.mean, f"{metric}_std": interval.std,
                        f"{metric}_ci_low": interval.low, f"{metric}_ci_high": interval.high})  # fmt: skip
        mean_curve = curves[curves["run_id"].isin(group["run_id"])].groupby("step")["value"].mean()
        row["best_val_accuracy"] = float(mean_curve.max()) if len(mean_curve) else math.nan
        row["best_val_epoch"] = int(mean_curve.idxmax()) if len(mean_curve) else None
        row["mean_epoch_seconds"] = float(
            epoch_seconds.loc[epoch_seconds["run_id"].isin(group["run_id"]), "value"].mean()
        )
        rows.append(row)
    summary = pd.DataFrame(rows)
    summary["label"] = readable_labels(summary, keys)
    if baseline.key in keys:  # baselines first in every table
        is_baseline = [baseline.includes({baseline.key: v}) for v in summary[baseline.key]]
        summary = summary.iloc[pd.Series([not b for b in is_baseline]).argsort(kind="stable")].reset_index(drop=True)
    return add_paired_deltas(summary, runs, keys, baseline, until)


def add_paired_deltas(
    summary: pd.DataFrame,
    runs: pd.DataFrame,
    keys: list[str],
    baseline: Baseline = DEFAULT_BASELINE,
    until: dict[str, Any] | None = None,
) -> pd.DataFrame:
    """Mean paired difference of test accuracy (last and best-validation epoch) and ECE to the baseline over
    shared seeds, with t-intervals.

    A group's baseline is `sweep.baselines_of` (the rule the seeds-until sweeper uses too): the groups with
    `key=value` whose other group keys equal the group's; keys the baseline's choice owns need not match.
    For a sweep run with `hydra.sweeper.until` the accuracy interval is Stein's (the first `min_seeds`
    seeds' spread and t quantile): the interval whose coverage that procedure guarantees. Per group also the
    seeds the observed paired spread s implies for ±0.005 and ±0.01: n = ceil((t(n_pairs - 1) · s / h)²).

    The accuracy verdicts hold for each table as a whole (`holm_per_table`): `significant` is the group's own
    test (its interval excludes 0), `significant_holm` the decision after Holm's step-down over the table's
    comparisons, `p_value` / `p_holm` the two-sided paired t-test's p-value before and after.
    """
    for prefix in DELTA_METRICS.values():
        for column in ("vs_baseline", "ci_low", "ci_high"):
            summary[f"{prefix}_{column}"] = math.nan
    summary["delta_pairs"] = 0
    summary["significant"] = None
    summary["p_value"] = math.nan
    summary["interval"] = ""
    for width in SEEDS_FOR:
        summary[f"seeds_for_{width}"] = math.nan
    if baseline.key not in runs or SEED not in runs:
        return holm_per_table(summary)
    groups = [{k: row[k] for k in keys} for _, row in summary.iterrows()]
    for i, group in zip(summary.index, groups):
        compared_with = baselines_of(group, groups, baseline)
        if not compared_with:
            continue
        treated = runs[matches(runs, group, keys)].set_index(SEED)
        in_base = pd.Series(False, index=runs.index)
        for j in compared_with:
            in_base |= matches(runs, groups[j], keys)
        base = runs[in_base].set_index(SEED)
        for metric, prefix in DELTA_METRICS.items():
            if metric not in runs:
                continue
            diffs = statistics.paired_differences(treated[metric], base[metric])
            if diffs.empty:
                continue
            interval = statistics.t_interval(diffs)
            mean, lo, hi = interval.mean, interval.low, interval.high
            if metric == "test_accuracy":
                summary.loc[i, "delta_pairs"] = len(diffs)
                summary.loc[i, "interval"] = "t" if len(diffs) > 1 else ""
                p_value = statistics.t_test_p(interval.mean, interval.std, len(diffs))
                if until and len(diffs) >= until["min_seeds"]:
                    first = until["min_seeds"]
                    stein = statistics.stein_interval(diffs.to_numpy(), first)
                    mean, lo, hi = stein.mean, stein.low, stein.high
                    summary.loc[i, "interval"] = f"Stein, first {first} seeds"
                    spread = float(diffs.iloc[:first].std(ddof=1))
                    p_value = statistics.t_test_p(stein.mean, spread, len(diffs), df=first - 1)
                summary.loc[i, "significant"] = None if math.isnan(lo) else bool(lo > 0 or hi < 0)
                summary.loc[i, "p_value"] = p_value
                if len(diffs) > 1:
                    for width in SEEDS_FOR:
                        needed = statistics.seeds_for_half_width(interval.std, width, len(diffs) - 1)
                        summary.loc[i, f"seeds_for_{width}"] = needed
            summary.loc[i, [f"{prefix}_vs_baseline", f"{prefix}_ci_low", f"{prefix}_ci_high"]] = [mean, lo, hi]
    return holm_per_table(summary)


def holm_per_table(summary: pd.DataFrame) -> pd.DataFrame:
    """`p_holm`, `significant_holm` and `comparisons` (tests in the group's table): Holm's step-down over the
    accuracy comparisons of each dataset/model table, so the table's verdicts are wrong with at most 5 %
    probability together. A table with one comparison keeps its own decision."""
    summary["p_holm"], summary["significant_holm"], summary["comparisons"] = math.nan, None, 0
    for _, rows in tables(summary):
        tested = rows.index[rows["p_value"].notna()]
        reject, adjusted = statistics.holm(list(rows.loc[tested, "p_value"]))
        summary.loc[rows.index, "comparisons"] = len(tested)
        for i, rejected, p in zip(tested, reject, adjusted):
            summary.loc[i, "p_holm"], summary.loc[i, "significant_holm"] = p, rejected
    return summary


def readable_labels(summary: pd.DataFrame, keys: list[str]) -> pd.Series:
    """A group's name from only what distinguishes it inside its table: `none`, `mixup α=0.1`, ...

    A key counts when its *present* values differ within the table (`aug=none` lacking `aug.lam` does not make
    `aug.lam` distinguishing); `summary.csv` keeps the full keys in `group`.
    """
    labels = pd.Series("all runs", index=summary.index, dtype=object)
    for _, rows in tables(summary):
        shown = [k for k in keys if k not in TABLE_KEYS and rows[k].dropna().nunique() > 1]
        if "aug.name" in rows and "aug.name" not in shown and any(k.startswith("aug.") for k in shown):
            shown.insert(0, "aug.name")  # "mixup α=0.1", not a bare "α=0.1"
        for i, row in rows.iterrows():
            parts = [readable(k, row[k]) for k in shown if not missing(row[k])]
            labels[i] = " ".join(parts) or "all runs"
    return labels


def readable(key: str, value: Any) -> str:
    """One key's part of a label: `mixup`, `α=0.2`, `per_batch`, `precision=mixed_bfloat16`."""
    text = f"{value:g}" if isinstance(value, float) else str(value)
    if key == "aug.name" or (key.startswith("aug.") and not isinstance(value, (int, float))):
        return text
    if key == "aug.alpha":
        return f"α={text}"
    return f"{key.rsplit('.', 1)[-1]}={text}"
