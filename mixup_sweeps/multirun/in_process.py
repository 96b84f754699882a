"""A job run in this process as Hydra's basic launcher runs it: what the local and packed launchers share.

Both plugins run some jobs here (the local launcher one at a time or on a GPU, the packed launcher a job that
fits no pack, and every member's opening and recording): each gets its own job config (its overrides, its
`hydra.job.id` and `num`), its directory, `.hydra/` files, logging and callbacks, through Hydra's `run_job`.
"""

from __future__ import annotations

from collections.abc import Sequence

from hydra.core.utils import JobReturn, JobStatus, configure_log, run_job
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, open_dict


def job_failure(ret: JobReturn) -> BaseException | None:
    """The exception a failed job ended with (Hydra keeps it where `return_value` would raise it); None for a
    job that completed."""
    if ret.status == JobStatus.COMPLETED:
        return None
    exc = getattr(ret, "_return_value", None)
    return exc if isinstance(exc, BaseException) else RuntimeError(f"job ended {ret.status}")


def job_config(hydra_context: HydraContext, config: DictConfig, overrides: Sequence[str], idx: int) -> DictConfig:
    """The sweep's config with one job's overrides, numbered `idx` (its subdirectory, its progress line)."""
    sweep_config = hydra_context.config_loader.load_sweep_config(config, list(overrides))
    with open_dict(sweep_config):
        sweep_config.hydra.job.id = idx
        sweep_config.hydra.job.num = idx
    return sweep_config


def run_here(
    hydra_context: HydraContext, config: DictConfig, task_function: TaskFunction, sweep_config: DictConfig
) -> JobReturn:
    """`task_function(sweep_config)` in this process as a Hydra job, then the launcher's own logging back."""
    ret = run_job(
        hydra_context=hydra_context,
        task_function=task_function,
        config=sweep_config,
        job_dir_key="hydra.sweep.dir",
        job_subdir_key="hydra.sweep.subdir",
    )
    configure_log(config.hydra.hydra_logging, config.hydra.verbose)
    return ret


def run_numbered(
    hydra_context: HydraContext, config: DictConfig, task_function: TaskFunction, overrides: Sequence[str], idx: int
) -> JobReturn:
    """Job number `idx` of a launch (its overrides) in this process, as Hydra's basic launcher runs it."""
    return run_here(hydra_context, config, task_function, job_config(hydra_context, config, overrides, idx))
