"""Searching a continuous range with Optuna: the search space, the stored study, trials on paired seeds, pruning
by epoch, and the winner confirmed on fresh seeds.

The search space is written as hydra-optuna-sweeper writes it (`'aug.alpha=tag(log, interval(0.05, 8))'`,
`choice(...)`, `range(...)`, on the command line or in `hydra.sweeper.params`), but that plugin pins Optuna < 3 and
cannot prune, so the sweeper (`hydra/sweeper=search`) drives Optuna 5's ask/tell itself:

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
  rule, `sweeps.baseline`) run on seeds S..S+N-1, never used by the search, and the answer is their paired
  difference in *test* accuracy. The search's own best score is the maximum over trials of noisy estimates:
  optimistic by construction (the winner's curse), which is why it is confirmed.

Here: the settings, the space and the answer (pure); the stored study and pruning are `sweeps.study`, the ask/tell
loop `multirun.search`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from mixup_sweeps import statistics
from mixup_sweeps.config import SEED
from mixup_sweeps.errors import ConfigError, require
from mixup_sweeps.sweeps.baseline import baseline_setting
from mixup_sweeps.sweeps.settings import METRICS, SearchSettings
from mixup_sweeps.text import one_line

if TYPE_CHECKING:
    import optuna

KEY = "hydra.sweeper"
SAMPLERS = ("tpe", "random", "qmc")  # need nothing beyond Optuna and SciPy
PRUNERS = ("median", "wilcoxon", "none")
STUDY_FILE = "optuna.db"  # the default storage: beside mlflow.db in paths.output_dir
# What the sweeper tells a search job (as hydra.job.env_set: neither a task override nor in the fingerprint)
TRIAL_ENV, STUDY_ENV = "MIXUP_SEARCH_TRIAL", "MIXUP_SEARCH_STUDY"
CONFIRM_ENV = "MIXUP_SEARCH_CONFIRM"


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
        baseline_setting(s["baseline"], KEY)
    return SearchSettings(**s)


# --- the search space --------------------------------------------------------------------------------------
def search_space(arguments: Sequence[str]) -> tuple[dict[str, optuna.distributions.BaseDistribution], list[str]]:
    """(distributions by key, fixed overrides) from overrides in hydra-optuna-sweeper's syntax (a key given twice:
    the later wins, so the command line beats hydra.sweeper.params). `ConfigError` for an empty or inverted
    interval, `log` with a bound <= 0, an empty choice, a search over the seed, or no range at all."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

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
            "hydra/sweeper=search needs a range to search, e.g. 'aug.alpha=tag(log, interval(0.05, 8))' or "
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


# --- the outcome -------------------------------------------------------------------------------------------
def objective(values: Sequence[float]) -> float:
    """A trial's objective: the mean of its seeds' selection metric (paired seeds: the same for every trial)."""
    return float(sum(values) / len(values))


def confirmation(best: Sequence[float], baseline: Sequence[float]) -> dict[str, float]:
    """The paired difference in test accuracy (best − baseline) over the confirmation seeds, with its 95 % t
    interval (`statistics.t_interval`)."""
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
