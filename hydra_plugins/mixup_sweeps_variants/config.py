"""`hydra/sweeper=variants`'s schema: the basic sweeper's keys, `variants`, and the settings of `until` and `race`
derived from `mixup_sweeps.sweeps.settings` (types only; every default is in conf/hydra/sweeper/variants.yaml)."""

from hydra.core.config_store import ConfigStore

from mixup_sweeps.config import schema_of
from mixup_sweeps.sweeps.settings import RaceSettings, UntilSettings

UntilConf = schema_of("UntilConf", UntilSettings)
RaceConf = schema_of("RaceConf", RaceSettings, nullable=("epsilon",))  # epsilon null: no race
VariantsSweeperConf = schema_of(
    "VariantsSweeperConf",
    _target_=str,
    max_batch_size=int | None,
    params=dict[str, str] | None,
    variants=list[list[str]],
    until=UntilConf,
    race=RaceConf,
)
ConfigStore.instance().store(
    group="hydra/schema/sweeper", name="variants", node=VariantsSweeperConf, provider="mixup_sweeps"
)
