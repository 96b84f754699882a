"""Sharing a sweep's work with other processes: the names a sweeper and its jobs agree on.

A job another process has claimed (`store.claims`) is not trained twice: the job waits for that run and
returns its result. Waiting in launch order would make two processes of one sweep take turns, so a sweeper
launches each batch twice (`multirun.sharing`): first with `DEFER_ENV` set, where a job claimed elsewhere
returns at once with `DEFERRED` in its outcome and the launcher goes on to the next job, which this process
may claim; then the deferred jobs again, which wait for their owners (by then mostly done) and skip.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

DEFER_ENV = "MIXUP_SWEEPS_DEFER_CLAIMED"  # hydra.job.env_set: "1" in the first pass
DEFERRED = "claimed_elsewhere"  # the outcome key of a job left to another process's claim in the first pass
POLL_S = 2.0  # how often a job waiting on another process's claim looks again


def defer_override() -> str:
    return f"++hydra.job.env_set.{DEFER_ENV}=1"


def defers(hydra_cfg: Any) -> bool:
    """Whether this job runs in a first pass (a claimed job returns `DEFERRED` instead of waiting)."""
    return str(hydra_cfg.job.env_set.get(DEFER_ENV, "")) == "1"


def deferred(return_value: object) -> bool:
    return isinstance(return_value, Mapping) and DEFERRED in return_value
