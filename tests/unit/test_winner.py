"""Which network a sweep registers and under which alias (`sweeps.winner`, issue 39): the race's winner, a
confirmed search and a grid's significant group are `champion`; anything less sure is the best group by mean as
`candidate`; of the group's seeds the best on validation, never on test."""

from __future__ import annotations

import math

from mixup_sweeps.sweeps import winner

ARMS = [
    {"group": "aug.alpha=0.2", "overrides": ["aug.alpha=0.2"], "mean": 0.81, "outcome": "undecided"},
    {"group": "aug.alpha=1.0", "overrides": ["aug.alpha=1.0"], "mean": 0.83, "outcome": "undecided"},
    {"group": "aug=none", "overrides": ["aug=none"], "mean": 0.90, "outcome": "eliminated"},
]


def test_a_race_winner_is_champion_and_an_undecided_race_gives_its_best_remaining_arm_as_candidate():
    decided = [dict(ARMS[0], outcome="winner"), dict(ARMS[2])]
    chosen = winner.race_winner({"arms": decided, "reason": "one_left"})
    assert chosen is not None and (chosen.alias, chosen.label) == ("champion", "aug.alpha=0.2")
    assert chosen.values == {"aug.alpha": "0.2"}
    undecided = winner.race_winner({"arms": ARMS, "reason": "max_seeds"})
    # the eliminated arm's higher mean does not count: it left the race
    assert undecided is not None and (undecided.alias, undecided.label) == ("candidate", "aug.alpha=1.0")
    assert "max_seeds" in undecided.why
    assert winner.race_winner({"arms": [dict(ARMS[0], mean=math.nan)]}) is None  # every seed diverged


def test_a_search_is_champion_only_when_its_confirmation_interval_is_above_zero():
    best = {"number": 3, "params": {"aug.alpha": 0.4}, "value": 0.8}
    confirmed = winner.search_winner({"best": best, "confirmation": {"low": 0.001, "high": 0.02}})
    assert confirmed is not None and confirmed.alias == "champion" and confirmed.values == {"aug.alpha": "0.4"}
    for confirmation in (None, {"low": -0.01, "high": 0.02}, {"note": "confirmation failed"}):
        chosen = winner.search_winner({"best": best, "confirmation": confirmation})
        assert chosen is not None and chosen.alias == "candidate"
    assert winner.search_winner({"best": None}) is None  # no trial completed


def group(label: str, mean: float, baseline: bool = False, better: bool = False, worse: bool = False) -> dict:
    return {"values": {"aug.alpha": label}, "label": label, "mean": mean, "baseline": baseline, "better": better,
            "worse": worse}  # fmt: skip


def test_a_grid_champion_is_a_group_found_better_or_the_baseline_when_every_other_was_found_worse():
    better = winner.grid_winner([group("0", 0.80, baseline=True), group("0.2", 0.82, better=True), group("1", 0.84)])
    # the best *significant* group: 1.0 has the higher mean but was not found better
    assert better is not None and (better.alias, better.label) == ("champion", "0.2")
    worse = winner.grid_winner([group("0", 0.80, baseline=True), group("0.2", 0.7, worse=True),
                                group("1", 0.6, worse=True)])  # fmt: skip
    assert worse is not None and (worse.alias, worse.label) == ("champion", "0")
    unsure = winner.grid_winner([group("0", 0.80, baseline=True), group("0.2", 0.7, worse=True), group("1", 0.85)])
    assert unsure is not None and (unsure.alias, unsure.label) == ("candidate", "1")
    alone = winner.grid_winner([group("0", 0.80, baseline=True)])  # nothing to compare: the one group, unsure
    assert alone is not None and alone.alias == "candidate"
    assert winner.grid_winner([group("0", math.nan)]) is None


def test_the_seed_registered_is_the_best_on_validation_with_nan_left_out_and_ties_to_the_first():
    chosen = winner.Winner({"aug.alpha": "0.2"}, "champion", "aug.alpha=0.2", "test")
    assert chosen.ranked({"a": 0.5, "b": math.nan, "c": 0.7, "d": 0.7}) == ["c", "d", "a"]
    assert chosen.ranked({"a": math.nan}) == []
    assert chosen.score == "val_accuracy"  # never the test set
    assert chosen.selects({"aug.alpha": "0.2", "seed": "3"}) and not chosen.selects({"aug.alpha": "0.4"})
    assert winner.Winner({"aug.name": "none", "aug.alpha": math.nan}, "c", "", "").selects({"aug.name": "none"})
