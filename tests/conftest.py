"""Fixtures shared by the test folders; plain helpers are in tests/helpers.py.

Tests live by speed: `unit/` (no training, no subprocess), `integration/` (real Hydra, MLflow and small trainings
in this process or one subprocess), `e2e/` (the command line and real sweeps). Everything under `e2e/` is marked
`slow` here, by its folder, so `make test-fast` (`-m "not slow"`) is unit and integration.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mixup_sweeps.data.datasets import DataError, find_data_dir

E2E = Path(__file__).resolve().parent / "e2e"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if E2E in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    """The real Fashion-MNIST (`make test` installs it); a missing copy is a failure, not a skip."""
    try:
        return find_data_dir()
    except DataError as exc:
        pytest.fail(f"real Fashion-MNIST is needed: {exc}")
