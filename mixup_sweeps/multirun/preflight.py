"""The run command's error boundary: what a command line can be checked for before Hydra starts anything.

A command line is composed as Hydra will compose it (types, keys, group options, override syntax), the sweep's
own settings are checked (`check_sweeper`, also called by the sweep's parent callback), and every job a
multirun would launch has its values checked (`config.validate`) and its data read (`check_data`): each job
group once, every seed value against the seed range. An error here is the user's: one `ConfigError` line
naming what was wrong and what is allowed, exit 2, before a directory, a run or a sweep's parent exists.
Anything else stays a traceback: it is a bug.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf, open_dict

from mixup_sweeps.config import CONF_DIR, SEED, SEED_RANGE
from mixup_sweeps.errors import ConfigError, require
from mixup_sweeps.job.compose import check_data, register_configs, validate
from mixup_sweeps.multirun import local
from mixup_sweeps.sweeps import racing, search
from mixup_sweeps.sweeps.identity import race_settings, seeds_until
from mixup_sweeps.sweeps.overrides import expand_jobs, groups_of, override_key, task_overrides
from mixup_sweeps.sweeps.until import check_until
from mixup_sweeps.text import one_line

# Hydra's own flags that print or rerun instead of running: left to Hydra as they are.
HYDRA_INFO_FLAGS = ("-h", "--help", "--hydra-help", "--version", "-c", "--cfg", "-i", "--info", "-sc",
                    "--shell-completion", "--experimental-rerun", "-cp", "--config-path", "-cn", "--config-name",
                    "-cd", "--config-dir")  # fmt: skip
MULTIRUN_FLAGS = ("-m", "--multirun")
# Options this app had under another name: the old name gets one line pointing to the new (unless another
# installed plugin now owns it: `hydra/sweeper=optuna` is hydra-optuna-sweeper's name).
RENAMED = {"hydra/sweeper=optuna": ("hydra/sweeper=search", "hydra_plugins.hydra_optuna_sweeper")}


def compose(overrides: Sequence[str]) -> DictConfig:
    """The config (with Hydra's section) that these overrides give, composed from conf/ as a job's is."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return hydra_compose("config", overrides=list(overrides), return_hydra_config=True)


def check(argv: Sequence[str]) -> None:
    """Raise `ConfigError` (one line) for a command line whose config, sweep settings or jobs cannot work."""
    if any(arg in HYDRA_INFO_FLAGS or arg.startswith(("--cfg=", "--info=")) for arg in argv):
        return

    _refuse_renamed(argv)
    multirun = any(arg in MULTIRUN_FLAGS for arg in argv)
    arguments = [arg for arg in argv if not arg.startswith("-")]
    try:
        overrides = OverridesParser.create().parse_overrides(arguments)
        swept = [o for o in overrides if o.is_sweep_override()]
        if swept and not multirun:
            raise ConfigError(f"{swept[0].input_line}: a list of values is a sweep; add -m to run one job per value")
        config = compose([str(o.input_line) for o in overrides if not o.is_sweep_override()])
    except ConfigError:
        raise
    except Exception as exc:  # Hydra's and OmegaConf's errors about the command line: the user's
        raise ConfigError(one_line(exc)) from None
    if not multirun:
        validate(_task(config))
        check_data(_task(config))
        return
    with open_dict(config):
        config.hydra.overrides.task = arguments  # the sweep's overrides too, as Hydra records them in a multirun
    try:
        _check_multirun(config)
    except ConfigError:
        local.stop_early()
        raise


def _check_multirun(config: DictConfig) -> None:
    """A multirun's sweep settings and jobs; the default launcher's workers start meanwhile (`local.start_early`),
    once its own settings have passed (a value that cannot work starts none)."""
    _check_launcher(config)
    if search.is_search(config.hydra.sweeper):
        local.start_early(config, None)
        for job in check_search(config):  # its launcher's settings too
            _check_job(job)
        return
    jobs = sweep_jobs(config)
    local.start_early(config, len(jobs))
    check_sweeper(config, jobs)
    low, high = SEED_RANGE
    for job in jobs:
        for o in job:
            if override_key(o) == SEED:
                value = o.partition("=")[2]
                require(value.lstrip("-").isdigit() and low <= int(value) <= high, SEED, value,
                        f"must be an integer in [{low}, {high}] (2**32 - 1)")  # fmt: skip
    for group in groups_of(jobs):
        _check_job(group)


def _refuse_renamed(argv: Sequence[str]) -> None:
    """An option this app renamed: one line naming the new name (the old one may be another plugin's now)."""
    for arg in argv:
        new, owner = RENAMED.get(arg, (None, ""))
        if new is not None and importlib.util.find_spec(owner) is None:
            raise ConfigError(f"{arg} is now {new} (same keys; the old name is hydra-optuna-sweeper's)")


def _check_job(overrides: Sequence[str]) -> None:
    """One job's config composed and checked (`config.validate`)."""
    try:
        job_config = compose(list(overrides))
    except Exception as exc:
        raise ConfigError(one_line(exc)) from None
    validate(_task(job_config))
    check_data(_task(job_config))


def check_search(config: DictConfig) -> list[list[str]]:
    """A search's settings and space (`search.settings_of`, `search.search_space`): `ConfigError`, one line.
    Returns the jobs that put every searched key at each end of its range (for `check` to compose)."""

    _check_launcher(config)
    sweeper = config.hydra.sweeper
    settings = search.settings_of(_resolved(sweeper, "hydra.sweeper"))
    if settings.storage:
        from mixup_sweeps.sweeps.study import check_storage  # SQLAlchemy: only for a search with a storage

        check_storage(settings.storage)
    params = sweeper.get("params") or {}
    space, fixed = search.search_space([f"{k}={v}" for k, v in params.items()] + task_overrides(config.hydra))
    return [[*fixed, *corner] for corner in search.corner_overrides(space)]


def sweep_jobs(config: DictConfig) -> list[list[str]]:
    """Every job of a sweep as its overrides, expanded as the variants sweeper expands them
    (`sweeps.overrides.expand_jobs`: hydra.sweeper.params, then the command line, crossed with the variants)."""

    params = config.hydra.sweeper.get("params") or {}
    variants = config.hydra.sweeper.get("variants")
    try:
        overrides = OverridesParser.create().parse_overrides(
            [f"{k}={v}" for k, v in params.items()] + task_overrides(config.hydra)
        )
        return expand_jobs(overrides, OmegaConf.to_container(variants) if variants else [])  # type: ignore[arg-type]
    except ConfigError:
        raise
    except Exception as exc:  # a sweep override Hydra cannot expand
        raise ConfigError(one_line(exc)) from None


def check_sweeper(config: DictConfig, jobs: Sequence[Sequence[str]] | None = None) -> None:
    """What a sweep's settings can be checked for before anything is recorded: `ConfigError`, one line.
    `jobs`: the sweep's jobs (`sweep_jobs`, which also refuses a key both in the variants and on the command
    line), expanded here when not given."""

    if search.is_search(config.hydra.sweeper):
        check_search(config)
        return
    _resolved(config.hydra.sweeper, "hydra.sweeper")
    _check_launcher(config)
    jobs = sweep_jobs(config) if jobs is None else jobs
    sweeper = config.hydra.sweeper
    check_until(sweeper.get("until") or {})
    settings = race_settings(config)
    if settings is None:
        return
    checked = racing.settings_of(settings)
    assert checked is not None
    if seeds_until(config):
        raise ConfigError("hydra.sweeper.race and hydra.sweeper.until both own the seed axis: use one of them")
    typed = [o for o in task_overrides(config.hydra) if override_key(o) == SEED]
    if typed:
        raise ConfigError(
            f"{typed[0]}: hydra.sweeper.race owns the seed axis (every arm runs seeds 0, 1, ... as the race "
            f"needs them, up to max_seeds={checked.max_seeds}): drop {SEED} from the command line and set "
            "hydra.sweeper.race.min_seeds / max_seeds"
        )
    if len(groups_of(jobs)) < 2:
        raise ConfigError("hydra.sweeper.race needs at least two groups to race (a grid or variants), got one")
    if checked.test_metric == "test_accuracy_best" and not config.trainer.get("test_every_epoch"):
        raise ConfigError(
            f"hydra.sweeper.race.metric={checked.metric} reports the chosen epoch's test accuracy: "
            "set trainer.test_every_epoch=true"
        )


def _check_launcher(config: DictConfig) -> None:
    """The launcher's settings that can be checked before a sweep starts (every sweeper's)."""
    launcher = _resolved(config.hydra.get("launcher") or {}, "hydra.launcher")
    if launcher.get("_target_") == local.LAUNCHER_TARGET:
        local.check_settings(launcher.get("jobs"), launcher.get("threads"))
    pack_size = launcher.get("pack_size", 1)
    if not (isinstance(pack_size, int) and pack_size >= 1):
        raise ConfigError(f"Invalid value hydra.launcher.pack_size={pack_size!r}: must be an integer >= 1")


def _resolved(node: Any, key: str) -> dict[str, Any]:
    """A settings node with its interpolations resolved; one that does not resolve (an unset ${oc.env:...}) is a
    `ConfigError` naming `key`."""
    try:
        return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else dict(node)  # type: ignore[return-value]
    except Exception as exc:
        raise ConfigError(f"{key}: {str(exc).splitlines()[0]}") from None


def _task(config: DictConfig) -> DictConfig:
    """The job's own config, Hydra's section left out (as a job sees it)."""
    return OmegaConf.masked_copy(config, [str(key) for key in config if key != "hydra"])
