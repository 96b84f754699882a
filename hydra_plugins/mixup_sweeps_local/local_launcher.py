"""`hydra/launcher=local`: the jobs of a launch side by side on this machine's cores, the default of every multirun.

One tiny CNN cannot use a machine's cores (measured in docs/benchmarks.md: on a 2-core machine two jobs of one
thread each train about 1.4x the model-epochs per second of one job on both cores), so this launcher runs
`jobs` jobs at once (default: the cores this process may use, divided by `threads`), each in a worker process
(joblib's loky pool, as Hydra's joblib launcher: the same `run_job`, job directories, `.hydra/` files and
callbacks) whose TensorFlow / XLA pools get `threads` threads (`backends.job_threads` reads it from
`MIXUP_JOB_THREADS`). Workers are reused by later jobs, so a sweep pays TensorFlow's start-up once per worker.
Workers are not pinned to cores: a TensorFlow job with one intra-op thread still keeps more than one thread
busy (the calling thread runs kernels beside the pool's), and pinned to one core they take turns; unpinned,
the scheduler lends a job the core another job is not using (between epochs, at the end of a sweep). Measured
in docs/benchmarks.md: the same sweep 1.12x job after job with each worker pinned, 1.38x unpinned.
A launch of one job, one job at a time (`jobs: 1`) or a machine with an NVIDIA GPU (where a pack or `ray_gpu`
shares the device better) runs the jobs in this process, one after another, as Hydra's basic launcher does.
The sweep's parent run, the progress lines and the ETA are the sweeper's: each job logs one line when it
starts and one when it ends; Keras's per-epoch lines are off in workers, so the console stays readable.
"""

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, configure_log, filter_overrides, setup_globals
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

from mixup_sweeps import launching
from mixup_sweeps.backends import JOB_THREADS_ENV, cpu_cores, gpu_count  # light: no Keras, no backend

log = logging.getLogger(__name__)
THREADS_PER_JOB = 1  # measured best on this CNN (docs/benchmarks.md, "Sweeps that fill the machine")


@dataclass
class LocalLauncherConf:
    _target_: str = "hydra_plugins.mixup_sweeps_local.local_launcher.LocalLauncher"
    jobs: int | None = None  # jobs at once; None: the cores this process may use // threads (1 with an NVIDIA GPU)
    threads: int = THREADS_PER_JOB  # threads of each job's TensorFlow / XLA pools (trainer.threads overrides it)


ConfigStore.instance().store(group="hydra/launcher", name="local", node=LocalLauncherConf, provider="mixup_sweeps")


def has_nvidia_gpu() -> bool:
    return gpu_count() > 0


def _in_worker(threads: int, *args: Any) -> JobReturn:
    """One job in a worker process: its pools' size in the environment, Keras quiet, then Hydra's job."""
    from hydra_plugins.hydra_joblib_launcher._core import execute_job

    os.environ[JOB_THREADS_ENV] = str(threads)
    return execute_job(*args)


class LocalLauncher(Launcher):
    def __init__(self, jobs: int | None = None, threads: int = THREADS_PER_JOB) -> None:
        super().__init__()
        self.jobs, self.threads = jobs, threads
        self.config: DictConfig | None = None
        self.task_function: TaskFunction | None = None
        self.hydra_context: HydraContext | None = None

    def jobs_at_once(self) -> int:
        """`jobs`, or as many as the cores allow at `threads` each; 1 on a machine with an NVIDIA GPU."""
        if self.jobs is not None:
            return max(1, int(self.jobs))
        if has_nvidia_gpu():
            return 1
        return max(1, cpu_cores() // max(1, int(self.threads)))

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from mixup_sweeps.errors import ConfigError

        setup_globals()
        assert self.config is not None and self.hydra_context is not None and self.task_function is not None
        for name, value, low in (("jobs", self.jobs, 1), ("threads", self.threads, 1)):
            if value is not None and not (isinstance(value, int) and value >= low):
                raise ConfigError(f"Invalid value hydra.launcher.{name}={value!r}: must be an integer >= {low}")
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        at_once = min(self.jobs_at_once(), len(job_overrides))
        log.info("Launching %d jobs, %d at once (%d threads each)", len(job_overrides), at_once,
                 self.threads if at_once > 1 else cpu_cores())  # fmt: skip
        for idx, overrides in enumerate(job_overrides, start=initial_job_idx):
            log.info("\t#%d : %s", idx, " ".join(filter_overrides(overrides)))
        if at_once <= 1:
            return [self._here(idx, overrides) for idx, overrides in enumerate(job_overrides, start=initial_job_idx)]
        state = Singleton.get_state()
        executor = self._workers(at_once)
        futures = [
            executor.submit(
                _in_worker, self.threads, idx, overrides, self.hydra_context, self.config, self.task_function, state
            )  # fmt: skip
            for idx, overrides in enumerate(job_overrides, start=initial_job_idx)
        ]
        return [future.result() for future in futures]

    def _workers(self, count: int) -> Any:
        """joblib's loky pool of `count` workers, kept for the sweep's later launches (a search's batches, a
        race's rounds). Not pinned to cores: see the module's docstring."""
        from joblib.externals.loky import get_reusable_executor

        return get_reusable_executor(max_workers=count, timeout=3600)

    def _here(self, idx: int, overrides: Sequence[str]) -> JobReturn:
        """A job in this process, as Hydra's basic launcher runs it."""
        assert self.config is not None and self.hydra_context is not None and self.task_function is not None
        sweep_config = launching.job_config(self.hydra_context, self.config, overrides, idx)
        return launching.run_here(self.hydra_context, self.config, self.task_function, sweep_config)
