"""MLflow input and output: the store and experiment, each job's child run, its metrics, artifacts and end.

Everything goes through `MlflowClient` with explicit run ids (no fluent global state), so a run is always
ended on purpose: FINISHED after its last artifact, FAILED (or KILLED on Ctrl-C) with its traceback otherwise.
Which process owns a run is `liveness`; every tag name is in `tags`. A sweep's parent run is found here
(`find_parent`, `child_runs`); it is made by `multirun.parent`.
"""

from __future__ import annotations

import getpass
import hashlib
import os
import subprocess
import tempfile
import time
import traceback
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing, contextmanager
from pathlib import Path

from hydra.errors import CompactHydraException
from mlflow.entities import Metric, Param, Run, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.utils import mlflow_tags
from mlflow.version import VERSION as MLFLOW_VERSION
from omegaconf import DictConfig

from mixup_sweeps import files
from mixup_sweeps.config import config_fingerprint, flatten
from mixup_sweeps.store import liveness, tags
from mixup_sweeps.train.training import TrainingDiverged

_PARAM_BATCH = 100  # MLflow's limit of params per log_batch call


UI_URL = "http://127.0.0.1:5000"  # where `mlflow ui` listens by default


def ui_url_for(tracking_uri: str) -> str:
    """Where the UI of a store is: a tracking server is its own UI; a local store's is `mlflow ui`'s default."""
    return tracking_uri if tracking_uri.startswith(("http://", "https://")) else UI_URL


def ui_runs_link(experiment_id: str, ui_url: str = UI_URL) -> str:
    """The MLflow UI's table of the experiment's runs. The plain experiment link opens MLflow 3's GenAI
    overview ("Traces 0"); `workflowType=machine_learning` opens the training runs."""
    return f"{ui_url.rstrip('/')}/#/experiments/{experiment_id}/runs?workflowType=machine_learning"


STORE_CHECK_TIMEOUT_S = 10  # a tracking server answers /health in milliseconds; MLflow's own retries take minutes


class StoreUnreachable(CompactHydraException):
    """The tracking store cannot be reached or opened: one line naming tracking.uri and what to do."""


SQLITE_HEADER = b"SQLite format 3\x00"  # the first 16 bytes of every SQLite database file


def sqlite_file(uri: str) -> Path | None:
    """The database file of a `sqlite:///PATH` store URI; None for any other store."""
    return Path(uri[len("sqlite:///") :]) if uri.startswith("sqlite:///") else None


def check_store(uri: str) -> None:
    """Reach the store once, quickly, before anything waits on it: a tracking server must answer its /health
    within STORE_CHECK_TIMEOUT_S (MLflow would retry for minutes, then print chained tracebacks), and any
    other URI must name a store MLflow can open."""
    if not uri:
        raise StoreUnreachable("tracking.uri is not set (tracking=server reads MLFLOW_TRACKING_URI): set it, or use "
                               "tracking=local")  # fmt: skip
    if uri.startswith(("http://", "https://")):
        try:
            with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=STORE_CHECK_TIMEOUT_S):
                return
        except urllib.error.HTTPError:
            return  # a server answered (a login in front of it, an older MLflow): MLflow's client takes it from here
        except (OSError, ValueError) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise StoreUnreachable(
                f"tracking.uri={uri}: no MLflow tracking server answers there ({reason}); start it (README: "
                "Running on a cluster) or point MLFLOW_TRACKING_URI at a running one"
            ) from None
    if (path := sqlite_file(uri)) is not None:  # `connect` creates the file under its lock (opening it would race)
        if path.is_file() and path.stat().st_size and path.read_bytes()[:16] != SQLITE_HEADER:
            raise StoreUnreachable(
                f"tracking.uri={uri}: {path} is not an SQLite database (something else was written there); move "
                "it away to start a new store, or set paths.output_dir / tracking.uri to the store you meant"
            )
        return
    try:
        MlflowClient(tracking_uri=uri)._tracking_client.store  # noqa: B018 - opening the store is the check
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise StoreUnreachable(
            f"tracking.uri={uri}: MLflow cannot open this store ({first[:200]}); use tracking=local (SQLite "
            "under paths.output_dir), sqlite:///PATH, or http(s)://HOST:PORT of a tracking server"
        ) from None


def connect(tracking: DictConfig, check: bool = True) -> tuple[MlflowClient, str]:
    """Client for tracking.uri and the id of tracking.experiment, created (with its artifact root) if new.

    Several jobs may start at once on a new SQLite store: the store's tables and the experiment are then
    created by one of them under a file lock while the others wait. A store that cannot be reached is one
    line (`StoreUnreachable`), not minutes of retries; a sweep checks once, before its first job, and its jobs
    connect with `check=False`, so a server that goes away for a moment mid-sweep is ridden out by MLflow's
    own retries instead of failing the next job.
    """
    if check:
        check_store(tracking.uri)
    with _store_lock(tracking.uri):
        if (db := sqlite_file(tracking.uri)) is not None:
            new_sqlite_store(db)
        client = MlflowClient(tracking_uri=tracking.uri)
        experiment = client.get_experiment_by_name(tracking.experiment)
        if experiment is None:
            location = tracking.artifact_location
            if location and "://" not in location:
                location = Path(location).resolve().as_uri()
            kind = {tags.EXPERIMENT_KIND: tags.MODEL_TRAINING}
            try:
                return client, client.create_experiment(tracking.experiment, artifact_location=location, tags=kind)
            except MlflowException:  # a tracking server: another job created it first
                experiment = client.get_experiment_by_name(tracking.experiment)
                if experiment is None:
                    raise
    if experiment.lifecycle_stage == "deleted":
        client.restore_experiment(experiment.experiment_id)
    if tags.EXPERIMENT_KIND not in experiment.tags:  # an experiment made before the harness marked its kind
        client.set_experiment_tag(experiment.experiment_id, tags.EXPERIMENT_KIND, tags.MODEL_TRAINING)
    liveness.end_ghost_runs(client, experiment.experiment_id, tracking.heartbeat_timeout_s)
    return client, experiment.experiment_id


STORE_LOCK_TIMEOUT_S = 120  # creating a new store's tables takes seconds; a longer wait means a hung holder


def empty_store_template() -> Path:
    """An empty SQLite store made by this MLflow (and SQLAlchemy) version, kept in the user's cache
    (`XDG_CACHE_HOME`, else ~/.cache) once any job on this machine has made one."""
    import sqlalchemy

    return files.user_cache_dir("stores") / f"empty-mlflow-{MLFLOW_VERSION}-sqlalchemy-{sqlalchemy.__version__}.db"


def new_sqlite_store(db: Path) -> None:
    """A store file that does not exist yet becomes a copy of `empty_store_template()`, made first if missing.

    MLflow makes a new SQLite store by running its whole chain of schema migrations (~1.2 CPU-s of a tiny job's
    start on two cores; the test suite makes ~80 stores); a copy of a store those migrations made is the same
    empty store (only its never-used `Default` experiment keeps the template's creation time and artifact
    location). The copy goes through SQLite's backup API (a consistent database whatever the journal mode) into
    a temporary file that then takes the store's name, under the caller's store lock; the template is made under
    its own lock. An existing file is left alone (`check_store` has looked at it); without a writable cache
    MLflow makes the store itself, as before."""
    import sqlite3

    if db.exists():
        return
    template = empty_store_template()
    try:
        with files.file_lock(template.with_name(template.name + ".lock"), STORE_LOCK_TIMEOUT_S, "the empty store"):
            if not template.is_file():
                with files.atomic_path(template) as tmp:
                    made = MlflowClient(tracking_uri=f"sqlite:///{tmp}")._tracking_client.store  # MLflow migrates it
                    made.engine.dispose()  # its connections closed before the file is renamed
    except OSError:  # no writable cache directory
        return
    with files.atomic_path(db) as tmp, closing(sqlite3.connect(template)) as source:
        with closing(sqlite3.connect(tmp)) as target:
            source.backup(target)


@contextmanager
def _store_lock(uri: str) -> Iterator[None]:
    """An exclusive file lock beside a SQLite store (no-op for other stores)."""
    if (db := sqlite_file(uri)) is None:
        yield
        return
    with files.file_lock(db.with_name(db.name + ".lock"), STORE_LOCK_TIMEOUT_S, f"the MLflow store {db}"):
        yield


def runs_with_fingerprint(
    client: MlflowClient, experiment_id: str, fingerprint: str, statuses: Sequence[str]
) -> list[Run]:
    """Runs of this exact computation (tag config_fingerprint) in the given states, newest first."""
    runs = client.search_runs(
        [experiment_id],
        filter_string=f"tags.{tags.FINGERPRINT} = '{fingerprint}'",
        order_by=["attributes.start_time DESC"],
    )  # MLflow's filter has no OR/IN for status: filter those here
    return [r for r in runs if r.info.status in statuses]


def _git_commit() -> tuple[str, bool] | None:
    """The commit of the harness code that ran and whether it had local changes; None outside git."""
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, check=True, timeout=10,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return commit, bool(dirty)


ENTRY_POINT = Path(__file__).resolve().parents[1] / "run.py"  # `python -m mixup_sweeps.run`


def source_tags() -> dict[str, str]:
    """Who ran what, on every run: MLflow's own source tags (the UI's source and user columns: the commit as
    git gives it) and the harness's `git_commit` (`-dirty` when the code had local changes)."""
    found = {
        mlflow_tags.MLFLOW_SOURCE_NAME: str(ENTRY_POINT),
        mlflow_tags.MLFLOW_SOURCE_TYPE: "LOCAL",
        mlflow_tags.MLFLOW_USER: _user(),
    }
    if (git := _git_commit()) is not None:
        commit, dirty = git
        found[mlflow_tags.MLFLOW_GIT_COMMIT] = commit
        found[tags.GIT_COMMIT] = commit + ("-dirty" if dirty else "")
    return found


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a container)
        return str(os.getuid())


def start_job_run(
    client: MlflowClient,
    experiment_id: str,
    cfg: DictConfig,
    run_name: str,
    parent: Run | None,
    extra_tags: dict[str, str],
) -> str:
    """Create the job's run (nested under the sweep parent if any) with all params and static tags."""
    all_tags = {tags.FINGERPRINT: config_fingerprint(cfg), **liveness.process_tags(), **source_tags(), **extra_tags}
    if parent is not None:
        all_tags[tags.NESTED] = parent.info.run_id
        all_tags[tags.SWEEP_ID] = parent.data.tags.get(tags.SWEEP_ID, "")
    run_id = client.create_run(experiment_id, run_name=run_name, tags=all_tags).info.run_id
    params = [Param(k, str(v)) for k, v in flatten(cfg).items()]
    try:
        for i in range(0, len(params), _PARAM_BATCH):
            client.log_batch(run_id, params=params[i : i + _PARAM_BATCH])
    except BaseException:
        client.set_terminated(run_id, "FAILED")
        raise
    return run_id


def mark_reused(client: MlflowClient, run: Run, parent: Run | None) -> None:
    """A sweep that skips a job because an earlier sweep finished it counts that run as its own (report)."""
    sweep_id = parent.data.tags.get(tags.SWEEP_ID) if parent is not None else None
    if parent is not None and sweep_id and run.data.tags.get(tags.SWEEP_ID) != sweep_id:
        client.set_tag(run.info.run_id, tags.REUSED_IN_SWEEP + sweep_id, parent.info.run_id)


def exchange_initial_weights(
    client: MlflowClient, parent_run_id: str | None, local: Path, create: Callable[[], Path]
) -> Path:
    """The initial-weights file `local` (named by its key), the same bytes for every job of a sweep, on any node.

    In a sweep the parent run is the shared place: a job takes the parent's `initial_weights/<name>` artifact
    if a job has published it, else creates the file (`create`, under a local file lock) and publishes it,
    so workers on different machines need no shared disk, only the tracking server. Creation is
    deterministic (seeded weights, byte-identical .h5), so two nodes that both miss it publish the same bytes.
    """
    if parent_run_id is not None:
        published = {a.path for a in client.list_artifacts(parent_run_id, tags.INITIAL_WEIGHTS)}
        artifact = f"{tags.INITIAL_WEIGHTS}/{local.name}"
        if artifact in published:
            if local.exists():  # fetched or created on this node before: the same bytes (see above)
                return local
            local.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=local.parent) as folder, files.atomic_path(local) as tmp:
                Path(client.download_artifacts(parent_run_id, artifact, folder)).rename(tmp)
            return local
    path = create()
    if parent_run_id is not None:
        client.log_artifact(parent_run_id, str(path), tags.INITIAL_WEIGHTS)
    return path


def log_metrics(client: MlflowClient, run_id: str, metrics: dict[str, float], step: int) -> None:
    """Metrics of one step (an epoch), with the run's heartbeat in the same request."""
    now = time.time()
    client.log_batch(
        run_id,
        metrics=[Metric(k, float(v), int(now * 1000), step) for k, v in metrics.items()],
        tags=[RunTag(tags.HEARTBEAT, f"{now:.0f}")],
    )


def end_failed_run(client: MlflowClient, run_id: str, exc: BaseException, job_dir: Path) -> None:
    """Record why a run died (traceback.txt + error tag) and end it FAILED, or KILLED on Ctrl-C."""
    try:
        text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        path = job_dir / "traceback.txt"
        path.write_text(text)
        client.log_artifact(run_id, str(path))
        client.set_tag(run_id, tags.ERROR, f"{type(exc).__name__}: {exc}"[:5000])
        reason = getattr(exc, "reason", None) or type(exc).__name__
        client.set_tag(run_id, tags.FAILURE_REASON, reason)
    finally:
        client.set_terminated(run_id, "KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED")


def end_pruned_run(client: MlflowClient, run_id: str, epoch: int, why: str) -> None:
    """A run a search's pruner stopped: KILLED (it did not finish), tagged `pruned` with the epoch, so the report
    leaves it out of its tables and counts it, and the sweep does not count it as a failure."""
    client.set_tag(run_id, tags.PRUNED, "true")
    client.set_tag(run_id, tags.PRUNED_EPOCH, str(epoch))
    client.set_tag(run_id, tags.FAILURE_REASON, why)
    client.set_terminated(run_id, "KILLED")


def sweep_dir_tag(sweep_dir: str) -> str:
    """The parent's tag naming one session's sweep directory: every process that joins a sweep (the same command
    again, or at once on another machine) adds its own, so each process's jobs find the one parent."""
    return tags.SWEEP_DIR_OF + hashlib.sha256(sweep_dir.encode()).hexdigest()[:12]


def find_parent(
    client: MlflowClient, experiment_id: str, sweep_dir: str | None = None, fingerprint: str | None = None
) -> Run | None:
    """The parent run of the sweep writing to sweep_dir, or (for resume) of the same sweep command. A parent of
    a store from before several processes could share a sweep names its directory in `sweep_dir` alone."""
    if sweep_dir:
        wheres = [f"tags.`{sweep_dir_tag(sweep_dir)}` = '{sweep_dir}'", f"tags.{tags.SWEEP_DIR} = '{sweep_dir}'"]
    else:
        wheres = [f"tags.{tags.SWEEP_FINGERPRINT} = '{fingerprint}'"]
    for where in wheres:
        runs = client.search_runs(
            [experiment_id],
            filter_string=f"tags.{tags.PARENT} = 'true' and {where}",
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
        if runs:
            return runs[0]
    return None


def child_runs(client: MlflowClient, experiment_id: str, parent_run_id: str) -> list[Run]:
    return client.search_runs([experiment_id], filter_string=f"tags.`{tags.NESTED}` = '{parent_run_id}'")


def sweep_runs(client: MlflowClient, experiment_id: str, parent: Run) -> list[Run]:
    """A sweep's runs: its children and the FINISHED runs of earlier sweeps it skipped to (`mark_reused`)."""
    runs = child_runs(client, experiment_id, parent.info.run_id)
    sweep_id = parent.data.tags.get(tags.SWEEP_ID)
    if sweep_id:
        reused = f"tags.`{tags.REUSED_IN_SWEEP}{sweep_id}` = '{parent.info.run_id}'"
        runs += client.search_runs([experiment_id], filter_string=reused)
    return runs


def finished_durations(client: MlflowClient, experiment_id: str, parent: Run, since: float) -> list[float]:
    """Seconds each job of this sweep took that trained to the end since `since` (epoch seconds): skipped
    jobs and runs of earlier sessions are not in it (the ETA of `sweeps.progress`)."""
    runs = child_runs(client, experiment_id, parent.info.run_id)
    return [
        (run.info.end_time - run.info.start_time) / 1000
        for run in runs
        if run.info.status == "FINISHED" and run.info.end_time and run.info.start_time >= since * 1000
    ]


def diverged(run: Run) -> bool:
    """A run that ended FAILED because its loss became NaN (`training.TrainingDiverged`)."""
    return run.info.status == "FAILED" and run.data.tags.get(tags.FAILURE_REASON) == TrainingDiverged.reason


def run_status(run: Run) -> str:
    """A run's status, PRUNED for a run a search's pruner stopped (KILLED in MLflow, tagged)."""
    return "PRUNED" if run.data.tags.get(tags.PRUNED) == "true" else run.info.status
