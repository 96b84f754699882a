"""One small real sweep for the end-to-end tests that only read its results (runs, params, metrics, artifacts,
its log, the UI and the report on its store), made once per test session.

`make test` runs pytest-xdist workers, each with its own session: the first worker to get here runs the sweep
under a file lock and writes where it is; the others wait on the lock and read the same store. A test that
changes a store (reruns, kills) makes its own."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from filelock import FileLock

from tests.helpers import run_cli

# the default launcher named, so that run_cli keeps it (the launcher test reads this sweep's log)
SHARED_SWEEP = ["-m", "hydra/launcher=local", "aug.alpha=0.1,0.2,0.4", "dataset.train_size=256", "trainer.epochs=2"]


@dataclass(frozen=True)
class Sweep:
    out: Path  # paths.output_dir: its store, artifacts and Hydra directories
    log: str  # what the command printed (stdout and stderr)


@pytest.fixture(scope="session")
def shared_sweep(tmp_path_factory: pytest.TempPathFactory, real_data_dir: Path) -> Sweep:
    """`python -m mixup_sweeps.run -m aug.alpha=0.1,0.2,0.4` on 256 images, 2 epochs: one parent, three runs."""
    root = tmp_path_factory.getbasetemp().parent  # shared by every xdist worker of this session
    record = root / "shared_sweep.json"
    with FileLock(str(root / "shared_sweep.lock")):
        if not record.is_file():
            out = root / "shared_sweep"
            result = run_cli(*SHARED_SWEEP, f"paths.output_dir={out}")
            assert result.returncode == 0, result.stderr[-3000:]
            record.write_text(json.dumps({"out": str(out), "log": result.stdout + result.stderr}))
    saved = json.loads(record.read_text())
    return Sweep(Path(saved["out"]), saved["log"])
