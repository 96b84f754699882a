"""`hydra/sweeper=search`'s schema: the search's settings (`mixup_sweeps.sweeps.settings.SearchSettings`) and
`params`, the ranges as hydra-optuna-sweeper writes them (types only; defaults in conf/hydra/sweeper/search.yaml)."""

from hydra.core.config_store import ConfigStore

from mixup_sweeps.config import schema_of
from mixup_sweeps.sweeps.settings import SearchSettings

SearchSweeperConf = schema_of("SearchSweeperConf", SearchSettings, _target_=str, params=dict[str, str] | None)
ConfigStore.instance().store(
    group="hydra/schema/sweeper", name="search", node=SearchSweeperConf, provider="mixup_sweeps"
)
