"""Sweep progress: the ETA comes from finished jobs' durations and the launcher's parallelism (a fake clock:
runs with chosen start and end times), so skipped jobs and jobs running side by side do not mislead it."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from hydra_plugins.mixup_sweeps_packed.packed_launcher import PackedLauncher
from mixup_sweeps.store import tags, tracking
from mixup_sweeps.sweeps import progress
from mixup_sweeps.sweeps.progress import SWEEP_JOBS_ENV, SWEEP_PARALLEL_ENV, SWEEP_STARTED_ENV, jobs_at_once
from tests.helpers import compose_config


def job_hydra(num: int, total: int, launcher: dict) -> object:
    """A job's Hydra config as the variants sweeper sets it up for a launcher with these settings."""
    parallel = jobs_at_once(None, OmegaConf.create(launcher))
    env = {SWEEP_JOBS_ENV: str(total), SWEEP_STARTED_ENV: "1000", SWEEP_PARALLEL_ENV: str(parallel)}
    return OmegaConf.create({"job": {"num": num, "env_set": env}, "launcher": launcher})


def test_eta_is_jobs_left_over_parallel_jobs_times_the_mean_finished_job():
    assert progress.estimate_remaining([10.0, 20.0], jobs_left=5, parallel=2) == 3 * 15.0
    assert progress.estimate_remaining([10.0, 20.0], jobs_left=5, parallel=1) == 5 * 15.0
    assert progress.estimate_remaining([], jobs_left=5, parallel=1) is None  # nothing finished: no guess
    basic = job_hydra(num=4, total=10, launcher={})
    assert progress.progress(basic, []) == "[5/10] "  # e.g. the first 4 jobs were skipped: they say nothing
    assert progress.progress(basic, [60.0, 60.0]) == "[5/10, ETA 6 min] "  # 6 jobs left, one at a time
    joblib = job_hydra(num=4, total=10, launcher={"n_jobs": 2})
    assert progress.progress(joblib, [60.0, 60.0]) == "[5/10, ETA 3 min] "  # two at a time
    assert progress.progress(job_hydra(num=9, total=10, launcher={"n_jobs": 4}), [30.0]) == "[10/10, ETA 30 s] "


@pytest.mark.parametrize(
    "launcher, parallel",
    [
        ({}, 1),
        ({"n_jobs": 3}, 3),
        ({"pack_size": 64}, 64),
        ({"ray": {"init": {"num_cpus": 4}, "remote": {"num_cpus": 2}}}, 2),
    ],
)
def test_launcher_parallelism(launcher, parallel):
    """The project's launchers say it themselves (`jobs_at_once()`); Hydra's are read from their settings."""
    instance = PackedLauncher(pack_size=launcher["pack_size"]) if "pack_size" in launcher else None
    assert jobs_at_once(instance, OmegaConf.create(launcher)) == parallel


def test_finished_durations_count_this_sweeps_finished_jobs_only(tmp_path):
    """Fake clock: runs created with chosen start and end times (ms), under one parent."""
    client, experiment_id = tracking.connect(compose_config(output_dir=str(tmp_path)).tracking)
    parent = client.create_run(experiment_id, run_name="sweep", tags={tags.PARENT: "true"})
    since = 1_000_000.0  # the sweep started here (seconds)

    def child(name: str, start: float, end: float | None, status: str) -> None:
        run = client.create_run(
            experiment_id, run_name=name, start_time=int(start * 1000), tags={tags.NESTED: parent.info.run_id}
        )
        if end is not None:
            client.set_terminated(run.info.run_id, status, end_time=int(end * 1000))

    child("earlier session", since - 500, since - 400, "FINISHED")  # a rerun skips it: took no time now
    child("trained", since + 10, since + 70, "FINISHED")
    child("trained too", since + 70, since + 160, "FINISHED")
    child("failed", since + 160, since + 170, "FAILED")
    child("running", since + 170, None, "RUNNING")
    assert sorted(tracking.finished_durations(client, experiment_id, parent, since)) == [60.0, 90.0]
