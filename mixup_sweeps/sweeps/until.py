"""Seeds until precise (`hydra.sweeper.until`): Stein's two-stage procedure over a sweep's groups.

Every group runs seeds 0..min_seeds-1; each group's paired differences in test accuracy to its baseline (the
rule of `sweeps.baseline`, `until.baseline` or `aug=none`) then fix how many seeds it needs for a 95 % interval
of ±half_width (at most max_seeds, `statistics.stein_total`), and a second stage runs the missing seeds of those
groups and of their baselines. The rules are here; the variants sweeper launches the stages.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from mixup_sweeps import statistics
from mixup_sweeps.errors import ConfigError
from mixup_sweeps.sweeps.baseline import baseline_setting, baselines_of
from mixup_sweeps.sweeps.overrides import override_values
from mixup_sweeps.sweeps.settings import UntilSettings

KEY = "hydra.sweeper.until"
Group = tuple[str, ...]


def check_until(until: Mapping[str, Any]) -> None:
    """Seeds-until settings that cannot work (when on): `ConfigError`, one line."""
    if until.get("half_width") is None:
        return
    half, low, high = until["half_width"], until["min_seeds"], until["max_seeds"]
    if not (half > 0 and 2 <= low <= high):
        raise ConfigError(
            f"{KEY}: need half_width > 0 and 2 <= min_seeds <= max_seeds, got half_width="
            f"{half}, min_seeds={low}, max_seeds={high}"
        )
    baseline_setting(until.get("baseline"), KEY)


def pair_with_baselines(groups: Sequence[Group], baseline_text: str | None) -> dict[Group, Group | None]:
    """Each group's baseline group (`sweeps.baseline.baselines_of` on the overrides); None for a baseline itself.
    A group without one is a `ConfigError` saying which variant to add."""
    baseline = baseline_setting(baseline_text, KEY)
    values = [override_values(g) for g in groups]
    paired: dict[Group, Group | None] = {}
    for group in groups:
        if baseline.includes(override_values(group)):
            paired[group] = None
            continue
        found = baselines_of(override_values(group), values, baseline)
        if not found:
            raise ConfigError(
                f"{KEY} compares each group with its baseline: add {baseline.override} (a variant) for "
                + " ".join(group)
            )
        paired[group] = tuple(groups[found[0]])
    return paired


def seeds_needed(
    results: Mapping[tuple[Group, int], float], paired: Mapping[Group, Group | None], until: UntilSettings
) -> dict[Group, int]:
    """Seeds each group needs after the first stage: Stein's total for a compared group, and at least as many
    for its baseline (paired: the baseline runs those seeds too)."""
    assert until.half_width is not None
    needed = {group: until.min_seeds for group in paired}
    for group, baseline in paired.items():
        if baseline is None:
            continue
        diffs = [results[(group, s)] - results[(baseline, s)] for s in range(until.min_seeds)]
        needed[group] = statistics.stein_total(diffs, until.half_width, until.max_seeds)
        needed[baseline] = max(needed[baseline], needed[group])
    return needed


def outcome(
    results: Mapping[tuple[Group, int], float],
    paired: Mapping[Group, Group | None],
    needed: Mapping[Group, int],
    until: UntilSettings,
    names: Mapping[Group, str],
) -> list[dict[str, Any]]:
    """Per group: the seeds it used and, for a compared group, its Stein interval and whether it reached
    ±half_width (what the parent run's `seeds_until_result` tag holds)."""
    assert until.half_width is not None
    entries = []
    for group, baseline in paired.items():
        entry: dict[str, Any] = {"group": names[group], "seeds": needed[group]}
        if baseline is not None:
            diffs = [results[(group, s)] - results[(baseline, s)] for s in range(needed[group])]
            interval = statistics.stein_interval(diffs, until.min_seeds)
            entry.update(delta=interval.mean, half_width=interval.half_width,
                         reached=interval.half_width <= until.half_width + 1e-12)  # fmt: skip
        entries.append(entry)
    return entries


def describe_seeds_until(outcome: list[dict[str, Any]], half_width: float) -> str:
    """One line: per group the seeds used and whether its paired 95 % interval reached ±half_width."""
    parts = []
    for entry in outcome:
        if "reached" not in entry:
            parts.append(f"{entry['group']}: {entry['seeds']} seeds (baseline)")
        else:
            verdict = "reached" if entry["reached"] else "NOT reached (max_seeds)"
            parts.append(f"{entry['group']}: {entry['seeds']} seeds, Δ {entry['delta']:+.4f} ± "
                         f"{entry['half_width']:.4f}, {verdict} ±{half_width:g}")  # fmt: skip
    return "; ".join(parts)
