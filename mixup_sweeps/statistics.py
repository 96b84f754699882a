"""The statistics of a comparison over seeds: Student-t intervals, paired differences, seeds needed, Stein.

A comparison here is the mean paired difference d̄ of a metric between a group and its baseline over seeds.
Its Student-t interval is d̄ ± t(n−1)·s/√n (what `scipy.stats.ttest_1samp(...).confidence_interval()` gives). Adding
seeds *until* that interval is narrow enough (the naive Chow–Robbins rule) under-covers with small first
stages, because the stopping time depends on the spread estimate the interval then uses. Stein (1945) fixes
it: the first `n0` seeds give the spread s0 and with it the total N = max(n0, ⌈(t(n0−1)·s0/h)²⌉); the interval
after all N seeds is d̄_N ± t(n0−1)·s0/√N, with the first stage's t and s0. For normal noise its coverage is
exact (d̄_N is independent of s0), and its half width is at most h whenever N was not capped.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import special  # the t distribution's functions without scipy.stats (0.4 s more per process)

CONFIDENCE = 0.95


def t_quantile(df: int, confidence: float = CONFIDENCE) -> float:
    """The two-sided Student-t quantile every interval of the harness uses (the one place it is computed)."""
    return float(special.stdtrit(df, (1 + confidence) / 2))


@dataclass(frozen=True)
class Interval:
    mean: float
    std: float  # sample standard deviation (ddof 1); NaN for fewer than 2 values
    low: float
    high: float
    n: int

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2


def t_interval(values: Iterable[float | None], confidence: float = CONFIDENCE) -> Interval:
    """Mean and Student-t interval of the values present (None and NaN left out); NaN bounds below 2 values."""
    x = np.asarray([v for v in values if v is not None and not math.isnan(v)], dtype=float)
    if len(x) == 0:
        return Interval(math.nan, math.nan, math.nan, math.nan, 0)
    mean = float(x.mean())
    if len(x) < 2:
        return Interval(mean, math.nan, math.nan, math.nan, 1)
    std = float(x.std(ddof=1))
    if std == 0:  # a constant sample: a zero-width interval is the honest answer (scipy.stats's is NaN)
        return Interval(mean, 0.0, mean, mean, len(x))
    half = t_quantile(len(x) - 1, confidence) * std / math.sqrt(len(x))
    low, high = mean - half, mean + half
    return Interval(mean, std, float(low), float(high), len(x))


def paired_differences(treated: pd.Series, baseline: pd.Series) -> pd.Series:
    """Per seed that both have, treated − baseline (each the mean of its runs of that seed), in seed order.

    Its `t_interval` is the paired t interval (what `scipy.stats.ttest_rel` gives on the matched pairs).
    """
    return (treated.groupby(level=0).mean() - baseline.groupby(level=0).mean()).dropna().sort_index()


def t_test_p(mean: float, std: float, n: int, df: int | None = None) -> float:
    """Two-sided p-value of "the mean difference is 0" for a mean of `n` values with spread `std`
    (`df` = n − 1 unless given: Stein's interval uses the first stage's). 0 for a spread of 0 and a mean that
    is not; NaN below 2 values."""
    df = n - 1 if df is None else df
    if n < 2 or df < 1 or math.isnan(mean) or math.isnan(std):
        return math.nan
    if std == 0:
        return 1.0 if mean == 0 else 0.0
    return float(2 * special.stdtr(df, -abs(mean) / (std / math.sqrt(n))))


def holm(p_values: Sequence[float], alpha: float = 1 - CONFIDENCE) -> tuple[list[bool], list[float]]:
    """Holm's step-down (1979) over a family of tests: which hypotheses to reject so that the chance of any
    false rejection stays at most `alpha` whatever the tests' dependence, and the adjusted p-values
    (min(1, max over the steps so far of (m − rank)·p)). NaN p-values are not tests: never rejected, NaN."""
    tested = sorted((p, i) for i, p in enumerate(p_values) if not math.isnan(p))
    m = len(tested)
    reject, adjusted = [False] * len(p_values), [math.nan] * len(p_values)
    running, stopped = 0.0, False
    for rank, (p, i) in enumerate(tested):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[i] = running
        stopped = stopped or p > alpha / (m - rank)
        reject[i] = not stopped
    return reject, adjusted


def seeds_for_half_width(spread: float, half_width: float, df: int, confidence: float = CONFIDENCE) -> int:
    """n = ⌈(t(df) · s / h)²⌉: the seeds whose paired interval is ±h if the paired spread stays s.

    `df` is the degrees of freedom of the spread estimate (seeds seen − 1), as in Stein's second stage.
    """
    if not (spread >= 0 and half_width > 0 and df >= 1):
        return 0
    return max(df + 1, math.ceil((t_quantile(df, confidence) * spread / half_width) ** 2))


def stein_total(first_stage: Sequence[float], half_width: float, max_seeds: int, confidence: float = CONFIDENCE) -> int:
    """Stein's N from the first stage's paired differences, at most `max_seeds` (and at least the first stage)."""
    n0 = len(first_stage)
    spread = float(np.std(first_stage, ddof=1))
    return min(max(n0, seeds_for_half_width(spread, half_width, n0 - 1, confidence)), max(max_seeds, n0))


@dataclass(frozen=True)
class SteinInterval:
    mean: float
    low: float
    high: float
    seeds: int  # N: all paired seeds
    first_stage: int  # n0

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2


def stein_interval(differences: Sequence[float], first_stage: int, confidence: float = CONFIDENCE) -> SteinInterval:
    """d̄_N ± t(n0−1)·s0/√N, where s0 is the spread of the first `first_stage` differences (in seed order)."""
    values = np.asarray(differences, dtype=float)
    n0, total = first_stage, len(values)
    spread = float(np.std(values[:n0], ddof=1))
    half = t_quantile(n0 - 1, confidence) * spread / math.sqrt(total)
    mean = float(values.mean())
    return SteinInterval(mean, mean - half, mean + half, total, n0)
