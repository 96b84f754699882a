"""The fast part (no training, no subprocess) of these tests; beside them:
tests/e2e/test_racing.py, tests/integration/test_racing.py.

The racing rule (`mixup_sweeps.sweeps.racing`) in thousands of simulated races with known normal noise: the best arm
is eliminated in at most δ of races, in a separable regime the race spends at most half the exhaustive grid, in
a near-equal regime it says the arms cannot be told apart, and the naive rule (an uncorrected 95 % interval at
every look) breaks the guarantee. NumPy only: no training."""

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


def simulate(
    means: list[float], spread: float, races: int, settings: racing.RaceSettings = SETTINGS, confidence=None, seed=0
) -> list[racing.RaceResult]:
    """Races whose arm k on seed s scores means[k] + a seed effect shared by all arms + independent noise."""
    rng = np.random.default_rng(seed)
    results = []
    for _ in range(races):
        shared = rng.normal(0, 0.01, settings.max_seeds)  # a seed's initial weights help or hurt every arm alike
        noise = rng.normal(0, spread / np.sqrt(2), (len(means), settings.max_seeds))  # paired sd = spread
        values = np.asarray(means)[:, None] + shared[None, :] + noise

        def sample(plan, values=values):
            return {arm: values[arm, : plan[arm].stop] for arm in plan}

        results.append(racing.run_race(list(range(len(means))), settings, sample, confidence))
    return results


def best_eliminated(results: list[racing.RaceResult], best: int) -> float:
    return float(np.mean([r.arms[best].left_round is not None for r in results]))


def test_separable_arms_best_kept_and_at_most_half_the_grid_spent():
    results = simulate(*SEPARABLE, races=2000)
    assert best_eliminated(results, best=3) <= SETTINGS.delta
    assert all(r.reason == "one_left" and r.remaining == [3] for r in results)  # every race found the best
    assert np.mean([r.spent for r in results]) <= 0.5  # target: ≤ 50 % of the exhaustive grid's model-epochs


def test_near_equal_arms_keep_the_best_spend_no_more_than_the_grid_and_say_they_cannot_be_told_apart():
    results = simulate(*NEAR_EQUAL, races=2000, seed=1)
    assert best_eliminated(results, best=0) <= SETTINGS.delta
    assert all(r.seed_runs <= r.exhaustive_runs for r in results)
    undecided = [r for r in results if r.reason == "max_seeds"]
    assert len(undecided) > 0.5 * len(results)  # at 30 seeds these arms mostly cannot be separated
    lines = racing.describe(undecided[0], epochs=10)
    assert "cannot be told apart at this budget" in lines[0] and "seeds per arm would separate" in lines[0]


def test_the_naive_rule_eliminates_the_best_arm_too_often():
    """An uncorrected 95 % interval at every look: with equal arms every elimination removes a best arm."""
    equal = ([0.87, 0.87, 0.87, 0.87], 0.004)
    naive = simulate(*equal, races=1000, confidence=0.95, seed=2)
    corrected = simulate(*equal, races=1000, seed=2)
    assert best_eliminated(naive, best=0) > 2 * SETTINGS.delta  # the guarantee broken
    assert best_eliminated(corrected, best=0) <= SETTINGS.delta


def test_equivalence_stops_a_race_of_arms_within_epsilon():
    settings = racing.RaceSettings(epsilon=0.01, delta=0.05, min_seeds=3, max_seeds=30)
    results = simulate([0.870, 0.869, 0.868], 0.001, races=200, settings=settings, seed=3)
    stopped = [r for r in results if r.reason == "equivalent"]
    assert len(stopped) > 0.9 * len(results) and all(r.seed_runs < r.exhaustive_runs for r in stopped)


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
