"""What each sweeper setting is: one dataclass per procedure, the home of its fields and their types.

`hydra.sweeper.until` (seeds until precise), `hydra.sweeper.race` (racing) and `hydra/sweeper=search`'s keys. The
plugins' Hydra schemas are derived from these (`config.schema_of`), the defaults are in conf/hydra/sweeper/, the
value checks beside the code that uses them (`until.check_until`, `racing.settings_of`, `search.settings_of`).
Nothing here imports more than the standard library, so Hydra's plugin scan stays light.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

# Keras's cross-entropy clips every predicted probability to [1e-7, 1 − 1e-7]: no image can cost more than
# −ln(1e-7) ≈ 16.1, so no validation loss can be higher. A diverged job (its loss NaN) is scored with it.
WORST_LOSS = -math.log(1e-7)

# The selection metrics a race may use: validation only (choosing on the test set and reporting the test set is
# the mistake the report never invites). Each: (direction, the test metric the winner is reported with, the
# worst value the metric can take: what a diverged job scores, worse than any job that trained).
METRICS = {
    "val_accuracy": (+1, "test_accuracy", 0.0),  # the last epoch's validation accuracy
    "val_loss": (-1, "test_accuracy", WORST_LOSS),  # the last epoch's validation loss (lower is better)
    "best_val_accuracy": (+1, "test_accuracy_best", 0.0),  # the best epoch's (needs trainer.test_every_epoch=true)
}


@dataclass(frozen=True)
class RaceSettings:
    """`hydra.sweeper.race` when racing is on (defaults: conf/hydra/sweeper/variants.yaml; the ones here serve the
    simulations, which build settings by hand)."""

    epsilon: float  # arms within ±epsilon (in the metric's units) are equivalent for the user's purpose
    delta: float = 0.05  # P(a given best arm is ever eliminated, or an equivalence claim is wrong) ≤ delta
    min_seeds: int = 3
    max_seeds: int = 30
    seeds_per_round: int = 1
    metric: str = "val_accuracy"

    @property
    def rounds(self) -> int:
        """The most looks a race can take: after the first stage and after each later round."""
        return 1 + math.ceil((self.max_seeds - self.min_seeds) / self.seeds_per_round)

    def seeds_after(self, look: int) -> int:
        """Seeds every arm still in the race has after look `look` (1 = the first stage)."""
        return min(self.max_seeds, self.min_seeds + (look - 1) * self.seeds_per_round)

    def tail(self, arms: int) -> float:
        """What each one-sided lower bound may get wrong: δ / ((arms − 1) · looks) (`sweeps.racing` says why
        arms − 1 and not every pair)."""
        return self.delta / (max(1, arms - 1) * self.rounds)

    def confidence(self, arms: int) -> float:
        """The two-sided level whose t quantile is the one-sided bound's: 1 − 2 · tail."""
        return 1.0 - 2 * self.tail(arms)

    @property
    def sign(self) -> int:
        return METRICS[self.metric][0]

    @property
    def test_metric(self) -> str:
        return METRICS[self.metric][1]

    def resolution(self, val_size: int) -> float:
        """The metric's step, the floor of a race's paired spread: one image (1/val_size) for an accuracy; none
        for a loss (a mean of continuous per-image losses: only identical runs tie, and a tie eliminates
        nothing)."""
        return 0.0 if self.metric == "val_loss" else 1.0 / val_size

    @property
    def worst(self) -> float:
        """What a diverged job scores, in the metric's own units."""
        return METRICS[self.metric][2]


@dataclass(frozen=True)
class UntilSettings:
    """`hydra.sweeper.until` (defaults: conf/hydra/sweeper/variants.yaml)."""

    half_width: float | None  # None: off; else the target half width of each paired 95 % interval
    min_seeds: int  # Stein's first stage
    max_seeds: int
    baseline: str | None  # KEY=VALUE of the groups the others are paired with; None: the report's


@dataclass(frozen=True)
class SearchSettings:
    """`hydra.sweeper` of `hydra/sweeper=search` (defaults: conf/hydra/sweeper/search.yaml)."""

    n_trials: int
    seeds_per_trial: int
    metric: str
    sampler: str
    sampler_seed: int | None
    pruner: str
    n_startup_trials: int
    n_warmup_epochs: int
    storage: str | None
    study_name: str | None
    confirm_seeds: int
    baseline: str | None

    @property
    def direction(self) -> str:
        return "maximize" if METRICS[self.metric][0] > 0 else "minimize"

    @property
    def epoch_metric(self) -> str:
        """What a job reports each epoch: the metric itself, or val_accuracy for the best epoch's."""
        return "val_accuracy" if self.metric == "best_val_accuracy" else self.metric

    def study_defining(self) -> dict[str, Any]:
        """The settings that make a study what it is (the sweep fingerprint holds them): not how many trials, where
        it is stored or what confirms its winner, so raising n_trials or confirm_seeds continues the same study."""
        keep = ("seeds_per_trial", "metric", "sampler", "sampler_seed", "pruner", "n_startup_trials", "n_warmup_epochs")
        return {k: v for k, v in asdict(self).items() if k in keep}
