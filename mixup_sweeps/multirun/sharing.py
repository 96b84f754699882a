"""A sweeper's launches, shared with other processes of the same work (the rules: `sweeps.sharing`).

`SharingLauncher` stands in for the sweep's launcher: each launch runs its batch once with claimed jobs
deferred (a job another process trains returns at once, and this process moves on to the next job, which it may
claim), then the deferred jobs again, which wait for their owners and return those runs' results. Two processes
of one sweep so split its jobs instead of taking turns; alone, a process defers nothing and launches once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hydra.core.utils import JobReturn, JobStatus

from mixup_sweeps.sweeps import sharing


class SharingLauncher:
    """The sweep's launcher with the two passes; everything else (`jobs_at_once`, settings) is the launcher's."""

    def __init__(self, launcher: Any) -> None:
        self.launcher = launcher

    def __getattr__(self, name: str) -> Any:
        return getattr(self.launcher, name)

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        first = [[*job, sharing.defer_override()] for job in job_overrides]
        returns = list(self.launcher.launch(first, initial_job_idx=initial_job_idx))
        later = [
            i
            for i, ret in enumerate(returns)
            if ret.status == JobStatus.COMPLETED and sharing.deferred(ret.return_value)
        ]
        for start, stop in _runs_of(later):  # each job again at its own index: its job directory stays its own
            again = self.launcher.launch(
                [list(job) for job in job_overrides[start:stop]], initial_job_idx=initial_job_idx + start
            )
            returns[start:stop] = list(again)
        return returns


def _runs_of(indices: list[int]) -> list[tuple[int, int]]:
    """Consecutive indices as [start, stop) ranges: [1, 2, 5] -> [(1, 3), (5, 6)]."""
    ranges: list[tuple[int, int]] = []
    for i in indices:
        if ranges and ranges[-1][1] == i:
            ranges[-1] = (ranges[-1][0], i + 1)
        else:
            ranges.append((i, i + 1))
    return ranges
