"""`python -m mixup_sweeps.report`: a sweep's MLflow runs as comparison tables and plots.

Groups are the config keys that vary across the runs; `seed` is the replicate axis, never a group key. Each
group gets mean, std and a Student-t 95 % interval over its runs, and each other group the *paired*
difference (test accuracy and ECE) to its baseline over the seeds both have: by default `aug=none` with the
same other keys; `--baseline trainer.precision=float32` compares each precision with float32 instead. Runs of
different datasets or models land in separate tables and are never averaged together.
"""

from __future__ import annotations

import argparse
import base64
import gc
import html
import json
import math
import sys
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from mixup_sweeps import seeds
from mixup_sweeps.config import PLUMBING_PREFIXES, load_config
from mixup_sweeps.tracking import UI_URL, ui_runs_link, ui_url_for

SEED = "seed"
TABLE_KEYS = ("dataset.name", "model.name")  # runs differing in these are never averaged together
# Tags that are compared like config keys: runs of one config on different hardware are different groups.
TAG_KEYS = ("accelerator",)
BASELINE = "none"
DEFAULT_UI_URL = UI_URL  # `mlflow ui`'s address, for the report's links
DEFAULT_BASELINE = ("aug.name", BASELINE)  # (key, value) of the runs every other group is compared with
DELTA_METRICS = {"test_accuracy": "delta", "test_ece": "ece_delta"}  # metric -> its column prefix
PLOTS = ("accuracy_vs_alpha.png", "learning_curves.png")
SEEDS_FOR = (0.005, 0.01)  # half widths for which the report says how many seeds a comparison needs
SUMMARY_METRICS = ("test_accuracy", "test_loss", "test_ece", "test_nll")  # n/a for runs from before calibration


class ReportError(Exception):
    """Nothing to report (no experiment, sweep or finished run): a message and exit code 2."""


@dataclass
class RunSet:
    runs: pd.DataFrame  # one row per FINISHED run: run_id, run_name, params (plain keys), metrics
    params: list[str]  # which columns of `runs` are config params
    left_out: dict[str, int]  # status -> count of runs not FINISHED
    label: str  # sweep id or "all"
    experiment_id: str
    parent_run_id: str | None
    until: dict | None = None  # the sweep's `hydra.sweeper.until` (Stein's two-stage procedure), if it used it


def t_interval(values: Iterable[float], confidence: float = 0.95) -> tuple[float, float, float, float]:
    """(mean, std, low, high) with a Student-t interval; std and the interval are NaN for fewer than 2 values."""
    x = np.asarray([v for v in values if v is not None and not math.isnan(v)], dtype=float)
    if len(x) == 0:
        return (math.nan,) * 4
    mean = float(x.mean())
    if len(x) < 2:
        return mean, math.nan, math.nan, math.nan
    std = float(x.std(ddof=1))
    half = float(stats.t.ppf(0.5 + confidence / 2, len(x) - 1)) * std / math.sqrt(len(x))
    return mean, std, mean - half, mean + half


# --- reading the store ---------------------------------------------------------------------------------
@contextmanager
def gc_paused():
    """Pause the cyclic garbage collector while MLflow builds hundreds of thousands of ORM objects.

    Measured on 10,000 runs: search_runs 13.6 s with the collector running, 5.9 s without it.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def runs_frame(client, experiment_id: str) -> pd.DataFrame:
    """All active runs of the experiment, one row each, with mlflow.search_runs's column names.

    A SQL store (SQLite, PostgreSQL) is read with four set queries into pandas; any other store through
    `MlflowClient.search_runs`. Both give the same frame (tests/test_report.py checks it); the SQL path
    exists for speed: search_runs builds ~40 ORM objects per run and took 13 s on 10,000 runs here
    (docs/benchmarks.md), the set queries take well under one.
    """
    engine = _sql_engine(client)
    return _client_runs_frame(client, experiment_id) if engine is None else _sql_runs_frame(engine, experiment_id)


def _client_runs_frame(client, experiment_id: str) -> pd.DataFrame:
    rows, token = [], None
    with gc_paused():
        while True:
            page = client.search_runs([experiment_id], max_results=50_000, page_token=token)
            for run in page:
                row = {"run_id": run.info.run_id, "status": run.info.status, "start_time": run.info.start_time}
                row.update({f"params.{k}": v for k, v in run.data.params.items()})
                row.update({f"metrics.{k}": v for k, v in run.data.metrics.items()})
                row.update({f"tags.{k}": v for k, v in run.data.tags.items()})
                rows.append(row)
            token = page.token
            if not token:
                break
    return pd.DataFrame(rows)


def _sql_engine(client):
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    store = client._tracking_client.store
    return store.engine if isinstance(store, SqlAlchemyStore) else None


def _sql_runs_frame(engine, experiment_id: str) -> pd.DataFrame:
    from sqlalchemy import text

    active = "SELECT run_uuid FROM runs WHERE experiment_id = :exp AND lifecycle_stage = 'active'"
    queries = {
        "params": f"SELECT run_uuid, key, value FROM params WHERE run_uuid IN ({active})",
        "metrics": "SELECT run_uuid, key, CASE WHEN is_nan THEN NULL ELSE value END AS value "
        f"FROM latest_metrics WHERE run_uuid IN ({active})",
        "tags": f"SELECT run_uuid, key, value FROM tags WHERE run_uuid IN ({active})",
    }
    with engine.connect() as connection:
        frame = pd.read_sql(
            text(
                "SELECT run_uuid AS run_id, status, start_time FROM runs "
                "WHERE experiment_id = :exp AND lifecycle_stage = 'active' ORDER BY start_time DESC"
            ),
            connection,
            params={"exp": int(experiment_id)},
        ).set_index("run_id")
        for prefix, query in queries.items():
            long = pd.read_sql(text(query), connection, params={"exp": int(experiment_id)})
            wide = long.pivot(index="run_uuid", columns="key", values="value")
            frame = frame.join(wide.add_prefix(f"{prefix}."))
    return frame.reset_index()


def fetch_runs(tracking_uri: str, experiment: str, sweep: str) -> RunSet:
    from mlflow.tracking import MlflowClient

    from mixup_sweeps.tracking import REUSED_IN_SWEEP, SEEDS_UNTIL_TAG, end_ghost_runs

    client = MlflowClient(tracking_uri=tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        raise ReportError(f"No experiment {experiment!r} in {tracking_uri}: run a sweep first")
    end_ghost_runs(client, exp.experiment_id)  # a run whose process died on this host is not "running"
    df = runs_frame(client, exp.experiment_id)
    if df.empty:
        raise ReportError(f"No runs in experiment {experiment!r} ({tracking_uri})")
    for column in ("tags.sweep_parent", "tags.sweep_id"):
        if column not in df:
            df[column] = None
    is_parent = df["tags.sweep_parent"] == "true"
    parents, runs = df[is_parent], df[~is_parent]
    parent_run_id, until = None, None
    if sweep == "all":
        label = "all"
    else:
        if sweep == "latest":
            if parents.empty:
                raise ReportError(f"No sweep in experiment {experiment!r}: run one with -m, or use --sweep all")
            parent = parents.sort_values("start_time").iloc[-1]
        else:
            matching = parents[parents["tags.sweep_id"] == sweep]
            if matching.empty:
                known = ", ".join(parents.sort_values("start_time")["tags.sweep_id"].dropna().tail(5)) or "none"
                raise ReportError(f"No sweep {sweep!r} in experiment {experiment!r} (latest sweeps: {known})")
            parent = matching.iloc[-1]
        label, parent_run_id = parent["tags.sweep_id"], parent["run_id"]
        until_tag = parent.get(f"tags.{SEEDS_UNTIL_TAG}")
        until = json.loads(until_tag) if isinstance(until_tag, str) else None
        in_sweep = runs["tags.sweep_id"] == label
        reused = f"tags.{REUSED_IN_SWEEP}{label}"  # runs of earlier sweeps that this sweep skipped to
        if reused in runs:
            in_sweep |= runs[reused].notna()
        runs = runs[in_sweep]
    left_out = runs.loc[runs["status"] != "FINISHED", "status"].value_counts().to_dict()
    finished = runs[runs["status"] == "FINISHED"]
    if finished.empty:
        raise ReportError(f"No FINISHED runs in {label!r} of experiment {experiment!r} (left out: {left_out or 0})")
    params = [c[len("params.") :] for c in finished.columns if c.startswith("params.")]
    params += [k for k in TAG_KEYS if f"tags.{k}" in finished]
    return RunSet(tidy(finished), params, left_out, label, exp.experiment_id, parent_run_id, until)


def _numeric_if_possible(column: pd.Series) -> pd.Series:
    converted = pd.to_numeric(column, errors="coerce")
    return converted if converted.notna().sum() == column.notna().sum() else column


def tidy(df: pd.DataFrame) -> pd.DataFrame:
    """Plain column names: params as their config keys (numbers parsed), metrics by name, TAG_KEYS by name."""
    out = pd.DataFrame({"run_id": df["run_id"].values, "run_name": df.get("tags.mlflow.runName", df["run_id"]).values})
    for column in df.columns:
        if column.startswith("params."):
            out[column[len("params.") :]] = _numeric_if_possible(df[column]).values
        elif column.startswith("metrics."):
            out[column[len("metrics.") :]] = df[column].values
        elif column.startswith("tags.") and column[len("tags.") :] in TAG_KEYS:
            out[column[len("tags.") :]] = df[column].values
    return out


def parse_where(conditions: Sequence[str]) -> dict[str, str]:
    """`--where KEY=VALUE` (repeatable): a config key or a tag in TAG_KEYS, e.g. accelerator=cpu, backend=jax."""
    parsed = {}
    for condition in conditions:
        key, sep, value = condition.partition("=")
        if not sep or not key:
            raise ReportError(f"--where {condition!r}: expected KEY=VALUE, e.g. accelerator=cpu or backend=jax")
        parsed[key.strip()] = value.strip()
    return parsed


def select_runs(run_set: RunSet, where: dict[str, str]) -> RunSet:
    """Only the runs whose KEY equals VALUE for every condition (compared as text)."""
    runs = run_set.runs
    for key, value in where.items():
        if key not in runs:
            known = ", ".join(sorted(run_set.params))
            raise ReportError(f"--where {key}={value}: no such key in these runs (known: {known})")
        runs = runs[runs[key].astype(str) == value]
    if runs.empty:
        shown = " ".join(f"{k}={v}" for k, v in where.items())
        raise ReportError(f"No FINISHED runs in {run_set.label!r} with {shown}")
    return replace(run_set, runs=runs)


def metric_histories(tracking_uri: str, run_ids: Sequence[str], key: str) -> pd.DataFrame:
    """Long table (run_id, step, value) of one metric for many runs: set queries on SQL stores."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    engine = _sql_engine(client)
    if engine is not None:
        from sqlalchemy import bindparam, text

        query = text(
            "SELECT run_uuid AS run_id, step, CASE WHEN is_nan THEN NULL ELSE value END AS value FROM metrics "
            "WHERE key = :key AND run_uuid IN :run_ids ORDER BY run_uuid, step, timestamp"
        ).bindparams(bindparam("run_ids", expanding=True))
        frames = []
        with engine.connect() as connection:
            for i in range(0, len(run_ids), 5000):
                chunk = list(run_ids[i : i + 5000])
                frames.append(pd.read_sql(query, connection, params={"key": key, "run_ids": chunk}))
        frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["run_id", "step", "value"])
        return frame.drop_duplicates(["run_id", "step"], keep="last")  # a re-logged step: its last value
    rows: list[tuple[str, int, float]] = []
    with ThreadPoolExecutor(max_workers=8) as pool:  # REST store: one request per run, a few at a time
        for run_id, history in zip(run_ids, pool.map(lambda r: client.get_metric_history(r, key), run_ids)):
            rows += [(run_id, m.step, m.value) for m in history]
    return pd.DataFrame(rows, columns=["run_id", "step", "value"])


# --- the numbers -----------------------------------------------------------------------------------------
def group_keys(runs: pd.DataFrame, params: Sequence[str]) -> list[str]:
    """Config keys whose value differs between runs (missing counts as a value), minus seed and plumbing."""
    varying = [
        k for k in params
        if k != SEED and not k.startswith(PLUMBING_PREFIXES) and runs[k].nunique(dropna=False) > 1
    ]  # fmt: skip
    return [k for k in TABLE_KEYS if k in runs] + sorted((k for k in varying if k not in TABLE_KEYS), key=_key_order)


def _key_order(key: str) -> tuple:
    """Config order: dataset, model, aug, trainer, then the rest; within a group `name` first."""
    sections = ("dataset", "model", "aug", "trainer")
    section, _, rest = key.partition(".")
    return (sections.index(section) if section in sections else len(sections), section, rest != "name", rest)


def _matches(frame: pd.DataFrame, row: pd.Series | dict, keys: Iterable[str]) -> pd.Series:
    """Rows of `frame` whose values equal `row`'s for every key (a missing value matches a missing one)."""
    mask = pd.Series(True, index=frame.index)
    for k in keys:
        mask &= frame[k].isna() if _missing(row[k]) else (frame[k] == row[k])
    return mask


def _label(keys: Sequence[str], values: Sequence) -> str:
    shown = [f"{k}={v}" for k, v in zip(keys, values) if k not in TABLE_KEYS and not _missing(v)]
    return ",".join(shown) or "all runs"


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def summarize(
    runs: pd.DataFrame,
    keys: list[str],
    curves: pd.DataFrame,
    epoch_seconds: pd.DataFrame,
    baseline: tuple[str, str] = DEFAULT_BASELINE,
    until: dict | None = None,
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
            mean, std, lo, hi = t_interval(group[metric] if metric in group else [])
            row.update({f"{metric}_mean": mean, f"{metric}_std": std, f"{metric}_ci_low": lo, f"{metric}_ci_high": hi})
        mean_curve = curves[curves["run_id"].isin(group["run_id"])].groupby("step")["value"].mean()
        row["best_val_accuracy"] = float(mean_curve.max()) if len(mean_curve) else math.nan
        row["best_val_epoch"] = int(mean_curve.idxmax()) if len(mean_curve) else None
        row["mean_epoch_seconds"] = float(
            epoch_seconds.loc[epoch_seconds["run_id"].isin(group["run_id"]), "value"].mean()
        )
        rows.append(row)
    summary = pd.DataFrame(rows)
    summary["label"] = readable_labels(summary, keys)
    key, value = baseline
    if key in keys:  # baselines first in every table
        summary = summary.iloc[(~_is_value(summary[key], value)).argsort(kind="stable")].reset_index(drop=True)
    return add_paired_deltas(summary, runs, keys, baseline, until)


def _is_value(column: pd.Series, value: str) -> pd.Series:
    """Where a param column holds `value` as typed on the command line (the frame has numbers where it can)."""
    return column.map(lambda v: not _missing(v) and (str(v) == value or _same_number(v, value)))


def _same_number(a, b: str) -> bool:
    try:
        return float(a) == float(b)
    except (TypeError, ValueError):
        return False


def parse_baseline(text: str) -> tuple[str, str]:
    """`--baseline KEY=VALUE`; `aug=none` is accepted for `aug.name=none` (Hydra's group choice)."""
    key, sep, value = text.partition("=")
    if not sep or not key or not value:
        raise ReportError(f"--baseline {text!r}: expected KEY=VALUE, e.g. aug.name=none or trainer.precision=float32")
    return ("aug.name" if key == "aug" else key), value


def add_paired_deltas(
    summary: pd.DataFrame,
    runs: pd.DataFrame,
    keys: list[str],
    baseline: tuple[str, str] = DEFAULT_BASELINE,
    until: dict | None = None,
) -> pd.DataFrame:
    """Mean paired difference of test accuracy and ECE to the baseline over shared seeds, with t-intervals.

    A group's baseline: the runs with `key=value` whose other group keys equal the group's. Keys that belong
    to the baseline's choice do not have to match: for `aug.name=none` every `aug.*` key (none has no alpha).
    For a sweep run with `hydra.sweeper.until` the accuracy interval is Stein's (the first `min_seeds`
    seeds' spread and t quantile): the interval whose coverage that procedure guarantees. Per group also the
    seeds the observed paired spread s implies for ±0.005 and ±0.01: n = ceil((t(n_pairs - 1) · s / h)²).
    """
    for prefix in DELTA_METRICS.values():
        for column in ("vs_baseline", "ci_low", "ci_high"):
            summary[f"{prefix}_{column}"] = math.nan
    summary["delta_pairs"] = 0
    summary["significant"] = None
    summary["interval"] = ""
    for width in SEEDS_FOR:
        summary[f"seeds_for_{width}"] = math.nan
    key, value = baseline
    if key not in runs or SEED not in runs:
        return summary
    owned = "aug." if key == "aug.name" else key
    other = [k for k in keys if not k.startswith(owned)]
    is_baseline = _is_value(runs[key], value)
    for i, row in summary.iterrows():
        in_group = _matches(runs, row, keys)
        if is_baseline[in_group].all():
            continue
        treated = runs[in_group]
        base = runs[_matches(runs, row, other) & is_baseline]
        for metric, prefix in DELTA_METRICS.items():
            if metric not in runs:
                continue
            diffs = (treated.groupby(SEED)[metric].mean() - base.groupby(SEED)[metric].mean()).dropna()
            if diffs.empty:
                continue
            mean, spread, lo, hi = t_interval(diffs)
            if metric == "test_accuracy":
                summary.loc[i, "delta_pairs"] = len(diffs)
                summary.loc[i, "interval"] = "t" if len(diffs) > 1 else ""
                if until and len(diffs) >= until["min_seeds"]:
                    stein = seeds.stein_interval(diffs.sort_index().to_numpy(), until["min_seeds"])
                    mean, lo, hi = stein.mean, stein.low, stein.high
                    summary.loc[i, "interval"] = f"Stein, first {until['min_seeds']} seeds"
                summary.loc[i, "significant"] = None if math.isnan(lo) else bool(lo > 0 or hi < 0)
                if len(diffs) > 1:
                    for width in SEEDS_FOR:
                        summary.loc[i, f"seeds_for_{width}"] = seeds.seeds_for_half_width(spread, width, len(diffs) - 1)
            summary.loc[i, [f"{prefix}_vs_baseline", f"{prefix}_ci_low", f"{prefix}_ci_high"]] = [mean, lo, hi]
    return summary


def readable_labels(summary: pd.DataFrame, keys: list[str]) -> pd.Series:
    """A group's name from only what distinguishes it inside its table: `none`, `mixup α=0.1`, ...

    A key counts when its *present* values differ within the table (`aug=none` lacking `aug.lam` does not make
    `aug.lam` distinguishing); `summary.csv` keeps the full keys in `group`.
    """
    labels = pd.Series("all runs", index=summary.index, dtype=object)
    for _, rows in _tables(summary):
        shown = [k for k in keys if k not in TABLE_KEYS and rows[k].dropna().nunique() > 1]
        if "aug.name" in rows and "aug.name" not in shown and any(k.startswith("aug.") for k in shown):
            shown.insert(0, "aug.name")  # "mixup α=0.1", not a bare "α=0.1"
        for i, row in rows.iterrows():
            parts = [_readable(k, row[k]) for k in shown if not _missing(row[k])]
            labels[i] = " ".join(parts) or "all runs"
    return labels


def _readable(key: str, value) -> str:
    """One key's part of a label: `mixup`, `α=0.2`, `per_batch`, `precision=mixed_bfloat16`."""
    text = f"{value:g}" if isinstance(value, float) else str(value)
    if key == "aug.name" or (key.startswith("aug.") and not isinstance(value, (int, float))):
        return text
    if key == "aug.alpha":
        return f"α={text}"
    return f"{key.rsplit('.', 1)[-1]}={text}"


# --- the pictures ----------------------------------------------------------------------------------------
def _tables(frame: pd.DataFrame) -> list[tuple[tuple, pd.DataFrame]]:
    keys = [k for k in TABLE_KEYS if k in frame]
    if not keys:
        return [((), frame)]
    return [(k if isinstance(k, tuple) else (k,), g) for k, g in frame.groupby(keys, dropna=False, sort=True)]


def _figure_per_table(frame: pd.DataFrame, draw, xlabel: str, ylabel: str, path: Path) -> Path:
    """One panel per dataset/model table: `draw(ax, rows)` plots, this labels, titles and saves."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tables = _tables(frame)
    fig, axes = plt.subplots(1, len(tables), figsize=(8 * len(tables), 5.5), squeeze=False)
    for ax, (table, rows) in zip(axes[0], tables):
        draw(ax, rows)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(" / ".join(str(t) for t in table))
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_accuracy_vs_alpha(summary: pd.DataFrame, keys: list[str], path: Path) -> Path:
    """Mean test accuracy with its 95 % CI per alpha; the baseline as a horizontal band."""

    def draw(ax, rows: pd.DataFrame) -> None:
        base = rows[rows.get("aug.name", pd.Series(index=rows.index, dtype=object)) == BASELINE]
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
            label = " ".join(_readable(k, v) for k, v in zip(extra, values) if not _missing(v))
            ax.errorbar(line["aug.alpha"], line["test_accuracy_mean"], yerr=np.nan_to_num(err), marker="o",
                        capsize=4, label=f"mixup {label}".strip())  # fmt: skip
        alphas = sorted(mixed["aug.alpha"].dropna().unique())
        ax.set_xscale("log")
        ax.set_xticks(alphas, [f"{a:g}" for a in alphas])
        ax.minorticks_off()

    return _figure_per_table(summary, draw, "aug.alpha", "test accuracy (mean, 95% CI)", path)


def plot_learning_curves(runs: pd.DataFrame, curves: pd.DataFrame, path: Path) -> Path:
    """Validation accuracy per epoch, averaged over the seeds of each group (runs carry the group `label`)."""

    def draw(ax, rows: pd.DataFrame) -> None:
        for label, group in rows.groupby("label", sort=False):
            mean = group.groupby("step")["value"].mean()
            ax.plot(mean.index, mean.values, marker=".", label=label)

    merged = curves.merge(runs[["run_id", "label", *(k for k in TABLE_KEYS if k in runs)]], on="run_id")
    return _figure_per_table(merged, draw, "epoch", "val_accuracy (mean over seeds)", path)


# --- the documents ---------------------------------------------------------------------------------------
def _fmt(value, digits: int = 4) -> str:
    if _missing(value):
        return "n/a"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


NO_INTERVAL = "1 seed: no interval"


def display_table(summary: pd.DataFrame) -> pd.DataFrame:
    """The summary as people read it: mean ± std, [CI], delta vs baseline and whether its CI excludes 0."""
    out = pd.DataFrame({"group": summary["label"], "n": summary["n"]})
    one = summary["n"] < 2

    def spread(metric: str) -> list[str]:
        return [
            _fmt(m) if single else f"{_fmt(m)} ± {_fmt(s)}"
            for m, s, single in zip(summary[f"{metric}_mean"], summary[f"{metric}_std"], one)
        ]

    out["test acc"] = spread("test_accuracy")
    out["95% CI"] = [
        NO_INTERVAL if single else ("n/a" if _missing(lo) else f"[{lo:.4f}, {hi:.4f}]")
        for lo, hi, single in zip(summary["test_accuracy_ci_low"], summary["test_accuracy_ci_high"], one)
    ]
    out["test ECE"] = spread("test_ece")
    out["test NLL"] = [_fmt(v) for v in summary["test_nll_mean"]]
    out["best val acc (epoch)"] = [
        f"{_fmt(v)} ({e})" for v, e in zip(summary["best_val_accuracy"], summary["best_val_epoch"])
    ]
    out["s/epoch"] = [_fmt(v, 2) for v in summary["mean_epoch_seconds"]]
    out["Δ acc vs baseline (pairs)"] = [
        "" if _missing(d) else f"{d:+.4f} ({n})" for d, n in zip(summary["delta_vs_baseline"], summary["delta_pairs"])
    ]
    out["Δ 95% CI"] = [
        "" if _missing(d) else (NO_INTERVAL if n < 2 else f"[{lo:+.4f}, {hi:+.4f}]")
        for d, lo, hi, n in zip(
            summary["delta_vs_baseline"], summary["delta_ci_low"], summary["delta_ci_high"], summary["delta_pairs"]
        )
    ]
    out["CI excludes 0"] = ["" if s is None else ("yes" if s else "no") for s in summary["significant"]]
    ece = zip(*(summary[f"ece_delta_{column}"] for column in ("vs_baseline", "ci_low", "ci_high")))
    out["Δ ECE [95% CI]"] = [
        "" if _missing(d) else f"{d:+.4f}" + ("" if _missing(lo) else f" [{lo:+.4f}, {hi:+.4f}]") for d, lo, hi in ece
    ]
    out["seeds for ±0.005 / ±0.01"] = [
        "" if _missing(a) else f"{a:.0f} / {b:.0f}"
        for a, b in zip(summary[f"seeds_for_{SEEDS_FOR[0]}"], summary[f"seeds_for_{SEEDS_FOR[1]}"])
    ]
    return out


def verdicts(summary: pd.DataFrame, baseline: tuple[str, str]) -> list[str]:
    """The answer, one line per compared group: better / worse / no detectable difference (Δ, interval, seeds)."""
    against = BASELINE if baseline == DEFAULT_BASELINE else "=".join(baseline)
    lines = []
    for _, row in summary.iterrows():
        d, n = row["delta_vs_baseline"], int(row["delta_pairs"])
        if _missing(d):
            continue
        if n < 2:
            lines.append(f"{row['label']}: {NO_INTERVAL} vs {against} (Δ test accuracy {d:+.4f}, 1 seed)")
            continue
        lo, hi = row["delta_ci_low"], row["delta_ci_high"]
        word = "better than" if lo > 0 else "worse than" if hi < 0 else "no detectable difference vs"
        lines.append(f"{row['label']}: {word} {against} (Δ test accuracy {d:+.4f}, 95% CI [{lo:+.4f}, {hi:+.4f}], "
                     f"{n} seeds)")  # fmt: skip
    return lines


def _run_links(ui_url: str, experiment_id: str, runs: pd.DataFrame) -> str:
    base = ui_url.rstrip("/")
    ids = list(runs["run_id"])
    compare = f"{base}/#/compare-runs?runs={json.dumps(ids)}&experiments={json.dumps([experiment_id])}"
    seeds_ = [f"seed {s}" if SEED in runs else "run" for s in (runs[SEED] if SEED in runs else [None] * len(ids))]
    links = [f'<a href="{html.escape(f"{base}/#/experiments/{experiment_id}/runs/{r}")}">{html.escape(str(t))}</a>'
             for r, t in zip(ids, seeds_)]  # fmt: skip
    return f'<a href="{html.escape(compare)}">compare</a>: ' + " ".join(links)


def write_report(
    run_set: RunSet,
    tracking_uri: str,
    experiment: str,
    out: Path,
    baseline: tuple[str, str] = DEFAULT_BASELINE,
    ui_url: str = DEFAULT_UI_URL,
) -> dict[str, Path]:
    runs = run_set.runs
    keys = group_keys(runs, run_set.params)
    curves = metric_histories(tracking_uri, list(runs["run_id"]), "val_accuracy")
    seconds = metric_histories(tracking_uri, list(runs["run_id"]), "epoch_seconds")
    summary = summarize(runs, keys, curves, seconds, baseline, run_set.until)
    out.mkdir(parents=True, exist_ok=True)
    files = {name: out / name for name in ("summary.csv", "runs.csv", "report.md", "report.html", *PLOTS)}
    summary.to_csv(files["summary.csv"], index=False)
    run_columns = ["run_id", "run_name", *keys, *([SEED] if SEED in runs else [])]
    metric_columns = [
        c
        for c in ("test_accuracy", "test_loss", "test_ece", "test_nll", "val_accuracy", "train_images_per_second")
        if c in runs
    ]
    table = runs[run_columns + metric_columns].copy()
    table["link"] = [f"#/experiments/{run_set.experiment_id}/runs/{r}" for r in runs["run_id"]]
    table.sort_values([*keys, *([SEED] if SEED in runs else [])]).to_csv(files["runs.csv"], index=False)
    labelled = runs.merge(summary[[*keys, "label"]], on=keys, how="left") if keys else runs.assign(label="all runs")
    plot_accuracy_vs_alpha(summary, keys, files["accuracy_vs_alpha.png"])
    plot_learning_curves(labelled, curves, files["learning_curves.png"])

    answer = verdicts(summary, baseline)
    link = ui_runs_link(run_set.experiment_id, ui_url)
    left = ", ".join(f"{n} {s}" for s, n in sorted(run_set.left_out.items())) or "none"
    details = [
        f"Experiment {experiment}, sweep {run_set.label}, store {tracking_uri}.",
        f"{len(runs)} FINISHED runs; left out (not FINISHED): {left}. "
        f"Grouped by: {', '.join(keys) or 'nothing varies'}; replicates: {SEED}.",
        "CI: Student t, 95 %"
        + (f" (Stein's two-stage interval for Δ: first {run_set.until['min_seeds']} seeds' spread)" if run_set.until
           else "")
        + f"; Δ: paired over the seeds present in both, against the baseline {'='.join(baseline)}. "
        "Seeds for ±h: n = ceil((t(pairs − 1) · s / h)²) from the observed paired spread s.",
        f"Runs in the MLflow UI: {link}",
    ]  # fmt: skip
    md = [f"# Report: {run_set.label}", "", "## Answer", "", *(f"- {line}" for line in answer or ["no comparison"])]
    md += ["", *details, ""]
    body = [f"<h1>Report: {html.escape(run_set.label)}</h1>", "<h2>Answer</h2>", "<ul>"]
    body += [f"<li>{html.escape(line)}</li>" for line in answer or ["no comparison: no baseline in these runs"]]
    body += ["</ul>", *(f"<p>{html.escape(line)}</p>" for line in details[:-1])]
    body.append(f'<p>Runs in the MLflow UI: <a href="{html.escape(link)}">{html.escape(link)}</a></p>')
    for table_key, rows in _tables(summary):
        title = " / ".join(f"{k}={v}" for k, v in zip(TABLE_KEYS, table_key)) or "all runs"
        shown = display_table(rows)
        md += [f"## {title}", "", shown.to_markdown(index=False, disable_numparse=True), ""]
        cells = shown.map(lambda v: html.escape(str(v)))
        cells["runs"] = [
            _run_links(ui_url, run_set.experiment_id, runs[_matches(runs, row, keys)].sort_values(SEED))
            if SEED in runs else _run_links(ui_url, run_set.experiment_id, runs[_matches(runs, row, keys)])
            for _, row in rows.iterrows()
        ]  # fmt: skip
        table_html = cells.to_html(index=False, border=0, escape=False)
        body += [f"<h2>{html.escape(title)}</h2>", f'<div style="overflow-x:auto">{table_html}</div>']
    for name in PLOTS:
        md += [f"![{name}]({name})", ""]
        encoded = base64.b64encode(files[name].read_bytes()).decode()
        body.append(f'<p><img alt="{name}" src="data:image/png;base64,{encoded}"></p>')
    files["report.md"].write_text("\n".join(md))
    style = (
        "body{font-family:system-ui,sans-serif;margin:2em}table{border-collapse:collapse;"
        "font-size:14px}td,th{padding:4px 8px;border-bottom:1px solid #ddd;text-align:left}"
        "td{white-space:nowrap}td:first-child,td:last-child{white-space:normal;min-width:9em}"
        "img{width:100%;max-width:1100px}li{margin:.3em 0}"
    )
    files["report.html"].write_text(
        f"<!doctype html><html><head><meta charset='utf-8'><title>Report {html.escape(run_set.label)}</title>"
        f"<style>{style}</style></head><body>{''.join(body)}</body></html>"
    )
    return files


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mixup_sweeps.report", description=__doc__.splitlines()[0])
    parser.add_argument("--sweep", default="latest", help="a sweep_id, 'latest' (default) or 'all'")
    parser.add_argument("--output-dir", default="outputs", help="the harness's paths.output_dir (default: outputs)")
    parser.add_argument("--experiment", help="MLflow experiment (default: tracking.experiment of the config)")
    parser.add_argument("--tracking-uri", help="MLflow tracking URI (default: tracking.uri of the config)")
    parser.add_argument("--out", help="report directory (default: <output-dir>/reports/<sweep_id or all>)")
    parser.add_argument(
        "--baseline",
        default="=".join(DEFAULT_BASELINE),
        help="KEY=VALUE of the runs each group is compared with, paired by seed (default: aug.name=none; "
        "e.g. trainer.precision=float32)",
    )
    parser.add_argument(
        "--where",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="only runs with this config value or tag (repeatable), e.g. accelerator=cpu, backend=jax",
    )
    parser.add_argument(
        "--ui-url", help=f"MLflow UI for the links (default: the tracking server, else {DEFAULT_UI_URL})"
    )
    args = parser.parse_args(argv)

    cfg = load_config(args.output_dir)
    tracking_uri = args.tracking_uri or cfg.tracking.uri
    experiment = args.experiment or cfg.tracking.experiment
    try:
        baseline = parse_baseline(args.baseline)
        run_set = select_runs(fetch_runs(tracking_uri, experiment, args.sweep), parse_where(args.where))
    except ReportError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else Path(cfg.paths.output_dir) / "reports" / run_set.label
    files = write_report(run_set, tracking_uri, experiment, out, baseline, args.ui_url or ui_url_for(tracking_uri))
    if run_set.parent_run_id:
        from mlflow.tracking import MlflowClient

        MlflowClient(tracking_uri=tracking_uri).log_artifacts(run_set.parent_run_id, str(out), "report")
    print(files["report.md"].read_text().split("\n![", 1)[0])
    print(f"Report of {run_set.label!r} written to {out}/ ({', '.join(sorted(p.name for p in files.values()))})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
