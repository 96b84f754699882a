"""Which network a sweep registers (`store.registry`), and under which alias: the rules, without MLflow.

A procedure names a winning *group*: a race its winner, a search its best trial, a compared grid the group its
comparison found better. The alias says how sure: `champion` when the procedure decided with confidence (the
race's winner, a confirmed search, a grid comparison that found the group better), `candidate` otherwise (the
best group by mean: an undecided or equivalent race, an unconfirmed search, no significant difference). Of the
winning group's seeds, the network registered is the one with the best validation score: a choice made on the
test set would make the test accuracy it reports optimistic.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mixup_sweeps.sweeps import search
from mixup_sweeps.sweeps.baseline import same_value
from mixup_sweeps.sweeps.overrides import override_values

CHAMPION, CANDIDATE = "champion", "candidate"
VALIDATION_SCORE = "val_accuracy"  # what picks the seed: the run's final validation accuracy


@dataclass(frozen=True)
class Winner:
    """The group a sweep names (as overrides, or as config values) and how sure it is (`alias`)."""

    values: Mapping[str, Any]  # params column -> value that select the group's runs
    alias: str  # CHAMPION | CANDIDATE
    label: str  # how the sweep's lines name the group
    why: str  # one line: what decided it
    score: str = VALIDATION_SCORE  # the metric that picks the seed

    def selects(self, params: Mapping[str, Any]) -> bool:
        """Whether a run (its params) belongs to the group."""
        return all(same_value(params.get(key), value) for key, value in self.values.items())

    def ranked(self, scores: Mapping[str, float]) -> list[str]:
        """The group's runs (id -> validation score) best first, the one to register first; NaN left out, ties
        in the order given."""
        finite = [run_id for run_id, score in scores.items() if _finite(score)]
        return sorted(finite, key=lambda run_id: -scores[run_id])


def race_winner(record: Mapping[str, Any]) -> Winner | None:
    """A race's winner (champion), else its best remaining arm by mean on the race's metric (candidate)."""
    arms = [arm for arm in record.get("arms", []) if arm.get("outcome") != "eliminated"]
    for arm in arms:
        if arm.get("outcome") == "winner":
            return Winner(override_values(arm.get("overrides", [])), CHAMPION, arm["group"], "the race's winner")
    scored = [arm for arm in arms if _finite(arm.get("mean"))]
    if not scored:
        return None
    best = max(scored, key=lambda arm: arm["mean"])
    why = f"the race ended {record.get('reason', 'undecided')}: the best remaining arm by mean"
    return Winner(override_values(best.get("overrides", [])), CANDIDATE, best["group"], why)


def search_winner(record: Mapping[str, Any]) -> Winner | None:
    """A search's best trial: champion when its confirmation on fresh seeds found it better than the baseline
    (the interval above 0), candidate otherwise (not confirmed, or the interval includes 0 or is below)."""
    best = record.get("best")
    if not best:
        return None
    confirmed = record.get("confirmation") or {}
    sure = _finite(confirmed.get("low")) and confirmed["low"] > 0
    why = "confirmed on fresh seeds" if sure else "the best trial, not confirmed better than the baseline"
    overrides = search.overrides_of(best["params"])
    alias = CHAMPION if sure else CANDIDATE
    return Winner(override_values(overrides), alias, " ".join(overrides), f"trial {best['number']}: {why}")


def grid_winner(groups: Sequence[Mapping[str, Any]]) -> Winner | None:
    """A compared grid's answer: each group as {"values", "label", "mean", "baseline", "better", "worse"}
    (`better`/`worse`: the comparison with the baseline found it so, Holm-corrected). The champion is the best
    by mean of the groups found better than the baseline, or the baseline when every other group was found
    worse; otherwise the best group by mean is the candidate."""
    scored = [g for g in groups if _finite(g.get("mean"))]
    if not scored:
        return None
    better = [g for g in scored if g.get("better")]
    others = [g for g in scored if not g.get("baseline")]
    baseline = [g for g in scored if g.get("baseline")]
    if better:
        best = max(better, key=lambda g: g["mean"])
        return Winner(best["values"], CHAMPION, best["label"], "found better than the baseline")
    if baseline and others and all(g.get("worse") for g in others):
        return Winner(baseline[0]["values"], CHAMPION, baseline[0]["label"], "every other group found worse")
    best = max(scored, key=lambda g: g["mean"])
    return Winner(best["values"], CANDIDATE, best["label"], "no group found better: the best by mean")


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not math.isnan(value) and not math.isinf(value)
