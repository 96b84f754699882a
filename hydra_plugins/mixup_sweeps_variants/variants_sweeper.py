"""`hydra/sweeper=variants` (the default of every multirun): Hydra's basic sweeper plus a list of variants, and
optionally a race over the groups or seeds until each comparison is precise. The work is
`mixup_sweeps.multirun.variants`; this class is what Hydra finds."""

from typing import Any

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.types import Override
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

from hydra_plugins.mixup_sweeps_variants.config import VariantsSweeperConf  # noqa: F401  (registers the schema)


class VariantsSweeper(BasicSweeper):
    def __init__(
        self,
        max_batch_size: int | None,
        params: dict[str, str] | None = None,
        variants: Any = (),
        until: Any = None,
        race: Any = None,
    ) -> None:
        super().__init__(max_batch_size=max_batch_size, params=params)
        # Hydra imports every plugin to discover it: the harness (and MLflow) load only when a sweep is made.
        from mixup_sweeps.multirun.variants import VariantsRun

        self.run = VariantsRun(self, variants, until, race)

    def split_arguments(  # type: ignore[override]
        self, overrides: list[Override], max_batch_size: int | None
    ) -> list[list[list[str]]]:
        return self.run.split_arguments(overrides, max_batch_size)

    def sweep(self, arguments: list[str]) -> Any:
        return self.run.sweep(arguments, super().sweep)

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        super().setup(hydra_context=hydra_context, task_function=task_function, config=config)
        from mixup_sweeps.multirun.sharing import SharingLauncher  # jobs another process claimed: deferred

        self.launcher = SharingLauncher(self.launcher)  # type: ignore[assignment]
