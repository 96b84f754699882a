"""`hydra/launcher=local` (the default of every multirun): the jobs of a launch side by side on this machine's
cores, each in a reused worker process with `threads` threads. The work is `mixup_sweeps.multirun.local`; this
class is what Hydra finds."""

from collections.abc import Sequence

from hydra.core.utils import JobReturn
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

from hydra_plugins.mixup_sweeps_local.config import THREADS_PER_JOB, LocalLauncherConf  # noqa: F401  (registers it)
from mixup_sweeps.multirun import local


class LocalLauncher(Launcher):
    def __init__(self, jobs: int | None = None, threads: int = THREADS_PER_JOB) -> None:
        super().__init__()
        self.jobs, self.threads = jobs, threads
        self.config: DictConfig | None = None
        self.task_function: TaskFunction | None = None
        self.hydra_context: HydraContext | None = None

    def jobs_at_once(self) -> int:
        return local.jobs_at_once(self.jobs, self.threads)

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        assert self.hydra_context is not None and self.config is not None and self.task_function is not None
        return local.launch(self.hydra_context, self.config, self.task_function, self.jobs, self.threads,
                            job_overrides, initial_job_idx)  # fmt: skip
