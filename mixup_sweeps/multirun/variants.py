"""The variants sweeper's work: a grid crossed with variants, raced or run seeds-until-precise, as launches.

A grid cannot say "aug=none, or aug=mixup with alpha in {0.1, 0.2, 0.4}" (none has no alpha). The variants
are crossed with whatever the basic sweeper expands from the command line, so `seed=0,1,2` repeats every
variant for every seed, and all of it is one Hydra multirun (one sweep directory, one sweep_id).

`hydra.sweeper.race.epsilon=E` races the sweep's groups instead (`sweeps.racing`): one launch a round, each
group's jobs on the next seed(s); the outcome goes on the parent run (tag `race_result`).
`hydra.sweeper.until.half_width=H` replaces the seed axis by Stein's two-stage procedure (`sweeps.until`): two
launches of the same multirun. A job finished by an earlier attempt is skipped (its result still counts), so
running the command again continues either.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from mlflow.entities import Run
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

from mixup_sweeps.config import CONF_DIR, SEED
from mixup_sweeps.errors import ConfigError
from mixup_sweeps.multirun.in_process import job_failure
from mixup_sweeps.store import claims, registry, tags, tracking
from mixup_sweeps.sweeps import racing, until, winner
from mixup_sweeps.sweeps.overrides import expand_jobs, group_names, without_seed
from mixup_sweeps.sweeps.progress import jobs_at_once, progress_overrides
from mixup_sweeps.sweeps.settings import UntilSettings
from mixup_sweeps.train.training import TrainingDiverged

log = logging.getLogger(__name__)
Group = tuple[str, ...]


class VariantsRun:
    """One sweep of `hydra/sweeper=variants` (the plugin `VariantsSweeper` hands its work to this)."""

    def __init__(self, sweeper: BasicSweeper, variants: Any, until_settings: Any, race: Any) -> None:
        self.sweeper = sweeper
        self.variants = [list(v) for v in variants] or [[]]
        defaults = OmegaConf.load(CONF_DIR / "hydra" / "sweeper" / "variants.yaml")  # also for a sweeper made by hand
        settings: dict[str, Any] = OmegaConf.to_container(OmegaConf.merge(defaults.until, until_settings or {}))  # type: ignore[assignment]
        self.until = UntilSettings(**settings)
        self.race: dict[str, Any] = OmegaConf.to_container(OmegaConf.merge(defaults.race, race or {}))  # type: ignore[assignment]
        self.started = time.time()
        self.total_jobs = 0

    def split_arguments(self, overrides: list[Override], max_batch_size: int | None) -> list[list[list[str]]]:
        jobs = expand_jobs(overrides, self.variants)  # params first, then the command line: the command line wins
        if self.until.half_width is None and self.race.get("epsilon") is None:
            jobs = self._with_progress(jobs, first_index=0)
        return [list(chunk) for chunk in self.sweeper.split_overrides_to_chunks(jobs, max_batch_size)]

    def sweep(self, arguments: list[str], plain: Any) -> Any:
        """Race, or seeds until precise, or (neither on) `plain(arguments)`: the basic sweeper's own sweep."""
        race = racing.settings_of(self.race)
        if race is not None:
            return self._race(arguments, race)
        if self.until.half_width is None:
            return plain(arguments)
        return self._until_precise(arguments)

    def _with_progress(self, jobs: list[list[str]], first_index: int) -> list[list[str]]:
        """Tell each job how many jobs the sweep has so far, when it started and how many run at once."""
        self.total_jobs = first_index + len(jobs)
        config = self.sweeper.config
        settings = config.hydra.launcher if config is not None else {}
        extra = progress_overrides(self.total_jobs, self.started, jobs_at_once(self.sweeper.launcher, settings))
        return [job + extra for job in jobs]

    def _groups(self, arguments: list[str]) -> list[Group]:
        """The sweep's groups: its jobs without the seed axis (the seed is what a procedure over seeds owns)."""
        sweeper = self.sweeper
        assert sweeper.hydra_context is not None and sweeper.config is not None
        parser = OverridesParser.create(config_loader=sweeper.hydra_context.config_loader)
        overrides = parser.parse_overrides(sweeper._parse_config() + list(arguments))
        overrides = [o for o in overrides if o.get_key_element() != SEED]
        (jobs,) = self.split_arguments(overrides, None)
        sweep_dir = Path(sweeper.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(sweeper.config, sweep_dir / "multirun.yaml")  # as the basic sweeper does
        return [without_seed(job) for job in jobs]

    def _race(self, arguments: list[str], settings: racing.RaceSettings) -> Any:
        groups = self._groups(arguments)
        if len(groups) < 2:
            raise ConfigError("hydra.sweeper.race needs at least two groups to race (a grid or variants), got one")
        outcomes: dict[Any, dict[str, float]] = {}  # (group, seed) -> the job's final metrics ({} diverged)
        round_no = [0]
        config = self.sweeper.config
        assert config is not None

        def sample(plan: Mapping[Hashable, range]) -> Mapping[Hashable, Sequence[float]]:
            round_no[0] += 1
            todo: dict[Any, range] = {group: seeds for group, seeds in plan.items() if len(seeds)}
            if todo:
                self._launch_seeds(todo, outcomes, stage=f"race round {round_no[0]}", diverged_ok=True)
            return {group: [outcomes[(group, seed)].get(settings.metric, math.nan) for seed in range(plan[group].stop)]
                    for group in plan}  # fmt: skip

        resolution = settings.resolution(int(config.dataset.val_size)) if "dataset" in config else 0.0
        result = racing.run_race(groups, settings, sample, resolution=resolution)
        epochs = int(config.trainer.epochs) if "trainer" in config else None
        names: dict[Any, str] = dict(group_names(groups))
        record = racing.to_record(result, names.__getitem__, epochs)
        for entry, group in zip(record["arms"], result.arms):  # the report finds each arm's group by these
            entry["overrides"] = list(group)  # type: ignore[call-overload]
        for line in record["lines"]:
            log.info("Race: %s", line)
        if found := self._parent():  # the outcome on the parent (the sweep's last lines read it), the winner registered
            client, experiment_id, parent = found
            claims.set_shared_tag(client, parent.info.run_id, tags.RACE_RESULT, json.dumps(record))
            runs = tracking.sweep_runs(client, experiment_id, parent)
            registry.register_winner(client, parent, runs, winner.race_winner(record), "\n".join(record["lines"]))
        return outcomes

    def _until_precise(self, arguments: list[str]) -> Any:
        settings = self.until
        until.check_until(vars(settings))  # checked before the sweep began too; a sweeper made by hand gets it here
        groups = self._groups(arguments)
        paired = until.pair_with_baselines(groups, settings.baseline)
        outcomes: dict[tuple[Group, int], dict[str, float]] = {}
        self._launch_seeds({g: range(settings.min_seeds) for g in groups}, outcomes, "Seeds until precise, stage 1")
        results = {key: float(value["test_accuracy"]) for key, value in outcomes.items()}
        needed = until.seeds_needed(results, paired, settings)
        second = {group: range(settings.min_seeds, n) for group, n in needed.items() if n > settings.min_seeds}
        if second:
            self._launch_seeds(second, outcomes, stage="Seeds until precise, stage 2")
            results = {key: float(value["test_accuracy"]) for key, value in outcomes.items()}
        outcome = until.outcome(results, paired, needed, settings, group_names(groups))
        self._tag_parent(tags.SEEDS_UNTIL_RESULT, json.dumps(outcome))
        assert settings.half_width is not None
        log.info("Seeds until precise: %s", until.describe_seeds_until(outcome, settings.half_width))
        return results

    def _parent(self) -> tuple[MlflowClient, str, Run] | None:
        """The store, experiment and parent run of this sweep (None without the parent callback)."""
        config = self.sweeper.config
        assert config is not None
        client, experiment_id = tracking.connect(config.tracking, check=False)  # checked at the start
        parent = tracking.find_parent(client, experiment_id, str(Path(config.hydra.sweep.dir).resolve()))
        return (client, experiment_id, parent) if parent is not None else None

    def _tag_parent(self, key: str, value: str) -> None:
        """Put a procedure's outcome on the sweep's parent run; the sweep's last log lines read it from there."""
        if found := self._parent():
            client, _, parent = found
            claims.set_shared_tag(client, parent.info.run_id, key, value)

    def _launch_seeds(self, plan: dict[Group, range], results: dict, stage: str, diverged_ok: bool = False) -> None:
        """One launch of `plan`'s (group, seed) jobs; each job's outcome (its final metrics) into `results`.
        `diverged_ok` (a race): a job whose loss became NaN is `{}`, a result about its arm, not the sweep's
        error; any other failure raises."""
        pairs = [(group, seed) for group, seeds_ in plan.items() for seed in seeds_]
        first_index = self.total_jobs
        jobs = self._with_progress([[*group, f"{SEED}={seed}"] for group, seed in pairs], first_index)
        log.info("%s: %d jobs", stage, len(jobs))
        self.sweeper.validate_batch_is_legal(jobs)
        assert self.sweeper.launcher is not None
        returns = self.sweeper.launcher.launch(jobs, initial_job_idx=first_index)
        for pair, ret in zip(pairs, returns):
            if diverged_ok and isinstance(failure := job_failure(ret), TrainingDiverged):
                log.warning("%s diverged: %s", " ".join(pair[0]) + f" {SEED}={pair[1]}", failure)
                results[pair] = {}
                continue
            results[pair] = ret.return_value  # any other failed job raises here
