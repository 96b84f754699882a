"""What makes a sweep a sweep: its override keys, its identity, the baseline rule, and its MLflow parent run.

One place for each of these ideas, used by the job (`run`), the `variants` sweeper and the report:
- the override grammar: `key=value` as typed, `aug` naming the group choice (`aug.name` in the params);
- the sweep keys (what varies), the sweep fingerprint (the same command again = the same sweep), run names;
- the baseline rule: which group each group is compared with, paired by seed (`Baseline`, `baselines_of`);
- the parent run (a Hydra callback) and the seeds-until-precise outcome it carries.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import logging
import math
import os
import sys
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.experimental.callback import Callback
from mlflow.entities import Run
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig, OmegaConf

from mixup_sweeps import liveness, tracking
from mixup_sweeps.config import PLUMBING_PREFIXES, SWEEP_JOBS_ENV, SWEEP_PARALLEL_ENV, SWEEP_STARTED_ENV, ConfigError

log = logging.getLogger(__name__)

SEED = "seed"  # the replicate axis: never a group key, the key comparisons are paired on
PARENT_TAG = liveness.PARENT_TAG  # "true" on a sweep's parent run (defined with the tags liveness reads)
SWEEP_DIR_TAG = "sweep_dir"  # how a job finds its sweep's parent: same absolute sweep directory
SWEEP_FINGERPRINT_TAG = "sweep_fingerprint"  # the same sweep command again -> the same parent (resume)
SWEEP_KEYS_TAG = "sweep_keys"
SEEDS_UNTIL_TAG = "seeds_until"  # on a sweep parent: the variants sweeper's `until` settings, as JSON
SEEDS_UNTIL_RESULT_TAG = "seeds_until_result"  # ... and per group the seeds it used and whether it reached
RACE_TAG = "race"  # on a sweep parent: the race's settings (`hydra.sweeper.race`), as JSON
RACE_RESULT_TAG = "race_result"  # ... and its outcome (`racing.to_record`): winner, eliminations, runs spent
SEARCH_TAG, SEARCH_RESULT_TAG = "search", "search_result"  # a search's settings and its answer's lines (JSON)


# --- the override grammar --------------------------------------------------------------------------------
def override_key(override: str) -> str:
    """`+aug.alpha=0.2` -> `aug.alpha`: the key an override sets, without Hydra's +/~/++ prefixes."""
    return override.split("=", 1)[0].lstrip("+~")


def config_key(key: str) -> str:
    """The params column of an override key: `aug` (the group choice) is `aug.name`."""
    return "aug.name" if key == "aug" else key


def override_values(overrides: Iterable[str]) -> dict[str, str]:
    """`["aug=mixup", "aug.alpha=0.2"]` -> `{"aug.name": "mixup", "aug.alpha": "0.2"}` (config keys)."""
    return {config_key(override_key(o)): o.split("=", 1)[1] for o in overrides if "=" in o}


def task_overrides(hydra_cfg: DictConfig) -> list[str]:
    """The command-line overrides as typed: `${oc.env:X}` stays text, so no variable's value is recorded."""
    return list(OmegaConf.to_container(hydra_cfg.overrides.task, resolve=False))  # type: ignore[arg-type]


def seeds_until(config: DictConfig) -> dict[str, Any] | None:
    """The sweep's `hydra.sweeper.until` (Stein's procedure) when it is on, else None."""
    until = config.hydra.sweeper.get("until")
    if until is None or until.get("half_width") is None:
        return None
    settings: dict[str, Any] = OmegaConf.to_container(until, resolve=True)  # type: ignore[assignment]
    if settings.get("baseline", None) in (None, DEFAULT_BASELINE.override):  # null: the report's default
        settings.pop("baseline", None)  # sweeps from before the option keep their fingerprint
    return settings


def race(config: DictConfig) -> dict[str, Any] | None:
    """The sweep's `hydra.sweeper.race` settings when racing is on (epsilon set), else None."""
    settings = config.hydra.sweeper.get("race")
    if settings is None or settings.get("epsilon") is None:
        return None
    return OmegaConf.to_container(settings, resolve=True)  # type: ignore[return-value]


def search_settings(config: DictConfig) -> dict[str, Any] | None:
    """The settings that define a search's study (`hydra/sweeper=optuna`), else None."""
    from mixup_sweeps import search

    sweeper = config.hydra.sweeper
    if not search.is_search(sweeper):
        return None
    return search.settings_of(OmegaConf.to_container(sweeper, resolve=True)).study_defining()  # type: ignore[arg-type]


def expand_jobs(overrides: Sequence[Override], variants: Sequence[Sequence[str]]) -> list[list[str]]:
    """A sweep's jobs as override lists, as the variants sweeper launches them: the grid of `overrides` (a key
    given twice: the later wins, so the command line beats hydra.sweeper.params) crossed with `variants`.
    A key both on the command line and in the variants is a `ConfigError`."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

    overrides = list({o.get_key_element(): o for o in overrides}.values())
    variant_keys = {override_key(o) for variant in variants for o in variant}
    clash = sorted(variant_keys & {o.get_key_element() for o in overrides})
    if clash:
        raise ConfigError(f"hydra.sweeper.variants already sets {', '.join(clash)}; drop it from the command line")
    grid = BasicSweeper.split_arguments(overrides, None)[0]
    return [list(job) + list(variant) for job in grid for variant in (variants or [[]])]


def sweep_keys(config: DictConfig) -> list[str]:
    """Keys that vary across the sweep: command-line sweeps, hydra.sweeper.params and variants."""
    overrides = task_overrides(config.hydra)
    params = config.hydra.sweeper.get("params") or {}
    parser = OverridesParser.create()
    parsed = parser.parse_overrides(overrides + [f"{k}={v}" for k, v in params.items()])
    keys = [o.get_key_element() for o in parsed if o.is_sweep_override()]
    for variant in config.hydra.sweeper.get("variants") or []:
        keys += [o.get_key_element() for o in parser.parse_overrides(list(variant))]
    if seeds_until(config) or race(config) or search_settings(config):
        keys.append(SEED)  # seeds until precise, the race and the search sweep the seed
    return list(dict.fromkeys(keys))


def sweep_fingerprint(config: DictConfig) -> str:
    """What makes two sweep commands the same sweep: their overrides (not where they write) and sweeper lists."""
    overrides = sorted(
        o for o in task_overrides(config.hydra) if not override_key(o).startswith((*PLUMBING_PREFIXES, "hydra."))
    )
    sweeper_cfg: dict[str, Any] = OmegaConf.to_container(config.hydra.sweeper, resolve=True)  # type: ignore[assignment]
    sweeper = {k: sweeper_cfg.get(k) for k in ("params", "variants")}
    if until := seeds_until(config):  # only when on, so sweeps from before the option keep their fingerprint
        sweeper["until"] = until
    if settings := race(config):  # likewise
        sweeper["race"] = settings
    if settings := search_settings(config):  # the study's settings; not n_trials: more trials continue it
        sweeper["search"] = settings
    payload = json.dumps({"overrides": overrides, "sweeper": sweeper}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def job_run_name(overrides: list[str], keys: list[str] | None) -> str:
    """`aug=mixup,aug.alpha=0.2`: the job's own overrides (only the swept keys when known), no paths."""
    chosen = []
    for override in overrides:
        key = override_key(override)
        if (keys is None or key in keys) and not key.startswith(PLUMBING_PREFIXES):
            chosen.append(override)
    return ",".join(chosen) or "defaults"


# --- the baseline rule -----------------------------------------------------------------------------------
def missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def same_value(a: Any, b: Any) -> bool:
    """Equal as typed on a command line or as read back from the params (`0.2` == 0.2; missing == missing)."""
    if missing(a) or missing(b):
        return missing(a) and missing(b)
    if str(a) == str(b):
        return True
    try:
        return float(a) == float(b)
    except (TypeError, ValueError):
        return False


class Baseline(NamedTuple):
    """The runs every other group is compared with: those whose config `key` holds `value`."""

    key: str
    value: str

    def owns(self, key: str) -> bool:
        """Keys that belong to the baseline's choice and need not match: for `aug.name` every `aug.*` key."""
        return key.startswith("aug.") if self.key == "aug.name" else key == self.key

    def includes(self, group: Mapping[str, Any]) -> bool:
        return self.key in group and not missing(group[self.key]) and same_value(group[self.key], self.value)

    @property
    def override(self) -> str:
        """How a command line selects it: `aug=none`, `trainer.precision=float32`."""
        return f"{'aug' if self.key == 'aug.name' else self.key}={self.value}"

    @property
    def name(self) -> str:
        """How an answer names it: `none` for the default, else `KEY=VALUE`."""
        return self.value if self == DEFAULT_BASELINE else f"{self.key}={self.value}"


DEFAULT_BASELINE = Baseline("aug.name", "none")


def parse_baseline(text: str) -> Baseline:
    """`KEY=VALUE` (`--baseline`, `hydra.sweeper.until.baseline`); `aug=none` means `aug.name=none`."""
    key, sep, value = text.partition("=")
    if not sep or not key or not value:
        raise ValueError(f"baseline {text!r}: expected KEY=VALUE, e.g. aug=none or trainer.precision=float32")
    return Baseline(config_key(key.strip()), value.strip())


def baselines_of(
    group: Mapping[str, Any], groups: Sequence[Mapping[str, Any]], baseline: Baseline = DEFAULT_BASELINE
) -> list[int]:
    """Indices of the `groups` that `group` is compared with: baseline groups equal to it on every key the
    baseline does not own (a key missing in both counts as equal). [] for a baseline group itself."""
    if baseline.includes(group):
        return []
    keys = {k for g in (group, *groups) for k in g if not baseline.owns(k) and k != baseline.key}
    return [
        i
        for i, other in enumerate(groups)
        if baseline.includes(other) and all(same_value(group.get(k), other.get(k)) for k in keys)
    ]


# --- progress ----------------------------------------------------------------------------------------
def progress(hydra_cfg: DictConfig, finished_seconds: Sequence[float] = ()) -> str:
    """`[5/12, ETA 4 min] `: where this job stands in its sweep (the variants sweeper tells it the count and
    how many jobs its launcher runs at once).

    The ETA comes from `finished_seconds`, the durations of this sweep's jobs that trained to the end so far
    (skipped jobs took no time and count for nothing), and the launcher's parallelism; none before a job
    finished. Elapsed time over jobs started would count skips as work and ignore jobs running side by side.
    """
    env = hydra_cfg.job.env_set
    total, started = env.get(SWEEP_JOBS_ENV), env.get(SWEEP_STARTED_ENV)
    if total is None or started is None:
        return ""
    done = int(hydra_cfg.job.num)  # jobs launched before this one
    parallel = int(env.get(SWEEP_PARALLEL_ENV) or 1)
    remaining = estimate_remaining(finished_seconds, int(total) - done, parallel)
    eta = "" if remaining is None else f", ETA {format_duration(remaining)}"
    return f"[{done + 1}/{total}{eta}] "


def jobs_at_once(launcher: Any, settings: Mapping[str, Any]) -> int:
    """How many jobs the sweep's launcher runs at once (the ETA's divisor): its own answer where it gives one
    (`jobs_at_once()`: the project's launchers); for Hydra's joblib and Ray launchers, read from their settings
    (`hydra.launcher`): joblib's `n_jobs` (-1: every CPU), Ray's CPUs over the CPUs a job asks for; else 1."""
    if launcher is not None and callable(own := getattr(launcher, "jobs_at_once", None)):
        return max(1, int(own()))
    if n_jobs := int(settings.get("n_jobs") or 0):
        return max(1, (os.cpu_count() or 1) + 1 + n_jobs) if n_jobs < 0 else n_jobs  # joblib: -1 all, -2 all but one
    ray = settings.get("ray") or {}
    cpus, per_job = (ray.get("init") or {}).get("num_cpus"), (ray.get("remote") or {}).get("num_cpus")
    if cpus and per_job:
        return max(1, int(cpus) // int(per_job))
    return 1


def progress_overrides(total_jobs: int, started: float, parallel: int) -> list[str]:
    """What a job needs for its progress line (`sweep.progress`), as hydra.job.env_set entries (neither a task
    override nor in the run's fingerprint)."""
    return [
        f"++hydra.job.env_set.{SWEEP_JOBS_ENV}={total_jobs}",
        f"++hydra.job.env_set.{SWEEP_STARTED_ENV}={started:.0f}",
        f"++hydra.job.env_set.{SWEEP_PARALLEL_ENV}={parallel}",
    ]


def estimate_remaining(finished_seconds: Sequence[float], jobs_left: int, parallel: int) -> float | None:
    """Seconds until the last of `jobs_left` jobs (this one included) ends, `parallel` at a time, each as long
    as the mean finished job; None while no job has finished."""
    if not finished_seconds or jobs_left <= 0:
        return None
    return math.ceil(jobs_left / max(parallel, 1)) * sum(finished_seconds) / len(finished_seconds)


def finished_durations(client: MlflowClient, experiment_id: str, parent: Run, since: float) -> list[float]:
    """Seconds each job of this sweep took that trained to the end since `since` (epoch seconds): skipped
    jobs and runs of earlier sessions are not in it."""
    runs = child_runs(client, experiment_id, parent.info.run_id)
    return [
        (run.info.end_time - run.info.start_time) / 1000
        for run in runs
        if run.info.status == "FINISHED" and run.info.end_time and run.info.start_time >= since * 1000
    ]


def format_duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


# --- the parent run ----------------------------------------------------------------------------------
def find_parent(
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
    return client.search_runs([experiment_id], filter_string=f"tags.`{tracking.NESTED_TAG}` = '{parent_run_id}'")


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
        try:
            self.client, self.experiment_id = client, experiment_id = tracking.connect(config.tracking)
            from mixup_sweeps.preflight import check_sweeper

            check_sweeper(config)
        except (tracking.StoreUnreachable, ConfigError) as exc:  # once, before any run; Hydra would only warn
            print(f"Error: {exc}", file=sys.stderr)
            sys.exit(2)
        fingerprint = sweep_fingerprint(config)
        parent = find_parent(client, experiment_id, sweep_dir)
        if parent is None and config.get("resume", False):
            parent = find_parent(client, experiment_id, fingerprint=fingerprint)
        if parent is not None:  # the same sweep again: its parent collects old and new runs
            self.parent_run_id = parent.info.run_id
            client.set_tag(self.parent_run_id, SWEEP_DIR_TAG, sweep_dir)  # where this session's jobs look
            liveness.claim_run(client, self.parent_run_id)
            sweep_id = parent.data.tags["sweep_id"]
            log.info("sweep %s continues (resume=true): finished jobs are skipped", sweep_id)
        else:
            sweep_id = f"{Path(sweep_dir).name}-{uuid.uuid4().hex[:6]}"
            tags = {
                PARENT_TAG: "true",
                SWEEP_DIR_TAG: sweep_dir,
                "sweep_id": sweep_id,
                SWEEP_KEYS_TAG: json.dumps(sweep_keys(config)),
                SWEEP_FINGERPRINT_TAG: fingerprint,
                "sweep_overrides": " ".join(task_overrides(config.hydra)),
                **liveness.process_tags(),
            }
            if until := seeds_until(config):
                tags[SEEDS_UNTIL_TAG] = json.dumps(until, sort_keys=True)
            if settings := race(config):
                tags[RACE_TAG] = json.dumps(settings, sort_keys=True)
            if settings := search_settings(config):
                tags[SEARCH_TAG] = json.dumps(settings, sort_keys=True)
            if commit := tracking.harness_git_commit():
                tags["git_commit"] = commit
            self.parent_run_id = client.create_run(experiment_id, run_name=f"sweep {sweep_id}", tags=tags).info.run_id
        log.info("sweep %s: parent run %s in %s", sweep_id, self.parent_run_id, config.tracking.uri)
        self.ui_link = tracking.ui_runs_link(experiment_id, tracking.ui_url_for(config.tracking.uri))
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
            latest[run.data.tags.get(tracking.FINGERPRINT_TAG, run.info.run_id)] = run
        children = list(latest.values())
        counts = Counter(_status(r) for r in children)
        ok = completed and set(counts) <= {"FINISHED", "PRUNED"}  # a search stopping a hopeless trial is no failure
        client.set_terminated(run_id, "FINISHED" if ok else "FAILED")
        summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items())) or "no runs"
        log.info("sweep parent run %s ended %s: %s", run_id, "FINISHED" if ok else "FAILED", summary)
        for run in children:
            if _status(run) not in ("FINISHED", "PRUNED"):
                log.error("  %s %s: %s", run.info.status, run.info.run_name, run.data.tags.get("error", "")[:200])
        log.info("runs in the MLflow UI (`mlflow ui`, see README): %s", self.ui_link)
        tags = client.get_run(run_id).data.tags
        if SEEDS_UNTIL_RESULT_TAG in tags:  # the last line: what the seeds-until-precise procedure reached
            until = json.loads(tags[SEEDS_UNTIL_TAG])
            outcome = json.loads(tags[SEEDS_UNTIL_RESULT_TAG])
            log.info("seeds until precise: %s", describe_seeds_until(outcome, until["half_width"]))
        if RACE_RESULT_TAG in tags:  # the last lines: the race's winner, eliminations and what it spent
            for line in json.loads(tags[RACE_RESULT_TAG])["lines"]:
                log.info("race: %s", line)
        if SEARCH_RESULT_TAG in tags:  # ... or the search's best trial and its confirmation
            for line in json.loads(tags[SEARCH_RESULT_TAG]):
                log.info("%s", line)


def _status(run: Run) -> str:
    """A run's status, PRUNED for a run a search's pruner stopped (KILLED in MLflow, tagged)."""
    from mixup_sweeps.search import PRUNED_TAG

    return "PRUNED" if run.data.tags.get(PRUNED_TAG) == "true" else run.info.status
