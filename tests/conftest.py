"""Fixtures shared by the test folders; plain helpers are in tests/helpers.py.

Tests live by speed: `unit/` (no training, no subprocess), `integration/` (real Hydra, MLflow and small trainings
in this process or one subprocess), `e2e/` (the command line and real sweeps). Everything under `e2e/` is marked
`slow` here, by its folder, so `make test-fast` (`-m "not slow"`) is unit and integration.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from mixup_sweeps.data.datasets import DataError, find_data_dir

TESTS = Path(__file__).resolve().parent
E2E = TESTS / "e2e"
# The longest files first (pytest --durations under `make test`, 2026-12-05): pytest-xdist's --dist loadfile hands
# out files in collection order, so the long ones start at once and the short ones fill the end (the suite ends
# when its last file does). A file not named here keeps its place after these.
LONGEST_FIRST = ["test_cluster", "test_sweeps", "test_packed", "test_memorization", "test_fault_tolerance",
                 "test_shared_sweeps", "test_packed_programs", "test_resume", "test_tracking_server",
                 "test_search"]  # fmt: skip
# ... and of the fast tiers (`make test-fast`: these two take most of a minute each), right after those
LONGEST_FAST_FIRST = ["test_fingerprints", "test_fuzz_config"]

# JAX's persistent compilation cache, one per suite run, shared by every test process and the jobs they start
# (inherited through the environment): the tests train the same small programs again and again (a sweep, then
# its resumed or reference twin), and each JAX process would otherwise compile them anew (~5 CPU-s a job). A
# compiled program is the same program: results do not change. A cache dir set outside (JAX_COMPILATION_CACHE_DIR)
# is left alone.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:  # the first pytest process: its workers inherit the setting
    os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="mixup-test-jax-cache-")
    os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"  # every program, not just those over 1 s
    atexit.register(shutil.rmtree, os.environ["JAX_COMPILATION_CACHE_DIR"], True)
# One thread per job unless a test gives it more (trainer.threads, the local launcher, Ray): four pytest-xdist
# workers share two cores, and jobs that each size their pools to every core only wait on each other (TensorFlow's
# idle pool threads spin). The harness reads OMP_NUM_THREADS after those (backends.job_threads, tested in
# tests/unit/test_backends_threads.py); a value set outside is left alone.
os.environ.setdefault("OMP_NUM_THREADS", "1")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if E2E in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.slow)

    def rank(item: pytest.Item) -> int:
        path = Path(str(item.path))
        if path.parent == E2E and path.stem in LONGEST_FIRST:
            return LONGEST_FIRST.index(path.stem)
        if path.parent != E2E and path.stem in LONGEST_FAST_FIRST:
            return len(LONGEST_FIRST) + LONGEST_FAST_FIRST.index(path.stem)
        return len(LONGEST_FIRST) + len(LONGEST_FAST_FIRST)

    items.sort(key=rank)  # stable: the rest keep the order of testpaths (e2e, integration, unit)


@pytest.fixture(autouse=True)
def _no_early_workers_outside_e2e(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Under unit/ and integration/, the command line's checks run in the test's process (`preflight.check`), and
    for a multirun on the default launcher they start its workers early (`local.start_early`), each a process
    that imports TensorFlow (~6 CPU-s) for a sweep that never runs here (the fuzzer's accepted cases started one
    after another). There `start_early` still reads and checks the launcher's settings, but its pool starts no
    process; tests/e2e (whose commands are real processes: tests/e2e/test_launchers.py) starts real workers."""
    if E2E in Path(str(request.node.path)).parents:
        return
    from mixup_sweeps.multirun import local

    class NoWorkers:
        def submit(self, *args: object, **kwargs: object) -> None:
            return None

        def shutdown(self, *args: object, **kwargs: object) -> None:
            return None

    monkeypatch.setattr(local, "_workers", lambda count: NoWorkers())


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    """The real Fashion-MNIST (`make test` installs it); a missing copy is a failure, not a skip."""
    try:
        return find_data_dir()
    except DataError as exc:
        pytest.fail(f"real Fashion-MNIST is needed: {exc}")
