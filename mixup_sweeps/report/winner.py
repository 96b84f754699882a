"""The report's answer in MLflow's registry: the winner of the sweep it reports registered (`store.registry`),
decided by the sweep's own procedure (a race's winner, a search's confirmed best) or, for a compared grid, by
the comparison the report made (`sweeps.winner.grid_winner`)."""

from __future__ import annotations

from typing import Any

import pandas as pd
from mlflow.entities.model_registry import ModelVersion
from mlflow.tracking import MlflowClient

from mixup_sweeps.report.store import RunSet
from mixup_sweeps.store import registry, tracking
from mixup_sweeps.sweeps import winner
from mixup_sweeps.sweeps.baseline import Baseline, missing


def grid_groups(summary: pd.DataFrame, keys: list[str], baseline: Baseline) -> list[dict[str, Any]]:
    """Each summary row as `winner.grid_winner` reads it: its values, mean test accuracy, whether it is the
    baseline, and whether the comparison (after Holm) found it better or worse than the baseline."""
    groups = []
    for _, row in summary.iterrows():
        values = {key: row[key] for key in keys}
        decided = row.get("significant_holm") in (True,)  # None: not compared
        delta = row.get("delta_vs_baseline")
        groups.append({
            "values": values,
            "label": str(row["label"]),
            "mean": float(row["test_accuracy_mean"]),
            "baseline": baseline.includes(values),
            "better": decided and not missing(delta) and delta > 0,
            "worse": decided and not missing(delta) and delta < 0,
        })  # fmt: skip
    return groups


def register(
    client: MlflowClient, run_set: RunSet, summary: pd.DataFrame, keys: list[str], baseline: Baseline, answer: str
) -> ModelVersion | None:
    """Register the winner of the reported sweep (`run_set.parent_run_id`) with the answer as its description."""
    if not run_set.parent_run_id:
        return None
    parent = client.get_run(run_set.parent_run_id)
    if run_set.race:
        chosen = winner.race_winner(run_set.race)
    elif run_set.search:
        chosen = winner.search_winner(run_set.search)
    else:
        chosen = winner.grid_winner(grid_groups(summary, keys, baseline))
    runs = tracking.sweep_runs(client, run_set.experiment_id, parent)
    return registry.register_winner(client, parent, runs, chosen, answer)
