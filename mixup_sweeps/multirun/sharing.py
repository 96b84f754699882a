"""A sweeper's launches, shared with other processes of the same work (the rules: `sweeps.sharing`).

`SharingLauncher` stands in for the sweep's launcher: each launch runs its batch once with claimed jobs
deferred (a job another process trains returns at once, and this process moves on to the next job, which it may
claim), then the deferred jobs again, which wait for their owners and return those runs' results. Two processes
of one sweep so split its jobs instead of taking turns; alone, a process defers nothing and launches once.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from hydra.core.utils import JobReturn, JobStatus
from omegaconf import DictConfig, OmegaConf

from mixup_sweeps import errors
from mixup_sweeps.multirun.in_process import job_failure
from mixup_sweeps.sweeps import sharing


class SharingLauncher:
    """The sweep's launcher with the two passes; everything else (`jobs_at_once`, settings) is the launcher's."""

    def __init__(self, launcher: Any) -> None:
        self.launcher = launcher

    def __getattr__(self, name: str) -> Any:
        return getattr(self.launcher, name)

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        returns = self._launch([[*job, sharing.defer_override()] for job in job_overrides], initial_job_idx)
        later = [
            i
            for i, ret in enumerate(returns)
            if ret.status == JobStatus.COMPLETED and sharing.deferred(ret.return_value)
        ]
        for start, stop in _runs_of(later):  # each job again at its own index: its job directory stays its own
            jobs = [list(job) for job in job_overrides[start:stop]]
            returns[start:stop] = self._launch(jobs, initial_job_idx + start)
        return returns

    def _launch(self, job_overrides: list[list[str]], initial_job_idx: int) -> list[JobReturn]:
        """The launcher's launch; a full disk (met by a job, or by Hydra writing a job's files) ends the sweep
        with that one line: every later job would fail the same way."""
        try:
            returns = list(self.launcher.launch(job_overrides, initial_job_idx=initial_job_idx))
        except Exception as exc:
            if (full := errors.disk_full(exc, **self._where())) is None:
                raise
            _end_on(full)
        for ret in returns:
            if (full := errors.disk_full(job_failure(ret), **self._where())) is not None:
                _end_on(full)
        return returns

    def _where(self) -> dict[str, str]:
        """The sweep directory and the store, for the line of a full disk that names no file."""
        config = getattr(self.launcher, "config", None)
        if not isinstance(config, DictConfig):  # a launcher not set up, or another app's config
            return {}
        found = {
            "files": OmegaConf.select(config, "hydra.sweep.dir"),
            "store": OmegaConf.select(config, "tracking.uri"),
        }
        return {key: str(value) for key, value in found.items() if value is not None}


def _end_on(full: errors.DiskFull) -> NoReturn:
    """The sweep's one line and exit 1, as the command's other one-line errors end (Hydra would add a line about
    HYDRA_FULL_ERROR to an exception); the parent run's end (atexit) tries the store once more."""
    errors.quiet_from_now()
    print(f"Error: {full}", file=sys.stderr)
    sys.exit(1)


def _runs_of(indices: list[int]) -> list[tuple[int, int]]:
    """Consecutive indices as [start, stop) ranges: [1, 2, 5] -> [(1, 3), (5, 6)]."""
    ranges: list[tuple[int, int]] = []
    for i in indices:
        if ranges and ranges[-1][1] == i:
            ranges[-1] = (ranges[-1][0], i + 1)
        else:
            ranges.append((i, i + 1))
    return ranges
