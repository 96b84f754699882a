"""How many seeds a paired comparison needs, and Stein's two-stage procedure that decides it during a sweep.

A comparison here is the mean paired difference d̄ of a metric between a group and its baseline over seeds.
Its Student-t interval is d̄ ± t(n−1)·s/√n. Adding seeds *until* that interval is narrow enough (the naive
Chow–Robbins rule) under-covers with small first stages, because the stopping time depends on the spread
estimate the interval then uses. Stein (1945) fixes it: the first `n0` seeds give the spread s0 and with it
the total N = max(n0, ⌈(t(n0−1)·s0/h)²⌉); the interval after all N seeds is d̄_N ± t(n0−1)·s0/√N, with the
first stage's t and s0. For normal noise its coverage is exact (d̄_N is independent of s0), and its half
width is at most h whenever N was not capped.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

CONFIDENCE = 0.95


def t_quantile(df: int, confidence: float = CONFIDENCE) -> float:
    return float(stats.t.ppf((1 + confidence) / 2, df))


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
