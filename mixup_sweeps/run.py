"""`python -m mixup_sweeps.run [-m] key=value ...`: one Hydra job = one tracked training run.

The command line is checked first (`multirun.preflight`: one line, exit 2, before anything exists), then Hydra
runs `main` once per job. A job opens (`job.open`: check -> data -> skip / resume / start), trains and records
(`job.execute`). MLflow and Keras load inside the job, so `--help` and `--cfg` stay fast.
"""

from __future__ import annotations

import os
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import CompactHydraException
from hydra.types import RunMode
from omegaconf import DictConfig

from mixup_sweeps.errors import ConfigError, DiskFull, disk_full, quiet_from_now
from mixup_sweeps.job.compose import register_configs

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's C++ start-up chatter out of the logs
register_configs()


def run_one(cfg: DictConfig) -> dict[str, float]:
    """One job, in order: check -> data -> skip / resume / start -> train -> artifacts; returns its outcome (the
    final metrics its sweeper decides on)."""
    from mixup_sweeps.job.context import Job  # MLflow: loaded by a job, not by --help
    from mixup_sweeps.job.execute import execute
    from mixup_sweeps.job.open import open_job

    job = open_job(cfg)
    if not isinstance(job, Job):
        return job  # skipped: the metrics its FINISHED run recorded
    (outcome,) = execute([job])
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome


_DISK_FULL: list[DiskFull] = []  # once the disk is full, later jobs of this process stop at once


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> dict[str, float]:
    try:
        if _DISK_FULL:
            raise _DISK_FULL[0]
        try:
            return run_one(cfg)
        except Exception as exc:
            if (full := disk_full(exc, str(cfg.paths.output_dir), str(cfg.tracking.uri))) is None:
                raise
            quiet_from_now()
            _DISK_FULL.append(full)
            raise full from None
    except CompactHydraException as exc:  # a bad config value, missing data, a lock held too long: one line
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            raise  # Hydra records this job as failed and the sweep goes on (its sweeper stops on a full disk)
        print(f"Error: {exc}", file=sys.stderr)
        sys.exit(1 if isinstance(exc, DiskFull) else 2)


def cli() -> None:
    """`python -m mixup_sweeps.run`: the error boundary first (`preflight.check`: a config, sweep or job that
    cannot work is one line, exit 2, before anything exists), then Hydra's main."""
    from mixup_sweeps.multirun import preflight  # SciPy and pandas (the sweeps' statistics): not for --help

    try:
        preflight.check(sys.argv[1:])
    except ConfigError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        sys.exit(2)
    main()


if __name__ == "__main__":
    cli()
