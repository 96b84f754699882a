"""Racing: which arm of a grid is best, with a guarantee, for a fraction of the seeds (`hydra.sweeper.race`).

Arms are a sweep's groups; seeds are paired replicates (the same seed: the same initial weights and data order
for every arm). Every arm runs `min_seeds` seeds; then, round by round, the arms still in the race get the next
`seeds_per_round` seeds. After each round, on the seeds all of them have, an arm leaves when another arm is
better with confidence; the race ends when one arm is left, when all that are left are within ±epsilon of each
other with confidence (equivalent for the user's purpose), or at `max_seeds`.

The guarantee, and its construction: **one-sided bounds against each arm, Bonferroni over the other arms and the
looks.** With K arms and at most R = 1 + ⌈(max_seeds − min_seeds) / seeds_per_round⌉ looks, every ordered pair's
paired difference gets a one-sided Student-t lower bound at level 1 − δ/((K−1)·R). Fix a best arm b (a highest
true mean). It can only be lost through one of the K−1 events "arm j's lower bound over b, at some look, is above
the true μ_j − μ_b (≤ 0)"; each look's bound is computed from the first n_r seeds, the same numbers whether or
not the race went on, so by the union bound these (K−1)·R events together have probability ≤ δ. Outside them:
b is never eliminated (repeated looks included), and an equivalence claim is true in the sense the race states
it, every arm left is within ε of the best (for each arm i left, μ_b − μ_i ≤ Δ̄_bi + h ≤ ε on that event).
What it does *not* bound: that every "i beat j" between two worse arms is right, or that *all* of several tied
best arms survive together (each one does with probability ≥ 1 − δ). The rule before this one (two-sided, over
all K(K−1)/2 pairs) did bound those jointly, at the price of a larger quantile; a user asks "did I keep the best,
and is 'equivalent' true?", and the one-sided rule answers exactly that for fewer seeds (simulated with
docs/results.md §7's arms: 54.5 % of the grid spent instead of 58.6 %, separable arms 15 % instead of 18 %).
Why not an anytime-valid confidence sequence: the looks are few and known in advance (R ≤ 28 for 3..30 seeds),
Bonferroni's price grows only through the t quantile's tail, and the t interval is exact at the small seed counts
a sweep has, where confidence sequences need a known variance bound or are much wider.
The edges: a diverged job (its loss NaN) is scored with the metric's worst value (`RaceSettings.worst`: 0
accuracy; the largest loss Keras can report), a fact about its arm, so a NaN never reaches a comparison
(`look` refuses one). Accuracies come in steps of 1/val_size, and three equal paired differences have zero
spread, so the paired spread is floored at the metric's `resolution` (one image: 1/val_size; a loss is a mean of
continuous per-image losses, so only identical runs tie exactly, and it gets no floor). Equivalence needs a
positive interval width, so `epsilon=0` never stops a race early.
What it assumes: per pair, the paired differences of the selection metric are independent across seeds and
normal (Student t is exact then; with 3–30 seeds it is the usual approximation for accuracies); nothing about
equal variances across pairs. What it does not say: the winner's *test* accuracy is not the selection metric,
and a winner chosen on validation is reported on the test set with its own interval (the report's).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np

from mixup_sweeps.errors import require
from mixup_sweeps.statistics import seeds_for_half_width, t_quantile
from mixup_sweeps.sweeps.settings import METRICS, RaceSettings


def settings_of(race: Mapping[str, Any], key: str = "hydra.sweeper.race") -> RaceSettings | None:
    """Checked settings from the sweeper's `race` node (None: racing is off, epsilon null). Bad values are one
    `ConfigError` line naming the key and what is allowed."""
    if race.get("epsilon") is None:
        return None
    values: dict[str, Any] = {k: race.get(k) for k in ("epsilon", "delta", "min_seeds", "max_seeds", "seeds_per_round")}
    epsilon, delta = values["epsilon"], values["delta"]
    require(isinstance(epsilon, (int, float)) and 0 <= epsilon < math.inf, f"{key}.epsilon", epsilon,
            "must be a number >= 0 (in the metric's units, e.g. 0.002 accuracy), or null for no race")  # fmt: skip
    require(isinstance(delta, (int, float)) and 0 < delta < 1, f"{key}.delta", delta, "must be in (0, 1)")
    low, high, step = values["min_seeds"], values["max_seeds"], values["seeds_per_round"]
    require(isinstance(low, int) and low >= 2, f"{key}.min_seeds", low, "must be an integer >= 2 (a paired spread)")
    require(isinstance(high, int) and high >= low, f"{key}.max_seeds", high, f"must be an integer >= min_seeds ({low})")
    require(isinstance(step, int) and step >= 1, f"{key}.seeds_per_round", step, "must be an integer >= 1")
    metric = race.get("metric")
    require(metric in METRICS, f"{key}.metric", metric, f"one of {sorted(METRICS)} (validation metrics only)")
    return RaceSettings(float(epsilon), float(delta), low, high, step, str(metric))


# --- one look -----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Comparison:
    """better − worse over `seeds` paired seeds, in the metric's own units (negative for a loss), interval at the
    race's per-look level."""

    better: Hashable
    worse: Hashable
    mean: float
    low: float
    high: float
    seeds: int


@lru_cache(maxsize=4096)
def _quantile(df: int, confidence: float) -> float:
    return t_quantile(df, confidence)


def pairwise(scores: np.ndarray, confidence: float, resolution: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Mean and half width of every ordered pair's paired difference: scores (arms, seeds) -> (arms, arms) each,
    mean[i, j] = mean over seeds of scores[i] − scores[j]; the spread floored at `resolution` (the metric's
    step: equal differences on every seed are not a zero-width interval)."""
    diffs = scores[:, None, :] - scores[None, :, :]
    n = scores.shape[1]
    spread = np.maximum(diffs.std(axis=2, ddof=1), resolution)
    np.fill_diagonal(spread, 0.0)  # an arm against itself
    return diffs.mean(axis=2), _quantile(n - 1, confidence) * spread / math.sqrt(n)


def look(
    scores: Mapping[Hashable, Sequence[float]],
    alive: Sequence[Hashable],
    seeds: int,
    confidence: float,
    epsilon: float,
    resolution: float = 0.0,
) -> tuple[dict[Hashable, tuple[Hashable, float, float, float]], bool]:
    """One look at the arms in `alive` over their first `seeds` scores (higher is better): the arms that leave,
    each with (the arm that beat it by the largest lower bound, mean, low, high of that difference), and whether
    all that stay are within ±epsilon of each other with confidence (a positive width: never at epsilon 0).
    Scores must be finite: a diverged job is scored before it gets here (`run_race`)."""
    matrix = np.array([np.asarray(scores[arm], dtype=float)[:seeds] for arm in alive])
    if not np.isfinite(matrix).all():
        raise ValueError("a race compares finite scores only: score a diverged job with the metric's worst value")
    mean, half = pairwise(matrix, confidence, resolution)
    low = mean - half
    np.fill_diagonal(low, -np.inf)
    beaten: dict[Hashable, tuple[Hashable, float, float, float]] = {}
    for j, arm in enumerate(alive):
        i = int(np.argmax(low[:, j]))
        if low[i, j] > 0:
            beaten[arm] = (alive[i], float(mean[i, j]), float(low[i, j]), float(mean[i, j] + half[i, j]))
    stay = [k for k, arm in enumerate(alive) if arm not in beaten]
    pairs = [(i, j) for i in stay for j in stay if i != j]
    equivalent = bool(pairs) and all(half[i, j] > 0 and abs(mean[i, j]) + half[i, j] <= epsilon for i, j in pairs)
    return beaten, equivalent


# --- a whole race -------------------------------------------------------------------------------------------
@dataclass
class ArmResult:
    arm: Hashable
    seeds: int = 0  # seeds it ran
    left_round: int | None = None  # the look after which it left; None: still in at the end
    beaten_by: Comparison | None = None
    mean: float = math.nan  # its mean metric over its seeds (a diverged seed counted as the worst value)
    diverged: int = 0  # of its seeds, how many diverged (loss NaN)


@dataclass
class RaceResult:
    arms: dict[Hashable, ArmResult]
    reason: str  # "one_left" | "equivalent" | "max_seeds"
    looks: int
    settings: RaceSettings
    seed_runs: int = 0  # jobs the race ran (each arm × each of its seeds)
    remaining: list[Hashable] = field(default_factory=list)  # arms still in at the end, best mean first
    seeds_to_separate: int | None = None  # at max_seeds: seeds per arm that would separate the top two

    @property
    def exhaustive_runs(self) -> int:
        """Jobs of the exhaustive grid at max_seeds: every arm, every seed."""
        return len(self.arms) * self.settings.max_seeds

    @property
    def spent(self) -> float:
        return self.seed_runs / self.exhaustive_runs


Sampler = Callable[[Mapping[Hashable, range]], Mapping[Hashable, Sequence[float]]]


def run_race(
    arms: Sequence[Hashable],
    settings: RaceSettings,
    sample: Sampler,
    confidence: float | None = None,
    resolution: float = 0.0,
) -> RaceResult:
    """Race `arms`: `sample({arm: seeds})` runs those seeds of those arms and returns each arm's metric values for
    *all* its seeds so far (seed 0 first; NaN for a job that diverged). A pure function of what `sample`
    returns, so a race run again over finished jobs (each skipped, its recorded value returned) takes the same
    decisions and continues. `resolution`: the metric's step (1/val_size for an accuracy), the floor of every
    paired spread. `confidence` replaces the corrected level (only to show what an uncorrected rule does)."""
    confidence = settings.confidence(len(arms)) if confidence is None else confidence
    results = {arm: ArmResult(arm) for arm in arms}
    scores: dict[Hashable, list[float]] = {arm: [] for arm in arms}
    alive, done = list(arms), 0
    look_no, reason = 0, "max_seeds"
    sign, worst = settings.sign, settings.worst
    while True:
        look_no += 1
        target = settings.seeds_after(look_no)
        values = sample({arm: range(done, target) for arm in alive})
        for arm in alive:
            raw = np.asarray(values[arm], dtype=float)[:target]  # whole arrays: a simulation runs ~10^5 looks
            finite = np.isfinite(raw)
            results[arm].diverged = int(np.count_nonzero(~finite))
            scores[arm] = (sign * np.where(finite, raw, worst)).tolist()
            results[arm].seeds = target
        done = target
        beaten, equivalent = look(scores, alive, target, confidence, settings.epsilon, resolution)
        for arm, (by, mean, low, high) in beaten.items():
            sign = settings.sign  # back to the metric's own units
            low_, high_ = sorted((sign * low, sign * high))
            results[arm].left_round = look_no
            results[arm].beaten_by = Comparison(by, arm, sign * mean, low_, high_, target)
        alive = [arm for arm in alive if arm not in beaten]
        if len(alive) == 1:
            reason = "one_left"
            break
        if equivalent:
            reason = "equivalent"
            break
        if target >= settings.max_seeds:
            break
    for arm in arms:
        mine = scores[arm][: results[arm].seeds]
        results[arm].mean = settings.sign * float(np.mean(mine)) if mine else math.nan
    ranked = sorted(alive, key=lambda arm: -settings.sign * results[arm].mean)
    result = RaceResult(results, reason, look_no, settings, sum(r.seeds for r in results.values()), ranked)
    if reason == "max_seeds" and len(ranked) > 1:
        top = np.asarray(scores[ranked[0]][:done]) - np.asarray(scores[ranked[1]][:done])
        spread = max(float(top.std(ddof=1)), resolution)
        result.seeds_to_separate = seeds_for_half_width(spread, abs(float(top.mean())), done - 1,
                                                        confidence) if top.mean() != 0 else None  # fmt: skip
    return result


def describe(result: RaceResult, name: Callable[[Hashable], str] = str, epochs: int | None = None) -> list[str]:
    """The race's outcome in lines a person reads: the winner (or the equivalent set), every eliminated arm with
    its round, seeds, Δ and interval, and what it spent against the exhaustive grid."""
    settings = result.settings
    lines = []
    if result.reason == "one_left":
        lines.append(f"winner: {name(result.remaining[0])} (the last arm left after {result.looks} looks)")
    elif result.reason == "equivalent":
        lines.append(f"equivalent within ±{settings.epsilon:g} {settings.metric}: "
                     + ", ".join(name(arm) for arm in result.remaining))  # fmt: skip
    else:
        more = f"; about {result.seeds_to_separate} seeds per arm would separate the top two" if (
            result.seeds_to_separate) else ""  # fmt: skip
        lines.append(f"undecided at max_seeds={settings.max_seeds}: {', '.join(name(a) for a in result.remaining)} "
                     f"cannot be told apart at this budget{more}")  # fmt: skip
    for arm in sorted(result.arms.values(), key=lambda r: (r.left_round or 10**9, str(r.arm))):
        if arm.beaten_by is not None:
            c = arm.beaten_by
            by = f"{c.mean:+.4f} {settings.metric} [{c.low:+.4f}, {c.high:+.4f}]"
            lines.append(f"  out after look {arm.left_round} ({arm.seeds} seeds): {name(arm.arm)}; "
                         f"{name(c.better)} better by {by}")  # fmt: skip
    for arm in result.arms.values():
        if arm.diverged:
            lines.append(f"  {name(arm.arm)} diverged (loss NaN) on {arm.diverged} of its {arm.seeds} seeds: each "
                         f"scored as the worst {settings.metric}, {settings.worst:g}")  # fmt: skip
    unit = f" ({result.seed_runs * epochs} of {result.exhaustive_runs * epochs} model-epochs)" if epochs else ""
    lines.append(f"spent {result.seed_runs} of the exhaustive grid's {result.exhaustive_runs} runs at max_seeds="
                 f"{settings.max_seeds}: {100 * result.spent:.0f} %{unit}; each one-sided bound at "
                 f"{100 * (1 - settings.tail(len(result.arms))):.4f} % (Bonferroni over the other arms × looks, "
                 f"δ = {settings.delta:g})")  # fmt: skip
    return lines


def to_record(result: RaceResult, name: Callable[[Hashable], str], epochs: int | None = None) -> dict[str, Any]:
    """The race as JSON for the sweep's parent run (tag `race_result`): the report and the sweep's last lines
    read it. Arms are named by `name` (their overrides)."""
    arms = []
    for arm in result.arms.values():
        entry: dict[str, Any] = {"group": name(arm.arm), "seeds": arm.seeds, "mean": arm.mean,
                                 "left_round": arm.left_round, "diverged": arm.diverged}  # fmt: skip
        if arm.beaten_by is not None:
            c = arm.beaten_by
            entry.update(beaten_by=name(c.better), delta=c.mean, low=c.low, high=c.high)
        entry["outcome"] = (
            "eliminated" if arm.left_round is not None
            else "winner" if result.reason == "one_left"
            else "equivalent" if result.reason == "equivalent"
            else "undecided"
        )  # fmt: skip
        arms.append(entry)
    s = result.settings
    return {
        "settings": {"epsilon": s.epsilon, "delta": s.delta, "min_seeds": s.min_seeds, "max_seeds": s.max_seeds,
                     "seeds_per_round": s.seeds_per_round, "metric": s.metric, "test_metric": s.test_metric},
        "reason": result.reason, "looks": result.looks, "remaining": [name(arm) for arm in result.remaining],
        "seed_runs": result.seed_runs, "exhaustive_runs": result.exhaustive_runs, "epochs": epochs,
        "seeds_to_separate": result.seeds_to_separate, "arms": arms, "lines": describe(result, name, epochs),
    }  # fmt: skip
