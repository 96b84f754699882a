"""The project's launchers as Hydra plugins: the test suites Hydra's own launchers pass (joblib, Ray, submitit),
run on `packed` (which packs this harness's JAX jobs and runs every other job as the basic launcher would) and
`local` (jobs side by side in worker processes, and in this process with one job at a time); and the project's
sweeper with the basic launcher. Hydra's test apps are plain functions: nothing trains here."""

from __future__ import annotations

import os
import time

import pytest
from hydra.test_utils.launcher_common_tests import IntegrationTestSuite, LauncherTestSuite

from hydra_plugins.mixup_sweeps_local.local_launcher import LocalLauncher
from mixup_sweeps.config import CONF_DIR

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # Hydra's apps


@pytest.fixture(autouse=True)
def hydra_version_base_unset():
    """Hydra's suites expect an app without a version_base (jobs change into their directory); the compose
    calls of other test files in this process set it to 1.3 (a process-wide singleton): unset it here."""
    from hydra.core.singleton import Singleton
    from hydra.version import VersionBase

    saved = Singleton._instances.pop(VersionBase, None)  # type: ignore[attr-defined]
    yield
    if saved is not None:
        Singleton._instances[VersionBase] = saved  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "launcher_name, overrides",
    [
        ("packed", []),
        ("local", ["hydra.launcher.jobs=2"]),
        ("local", ["hydra.launcher.jobs=1"]),
        ("basic", ["hydra/sweeper=variants", f"hydra.searchpath=[file://{CONF_DIR}]"]),  # the project's sweeper
    ],
)
class TestLauncherSuite(LauncherTestSuite):
    """Hydra's LauncherTestSuite on both launchers, and on the basic launcher under the project's `variants`
    sweeper (found through conf/ on the search path, as the app finds it)."""


@pytest.mark.parametrize(
    "task_launcher_cfg, extra_flags",
    [({}, ["-m", "hydra/launcher=packed"]), ({}, ["-m", "hydra/launcher=local", "hydra.launcher.jobs=2"])],
)
class TestIntegrationSuite(IntegrationTestSuite):
    pass


def test_the_local_launcher_fills_the_cores_at_its_threads_per_job(monkeypatch):
    from mixup_sweeps.multirun import local

    monkeypatch.setattr(local, "gpu_count", lambda: 0)
    monkeypatch.setattr(local, "cpu_cores", lambda: 16)
    assert LocalLauncher(threads=1).jobs_at_once() == 16
    assert LocalLauncher(threads=2).jobs_at_once() == 8
    assert LocalLauncher(threads=32).jobs_at_once() == 1
    assert LocalLauncher(jobs=3, threads=2).jobs_at_once() == 3
    monkeypatch.setattr(local, "gpu_count", lambda: 1)
    assert LocalLauncher().jobs_at_once() == 1  # a GPU: one job at a time (packs or ray_gpu share it better)


def test_a_default_multirun_runs_jobs_side_by_side_with_one_line_per_start_and_end(shared_sweep):
    """The default launcher on this machine (the session's shared sweep, three jobs): two at a time, one after
    another in the command's process and in one worker, each with one-thread pools, free to run on any core, and
    the console has their start and end lines but no Keras epoch lines."""
    from tests.helpers import mlflow_runs

    output = shared_sweep.log
    assert "Launching 3 jobs, 2 at once (1 threads each)" in output
    assert output.count("] - start ") == 3 and output.count("] - done ") == 3
    assert "Epoch 1/2" not in output  # Keras is quiet in jobs side by side
    runs = [r for r in mlflow_runs(shared_sweep.out)[1] if r.data.tags.get("sweep_parent") != "true"]
    assert {r.data.tags["threads"] for r in runs} == {"1"} and {r.data.tags["tf_intra_op_threads"] for r in runs} == {
        "1"
    }
    assert len({r.data.tags["pid"] for r in runs}) == 2  # the command's process and one worker
    every_core = ",".join(str(core) for core in sorted(os.sched_getaffinity(0)))
    assert {r.data.tags["cpu_affinity"] for r in runs} == {every_core}  # not pinned (docs/benchmarks.md)


_KEPT: list[bytes] = []  # what a job leaves in its worker: TensorFlow's runtime, caches


def _keep_memory_like_a_job(megabytes: int) -> int:
    """A job that leaves `megabytes` in its worker (touched pages) and ends more than a second after the call
    before it (loky checks a worker's memory at most once a second)."""
    _KEPT.append(b"\x01" * (megabytes << 20))
    time.sleep(1.2)
    return os.getpid()


def test_a_worker_that_keeps_a_jobs_memory_stays_for_the_next_job():
    """loky replaces a worker whose memory has grown 300 MB past what it used after its first call; that call was
    the warm-up's imports, and a TensorFlow job leaves more than that (its data, the runtime), so every worker
    was replaced after its first job: TensorFlow imported again, and loky's "A worker stopped while some jobs
    were given to the executor" in the sweep's output (seen in `make run`). A worker keeps its process now."""
    from mixup_sweeps.multirun import local

    executor = local._workers(1)
    try:
        warmed_up = executor.submit(os.getpid).result(timeout=120)  # the first call, as the warm-up is
        after_job = executor.submit(_keep_memory_like_a_job, 400).result(timeout=120)
        next_job = executor.submit(os.getpid).result(timeout=120)
    finally:
        executor.shutdown(wait=True, kill_workers=True)
    assert warmed_up == after_job == next_job
