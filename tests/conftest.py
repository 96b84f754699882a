"""Fixtures shared by the test folders; plain helpers are in tests/helpers.py.

Tests live by speed: `unit/` (no training, no subprocess), `integration/` (real Hydra, MLflow and small trainings
in this process or one subprocess), `e2e/` (the command line and real sweeps). Everything under `e2e/` is marked
`slow` here, by its folder, so `make test-fast` (`-m "not slow"`) is unit and integration.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mixup_sweeps.data.datasets import DataError, find_data_dir

TESTS = Path(__file__).resolve().parent
E2E = TESTS / "e2e"
# The longest files first (pytest --durations under `make test`, 2026-12-05): pytest-xdist's --dist loadfile hands
# out files in collection order, so the long ones start at once and the short ones fill the end (the suite ends
# when its last file does). A file not named here keeps its place after these.
LONGEST_FIRST = ["test_cluster", "test_sweeps", "test_packed", "test_memorization", "test_fault_tolerance",
                 "test_packed_programs", "test_resume", "test_tracking_server", "test_search"]  # fmt: skip


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if E2E in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.slow)

    def rank(item: pytest.Item) -> int:
        path = Path(str(item.path))
        return (
            LONGEST_FIRST.index(path.stem) if path.parent == E2E and path.stem in LONGEST_FIRST else len(LONGEST_FIRST)
        )

    items.sort(key=rank)  # stable: the rest keep the order of testpaths (e2e, integration, unit)


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    """The real Fashion-MNIST (`make test` installs it); a missing copy is a failure, not a skip."""
    try:
        return find_data_dir()
    except DataError as exc:
        pytest.fail(f"real Fashion-MNIST is needed: {exc}")
