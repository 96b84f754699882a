"""Hydra's basic sweeper plus a list of variants: each variant is a set of overrides run as one job.

A grid cannot say "aug=none, or aug=mixup with alpha in {0.1, 0.2, 0.4}" (none has no alpha). The variants
are crossed with whatever the basic sweeper expands from the command line, so `seed=0,1,2` repeats every
variant for every seed, and all of it is one Hydra multirun (one sweep directory, one sweep_id).
"""

from dataclasses import dataclass, field
from typing import Any

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.types import Override
from hydra.errors import HydraException


@dataclass
class VariantsSweeperConf:
    _target_: str = "hydra_plugins.mixup_sweeps_variants.variants_sweeper.VariantsSweeper"
    max_batch_size: int | None = None
    params: dict[str, str] | None = None
    variants: list[list[str]] = field(default_factory=list)


ConfigStore.instance().store(group="hydra/sweeper", name="variants", node=VariantsSweeperConf, provider="mixup_sweeps")


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


class VariantsSweeper(BasicSweeper):
    def __init__(self, max_batch_size: int | None, params: dict[str, str] | None = None, variants: Any = ()) -> None:
        super().__init__(max_batch_size=max_batch_size, params=params)
        self.variants = [list(v) for v in variants] or [[]]

    def split_arguments(  # type: ignore[override]
        self, overrides: list[Override], max_batch_size: int | None
    ) -> list[list[list[str]]]:
        grid = BasicSweeper.split_arguments(overrides, None)[0]
        variant_keys = {_key(o) for variant in self.variants for o in variant}
        clash = sorted(variant_keys & {o.get_key_element() for o in overrides})
        if clash:
            raise HydraException(
                f"hydra.sweeper.variants already sets {', '.join(clash)}; drop it from the command line"
            )
        jobs = [job + variant for job in grid for variant in self.variants]
        return [list(chunk) for chunk in self.split_overrides_to_chunks(jobs, max_batch_size)]
