"""Fixtures shared by the test files; plain helpers are in tests/helpers.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from mixup_sweeps.data.datasets import DataError, find_data_dir


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    """The real Fashion-MNIST (`make test` installs it); a missing copy is a failure, not a skip."""
    try:
        return find_data_dir()
    except DataError as exc:
        pytest.fail(f"real Fashion-MNIST is needed: {exc}")
