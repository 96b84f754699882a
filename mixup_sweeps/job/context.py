"""One job once its MLflow run exists (`Job`), and what a job returns to its sweeper (`Outcome`)."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mlflow.tracking import MlflowClient
from omegaconf import DictConfig

from mixup_sweeps.data.datasets import Dataset

if TYPE_CHECKING:
    from mixup_sweeps.sweeps.study import EpochReporter

log = logging.getLogger("mixup_sweeps")

Outcome = dict[str, float]  # what a job returns to its sweeper: its final metrics (`outcome`)


def outcome(metrics: Mapping[str, float], val_accuracy: Sequence[float]) -> Outcome:
    """A job's final metrics (test_accuracy, the last epoch's val_accuracy and val_loss, ...) and
    `best_val_accuracy`, the best epoch's: what the sweepers decide on (seeds until precise, races)."""
    best = max(val_accuracy) if val_accuracy else float("nan")
    return {**{key: float(value) for key, value in metrics.items()}, "best_val_accuracy": float(best)}


@dataclass
class Job:
    """One job's context once its MLflow run exists: what it computes, where it records and writes."""

    cfg: DictConfig
    dataset: Dataset
    client: MlflowClient
    run_id: str
    parent_run_id: str | None  # the sweep's parent run (shared initial weights), None for a single run
    name: str  # the run name: the job's own overrides
    job_dir: Path  # Hydra's directory of this job: preview, curves, model
    output_dir: Path  # paths.output_dir: initial-weights cache, backups, store
    backup_dir: Path  # BackupAndRestore state of this computation (fingerprint)
    reporter: EpochReporter | None = None  # a search trial's job: reports each epoch, may prune it
    log_file: Path | None = None  # Hydra's log file of this job (`<job dir>/<job name>.log`)

    def log(self, level: int, message: str, *args: object) -> None:
        """Log a line about this job, and put it in the job's own log file when that file is not where the
        logging goes now (a pack's members are trained after their job contexts closed)."""
        log.log(level, message, *args)
        path = self.log_file
        if path is None or not path.parent.is_dir():
            return
        handlers = logging.getLogger().handlers + log.handlers
        if any(isinstance(h, logging.FileHandler) and Path(h.baseFilename) == path for h in handlers):
            return
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        with open(path, "a") as file:
            file.write(f"[{stamp}][{log.name}][{logging.getLevelName(level)}] - {message % args}\n")

    def log_artifact(self, path: Path, folder: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(path), folder)
