"""Searching a continuous range with Optuna: the search space, the stored study, trials on paired seeds, pruning
by epoch, and the winner confirmed on fresh seeds.

The search space is written as hydra-optuna-sweeper writes it (`'aug.alpha=tag(log, interval(0.05, 8))'`,
`choice(...)`, `range(...)`, on the command line or in `hydra.sweeper.params`), but that plugin pins Optuna < 3 and
cannot prune, so the sweeper (`hydra/sweeper=optuna`) drives Optuna 5's ask/tell itself:

- a trial is `seeds_per_trial` ordinary jobs, seeds 0..S-1 for every trial (paired), each its own MLflow run under
  the sweep's parent; its objective is the mean of the jobs' selection metric (`racing.METRICS`: validation, never
  the test set);
- the study lives in Optuna's RDB storage (its own SQLite file beside mlflow.db by default), named after the
  sweep's fingerprint: the same command again continues it up to `n_trials`;
- every job reports its per-epoch validation metric to its trial at step (epoch - 1) * S + seed, so each
  (epoch, seed) is a step of its own. The median pruner then compares a job's best value so far with the
  other trials' values at the *same epoch and seed* (paired); the Wilcoxon pruner pairs all common steps with the
  best trial. A pruned job raises `training.Pruned`: its run ends KILLED with the tag `pruned`, a packed member
  alone;
- `confirm_seeds` N: after the search, the best trial's configuration and its baseline (the report's baseline
  rule, `sweep.baselines_of`) run on seeds S..S+N-1, never used by the search, and the answer is their paired
  difference in *test* accuracy. The search's own best score is the maximum over trials of noisy estimates:
  optimistic by construction (the winner's curse), which is why it is confirmed.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from mixup_sweeps.errors import ConfigError, require
from mixup_sweeps.racing import METRICS

if TYPE_CHECKING:
    import optuna

KEY = "hydra.sweeper"
SAMPLERS = ("tpe", "random", "qmc")  # need nothing beyond Optuna and SciPy
PRUNERS = ("median", "wilcoxon", "none")
STUDY_FILE = "optuna.db"  # the default storage: beside mlflow.db in paths.output_dir
# What the sweeper tells a search job (as hydra.job.env_set: neither a task override nor in the fingerprint)
TRIAL_ENV, TRIAL_ID_ENV, STUDY_ENV = "MIXUP_SEARCH_TRIAL", "MIXUP_SEARCH_TRIAL_ID", "MIXUP_SEARCH_STUDY"
CONFIRM_ENV = "MIXUP_SEARCH_CONFIRM"
# Tags: on a search job's run, and on the sweep's parent
TRIAL_TAG, CONFIRM_TAG, PRUNED_TAG, PRUNED_EPOCH_TAG = "search_trial", "search_confirm", "pruned", "pruned_epoch"
RECORD_ARTIFACT = "search/search.json"  # on the parent: every trial, the best, the confirmation
SEED = "seed"


@dataclass(frozen=True)
class SearchSettings:
    """`hydra.sweeper` of `hydra/sweeper=optuna`, checked (defaults: conf/hydra/sweeper/optuna.yaml)."""

    n_trials: int
    seeds_per_trial: int
    metric: str
    sampler: str
    sampler_seed: int | None
    pruner: str
    n_startup_trials: int
    n_warmup_epochs: int
    storage: str | None
    study_name: str | None
    confirm_seeds: int
    baseline: str | None

    @property
    def direction(self) -> str:
        return "maximize" if METRICS[self.metric][0] > 0 else "minimize"

    @property
    def epoch_metric(self) -> str:
        """What a job reports each epoch: the metric itself, or val_accuracy for the best epoch's."""
        return "val_accuracy" if self.metric == "best_val_accuracy" else self.metric

    def study_defining(self) -> dict[str, Any]:
        """The settings that make a study what it is (the sweep fingerprint holds them): not how many trials, where
        it is stored or what confirms its winner, so raising n_trials or confirm_seeds continues the same study."""
        keep = ("seeds_per_trial", "metric", "sampler", "sampler_seed", "pruner", "n_startup_trials", "n_warmup_epochs")
        return {k: v for k, v in asdict(self).items() if k in keep}


def is_search(sweeper: Mapping[str, Any]) -> bool:
    """Whether a sweeper config is this search (`hydra/sweeper=optuna`)."""
    return "n_trials" in sweeper and "seeds_per_trial" in sweeper


def settings_of(sweeper: Mapping[str, Any]) -> SearchSettings:
    """Checked settings; a bad value is one `ConfigError` line naming the key and what is allowed."""
    s: dict[str, Any] = {k: sweeper.get(k) for k in SearchSettings.__dataclass_fields__}

    def integer(name: str, low: int) -> None:
        value = s[name]
        ok = isinstance(value, int) and not isinstance(value, bool) and value >= low
        require(ok, f"{KEY}.{name}", value, f"must be an integer >= {low}")

    integer("n_trials", 1)
    integer("seeds_per_trial", 1)
    integer("confirm_seeds", 0)
    integer("n_startup_trials", 0)
    integer("n_warmup_epochs", 0)
    require(s["metric"] in METRICS, f"{KEY}.metric", s["metric"], f"one of {sorted(METRICS)} (validation only)")
    require(s["sampler"] in SAMPLERS, f"{KEY}.sampler", s["sampler"], f"one of {list(SAMPLERS)}")
    require(s["pruner"] in PRUNERS, f"{KEY}.pruner", s["pruner"], f"one of {list(PRUNERS)}")
    seed = s["sampler_seed"]
    require(seed is None or (isinstance(seed, int) and seed >= 0), f"{KEY}.sampler_seed", seed,
            "must be null (a fresh seed) or an integer >= 0")  # fmt: skip
    if s["confirm_seeds"] == 1:
        raise ConfigError(f"Invalid value {KEY}.confirm_seeds=1: 0 (no confirmation) or >= 2 (a paired interval)")
    for name in ("storage", "study_name", "baseline"):
        require(s[name] is None or (isinstance(s[name], str) and s[name].strip() != ""), f"{KEY}.{name}", s[name],
                "must be null or a non-empty string")  # fmt: skip
    if s["baseline"] is not None:
        from mixup_sweeps.sweep import parse_baseline

        try:
            parse_baseline(s["baseline"])
        except ValueError as exc:
            raise ConfigError(f"{KEY}.{exc}") from None
    return SearchSettings(**s)


# --- the search space --------------------------------------------------------------------------------------
def search_space(arguments: Sequence[str]) -> tuple[dict[str, optuna.distributions.BaseDistribution], list[str]]:
    """(distributions by key, fixed overrides) from overrides in hydra-optuna-sweeper's syntax (a key given twice:
    the later wins, so the command line beats hydra.sweeper.params). `ConfigError` for an empty or inverted
    interval, `log` with a bound <= 0, an empty choice, a search over the seed, or no range at all."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from mixup_sweeps.preflight import one_line

    try:
        parsed = OverridesParser.create().parse_overrides(list(arguments))
    except Exception as exc:
        raise ConfigError(one_line(exc)) from None
    latest = {o.get_key_element(): o for o in parsed}
    space, fixed = {}, []
    for key, override in latest.items():
        if key.lstrip("+~") == SEED:
            raise ConfigError(
                f"{override.input_line}: the search owns the seed (seeds 0..seeds_per_trial-1 for every trial, "
                f"fresh ones to confirm); set {KEY}.seeds_per_trial instead"
            )
        if override.is_sweep_override():
            space[key] = distribution(override)
        else:
            fixed.append(str(override.input_line))
    if not space:
        raise ConfigError(
            "hydra/sweeper=optuna needs a range to search, e.g. 'aug.alpha=tag(log, interval(0.05, 8))' or "
            "'trainer.learning_rate=choice(0.001, 0.003)'"
        )
    return space, fixed


def distribution(override: Any) -> optuna.distributions.BaseDistribution:
    """One swept override as an Optuna distribution (the plugin's mapping, in Optuna 5's classes)."""
    from hydra.core.override_parser.types import Transformer
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    line, value = override.input_line, override.value()
    log = "log" in getattr(value, "tags", ())
    if override.is_choice_sweep() or (override.is_range_sweep() and value.shuffle):
        choices = list(override.sweep_iterator(transformer=Transformer.encode))
        require(len(choices) >= 1, override.get_key_element(), line, "a choice needs at least one value")
        return CategoricalDistribution(choices)
    if override.is_range_sweep():
        start, stop, step = value.start, value.stop, value.step
        require(step > 0 and stop > start, override.get_key_element(), line,
                "range(start, stop[, step]) needs stop > start and step > 0")  # fmt: skip
        if all(isinstance(v, int) for v in (start, stop, step)):
            return IntDistribution(start, stop - 1 - (stop - 1 - start) % step, step=step)
        last = start + math.floor((stop - start) / step - 1e-9) * step
        return FloatDistribution(float(start), float(last), step=float(step))
    if override.is_interval_sweep():
        low, high = value.start, value.end
        key = override.get_key_element()
        require(high > low, key, line, "interval(low, high) needs high > low")
        if log:
            require(low > 0, key, line, "tag(log, interval(low, high)) needs low > 0")
        if isinstance(low, int) and isinstance(high, int):
            return IntDistribution(low, high, log=log)
        return FloatDistribution(float(low), float(high), log=log)
    raise ConfigError(f"{line}: not a search range (use interval, range or choice)")


def corner_overrides(space: Mapping[str, Any]) -> list[list[str]]:
    """Override sets that together put every searched key at its lowest and highest value (the others at their
    lowest): what preflight composes and checks before a search starts."""
    lows = {key: _ends(dist)[0] for key, dist in space.items()}
    sets = [dict(lows)]
    for key, dist in space.items():
        for end in _ends(dist)[1:]:
            sets.append({**lows, key: end})
    return [overrides_of(values) for values in sets]


def _ends(dist: Any) -> list[Any]:
    if hasattr(dist, "choices"):
        return list(dist.choices)
    return [dist.low, dist.high]


def overrides_of(params: Mapping[str, Any]) -> list[str]:
    """A trial's parameters as overrides, exactly (floats by repr)."""
    return [f"{key}={_text(value)}" for key, value in params.items()]


def _text(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return repr(value) if isinstance(value, float) else str(value)


# --- the study ---------------------------------------------------------------------------------------------
def storage_url(settings: SearchSettings, output_dir: str) -> str:
    """`hydra.sweeper.storage`, or Optuna's own SQLite file beside mlflow.db (both libraries keep an Alembic version
    table: not the same database)."""
    return settings.storage or f"sqlite:///{output_dir}/{STUDY_FILE}"


def shown_url(url: str) -> str:
    """The storage URL as it may be recorded: the password hidden."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url


def study_name(settings: SearchSettings, fingerprint: str) -> str:
    return settings.study_name or f"mixup-search-{fingerprint}"


def make_pruner(settings: SearchSettings) -> optuna.pruners.BasePruner:
    import optuna

    if settings.pruner == "median":
        warmup = settings.n_warmup_epochs * settings.seeds_per_trial  # steps are (epoch, seed) pairs
        return optuna.pruners.MedianPruner(n_startup_trials=settings.n_startup_trials, n_warmup_steps=warmup)
    if settings.pruner == "wilcoxon":
        startup = max(2, settings.n_warmup_epochs * settings.seeds_per_trial)
        return optuna.pruners.WilcoxonPruner(n_startup_steps=startup)
    return optuna.pruners.NopPruner()


def make_sampler(settings: SearchSettings, trials_so_far: int = 0) -> optuna.samplers.BaseSampler:
    """The sampler; with `sampler_seed`, seeded by it plus the trials the study already holds, so a continued
    study draws reproducible suggestions that are not the first session's again."""
    import optuna

    seed = None if settings.sampler_seed is None else settings.sampler_seed + trials_so_far
    if settings.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if settings.sampler == "qmc":
        return optuna.samplers.QMCSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=max(1, settings.n_startup_trials))


def open_study(settings: SearchSettings, url: str, name: str) -> optuna.Study:
    """The stored study (created on the first call): the sweeper asks and tells, each job reports and prunes."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.create_study(
        storage=url,
        study_name=name,
        direction="maximize" if settings.direction == "maximize" else "minimize",
        sampler=make_sampler(settings),
        pruner=make_pruner(settings),
        load_if_exists=True,
    )


def step_of(epoch: int, seed: int, seeds: int) -> int:
    """The intermediate step of (epoch from 1, seed): every (epoch, seed) pair its own step."""
    return (epoch - 1) * seeds + seed


def should_prune(study: optuna.Study, trial_id: int, seed: int, seeds: int) -> bool:
    """Whether this job (its trial's `seed`) is hopeless: the median pruner sees only this seed's steps (so it
    compares with the other trials at the same epoch and seed); the Wilcoxon pruner sees all of the trial's."""
    import optuna

    trial = study._storage.get_trial(trial_id)  # Optuna keeps no public read of one trial by id
    if not isinstance(study.pruner, optuna.pruners.WilcoxonPruner):
        own = {step: v for step, v in trial.intermediate_values.items() if step % seeds == seed}
        trial = optuna.trial.FrozenTrial(
            number=trial.number, state=trial.state, value=None, datetime_start=trial.datetime_start,
            datetime_complete=None, params=trial.params, distributions=trial.distributions,
            user_attrs=trial.user_attrs, system_attrs=trial.system_attrs, intermediate_values=own,
            trial_id=trial._trial_id,
        )  # fmt: skip
    return bool(study.pruner.prune(study, trial))


class EpochReporter:
    """A search job's hook after each epoch: report its validation metric to its trial, raise `training.Pruned`
    when the pruner says the trial is hopeless (after the epoch's checkpoint and MLflow record)."""

    def __init__(self, settings: SearchSettings, url: str, name: str, trial_id: int, seed: int) -> None:
        self.settings, self.url, self.name, self.trial_id, self.seed = settings, url, name, trial_id, seed
        self.study: optuna.Study | None = None

    def __call__(self, epoch: int, metrics: Mapping[str, float]) -> None:
        import optuna

        from mixup_sweeps.training import Pruned

        if self.study is None:
            self.study = open_study(self.settings, self.url, self.name)
        value = float(metrics.get(self.settings.epoch_metric, math.nan))
        seeds = self.settings.seeds_per_trial
        trial = optuna.trial.Trial(self.study, self.trial_id)
        trial.report(value, step_of(epoch, self.seed, seeds))
        if should_prune(self.study, self.trial_id, self.seed, seeds):
            raise Pruned(f"pruned by the {self.settings.pruner} pruner after epoch {epoch}", epoch)


def reporter_for(hydra_cfg: Any, output_dir: str, seed: int) -> EpochReporter | None:
    """The job's `EpochReporter` when the search sweeper launched it for a trial, else None."""
    env = hydra_cfg.job.env_set
    if env.get(TRIAL_ID_ENV) is None or not is_search(hydra_cfg.sweeper):
        return None
    settings = settings_of(hydra_cfg.sweeper)
    return EpochReporter(settings, storage_url(settings, output_dir), str(env[STUDY_ENV]), int(env[TRIAL_ID_ENV]), seed)


def run_tags(hydra_cfg: Any) -> dict[str, str]:
    """Tags of a search job's run: its trial number, or that it confirms the winner."""
    env = hydra_cfg.job.env_set
    tags = {}
    if env.get(TRIAL_ENV) is not None:
        tags[TRIAL_TAG] = str(env[TRIAL_ENV])
    if env.get(CONFIRM_ENV) is not None:
        tags[CONFIRM_TAG] = str(env[CONFIRM_ENV])
    return tags


# --- the outcome -------------------------------------------------------------------------------------------
def objective(values: Sequence[float]) -> float:
    """A trial's objective: the mean of its seeds' selection metric (paired seeds: the same for every trial)."""
    return float(sum(values) / len(values))


def confirmation(best: Sequence[float], baseline: Sequence[float]) -> dict[str, float]:
    """The paired difference in test accuracy (best − baseline) over the confirmation seeds, with its 95 % t
    interval (`statistics.t_interval`)."""
    from mixup_sweeps import statistics

    interval = statistics.t_interval([b - a for b, a in zip(best, baseline)])
    return {"delta": interval.mean, "low": interval.low, "high": interval.high, "seeds": len(best),
            "best_test_accuracy": objective(best), "baseline_test_accuracy": objective(baseline)}  # fmt: skip


def describe(record: Mapping[str, Any]) -> list[str]:
    """The search's answer in lines: the best trial, what it cost, and its confirmation on fresh seeds."""
    settings, counts = record["settings"], record["counts"]
    lines = []
    best = record.get("best")
    spent, unpruned = record["model_epochs"], record["model_epochs_unpruned"]
    saved = f", pruning saved {1 - spent / unpruned:.0%} of {unpruned}" if unpruned else ""
    lines.append(f"search: {counts.get('COMPLETE', 0)} trials complete, {counts.get('PRUNED', 0)} pruned, "
                 f"{counts.get('FAIL', 0)} failed; {spent} model-epochs{saved}")  # fmt: skip
    if best is None:
        return lines + ["no trial completed: nothing to confirm"]
    params = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in best["params"].items())
    seeds = settings["seeds_per_trial"]
    over = f"mean of {seeds} seeds" if seeds > 1 else "one seed"
    lines.append(f"best trial #{best['number']}: {params}, {settings['metric']} {best['value']:.4f} "
                 f"({over}; the search's own score)")  # fmt: skip
    confirmed = record.get("confirmation")
    if confirmed is None:
        lines.append("not confirmed (hydra.sweeper.confirm_seeds=0): the best score above is optimistic")
        return lines
    if "delta" not in confirmed:
        return lines + [str(confirmed.get("note", ""))]
    lines.append(
        f"confirmed on {confirmed['seeds']} fresh seeds: test_accuracy {confirmed['best_test_accuracy']:.4f} vs "
        f"{confirmed['baseline']} {confirmed['baseline_test_accuracy']:.4f}, Δ {confirmed['delta']:+.4f} "
        f"[{confirmed['low']:+.4f}, {confirmed['high']:+.4f}] (paired 95 % t interval)"
    )
    lines.append(
        "why the two differ: the best score is the largest of many noisy validation estimates on the search's own "
        "seeds (the winner's curse: optimistic by construction); the confirmation re-runs that configuration on "
        "seeds the search never used and reports the test set"
    )
    return lines


def to_json(record: Mapping[str, Any]) -> str:
    return json.dumps(record, sort_keys=True, default=str)
