"""A search in the report: its answer (the best trial, what it cost, its confirmation on fresh seeds) and a section
with the trials, Optuna's optimisation history and parameter importances, from the record its sweeper left on the
parent run (`search/search.json`). The importances and plots come from an in-memory Optuna study rebuilt from
that record, so the report needs no access to the study's own storage."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import pandas as pd

log = logging.getLogger(__name__)
HISTORY_PLOT, IMPORTANCE_PLOT = "search_history.png", "search_importances.png"


def study_of(record: dict[str, Any]) -> Any:
    """An in-memory Optuna study holding the record's finished trials (values, states, distributions)."""
    import optuna
    from optuna.distributions import json_to_distribution
    from optuna.trial import TrialState, create_trial

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = {key: json_to_distribution(text) for key, text in record["space"].items()}
    study = optuna.create_study(direction=record["settings"]["direction"])
    for trial in sorted(record["trials"], key=lambda t: t["number"]):
        state = TrialState[trial["state"]]
        params = {k: v for k, v in trial["params"].items() if k in space}
        study.add_trial(create_trial(
            state=state, value=trial["value"] if state == TrialState.COMPLETE else None, params=params,
            distributions={k: space[k] for k in params},
        ))  # fmt: skip
    return study


def trials_table(record: dict[str, Any], rows: int = 10) -> pd.DataFrame:
    """The best `rows` complete trials, then the pruned and failed ones counted."""
    metric = record["settings"]["metric"]
    frame = pd.DataFrame(
        [
            {
                "trial": t["number"],
                **t["params"],
                metric: t["value"],
                "state": t["state"],
                "model-epochs": t["model_epochs"],
            }
            for t in record["trials"]
        ]  # fmt: skip
    )
    if frame.empty:
        return frame
    complete = frame[frame["state"] == "COMPLETE"]
    ascending = record["settings"]["direction"] == "minimize"
    return complete.sort_values(metric, ascending=ascending).head(rows)


def write_figures(record: dict[str, Any], out: Path) -> list[str]:
    """Optuna's optimisation history and (two or more parameters, two or more complete trials) parameter
    importances as PNG files under `out`; returns their names."""
    from optuna.exceptions import ExperimentalWarning
    from optuna.visualization import matplotlib as optuna_plots

    study = study_of(record)
    complete = [t for t in study.trials if t.value is not None]
    names = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        if complete:
            ax = optuna_plots.plot_optimization_history(study, target_name=record["settings"]["metric"])
            _save(ax, out / HISTORY_PLOT)
            names.append(HISTORY_PLOT)
        if len(record["space"]) >= 2 and len(complete) >= 2:
            try:
                ax = optuna_plots.plot_param_importances(study)
            except (ValueError, RuntimeError) as exc:  # e.g. every trial the same value
                log.warning("no parameter importances: %s", exc)
            else:
                _save(ax, out / IMPORTANCE_PLOT)
                names.append(IMPORTANCE_PLOT)
    return names


def _save(ax: Any, path: Path) -> None:
    import matplotlib.pyplot as plt

    figure = ax.get_figure(root=True)
    figure.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(figure)


def section(record: dict[str, Any]) -> list[str]:
    """The report's Markdown section on the search."""
    settings = record["settings"]
    lines = ["## Search", ""]
    lines += [f"Study {record['study']} in {settings['storage']} ({settings['sampler']} sampler, {settings['pruner']} "
              f"pruner, {settings['seeds_per_trial']} paired seeds a trial, objective {settings['metric']}, "
              f"{settings['direction']}).", ""]  # fmt: skip
    table = trials_table(record)
    if not table.empty:
        lines += ["Best trials:", "", table.to_markdown(index=False), ""]
    return lines
