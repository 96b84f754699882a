"""What makes a sweep the same sweep: the keys it varies and its fingerprint (the same command again, resumed).

The sweep's parent run carries both (`multirun.parent`); a job's run name uses the keys. The procedures over
seeds (seeds until precise, the race, the search) count only when on, so sweeps from before each option keep
their fingerprint.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf

from mixup_sweeps.config import PLUMBING_PREFIXES, SEED
from mixup_sweeps.sweeps import search
from mixup_sweeps.sweeps.baseline import DEFAULT_BASELINE
from mixup_sweeps.sweeps.overrides import override_key, task_overrides

# The search sweeper was `hydra/sweeper=optuna` before it was renamed (the name is hydra-optuna-sweeper's): a
# search's fingerprint reads the old name, so a stored study started under it is continued by the new command.
FINGERPRINT_NAMES = {"hydra/sweeper=search": "hydra/sweeper=optuna"}


def seeds_until(config: DictConfig) -> dict[str, Any] | None:
    """The sweep's `hydra.sweeper.until` (Stein's procedure) when it is on, else None."""
    until = config.hydra.sweeper.get("until")
    if until is None or until.get("half_width") is None:
        return None
    settings: dict[str, Any] = OmegaConf.to_container(until, resolve=True)  # type: ignore[assignment]
    if settings.get("baseline", None) in (None, DEFAULT_BASELINE.override):  # null: the report's default
        settings.pop("baseline", None)  # sweeps from before the option keep their fingerprint
    return settings


def races(sweeper: Any) -> bool:
    """Whether a sweeper's settings (`hydra.sweeper`, as a sweep or its job sees them) race: epsilon set."""
    settings = sweeper.get("race")
    return settings is not None and settings.get("epsilon") is not None


def race_settings(config: DictConfig) -> dict[str, Any] | None:
    """The sweep's `hydra.sweeper.race` settings when racing is on (epsilon set), else None."""
    if not races(config.hydra.sweeper):
        return None
    return OmegaConf.to_container(config.hydra.sweeper.race, resolve=True)  # type: ignore[return-value]


def search_settings(config: DictConfig) -> dict[str, Any] | None:
    """The settings that define a search's study (`hydra/sweeper=search`), else None."""
    sweeper = config.hydra.sweeper
    if not search.is_search(sweeper):
        return None
    return search.settings_of(OmegaConf.to_container(sweeper, resolve=True)).study_defining()  # type: ignore[arg-type]


def sweep_keys(config: DictConfig) -> list[str]:
    """Keys that vary across the sweep: command-line sweeps, hydra.sweeper.params and variants."""
    overrides = task_overrides(config.hydra)
    params = config.hydra.sweeper.get("params") or {}
    parser = OverridesParser.create()
    parsed = parser.parse_overrides(overrides + [f"{k}={v}" for k, v in params.items()])
    keys = [o.get_key_element() for o in parsed if o.is_sweep_override()]
    for variant in config.hydra.sweeper.get("variants") or []:
        keys += [o.get_key_element() for o in parser.parse_overrides(list(variant))]
    if seeds_until(config) or race_settings(config) or search_settings(config):
        keys.append(SEED)  # seeds until precise, the race and the search sweep the seed
    return list(dict.fromkeys(keys))


def sweep_fingerprint(config: DictConfig) -> str:
    """What makes two sweep commands the same sweep: their overrides (not where they write) and sweeper lists."""
    overrides = sorted(
        FINGERPRINT_NAMES.get(o, o)
        for o in task_overrides(config.hydra)
        if not override_key(o).startswith((*PLUMBING_PREFIXES, "hydra."))
    )
    sweeper_cfg: dict[str, Any] = OmegaConf.to_container(config.hydra.sweeper, resolve=True)  # type: ignore[assignment]
    sweeper = {k: sweeper_cfg.get(k) for k in ("params", "variants")}
    if until := seeds_until(config):  # only when on, so sweeps from before the option keep their fingerprint
        sweeper["until"] = until
    if settings := race_settings(config):  # likewise
        sweeper["race"] = settings
    if settings := search_settings(config):  # the study's settings; not n_trials: more trials continue it
        sweeper["search"] = settings
    payload = json.dumps({"overrides": overrides, "sweeper": sweeper}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]
