"""`hydra/launcher=packed`: the jobs of a launch that share a program shape, trained as one vmapped program (JAX);
a job that cannot be packed runs as the basic launcher runs it. The work is `mixup_sweeps.multirun.packing`;
this class is what Hydra finds."""

from collections.abc import Sequence
from typing import Any

from hydra.core.utils import JobReturn
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

from hydra_plugins.mixup_sweeps_packed.config import PackedLauncherConf  # noqa: F401  (registers the schema)


class PackedLauncher(Launcher):
    def __init__(self, **settings: Any) -> None:
        """`settings`: `hydra.launcher`'s keys (config.py's `PackedLauncherConf`), checked by the work's class."""
        super().__init__()
        self.settings = settings
        self.launch_: Any = None

    def jobs_at_once(self) -> int:
        """A pack trains all its members at once; `processes` packs train at once (Ray: as the cluster allows)."""
        from mixup_sweeps.multirun.packing import pack_workers  # the harness (MLflow) only when a sweep runs

        return int(self.settings["pack_size"]) * max(1, pack_workers(self.settings.get("processes")))

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        # Hydra imports every plugin to discover it: the harness (MLflow, JAX) loads only when a sweep is made.
        from mixup_sweeps.multirun.packing import PackedLaunch

        self.launch_ = PackedLaunch(hydra_context, task_function, config, **self.settings)

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        return self.launch_.launch(job_overrides, initial_job_idx)
