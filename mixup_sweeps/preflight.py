"""The run command's error boundary: what a command line can be checked for before Hydra starts anything.

A command line is composed as Hydra will compose it (types, keys, group options, override syntax), the sweep's
own settings are checked (`check_sweeper`, also called by the sweep's parent callback), and every job a
multirun would launch has its values checked (`config.validate`): each job group once, every seed value against
the seed range. An error here is the user's: one `ConfigError` line naming what was wrong and what is allowed,
exit 2, before a directory, a run or a sweep's parent exists. Anything else stays a traceback: it is a bug.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf, open_dict

from mixup_sweeps.config import CONF_DIR, SEED_RANGE, register_configs, validate
from mixup_sweeps.errors import ConfigError, require

# Hydra's own flags that print or rerun instead of running: left to Hydra as they are.
HYDRA_INFO_FLAGS = ("-h", "--help", "--hydra-help", "--version", "-c", "--cfg", "-i", "--info", "-sc",
                    "--shell-completion", "--experimental-rerun", "-cp", "--config-path", "-cn", "--config-name",
                    "-cd", "--config-dir")  # fmt: skip
MULTIRUN_FLAGS = ("-m", "--multirun")
SEED = "seed"


def one_line(exc: BaseException) -> str:
    """Hydra's and OmegaConf's multi-line messages as one line: the headline and the reason (or the options)."""
    lines = [line for line in str(exc).splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    head = lines[0].strip().rstrip(".:")
    if any("Available options" in line for line in lines):
        start = next(i for i, line in enumerate(lines) if "Available options" in line) + 1
        options = []
        while start < len(lines) and lines[start][:1] in (" ", "\t"):
            options.append(lines[start].strip())
            start += 1
        return f"{head} (available: {', '.join(options)})"
    if len(lines) > 1 and lines[1][:1] not in (" ", "\t"):
        return f"{head}: {lines[1].strip()}"
    cause = exc.__cause__ or exc.__context__
    if cause is not None and str(cause).strip():
        return f"{head}: {str(cause).strip().splitlines()[0]}"
    return head


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
    from mixup_sweeps import sweep

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
        return
    with open_dict(config):
        config.hydra.overrides.task = arguments  # the sweep's overrides too, as Hydra records them in a multirun
    from mixup_sweeps import search

    if search.is_search(config.hydra.sweeper):
        for job in check_search(config):  # its launcher's settings too
            _check_job(job)
        return
    jobs = sweep_jobs(config)
    check_sweeper(config, jobs)
    low, high = SEED_RANGE
    for job in jobs:
        for o in job:
            if sweep.override_key(o) == SEED:
                value = o.partition("=")[2]
                require(value.lstrip("-").isdigit() and low <= int(value) <= high, SEED, value,
                        f"must be an integer in [{low}, {high}] (2**32 - 1)")  # fmt: skip
    for group in groups_of(jobs):
        _check_job(group)


def _check_job(overrides: Sequence[str]) -> None:
    """One job's config composed and checked (`config.validate`)."""
    try:
        job_config = compose(list(overrides))
    except Exception as exc:
        raise ConfigError(one_line(exc)) from None
    validate(_task(job_config))


def check_search(config: DictConfig) -> list[list[str]]:
    """A search's settings and space (`search.settings_of`, `search.search_space`): `ConfigError`, one line.
    Returns the jobs that put every searched key at each end of its range (for `check` to compose)."""
    from mixup_sweeps import search
    from mixup_sweeps.sweep import task_overrides

    _check_launcher(config)
    sweeper = config.hydra.sweeper
    search.settings_of(_resolved(sweeper, "hydra.sweeper"))
    params = sweeper.get("params") or {}
    space, fixed = search.search_space([f"{k}={v}" for k, v in params.items()] + task_overrides(config.hydra))
    return [[*fixed, *corner] for corner in search.corner_overrides(space)]


def sweep_jobs(config: DictConfig) -> list[list[str]]:
    """Every job of a sweep as its overrides, expanded as the variants sweeper expands them
    (`sweep.expand_jobs`: hydra.sweeper.params, then the command line, crossed with the variants)."""
    from mixup_sweeps.sweep import expand_jobs, task_overrides

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


def groups_of(jobs: Sequence[Sequence[str]]) -> list[tuple[str, ...]]:
    """The sweep's groups: its jobs without their seed, each once, in order."""
    from mixup_sweeps.sweep import override_key

    return list(dict.fromkeys(tuple(o for o in job if override_key(o) != SEED) for job in jobs))


def check_until(until: Mapping[str, Any]) -> None:
    """Seeds-until settings that cannot work (when on): `ConfigError`, one line. The sweeper checks them too."""
    from mixup_sweeps.sweep import DEFAULT_BASELINE, parse_baseline

    if until.get("half_width") is None:
        return
    half, low, high = until["half_width"], until["min_seeds"], until["max_seeds"]
    if not (half > 0 and 2 <= low <= high):
        raise ConfigError(
            "hydra.sweeper.until: need half_width > 0 and 2 <= min_seeds <= max_seeds, got half_width="
            f"{half}, min_seeds={low}, max_seeds={high}"
        )
    try:
        parse_baseline(until.get("baseline") or DEFAULT_BASELINE.override)
    except ValueError as exc:
        raise ConfigError(f"hydra.sweeper.until.{exc}") from None


def check_sweeper(config: DictConfig, jobs: Sequence[Sequence[str]] | None = None) -> None:
    """What a sweep's settings can be checked for before anything is recorded: `ConfigError`, one line.
    `jobs`: the sweep's jobs (`sweep_jobs`, which also refuses a key both in the variants and on the command
    line), expanded here when not given."""
    from mixup_sweeps import racing, search
    from mixup_sweeps.sweep import race, seeds_until

    if search.is_search(config.hydra.sweeper):
        check_search(config)
        return
    _resolved(config.hydra.sweeper, "hydra.sweeper")
    _check_launcher(config)
    jobs = sweep_jobs(config) if jobs is None else jobs
    sweeper = config.hydra.sweeper
    check_until(sweeper.get("until") or {})
    settings = race(config)
    if settings is None:
        return
    checked = racing.settings_of(settings)
    assert checked is not None
    if seeds_until(config):
        raise ConfigError("hydra.sweeper.race and hydra.sweeper.until both own the seed axis: use one of them")
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
