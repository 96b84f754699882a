"""MLflow bookkeeping: the store and experiment, a sweep's parent run, and each job's child run.

Everything goes through `MlflowClient` with explicit run ids (no fluent global state), so a run is always
ended on purpose: FINISHED after its last artifact, FAILED (or KILLED on Ctrl-C) with its traceback otherwise.
"""

from __future__ import annotations

import atexit
import fcntl
import hashlib
import json
import logging
import os
import socket
import subprocess
import tempfile
import traceback
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from mlflow.entities import Metric, Param, Run
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig, OmegaConf

from mixup_sweeps.config import PLUMBING_PREFIXES, config_fingerprint, flatten

log = logging.getLogger(__name__)

PARENT_TAG = "sweep_parent"  # "true" on a sweep's parent run
SWEEP_DIR_TAG = "sweep_dir"  # how a job finds its sweep's parent: same absolute sweep directory
SWEEP_FINGERPRINT_TAG = "sweep_fingerprint"  # the same sweep command again -> the same parent (resume)
NESTED_TAG = "mlflow.parentRunId"
_PARAM_BATCH = 100  # MLflow's limit of params per log_batch call


UI_URL = "http://127.0.0.1:5000"  # where `mlflow ui` listens by default


def ui_url_for(tracking_uri: str) -> str:
    """Where the UI of a store is: a tracking server is its own UI; a local store's is `mlflow ui`'s default."""
    return tracking_uri if tracking_uri.startswith(("http://", "https://")) else UI_URL


def ui_runs_link(experiment_id: str, ui_url: str = UI_URL) -> str:
    """The MLflow UI's table of the experiment's runs. The plain experiment link opens MLflow 3's GenAI
    overview ("Traces 0"); `workflowType=machine_learning` opens the training runs."""
    return f"{ui_url.rstrip('/')}/#/experiments/{experiment_id}/runs?workflowType=machine_learning"


def connect(tracking: DictConfig) -> tuple[MlflowClient, str]:
    """Client for tracking.uri and the id of tracking.experiment, created (with its artifact root) if new.

    Several jobs may start at once on a new SQLite store: the store's tables and the experiment are then
    created by one of them under a file lock while the others wait.
    """
    with _store_lock(tracking.uri):
        client = MlflowClient(tracking_uri=tracking.uri)
        experiment = client.get_experiment_by_name(tracking.experiment)
        if experiment is None:
            location = tracking.artifact_location
            if location and "://" not in location:
                location = Path(location).resolve().as_uri()
            # the experiment kind makes the MLflow UI open it as "Training runs", not as a GenAI experiment
            tags = {"mlflow.experimentKind": "custom_model_development"}
            try:
                return client, client.create_experiment(tracking.experiment, artifact_location=location, tags=tags)
            except MlflowException:  # a tracking server: another job created it first
                experiment = client.get_experiment_by_name(tracking.experiment)
                if experiment is None:
                    raise
    if experiment.lifecycle_stage == "deleted":
        client.restore_experiment(experiment.experiment_id)
    end_ghost_runs(client, experiment.experiment_id)
    return client, experiment.experiment_id


HOST_TAG, PID_TAG, PROCESS_TAG = "host", "pid", "process_start"  # which process on which machine owns a run


def _process_start(pid: int) -> str | None:
    """Boot id + start time of process `pid` (Linux /proc), None if there is no such (living) process.

    A pid alone can be reused by another process after a kill or a reboot; pid + boot + start time cannot.
    Elsewhere it falls back to "the pid exists".
    """
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        if Path("/proc/self/stat").exists():
            return None  # Linux, and the process is gone
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return "alive"
    fields = stat.rsplit(")", 1)[1].split()  # after "pid (comm)": state is field 3, start time field 22
    if fields[0] == "Z":
        return None  # a zombie: dead, only not yet waited for by its parent
    return f"{boot}:{fields[19]}"


def process_tags() -> dict[str, str]:
    """Tags that say which process runs a run: a later job on the same host can tell a ghost from a live run."""
    return {HOST_TAG: socket.gethostname(), PID_TAG: str(os.getpid()), PROCESS_TAG: _process_start(os.getpid()) or ""}


def claim_run(client: MlflowClient, run_id: str) -> None:
    """This process takes over a run (a resumed job, a continued sweep): RUNNING, with this process's tags."""
    client.update_run(run_id, status="RUNNING")
    for key, value in process_tags().items():
        client.set_tag(run_id, key, value)


def end_ghost_runs(client: MlflowClient, experiment_id: str) -> list[str]:
    """End KILLED the RUNNING runs started on this host by a process that no longer exists (kill -9, a crash).

    Runs of other hosts are left alone: from here nobody can tell whether their process lives.
    A ghost run keeps its backup, so running its command again still resumes it in the same run.
    """
    host = socket.gethostname()
    ghosts = []
    for run in client.search_runs(
        [experiment_id], filter_string=f"attributes.status = 'RUNNING' and tags.{HOST_TAG} = '{host}'"
    ):
        pid, started = run.data.tags.get(PID_TAG, ""), run.data.tags.get(PROCESS_TAG, "")
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        now = _process_start(int(pid))
        pid_reused = bool(started) and now not in (None, "alive", started)
        if now is None or pid_reused:
            message = f"process {pid} on {host} ended without closing the run (kill -9, out of memory, a crash)"
            client.set_tag(run.info.run_id, "error", message)
            client.set_tag(run.info.run_id, "failure_reason", "process_gone")
            client.set_terminated(run.info.run_id, "KILLED")
            log.warning("run %s (%s) marked KILLED: %s", run.info.run_id, run.info.run_name, message)
            ghosts.append(run.info.run_id)
    return ghosts


@contextmanager
def _store_lock(uri: str) -> Iterator[None]:
    """An exclusive file lock beside a SQLite store (no-op for other stores)."""
    if not uri.startswith("sqlite:///"):
        yield
        return
    db = Path(uri[len("sqlite:///") :])
    db.parent.mkdir(parents=True, exist_ok=True)
    with open(db.with_name(db.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def runs_with_fingerprint(
    client: MlflowClient, experiment_id: str, fingerprint: str, statuses: Sequence[str]
) -> list[Run]:
    """Runs of this exact computation (tag config_fingerprint) in the given states, newest first."""
    runs = client.search_runs(
        [experiment_id],
        filter_string=f"tags.config_fingerprint = '{fingerprint}'",
        order_by=["attributes.start_time DESC"],
    )  # MLflow's filter has no OR/IN for status: filter those here
    return [r for r in runs if r.info.status in statuses]


def harness_git_commit() -> str | None:
    """The commit of the harness code that ran, with '-dirty' when it had local changes; None outside git."""
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
    return commit + ("-dirty" if dirty else "")


def task_overrides(hydra_cfg: DictConfig) -> list[str]:
    """The command-line overrides as typed: `${oc.env:X}` stays text, so no variable's value is recorded."""
    return list(OmegaConf.to_container(hydra_cfg.overrides.task, resolve=False))


def sweep_keys(config: DictConfig) -> list[str]:
    """Keys that vary across the sweep: command-line sweeps, hydra.sweeper.params and variants."""
    overrides = task_overrides(config.hydra)
    params = config.hydra.sweeper.get("params") or {}
    parsed = OverridesParser.create().parse_overrides(overrides + [f"{k}={v}" for k, v in params.items()])
    keys = [o.get_key_element() for o in parsed if o.is_sweep_override()]
    for variant in config.hydra.sweeper.get("variants") or []:
        keys += [o.get_key_element() for o in OverridesParser.create().parse_overrides(list(variant))]
    if seeds_until(config):
        keys.append("seed")  # the seeds-until-precise sweeper sweeps the seed
    return list(dict.fromkeys(keys))


def sweep_fingerprint(config: DictConfig) -> str:
    """What makes two sweep commands the same sweep: their overrides (not where they write) and sweeper lists."""
    overrides = sorted(
        o for o in task_overrides(config.hydra) if not o.lstrip("+~").startswith((*PLUMBING_PREFIXES, "hydra."))
    )
    sweeper = {k: OmegaConf.to_container(config.hydra.sweeper, resolve=True).get(k) for k in ("params", "variants")}
    if until := seeds_until(config):  # only when on, so sweeps from before the option keep their fingerprint
        sweeper["until"] = until
    payload = json.dumps({"overrides": overrides, "sweeper": sweeper}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


SEEDS_UNTIL_TAG = "seeds_until"  # on a sweep parent: the variants sweeper's `until` settings, as JSON
SEEDS_UNTIL_RESULT_TAG = "seeds_until_result"  # ... and per group the seeds it used and whether it reached


def describe_seeds_until(outcome: list[dict[str, Any]], half_width: float) -> str:
    """One line: per group the seeds used and whether its paired 95 % interval reached ±half_width."""
    parts = []
    for entry in outcome:
        if "reached" not in entry:
            parts.append(f"{entry['group']}: {entry['seeds']} seeds (baseline)")
        else:
            verdict = "reached" if entry["reached"] else "NOT reached (max_seeds)"
            parts.append(f"{entry['group']}: {entry['seeds']} seeds, Δ {entry['delta']:+.4f} ± "
                         f"{entry['half_width']:.4f}, {verdict} ±{half_width:g}")  # fmt: skip
    return "; ".join(parts)


def seeds_until(config: DictConfig) -> dict[str, Any] | None:
    """The sweep's `hydra.sweeper.until` (Stein's procedure) when it is on, else None."""
    until = config.hydra.sweeper.get("until")
    if until is None or until.get("half_width") is None:
        return None
    return OmegaConf.to_container(until, resolve=True)


def find_sweep_parent(
    client: MlflowClient, experiment_id: str, sweep_dir: str | None = None, fingerprint: str | None = None
) -> Run | None:
    """The parent run of the sweep writing to sweep_dir, or (for resume) of the same sweep command."""
    where = f"tags.{SWEEP_DIR_TAG} = '{sweep_dir}'" if sweep_dir else f"tags.{SWEEP_FINGERPRINT_TAG} = '{fingerprint}'"
    runs = client.search_runs(
        [experiment_id],
        filter_string=f"tags.{PARENT_TAG} = 'true' and {where}",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return runs[0] if runs else None


def child_runs(client: MlflowClient, experiment_id: str, parent_run_id: str) -> list[Run]:
    return client.search_runs([experiment_id], filter_string=f"tags.`{NESTED_TAG}` = '{parent_run_id}'")


class SweepParentCallback(Callback):
    """Hydra callback: one parent run per multirun, created before any job starts, ended after the last.

    It is ended FINISHED only when every child finished; a sweep that raised (a job failed) or was
    interrupted ends it FAILED from an atexit hook, so the parent is never left RUNNING either.
    """

    def __init__(self) -> None:
        self.client: MlflowClient | None = None
        self.experiment_id = ""
        self.parent_run_id: str | None = None
        self.ui_link = ""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = str(Path(config.hydra.sweep.dir).resolve())
        self.client, self.experiment_id = connect(config.tracking)
        fingerprint = sweep_fingerprint(config)
        parent = find_sweep_parent(self.client, self.experiment_id, sweep_dir)
        if parent is None and config.get("resume", False):
            parent = find_sweep_parent(self.client, self.experiment_id, fingerprint=fingerprint)
        if parent is not None:  # the same sweep again: its parent collects old and new runs
            self.parent_run_id = parent.info.run_id
            self.client.set_tag(self.parent_run_id, SWEEP_DIR_TAG, sweep_dir)  # where this session's jobs look
            claim_run(self.client, self.parent_run_id)
            sweep_id = parent.data.tags["sweep_id"]
            log.info("sweep %s continues (resume=true): finished jobs are skipped", sweep_id)
        else:
            sweep_id = f"{Path(sweep_dir).name}-{uuid.uuid4().hex[:6]}"
            tags = {
                PARENT_TAG: "true",
                SWEEP_DIR_TAG: sweep_dir,
                "sweep_id": sweep_id,
                "sweep_keys": json.dumps(sweep_keys(config)),
                SWEEP_FINGERPRINT_TAG: fingerprint,
                "sweep_overrides": " ".join(task_overrides(config.hydra)),
                **process_tags(),
            }
            if until := seeds_until(config):
                tags[SEEDS_UNTIL_TAG] = json.dumps(until, sort_keys=True)
            if commit := harness_git_commit():
                tags["git_commit"] = commit
            run = self.client.create_run(self.experiment_id, run_name=f"sweep {sweep_id}", tags=tags)
            self.parent_run_id = run.info.run_id
        log.info("sweep %s: parent run %s in %s", sweep_id, self.parent_run_id, config.tracking.uri)
        self.ui_link = ui_runs_link(self.experiment_id, ui_url_for(config.tracking.uri))
        log.info("runs in the MLflow UI (`mlflow ui`, see README): %s", self.ui_link)
        atexit.register(self._finish, completed=False)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        self._finish(completed=True)

    def _finish(self, completed: bool) -> None:
        if self.client is None or self.parent_run_id is None:
            return
        client, run_id, self.parent_run_id = self.client, self.parent_run_id, None
        latest: dict[str, Run] = {}  # a job run again supersedes its earlier attempt
        for run in sorted(child_runs(client, self.experiment_id, run_id), key=lambda r: r.info.start_time):
            latest[run.data.tags.get("config_fingerprint", run.info.run_id)] = run
        children = list(latest.values())
        counts = Counter(r.info.status for r in children)
        ok = completed and set(counts) <= {"FINISHED"}
        client.set_terminated(run_id, "FINISHED" if ok else "FAILED")
        summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items())) or "no runs"
        log.info("sweep parent run %s ended %s: %s", run_id, "FINISHED" if ok else "FAILED", summary)
        for run in children:
            if run.info.status != "FINISHED":
                log.error("  %s %s: %s", run.info.status, run.info.run_name, run.data.tags.get("error", "")[:200])
        log.info("runs in the MLflow UI (`mlflow ui`, see README): %s", self.ui_link)
        tags = client.get_run(run_id).data.tags
        if SEEDS_UNTIL_RESULT_TAG in tags:  # the last line: what the seeds-until-precise procedure reached
            until = json.loads(tags[SEEDS_UNTIL_TAG])
            outcome = json.loads(tags[SEEDS_UNTIL_RESULT_TAG])
            log.info("seeds until precise: %s", describe_seeds_until(outcome, until["half_width"]))


def job_run_name(overrides: list[str], keys: list[str] | None) -> str:
    """`aug=mixup,aug.alpha=0.2`: the job's own overrides (only the swept keys when known), no paths."""
    chosen = []
    for override in overrides:
        key = override.split("=", 1)[0].lstrip("+~")
        if (keys is None or key in keys) and not key.startswith(PLUMBING_PREFIXES):
            chosen.append(override)
    return ",".join(chosen) or "defaults"


def start_job_run(
    client: MlflowClient,
    experiment_id: str,
    cfg: DictConfig,
    run_name: str,
    parent: Run | None,
    tags: dict[str, str],
) -> str:
    """Create the job's run (nested under the sweep parent if any) with all params and static tags."""
    all_tags = {"config_fingerprint": config_fingerprint(cfg), **process_tags(), **tags}
    if commit := harness_git_commit():
        all_tags["git_commit"] = commit
    if parent is not None:
        all_tags[NESTED_TAG] = parent.info.run_id
        all_tags["sweep_id"] = parent.data.tags.get("sweep_id", "")
    run_id = client.create_run(experiment_id, run_name=run_name, tags=all_tags).info.run_id
    params = [Param(k, str(v)) for k, v in flatten(cfg).items()]
    try:
        for i in range(0, len(params), _PARAM_BATCH):
            client.log_batch(run_id, params=params[i : i + _PARAM_BATCH])
    except BaseException:
        client.set_terminated(run_id, "FAILED")
        raise
    return run_id


REUSED_IN_SWEEP = "reused_in_sweep."  # + sweep_id: a FINISHED run of another sweep that this sweep skipped to


def mark_reused(client: MlflowClient, run: Run, parent: Run | None) -> None:
    """A sweep that skips a job because an earlier sweep finished it counts that run as its own (report)."""
    sweep_id = parent.data.tags.get("sweep_id") if parent is not None else None
    if sweep_id and run.data.tags.get("sweep_id") != sweep_id:
        client.set_tag(run.info.run_id, REUSED_IN_SWEEP + sweep_id, parent.info.run_id)


INITIAL_WEIGHTS = "initial_weights"  # artifact folder of the sweep parent (and of each run) holding them


def shared_initial_weights(
    client: MlflowClient, parent_run_id: str | None, local: Path, create: Callable[[], Path]
) -> Path:
    """The initial-weights file `local` (named by its key), the same bytes for every job of a sweep, on any node.

    In a sweep the parent run is the shared place: a job takes the parent's `initial_weights/<name>` artifact
    if a job has published it, else creates the file (`create`, under a local file lock) and publishes it,
    so workers on different machines need no shared disk, only the tracking server. Creation is
    deterministic (seeded weights, byte-identical .h5), so two nodes that both miss it publish the same bytes.
    """
    if parent_run_id is not None:
        published = {a.path for a in client.list_artifacts(parent_run_id, INITIAL_WEIGHTS)}
        artifact = f"{INITIAL_WEIGHTS}/{local.name}"
        if artifact in published:
            if local.exists():  # fetched or created on this node before: the same bytes (see above)
                return local
            local.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=local.parent) as tmp:
                fetched = client.download_artifacts(parent_run_id, artifact, tmp)
                os.replace(fetched, local)
            return local
    path = create()
    if parent_run_id is not None:
        client.log_artifact(parent_run_id, str(path), INITIAL_WEIGHTS)
    return path


def log_metrics(client: MlflowClient, run_id: str, metrics: dict[str, float], step: int) -> None:
    from time import time

    now = int(time() * 1000)
    client.log_batch(run_id, metrics=[Metric(k, float(v), now, step) for k, v in metrics.items()])


def end_failed_run(client: MlflowClient, run_id: str, exc: BaseException, job_dir: Path) -> None:
    """Record why a run died (traceback.txt + error tag) and end it FAILED, or KILLED on Ctrl-C."""
    try:
        text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        path = job_dir / "traceback.txt"
        path.write_text(text)
        client.log_artifact(run_id, str(path))
        client.set_tag(run_id, "error", f"{type(exc).__name__}: {exc}"[:5000])
        reason = getattr(exc, "reason", None) or type(exc).__name__
        client.set_tag(run_id, "failure_reason", reason)
    finally:
        client.set_terminated(run_id, "KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED")
