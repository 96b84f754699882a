"""`hydra/sweeper=search`: a search over ranges with Optuna 5's ask/tell, trials on paired seeds, pruned by epoch,
the winner confirmed on fresh seeds. The work is `mixup_sweeps.multirun.search` (the rules: `sweeps.search`);
this class is what Hydra finds. (Not `hydra/sweeper=optuna`: that name is hydra-optuna-sweeper's.)"""

from typing import Any

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

from hydra_plugins.mixup_sweeps_search.config import SearchSweeperConf  # noqa: F401  (registers the schema)


class SearchSweeper(BasicSweeper):
    def __init__(self, params: dict[str, str] | None = None, **settings: Any) -> None:
        super().__init__(max_batch_size=None, params=params)
        # Hydra imports every plugin to discover it: the harness (MLflow, Optuna) loads only when a search is made.
        from mixup_sweeps.multirun.search import SearchRun

        self.run = SearchRun(self, settings)

    def sweep(self, arguments: list[str]) -> Any:
        return self.run.sweep(arguments)

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        super().setup(hydra_context=hydra_context, task_function=task_function, config=config)
        from mixup_sweeps.multirun.sharing import SharingLauncher  # jobs another process claimed: deferred

        self.launcher = SharingLauncher(self.launcher)  # type: ignore[assignment]
