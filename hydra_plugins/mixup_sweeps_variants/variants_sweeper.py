"""Hydra's basic sweeper plus a list of variants, and optionally seeds until each comparison is precise.

A grid cannot say "aug=none, or aug=mixup with alpha in {0.1, 0.2, 0.4}" (none has no alpha). The variants
are crossed with whatever the basic sweeper expands from the command line, so `seed=0,1,2` repeats every
variant for every seed, and all of it is one Hydra multirun (one sweep directory, one sweep_id).

`hydra.sweeper.race.epsilon=E` races the sweep's groups instead (`mixup_sweeps.racing`): every group runs
`min_seeds` seeds, then round by round the groups still in the race get the next seed(s) (one launch a round),
and a group leaves when another is better on the selection metric (`race.metric`, validation) with confidence;
the race ends with one group, with all left within ±E of each other, or at `max_seeds`. The chance that a best
group is ever eliminated is at most `race.delta`. The outcome goes on the parent run (tag `race_result`).

`hydra.sweeper.until.half_width=H` replaces the seed axis by Stein's two-stage procedure
(`mixup_sweeps.statistics`): every group runs seeds 0..min_seeds-1; each group's paired differences in test
accuracy to its baseline (`until.baseline`, `aug=none` by default, with the same other overrides: the rule
of `mixup_sweeps.sweep.baselines_of`, which the report uses too) then fix how many seeds it needs for a
95 % interval of ±H (at most max_seeds), and a second launch runs the missing seeds of those groups and of
their baselines. Both stages are launches of the same multirun: one sweep, one parent run; a job finished by
an earlier attempt is skipped (its result still counts), so running the command again continues.
"""

import json
import logging
import time
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from omegaconf import MISSING, OmegaConf

from mixup_sweeps.config import CONF_DIR, ConfigError
from mixup_sweeps.sweep import jobs_at_once, progress_overrides

log = logging.getLogger(__name__)


# The schema (types only): every default is in conf/hydra/sweeper/variants.yaml, as for the rest of the config.
@dataclass
class UntilConf:
    half_width: float | None = MISSING  # None: off; else the target half width of each paired 95 % interval
    min_seeds: int = MISSING  # Stein's first stage
    max_seeds: int = MISSING
    baseline: str | None = MISSING  # KEY=VALUE of the groups the others are paired with; None: the report's


@dataclass
class RaceConf:
    epsilon: float | None = MISSING  # None: off; else groups within ±epsilon of each other are equivalent
    delta: float = MISSING  # the chance that a best group is ever eliminated is at most delta
    min_seeds: int = MISSING  # every group's first stage
    max_seeds: int = MISSING
    seeds_per_round: int = MISSING
    metric: str = MISSING  # the selection metric (validation: mixup_sweeps.racing.METRICS)


@dataclass
class VariantsSweeperConf:
    _target_: str = MISSING
    max_batch_size: int | None = MISSING
    params: dict[str, str] | None = MISSING
    variants: list[list[str]] = MISSING
    until: UntilConf = MISSING
    race: RaceConf = MISSING


ConfigStore.instance().store(
    group="hydra/schema/sweeper", name="variants", node=VariantsSweeperConf, provider="mixup_sweeps"
)


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
        self.variants = [list(v) for v in variants] or [[]]
        defaults = OmegaConf.load(CONF_DIR / "hydra" / "sweeper" / "variants.yaml")  # also for a sweeper made by hand
        settings: dict[str, Any] = OmegaConf.to_container(OmegaConf.merge(defaults.until, until or {}))  # type: ignore[assignment]
        self.until = UntilConf(**settings)
        self.race: dict[str, Any] = OmegaConf.to_container(OmegaConf.merge(defaults.race, race or {}))  # type: ignore[assignment]
        self.started = time.time()
        self.total_jobs = 0

    def split_arguments(  # type: ignore[override]
        self, overrides: list[Override], max_batch_size: int | None
    ) -> list[list[list[str]]]:
        from mixup_sweeps.sweep import expand_jobs  # the harness (and MLflow) only once a sweep runs

        jobs = expand_jobs(overrides, self.variants)  # params first, then the command line: the command line wins
        if self.until.half_width is None and self.race.get("epsilon") is None:
            jobs = self._with_progress(jobs, first_index=0)
        return [list(chunk) for chunk in self.split_overrides_to_chunks(jobs, max_batch_size)]

    def _with_progress(self, jobs: list[list[str]], first_index: int) -> list[list[str]]:
        """Tell each job how many jobs the sweep has so far, when it started and how many run at once (for
        `[5/12, ETA ...]`)."""
        self.total_jobs = first_index + len(jobs)
        settings = self.config.hydra.launcher if self.config is not None else {}
        extra = progress_overrides(self.total_jobs, self.started, jobs_at_once(self.launcher, settings))
        return [job + extra for job in jobs]

    def sweep(self, arguments: list[str]) -> Any:
        from mixup_sweeps import racing

        race = racing.settings_of(self.race)
        if race is not None:
            return self._race(arguments, race)
        if self.until.half_width is None:
            return super().sweep(arguments)
        return self._sweep_until_precise(arguments)

    def _groups(self, arguments: list[str]) -> list[tuple[str, ...]]:
        """The sweep's groups: its jobs without the seed axis (the seed is what a procedure over seeds owns)."""
        from mixup_sweeps.sweep import SEED

        assert self.hydra_context is not None and self.config is not None
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        overrides = parser.parse_overrides(self._parse_config() + list(arguments))
        overrides = [o for o in overrides if o.get_key_element() != SEED]
        (jobs,) = self.split_arguments(overrides, None)
        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")  # as the basic sweeper does
        return [tuple(job) for job in jobs]

    # --- racing -----------------------------------------------------------------------------------------
    def _race(self, arguments: list[str], settings: Any) -> Any:
        from mixup_sweeps import racing

        groups = self._groups(arguments)
        if len(groups) < 2:
            raise ConfigError("hydra.sweeper.race needs at least two groups to race (a grid or variants), got one")
        outcomes: dict[Any, dict[str, float]] = {}  # (group, seed) -> the job's final metrics
        round_no = [0]

        def sample(plan: Mapping[Hashable, range]) -> Mapping[Hashable, Sequence[float]]:
            round_no[0] += 1
            todo: dict[Any, range] = {group: seeds for group, seeds in plan.items() if len(seeds)}
            if todo:
                self._launch_seeds(todo, outcomes, stage=f"race round {round_no[0]}")
            return {
                group: [outcomes[(group, seed)][settings.metric] for seed in range(plan[group].stop)] for group in plan
            }

        result = racing.run_race(groups, settings, sample)
        self._record_race(result, groups, outcomes)
        return outcomes

    def _record_race(self, result: Any, groups: list[tuple[str, ...]], outcomes: dict) -> None:
        """The race's outcome on the sweep's parent run (tag `race_result`) and in the log."""
        from mixup_sweeps import racing, sweep, tracking

        assert self.config is not None
        common = set.intersection(*(set(group) for group in groups))

        def name(group: Any) -> str:
            return " ".join(o for o in group if o not in common) or "all"

        epochs = int(self.config.trainer.epochs) if "trainer" in self.config else None
        record = racing.to_record(result, name, epochs)
        for entry, group in zip(record["arms"], result.arms):  # the report finds each arm's group by these
            entry["overrides"] = list(group)
        client, experiment_id = tracking.connect(self.config.tracking, check=False)  # checked at the start
        parent = sweep.find_parent(client, experiment_id, str(Path(self.config.hydra.sweep.dir).resolve()))
        if parent is not None:
            client.set_tag(parent.info.run_id, sweep.RACE_RESULT_TAG, json.dumps(record))
        for line in record["lines"]:
            log.info("Race: %s", line)

    # --- seeds until precise ---------------------------------------------------------------------------
    def _sweep_until_precise(self, arguments: list[str]) -> Any:
        from mixup_sweeps import statistics
        from mixup_sweeps.preflight import check_until

        until = self.until
        assert until.half_width is not None
        check_until(vars(until))  # checked before the sweep began too; a sweeper made by hand gets it here
        groups = self._groups(arguments)
        baseline_of = {group: self._baseline(group, groups) for group in groups}
        outcomes: dict[tuple[tuple[str, ...], int], dict[str, float]] = {}
        first = {group: range(until.min_seeds) for group in groups}
        self._launch_seeds(first, outcomes, stage="Seeds until precise, stage 1")
        results = {key: float(value["test_accuracy"]) for key, value in outcomes.items()}
        needed = {group: until.min_seeds for group in groups}
        for group, baseline in baseline_of.items():
            if baseline is None:
                continue
            diffs = [results[(group, s)] - results[(baseline, s)] for s in range(until.min_seeds)]
            needed[group] = statistics.stein_total(diffs, until.half_width, until.max_seeds)
            needed[baseline] = max(needed[baseline], needed[group])  # paired: the baseline runs those seeds too
        second = {group: range(until.min_seeds, n) for group, n in needed.items() if n > until.min_seeds}
        if second:
            self._launch_seeds(second, outcomes, stage="Seeds until precise, stage 2")
            results = {key: float(value["test_accuracy"]) for key, value in outcomes.items()}

        common = set.intersection(*(set(group) for group in groups))  # shown once, not in every group's name
        outcome = []
        for group, baseline in baseline_of.items():
            name = " ".join(o for o in group if o not in common) or "all"
            entry: dict[str, Any] = {"group": name, "seeds": needed[group]}
            if baseline is not None:
                diffs = [results[(group, s)] - results[(baseline, s)] for s in range(needed[group])]
                interval = statistics.stein_interval(diffs, until.min_seeds)
                entry.update(delta=interval.mean, half_width=interval.half_width,
                             reached=interval.half_width <= until.half_width + 1e-12)  # fmt: skip
            outcome.append(entry)
        self._record(outcome)
        return results

    def _record(self, outcome: list[dict[str, Any]]) -> None:
        """Put the outcome on the sweep's parent run; the sweep's last log line reads it from there."""
        from mixup_sweeps import sweep, tracking

        assert self.config is not None and self.until.half_width is not None
        client, experiment_id = tracking.connect(self.config.tracking, check=False)  # checked at the start
        parent = sweep.find_parent(client, experiment_id, str(Path(self.config.hydra.sweep.dir).resolve()))
        if parent is not None:
            client.set_tag(parent.info.run_id, sweep.SEEDS_UNTIL_RESULT_TAG, json.dumps(outcome))
        log.info("Seeds until precise: %s", sweep.describe_seeds_until(outcome, self.until.half_width))

    def _baseline(self, group: tuple[str, ...], groups: list[tuple[str, ...]]) -> tuple[str, ...] | None:
        """The group `group` is paired with (`sweep.baselines_of` on the overrides); None for a baseline itself."""
        from mixup_sweeps.sweep import DEFAULT_BASELINE, baselines_of, override_values, parse_baseline

        try:
            baseline = parse_baseline(self.until.baseline or DEFAULT_BASELINE.override)
        except ValueError as exc:
            raise ConfigError(f"hydra.sweeper.until.{exc}") from None
        values = [override_values(g) for g in groups]
        if baseline.includes(override_values(group)):
            return None
        found = baselines_of(override_values(group), values, baseline)
        if not found:
            raise ConfigError(
                f"hydra.sweeper.until compares each group with its baseline: add {baseline.override} (a variant) "
                "for " + " ".join(group)
            )
        return groups[found[0]]

    def _launch_seeds(self, plan: dict[tuple[str, ...], range], results: dict, stage: str) -> None:
        """One launch of `plan`'s (group, seed) jobs; each job's outcome (its final metrics) into `results`."""
        from mixup_sweeps.sweep import SEED

        pairs = [(group, seed) for group, seeds_ in plan.items() for seed in seeds_]
        first_index = self.total_jobs
        jobs = self._with_progress([[*group, f"{SEED}={seed}"] for group, seed in pairs], first_index)
        log.info("%s: %d jobs", stage, len(jobs))
        self.validate_batch_is_legal(jobs)
        assert self.launcher is not None
        returns = self.launcher.launch(jobs, initial_job_idx=first_index)
        for pair, ret in zip(pairs, returns):
            results[pair] = ret.return_value  # a failed job raises here
