"""Reading a sweep's runs out of the MLflow store into pandas: one row per run, one long table per metric.

A SQL store (SQLite, PostgreSQL) is read with a few set queries; any other store, or a SQL store whose
schema no longer matches those queries (a new MLflow), through `MlflowClient.search_runs` and
`get_metric_history`. Both paths give the same frames (tests/test_report.py checks it).
"""

from __future__ import annotations

import gc
import json
import logging
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import pandas as pd
from mlflow.tracking import MlflowClient

from mixup_sweeps.store import liveness, tags, tracking

log = logging.getLogger(__name__)

# Tags that are compared like config keys: runs of one config on different hardware are different groups.
TAG_KEYS = (tags.ACCELERATOR,)
# The tables of MLflow's SQL schema the fast path reads (mlflow/store/tracking/dbmodels/models.py).
SQL_TABLES = {"runs": "runs", "params": "params", "latest_metrics": "latest_metrics", "tags": "tags",
              "metrics": "metrics"}  # fmt: skip


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
    until: dict[str, Any] | None = None  # the sweep's `hydra.sweeper.until` (Stein's procedure), if it used it
    race: dict[str, Any] | None = None  # the sweep's race outcome (`racing.to_record`), if it raced
    search: dict[str, Any] | None = None  # the sweep's search record (`search/search.json`), if it searched
    overrides: str | None = None  # the sweep's overrides as typed (its parent's `sweep_overrides` tag)


@contextmanager
def gc_paused() -> Iterator[None]:
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


def runs_frame(client: MlflowClient, experiment_id: str) -> pd.DataFrame:
    """All active runs of the experiment, one row each, with mlflow.search_runs's column names.

    A SQL store (SQLite, PostgreSQL) is read with four set queries into pandas; any other store through
    `MlflowClient.search_runs`. Both give the same frame (tests/test_report.py checks it); the SQL path
    exists for speed: search_runs builds ~40 ORM objects per run and took 13 s on 10,000 runs here
    (docs/benchmarks.md), the set queries take well under one.
    """
    engine = _sql_engine(client)
    if engine is not None:
        try:
            return _sql_runs_frame(engine, experiment_id)
        except _schema_errors() as exc:
            _schema_changed(exc)
    return _client_runs_frame(client, experiment_id)


def _schema_errors() -> tuple[type[BaseException], ...]:
    """What a query on tables or columns that are not there raises (pandas wraps SQLAlchemy's errors)."""
    from sqlalchemy.exc import SQLAlchemyError

    return SQLAlchemyError, pd.errors.DatabaseError, KeyError


_WARNED: set[str] = set()


def _schema_changed(exc: BaseException) -> None:
    """One warning line when MLflow's tables are not what the SQL fast path reads: the slow path still works."""
    import mlflow

    root = exc
    while root.__cause__ is not None:  # pandas wraps SQLAlchemy's error, which wraps the database's own
        root = root.__cause__
    lines = str(getattr(root, "orig", None) or root).strip().splitlines()
    cause = lines[0][:200] if lines else type(root).__name__
    if cause in _WARNED:
        return  # once per cause and process: a report reads several metrics
    _WARNED.add(cause)
    log.warning(
        "the report's SQL fast path does not match this MLflow's store schema (MLflow %s: %s); reading through "
        "MlflowClient.search_runs instead (slower on large sweeps: the fast path in mixup_sweeps/report/store.py "
        "needs updating)",
        mlflow.__version__,
        cause,
    )


def _client_runs_frame(client: MlflowClient, experiment_id: str) -> pd.DataFrame:
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


def _sql_engine(client: MlflowClient) -> Any:
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    store = client._tracking_client.store
    return store.engine if isinstance(store, SqlAlchemyStore) else None


def _sql_runs_frame(engine: Any, experiment_id: str) -> pd.DataFrame:
    from sqlalchemy import text

    t = SQL_TABLES
    active = f"SELECT run_uuid FROM {t['runs']} WHERE experiment_id = :exp AND lifecycle_stage = 'active'"
    queries = {
        "params": f"SELECT run_uuid, key, value FROM {t['params']} WHERE run_uuid IN ({active})",
        "metrics": "SELECT run_uuid, key, CASE WHEN is_nan THEN NULL ELSE value END AS value "
        f"FROM {t['latest_metrics']} WHERE run_uuid IN ({active})",
        "tags": f"SELECT run_uuid, key, value FROM {t['tags']} WHERE run_uuid IN ({active})",
    }
    with engine.connect() as connection:
        frame = pd.read_sql(
            text(
                f"SELECT run_uuid AS run_id, status, start_time FROM {t['runs']} "
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


def fetch_runs(tracking_uri: str, experiment: str, sweep_id: str, heartbeat_timeout_s: float | None = None) -> RunSet:
    """The FINISHED runs of one sweep (`latest`, a sweep id) or of the whole experiment (`all`); dead jobs'
    runs are ended first (`liveness.end_ghost_runs`, other hosts by heartbeat when `heartbeat_timeout_s` is set)."""
    if (db := tracking.sqlite_file(tracking_uri)) is not None and not db.exists():
        # MLflow would make an empty store there: reading must not leave one behind
        raise ReportError(f"No experiment {experiment!r} in {tracking_uri} (no such file): run a sweep first")
    client = MlflowClient(tracking_uri=tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        raise ReportError(f"No experiment {experiment!r} in {tracking_uri}: run a sweep first")
    liveness.end_ghost_runs(client, exp.experiment_id, heartbeat_timeout_s)  # a dead job's run is not "running"
    df = runs_frame(client, exp.experiment_id)
    if df.empty:
        raise ReportError(f"No runs in experiment {experiment!r} ({tracking_uri})")
    for column in (f"tags.{tags.PARENT}", f"tags.{tags.SWEEP_ID}"):
        if column not in df:
            df[column] = None
    is_parent = df[f"tags.{tags.PARENT}"] == "true"
    parents, runs = df[is_parent], df[~is_parent]
    parent_run_id, until, race, search_record, overrides = None, None, None, None, None
    if sweep_id == "all":
        label = "all"
    else:
        if sweep_id == "latest":
            if parents.empty:
                raise ReportError(f"No sweep in experiment {experiment!r}: run one with -m, or use --sweep all")
            parent = parents.sort_values("start_time").iloc[-1]
        else:
            matching = parents[parents[f"tags.{tags.SWEEP_ID}"] == sweep_id]
            if matching.empty:
                known = ", ".join(parents.sort_values("start_time")[f"tags.{tags.SWEEP_ID}"].dropna().tail(5)) or "none"
                raise ReportError(f"No sweep {sweep_id!r} in experiment {experiment!r} (latest sweeps: {known})")
            parent = matching.iloc[-1]
        label, parent_run_id = parent[f"tags.{tags.SWEEP_ID}"], parent["run_id"]
        until_tag = parent.get(f"tags.{tags.SEEDS_UNTIL}")
        until = json.loads(until_tag) if isinstance(until_tag, str) else None
        race_tag = parent.get(f"tags.{tags.RACE_RESULT}")
        race = json.loads(race_tag) if isinstance(race_tag, str) else None
        typed = parent.get(f"tags.{tags.SWEEP_OVERRIDES}")
        overrides = typed if isinstance(typed, str) else None
        if isinstance(parent.get(f"tags.{tags.SEARCH_RESULT}"), str):
            search_record = _search_record(client, parent_run_id)
        in_sweep = runs[f"tags.{tags.SWEEP_ID}"] == label
        reused = f"tags.{tags.REUSED_IN_SWEEP}{label}"  # runs of earlier sweeps that this sweep skipped to
        if reused in runs:
            in_sweep |= runs[reused].notna()
        runs = runs[in_sweep]
    pruned = f"tags.{tags.PRUNED}"
    if pruned in runs:  # stopped by a search's pruner: counted apart from failures
        runs = runs.assign(status=runs["status"].where(runs[pruned] != "true", "PRUNED"))
    left_out = runs.loc[runs["status"] != "FINISHED", "status"].value_counts().to_dict()
    finished = runs[runs["status"] == "FINISHED"]
    if finished.empty:
        raise ReportError(f"No FINISHED runs in {label!r} of experiment {experiment!r} (left out: {left_out or 0})")
    params = [c[len("params.") :] for c in finished.columns if c.startswith("params.")]
    params += [k for k in TAG_KEYS if f"tags.{k}" in finished]
    return RunSet(tidy(finished), params, left_out, label, exp.experiment_id, parent_run_id, until, race,
                  search_record, overrides)  # fmt: skip


def _search_record(client: MlflowClient, parent_run_id: str) -> dict[str, Any] | None:
    """A search's whole record (every trial, the best, the confirmation), the artifact its sweeper left."""
    import os
    import tempfile

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # one small file: no progress bar
    try:
        with tempfile.TemporaryDirectory() as tmp:
            path = client.download_artifacts(parent_run_id, tags.SEARCH_RECORD, tmp)
            with open(path) as file:
                return json.load(file)
    except Exception as exc:  # noqa: BLE001 - an artifact store out of reach leaves the search section out
        log.warning("the search's record (%s) could not be read: %s", tags.SEARCH_RECORD, exc)
        return None


def _numeric_if_possible(column: pd.Series) -> pd.Series:
    converted = pd.to_numeric(column, errors="coerce")
    return converted if converted.notna().sum() == column.notna().sum() else column


def tidy(df: pd.DataFrame) -> pd.DataFrame:
    """Plain column names: params as their config keys (numbers parsed), metrics by name, TAG_KEYS by name."""
    columns: dict[str, Any] = {
        "run_id": df["run_id"].values, "run_name": df.get("tags.mlflow.runName", df["run_id"]).values
    }  # fmt: skip
    for column in df.columns:  # built as one frame at the end: hundreds of metric columns are common
        if column.startswith("params."):
            columns[column[len("params.") :]] = _numeric_if_possible(df[column]).values
        elif column.startswith("metrics."):
            columns[column[len("metrics.") :]] = df[column].values
        elif column.startswith("tags.") and column[len("tags.") :] in TAG_KEYS:
            columns[column[len("tags.") :]] = df[column].values
    return pd.DataFrame(columns, index=range(len(df)))


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
    client = MlflowClient(tracking_uri=tracking_uri)
    engine = _sql_engine(client)
    if engine is not None:
        try:
            return _sql_metric_histories(engine, run_ids, key)
        except _schema_errors() as exc:
            _schema_changed(exc)
    rows: list[tuple[str, int, float]] = []
    with ThreadPoolExecutor(max_workers=8) as pool:  # REST store: one request per run, a few at a time
        for run_id, history in zip(run_ids, pool.map(lambda r: client.get_metric_history(r, key), run_ids)):
            rows += [(run_id, m.step, m.value) for m in history]
    frame = pd.DataFrame(rows, columns=["run_id", "step", "value"])
    return frame.drop_duplicates(["run_id", "step"], keep="last")  # a re-logged step: its last value


def _sql_metric_histories(engine: Any, run_ids: Sequence[str], key: str) -> pd.DataFrame:
    from sqlalchemy import bindparam, text

    query = text(
        "SELECT run_uuid AS run_id, step, CASE WHEN is_nan THEN NULL ELSE value END AS value "
        f"FROM {SQL_TABLES['metrics']} WHERE key = :key AND run_uuid IN :run_ids ORDER BY run_uuid, step, timestamp"
    ).bindparams(bindparam("run_ids", expanding=True))
    frames = []
    with engine.connect() as connection:
        for i in range(0, len(run_ids), 5000):
            chunk = list(run_ids[i : i + 5000])
            frames.append(pd.read_sql(query, connection, params={"key": key, "run_ids": chunk}))
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["run_id", "step", "value"])
    return frame.drop_duplicates(["run_id", "step"], keep="last")  # a re-logged step: its last value
