"""The override grammar: `key=value` as typed on a command line, and a sweep's jobs as override lists.

`aug` names the group choice (`aug.name` in the params); Hydra's +/~/++ prefixes are not part of a key. Every
sweeper, the command-line check and the report read overrides through here.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.types import Override
from omegaconf import DictConfig, OmegaConf

from mixup_sweeps.config import PLUMBING_PREFIXES, SEED
from mixup_sweeps.errors import ConfigError


def override_key(override: str) -> str:
    """`+aug.alpha=0.2` -> `aug.alpha`: the key an override sets, without Hydra's +/~/++ prefixes."""
    return override.split("=", 1)[0].lstrip("+~")


def config_key(key: str) -> str:
    """The params column of an override key: `aug` (the group choice) is `aug.name`."""
    return "aug.name" if key == "aug" else key


def override_values(overrides: Iterable[str]) -> dict[str, str]:
    """`["aug=mixup", "aug.alpha=0.2"]` -> `{"aug.name": "mixup", "aug.alpha": "0.2"}` (config keys)."""
    return {config_key(override_key(o)): o.split("=", 1)[1] for o in overrides if "=" in o}


def task_overrides(hydra_cfg: DictConfig) -> list[str]:
    """The command-line overrides as typed: `${oc.env:X}` stays text, so no variable's value is recorded."""
    return list(OmegaConf.to_container(hydra_cfg.overrides.task, resolve=False))  # type: ignore[arg-type]


def expand_jobs(overrides: Sequence[Override], variants: Sequence[Sequence[str]]) -> list[list[str]]:
    """A sweep's jobs as override lists, as the variants sweeper launches them: the grid of `overrides` (a key
    given twice: the later wins, so the command line beats hydra.sweeper.params) crossed with `variants`.
    A key both on the command line and in the variants is a `ConfigError`."""
    overrides = list({o.get_key_element(): o for o in overrides}.values())
    variant_keys = {override_key(o) for variant in variants for o in variant}
    clash = sorted(variant_keys & {o.get_key_element() for o in overrides})
    if clash:
        raise ConfigError(f"hydra.sweeper.variants already sets {', '.join(clash)}; drop it from the command line")
    grid = BasicSweeper.split_arguments(overrides, None)[0]
    return [list(job) + list(variant) for job in grid for variant in (variants or [[]])]


def without_seed(job: Sequence[str]) -> tuple[str, ...]:
    """A job's group: its overrides without the seed (the replicate axis that comparisons pair on)."""
    return tuple(o for o in job if override_key(o) != SEED)


def groups_of(jobs: Sequence[Sequence[str]]) -> list[tuple[str, ...]]:
    """The sweep's groups: its jobs without their seed, each once, in order."""
    return list(dict.fromkeys(without_seed(job) for job in jobs))


def group_names(groups: Sequence[Sequence[str]]) -> dict[tuple[str, ...], str]:
    """How the sweep's lines name each group: its overrides that not every group shares (`all` if none)."""
    common = set.intersection(*(set(group) for group in groups)) if groups else set()
    return {tuple(group): " ".join(o for o in group if o not in common) or "all" for group in groups}


def job_run_name(overrides: list[str], keys: list[str] | None) -> str:
    """`aug=mixup,aug.alpha=0.2`: the job's own overrides (only the swept keys when known), no paths."""
    chosen = []
    for override in overrides:
        key = override_key(override)
        if (keys is None or key in keys) and not key.startswith(PLUMBING_PREFIXES):
            chosen.append(override)
    return ",".join(chosen) or "defaults"
