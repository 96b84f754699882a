"""How many threads a job's pools get, and from where (`backends.job_threads`): the first of trainer.threads, the
local launcher's share, Ray's CPUs, SLURM's cpus_per_task, OMP_NUM_THREADS, else every core."""

from __future__ import annotations

import pytest

from mixup_sweeps.train import backends

SOURCES = [backends.JOB_THREADS_ENV, "SLURM_CPUS_PER_TASK", "OMP_NUM_THREADS"]


@pytest.fixture(autouse=True)
def no_thread_settings(monkeypatch):
    for var in SOURCES:
        monkeypatch.delenv(var, raising=False)


def test_each_source_in_its_order(monkeypatch):
    assert backends.job_threads(None) == (backends.cpu_cores(), "cores")
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert backends.job_threads(None) == (3, "OMP_NUM_THREADS")
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "4")
    assert backends.job_threads(None) == (4, "slurm cpus_per_task")
    monkeypatch.setenv(backends.JOB_THREADS_ENV, "5")
    assert backends.job_threads(None) == (5, "hydra/launcher=local")
    assert backends.job_threads(6) == (6, "trainer.threads")
