"""Seeds until precise: Stein's two-stage procedure keeps its coverage where the naive rule does not."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mixup_sweeps import statistics

EXPERIMENTS = 10_000  # simulated comparisons per setting; the standard error of a 0.95 coverage is 0.002


def simulate(procedure, first_stage: int, sigma: float, half_width: float, max_seeds: int, seed: int = 0):
    """Run `procedure` on experiments with known normal paired noise; coverage of the true difference, seeds used."""
    rng = np.random.default_rng(seed)
    truth = 0.003
    covered, used, widths = 0, [], []
    for _ in range(EXPERIMENTS):
        draws = rng.normal(truth, sigma, max_seeds)  # the paired differences seed 0, 1, ... would give
        low, high, n = procedure(draws, first_stage, half_width, max_seeds)
        covered += low <= truth <= high
        used.append(n)
        widths.append((high - low) / 2)
    return covered / EXPERIMENTS, np.array(used), np.array(widths)


def stein(draws, first_stage, half_width, max_seeds):
    total = statistics.stein_total(draws[:first_stage], half_width, max_seeds)
    interval = statistics.stein_interval(draws[:total], first_stage)
    return interval.low, interval.high, total


def naive(draws, first_stage, half_width, max_seeds):
    """Chow–Robbins: add a seed until the ordinary t-interval is ±half_width (or max_seeds)."""
    for n in range(first_stage, max_seeds + 1):
        half = statistics.t_quantile(n - 1) * np.std(draws[:n], ddof=1) / math.sqrt(n)
        if half <= half_width:
            break
    mean = float(np.mean(draws[:n]))
    return mean - half, mean + half, n


@pytest.mark.parametrize("first_stage", [3, 5])
def test_stein_covers_at_the_nominal_level_and_reaches_the_width(first_stage):
    coverage, used, widths = simulate(stein, first_stage, sigma=0.006, half_width=0.005, max_seeds=1000)
    assert coverage >= 0.94
    assert used.min() >= first_stage and np.all(widths <= 0.005 + 1e-12)  # never capped here: always reached
    expected = (statistics.t_quantile(first_stage - 1) * 0.006 / 0.005) ** 2  # E[N] ≈ (t·σ/h)², plus rounding up
    assert expected < used.mean() < expected + 2.5


def test_stein_with_a_cap_still_covers_and_stops_at_max_seeds():
    coverage, used, widths = simulate(stein, 5, sigma=0.01, half_width=0.005, max_seeds=30)
    assert coverage >= 0.94
    assert used.max() == 30 and (used == 30).any() and np.all(widths[used < 30] <= 0.005 + 1e-12)


def test_the_naive_rule_under_covers_which_is_why_stein_is_used():
    coverage, _, _ = simulate(naive, 3, sigma=0.006, half_width=0.005, max_seeds=1000)
    assert coverage < 0.935


def test_seeds_for_half_width_formula():
    # n = ceil((t(df) * s / h)^2): t(4) = 2.776, s = 0.01, h = 0.005 -> (5.553)^2 = 30.8 -> 31
    assert statistics.seeds_for_half_width(0.01, 0.005, df=4) == 31
    assert statistics.seeds_for_half_width(0.0, 0.005, df=4) == 5  # no spread: the seeds already seen
    assert statistics.stein_total([0.01, 0.01, 0.01], 0.005, max_seeds=30) == 3


def test_holm_step_down_on_a_known_family():
    reject, adjusted = statistics.holm([0.01, 0.04, 0.03, 0.005, math.nan])
    assert reject == [True, False, False, True, False]
    assert adjusted[:4] == pytest.approx([0.03, 0.06, 0.06, 0.02]) and math.isnan(adjusted[4])
    assert statistics.holm([0.04]) == ([True], [0.04])  # one comparison: its own decision


@pytest.mark.parametrize("groups", [2, 5])
def test_holm_keeps_the_family_wise_error_of_a_table_at_5_percent(groups):
    """Tables of `groups` comparisons with the baseline and no true effect (5 seeds, paired by seed: every
    comparison shares the baseline's noise): how often does any verdict of a table say better or worse?"""
    rng = np.random.default_rng(7)
    tables, seeds = 4000, 5
    any_holm = any_plain = 0
    for _ in range(tables):
        seed_effect = rng.normal(0, 0.01, seeds)  # a seed's luck, shared by all its runs
        baseline = seed_effect + rng.normal(0, 0.004, seeds)
        p_values = []
        for _ in range(groups):
            diffs = seed_effect + rng.normal(0, 0.004, seeds) - baseline
            p_values.append(statistics.t_test_p(float(diffs.mean()), float(diffs.std(ddof=1)), seeds))
        any_holm += any(statistics.holm(p_values)[0])
        any_plain += any(p < 0.05 for p in p_values)
    se = math.sqrt(0.05 * 0.95 / tables)
    assert any_holm / tables <= 0.05 + 3 * se  # the whole table's verdicts hold at 95 %
    assert any_plain / tables > 0.05 + 3 * se  # uncorrected, they do not (0.09 with 2 groups, 0.19 with 5)


def test_the_t_interval_and_p_value_are_scipy_stats_ones():
    """The t functions come from scipy.special (lighter to import); they must give what scipy.stats gives."""
    from scipy import stats

    rng = np.random.default_rng(3)
    for n in (2, 3, 7, 40):
        x = rng.normal(0.01, 0.02, n)
        interval = statistics.t_interval(x)
        low, high = stats.ttest_1samp(x, 0.0).confidence_interval(statistics.CONFIDENCE)
        assert (interval.low, interval.high) == pytest.approx((low, high), rel=1e-12)
        p = statistics.t_test_p(float(x.mean()), float(x.std(ddof=1)), n)
        assert p == pytest.approx(stats.ttest_1samp(x, 0.0).pvalue, rel=1e-10)
        assert statistics.t_quantile(n - 1) == pytest.approx(stats.t.ppf(0.975, n - 1), rel=1e-12)
