"""Where a job stands in its sweep: `[5/12, ETA 4 min]`, from what the sweeper tells each job.

The sweeper passes the count, the start and its launcher's parallelism as `hydra.job.env_set` entries: neither
a task override nor in a run's fingerprint, so a job's name and identity do not depend on them.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

from omegaconf import DictConfig

from mixup_sweeps.text import format_duration

# What the sweeper tells each job about its sweep: how many jobs it has so far, when it started, and how many
# jobs its launcher runs at once (for the ETA).
SWEEP_JOBS_ENV, SWEEP_STARTED_ENV = "MIXUP_SWEEP_JOBS", "MIXUP_SWEEP_STARTED"
SWEEP_PARALLEL_ENV = "MIXUP_SWEEP_PARALLEL"


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


def sweep_started(hydra_cfg: DictConfig) -> float | None:
    """When the job's sweep started (epoch seconds), as its sweeper told it; None outside such a sweep."""
    started = hydra_cfg.job.env_set.get(SWEEP_STARTED_ENV)
    return None if started is None else float(started)


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
    """What a job needs for its progress line (`progress`), as hydra.job.env_set entries (neither a task
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
