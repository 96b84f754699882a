"""A raced sweep in the report: each group's round and reason in `summary.csv`, and the race's answer (winner or
equivalent set, eliminations, runs spent) beside the winner's *test* accuracy with its interval (the race chose
on validation; the test set only reports)."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from mixup_sweeps.sweeps.baseline import same_value
from mixup_sweeps.sweeps.overrides import override_values

COLUMNS = ("race_outcome", "race_left_round", "race_seeds", "race_beaten_by", "race_delta", "race_low", "race_high")


def _rows_of(summary: pd.DataFrame, overrides: list[str], runs: pd.DataFrame | None = None) -> pd.Series:
    """The summary rows of the group these overrides select. A key that is no summary column has one value in
    every run reported (`runs`): an arm with another value has no rows (its runs all diverged, say)."""
    mask = pd.Series(True, index=summary.index)
    for key, value in override_values(overrides).items():
        if key in summary:
            mask &= summary[key].map(lambda v, value=value: same_value(v, value))
        elif runs is not None and key in runs and not same_value(runs[key].iloc[0], value):
            mask &= False
    return mask


def add_race_columns(summary: pd.DataFrame, record: dict[str, Any], runs: pd.DataFrame | None = None) -> pd.DataFrame:
    """`summary` with the round each group left the race and why (`COLUMNS`; NaN for groups not raced)."""
    summary = summary.copy()
    for column in COLUMNS:
        summary[column] = None
    for arm in record["arms"]:
        rows = _rows_of(summary, arm.get("overrides", []), runs)
        summary.loc[rows, "race_outcome"] = arm["outcome"]
        summary.loc[rows, "race_left_round"] = arm["left_round"]
        summary.loc[rows, "race_seeds"] = arm["seeds"]
        if "beaten_by" in arm:
            summary.loc[rows, ["race_beaten_by", "race_delta", "race_low", "race_high"]] = [
                arm["beaten_by"], arm["delta"], arm["low"], arm["high"]
            ]  # fmt: skip
    return summary


def race_answer(summary: pd.DataFrame, record: dict[str, Any], runs: pd.DataFrame | None = None) -> list[str]:
    """The race's lines, each remaining group's test accuracy with its interval first."""
    test = record["settings"].get("test_metric", "test_accuracy")
    lines = [record["lines"][0]]
    for arm in record["arms"]:
        if arm["outcome"] == "eliminated":
            continue
        rows = summary[_rows_of(summary, arm.get("overrides", []), runs)]
        if rows.empty or f"{test}_mean" not in rows:
            continue
        row = rows.iloc[0]
        low, high = row[f"{test}_ci_low"], row[f"{test}_ci_high"]
        bounds = "" if math.isnan(low) else f" [{low:.4f}, {high:.4f}]"
        lines.append(f"{arm['group']}: {test} {row[f'{test}_mean']:.4f}{bounds} (95 % t interval, {int(row['n'])} "
                     f"seeds; chosen on {record['settings']['metric']}, reported on the test set)")  # fmt: skip
    return lines + record["lines"][1:]
