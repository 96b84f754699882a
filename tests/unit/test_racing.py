"""The fast part (no training, no subprocess) of these tests; beside them:
tests/e2e/test_racing.py, tests/integration/test_racing.py.

The racing rule (`mixup_sweeps.sweeps.racing`) in thousands of simulated races per regime, the promise checked in
each: a given best arm is eliminated in at most δ of races (and an equivalence claim is true). Regimes: (a)
separable arms, (b) docs/results.md §7a's arms, (c) equal continuous arms, (d) equal arms whose accuracies come
in steps of 1/val_size, (e) two tied best arms and worse ones, (f) arms with diverged (NaN) seeds. Each prints
the grid share it spent. Also: a NaN in any position never reaches a comparison, epsilon = 0 never stops early,
and the naive rule (an uncorrected 95 % interval at every look) breaks the promise. NumPy only: no training."""

from __future__ import annotations

import numpy as np
import pytest

from mixup_sweeps.errors import ConfigError
from mixup_sweeps.sweeps import racing

SETTINGS = racing.RaceSettings(epsilon=0.0, delta=0.05, min_seeds=3, max_seeds=30)


# Separable (docs/results.md section 5, last epoch at 50 % noise: none 0.50, mixup α 0.2 / 1 / 8 about 0.55 /
# 0.60 / 0.65, seeds 0.01-0.02 apart): arm means several paired standard deviations apart.
SEPARABLE = ([0.50, 0.55, 0.60, 0.65], 0.015)


# Near-equal (section 1/4 and the 10-epoch alpha grid: means within about one paired standard deviation).
NEAR_EQUAL = ([0.8700, 0.8690, 0.8680, 0.8670], 0.004)


# docs/results.md §7a: the best arm and four others 0.001 / 0.01 / 0.018 / 0.03 below it, paired sd 0.008.
SECTION_7A = ([0.870, 0.869, 0.860, 0.852, 0.840], 0.008)


def simulate(
    means: list[float],
    spread: float,
    races: int,
    settings: racing.RaceSettings = SETTINGS,
    confidence=None,
    seed=0,
    val_size: int | None = None,
    diverge: list[float] | None = None,
) -> list[racing.RaceResult]:
    """Races whose arm k on seed s scores means[k] + a seed effect shared by all arms + independent noise;
    rounded to whole images of `val_size` (an accuracy's steps) when given; NaN (diverged) with probability
    diverge[k]."""
    rng = np.random.default_rng(seed)
    resolution = 1.0 / val_size if val_size else 0.0
    results = []
    for _ in range(races):
        shared = rng.normal(0, 0.01, settings.max_seeds)  # a seed's initial weights help or hurt every arm alike
        noise = rng.normal(0, spread / np.sqrt(2), (len(means), settings.max_seeds))  # paired sd = spread
        values = np.asarray(means)[:, None] + shared[None, :] + noise
        if val_size:
            values = np.round(values * val_size) / val_size
        if diverge:
            values[rng.random(values.shape) < np.asarray(diverge)[:, None]] = np.nan

        def sample(plan, values=values):
            return {arm: values[arm, : plan[arm].stop] for arm in plan}

        results.append(racing.run_race(list(range(len(means))), settings, sample, confidence, resolution))
    return results


def eliminated(results: list[racing.RaceResult], arm: int) -> float:
    """The share of races in which `arm` was eliminated."""
    return float(np.mean([r.arms[arm].left_round is not None for r in results]))


def report(regime: str, results: list[racing.RaceResult], best: list[int]) -> float:
    """Print the regime's figures (the grid share spent, how often each best arm was lost, how often any was)
    and return the worst best arm's elimination rate (the promise: at most δ)."""
    lost = [eliminated(results, arm) for arm in best]
    anyone = float(np.mean([any(r.arms[arm].left_round is not None for arm in best) for r in results]))
    print(f"{regime}: {100 * np.mean([r.spent for r in results]):.1f} % of the grid spent; a given best arm lost in "
          f"{100 * max(lost):.2f} %, some best arm in {100 * anyone:.2f} % of {len(results)} races")  # fmt: skip
    return max(lost)


def test_a_separable_regime_keeps_the_best_and_spends_at_most_half_the_grid():
    results = simulate(*SEPARABLE, races=1000)
    assert report("(a) separable", results, best=[3]) <= SETTINGS.delta
    assert all(r.reason == "one_left" and r.remaining == [3] for r in results)  # every race found the best
    assert np.mean([r.spent for r in results]) <= 0.5  # target: ≤ 50 % of the exhaustive grid's model-epochs


def test_the_section_7a_arms_keep_the_best_for_less_than_the_old_rule_spent():
    results = simulate(*SECTION_7A, races=1000, seed=5)
    assert report("(b) §7a", results, best=[0]) <= SETTINGS.delta
    assert np.mean([r.spent for r in results]) < 0.586  # the two-sided rule over every pair: 58.6 %


def test_near_equal_arms_keep_the_best_spend_no_more_than_the_grid_and_say_they_cannot_be_told_apart():
    results = simulate(*NEAR_EQUAL, races=1000, seed=1)
    assert report("near-equal", results, best=[0]) <= SETTINGS.delta
    assert all(r.seed_runs <= r.exhaustive_runs for r in results)
    undecided = [r for r in results if r.reason == "max_seeds"]
    assert len(undecided) > 0.5 * len(results)  # at 30 seeds these arms mostly cannot be separated
    lines = racing.describe(undecided[0], epochs=10)
    assert "cannot be told apart at this budget" in lines[0] and "seeds per arm would separate" in lines[0]


def test_equal_continuous_arms_lose_no_given_arm_more_often_than_delta():
    results = simulate([0.87] * 5, 0.004, races=1000, seed=6)
    assert report("(c) equal, continuous", results, best=list(range(5))) <= SETTINGS.delta


@pytest.mark.parametrize("val_size, spread", [(500, 0.002), (500, 0.004), (2000, 0.002), (2000, 0.004)])
def test_equal_arms_with_accuracies_in_steps_lose_no_given_arm_more_often_than_delta(val_size, spread):
    """Three equal paired differences have zero spread: without the floor at one image (1/val_size) such an arm
    was eliminated in 4 % of races at val_size 500, sd 0.002, and some arm in 24 %."""
    results = simulate([0.87] * 5, spread, races=1000, seed=7, val_size=val_size)
    assert report(f"(d) equal, val_size {val_size}, sd {spread}", results, best=list(range(5))) <= SETTINGS.delta


def test_two_tied_best_arms_are_each_kept():
    results = simulate([0.870, 0.870, 0.862, 0.855], 0.004, races=1000, seed=8, val_size=2000)
    assert report("(e) two tied best", results, best=[0, 1]) <= SETTINGS.delta


def test_arms_with_diverged_seeds_are_scored_as_the_worst_value_and_the_race_goes_on():
    """Arm 3 diverges on every seed (a learning rate too high), arm 2 on 30 % of its seeds, arm 1 on 5 %: scored
    as 0 accuracy, the best arm (which never diverges) is kept, the arm that always diverges leaves at once."""
    diverge = [0.0, 0.05, 0.3, 1.0]
    results = simulate([0.870, 0.866, 0.862, 0.875], 0.004, races=1000, seed=9, val_size=2000, diverge=diverge)
    assert report("(f) diverged seeds", results, best=[0]) <= SETTINGS.delta
    assert all(r.arms[3].left_round == 1 and r.arms[3].diverged == 3 for r in results)
    assert all(np.isfinite(a.mean) for r in results for a in r.arms.values())
    lines = racing.describe(results[0])
    assert any(
        "diverged (loss NaN) on 3 of its 3 seeds: each scored as the worst val_accuracy, 0" in li for li in lines
    )


def test_an_arm_that_diverges_only_sometimes_can_hide_it_in_its_first_seeds():
    """The limit the README states: an arm better when it trains but diverging on 30 % of seeds (its scored mean
    0.7 · 0.88 = 0.62) looks best on every seed it has not yet diverged on, and no interval sees an event that has
    not happened; it eliminates the true best (0.87, never diverging) in more than δ of races."""
    results = simulate([0.870, 0.880], 0.004, races=1000, seed=11, val_size=2000, diverge=[0.0, 0.3])
    assert eliminated(results, 0) > SETTINGS.delta


def test_the_naive_rule_eliminates_the_best_arm_too_often():
    """An uncorrected 95 % interval at every look: with equal arms every elimination removes a best arm."""
    equal = ([0.87, 0.87, 0.87, 0.87], 0.004)
    naive = simulate(*equal, races=1000, confidence=0.95, seed=2)
    corrected = simulate(*equal, races=1000, seed=2)
    assert eliminated(naive, 0) > 2 * SETTINGS.delta  # the guarantee broken
    assert eliminated(corrected, 0) <= SETTINGS.delta


def test_equivalence_stops_a_race_of_arms_within_epsilon_and_its_claim_holds():
    settings = racing.RaceSettings(epsilon=0.01, delta=0.05, min_seeds=3, max_seeds=30)
    means = [0.870, 0.869, 0.868]
    results = simulate(means, 0.001, races=200, settings=settings, seed=3)
    stopped = [r for r in results if r.reason == "equivalent"]
    assert len(stopped) > 0.9 * len(results) and all(r.seed_runs < r.exhaustive_runs for r in stopped)
    # the claim: every arm left is within epsilon of the best
    assert all(max(means) - means[arm] <= settings.epsilon for r in stopped for arm in r.remaining)


def test_a_wrong_equivalence_claim_is_rare():
    """Arms 0.012 apart with epsilon 0.01: 'equivalent' would be false; it is said in at most δ of races."""
    settings = racing.RaceSettings(epsilon=0.01, delta=0.05, min_seeds=3, max_seeds=30)
    results = simulate([0.870, 0.858], 0.004, races=1000, settings=settings, seed=10)
    assert np.mean([r.reason == "equivalent" for r in results]) <= settings.delta


def test_epsilon_zero_never_stops_early_even_for_identical_arms():
    values = np.full((3, 30), 0.87)
    result = racing.run_race([0, 1, 2], SETTINGS, lambda plan: {a: values[a, : plan[a].stop] for a in plan})
    assert result.reason == "max_seeds" and result.seed_runs == result.exhaustive_runs
    assert result.seeds_to_separate is None  # identical: no seed count separates them


@pytest.mark.parametrize("arm, seed", [(a, s) for a in range(3) for s in range(3)])
def test_a_nan_in_any_position_never_reaches_a_comparison(arm, seed):
    values = np.array([[0.87, 0.86, 0.88], [0.80, 0.81, 0.79], [0.85, 0.84, 0.86]])
    scores = {a: list(values[a]) for a in range(3)}
    scores[arm][seed] = np.nan
    with pytest.raises(ValueError, match="finite scores only"):
        racing.look(scores, [0, 1, 2], 3, 0.99, 0.0)
    settings = racing.RaceSettings(epsilon=0.0, delta=0.05, min_seeds=3, max_seeds=3)
    result = racing.run_race([0, 1, 2], settings, lambda plan: {a: scores[a][: plan[a].stop] for a in plan})
    assert result.arms[arm].diverged == 1 and all(np.isfinite(a.mean) for a in result.arms.values())
    assert result.arms[arm].mean == pytest.approx((sum(values[arm]) - values[arm][seed]) / 3)  # NaN scored as 0
    assert all(isinstance(a, int) for a in result.remaining)  # ranked by finite means


def test_a_rerun_over_recorded_values_takes_the_same_decisions():
    """Resumable: the race is a pure function of the values, so running it again over the finished jobs (each
    skipped, its recorded value returned) ends the same way, looking at the same seeds."""
    (first,) = simulate(*SEPARABLE, races=1, seed=4)
    (again,) = simulate(*SEPARABLE, races=1, seed=4)
    assert [(a.arm, a.seeds, a.left_round) for a in first.arms.values()] == [
        (a.arm, a.seeds, a.left_round) for a in again.arms.values()
    ]


@pytest.mark.parametrize(
    "race, message",
    [
        ({"epsilon": -0.1}, "hydra.sweeper.race.epsilon=-0.1: must be a number >= 0"),
        ({"epsilon": 0.0, "delta": 1.0}, "hydra.sweeper.race.delta=1.0: must be in (0, 1)"),
        ({"epsilon": 0.0, "min_seeds": 5, "max_seeds": 4}, "hydra.sweeper.race.max_seeds=4: must be an integer >= min"),
        ({"epsilon": 0.0, "metric": "test_accuracy"}, "hydra.sweeper.race.metric='test_accuracy': one of"),
    ],
)
def test_bad_race_settings_are_one_line(race, message):
    settings = {"delta": 0.05, "min_seeds": 3, "max_seeds": 30, "seeds_per_round": 1, "metric": "val_accuracy"}
    with pytest.raises(ConfigError) as error:
        racing.settings_of({**settings, **race})
    assert message in str(error.value) and "\n" not in str(error.value)
