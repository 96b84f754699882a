"""What a run measures after every epoch besides its loss: test accuracy along the way, and how many of the
corrupted training labels the network has memorized.

The mixup paper's label-noise result is about *memorization*: trained long enough, a network fits the wrong
labels too and its test accuracy falls from its best epoch. These probes make that visible per epoch, the same
in both training paths (`train` with Keras's fit, `packed`): each path predicts the images a probe names, the
probe turns the predicted classes into metrics. The best epoch is chosen here, once, for the run and the report.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from omegaconf import DictConfig

from mixup_sweeps.data.datasets import Dataset

EPOCH_TEST_ACCURACY = "epoch_test_accuracy"  # test accuracy after each epoch (trainer.test_every_epoch)
MEMORIZED = "memorized"  # share of the probed corrupted examples predicted as their corrupted label
NOISY_TRUE_LABEL = "noisy_true_label"  # share of them predicted as their true label (the noise ignored)
CLEAN_TRAIN_ACCURACY = "clean_train_accuracy"  # accuracy on the probed training examples with clean labels
EPOCH_METRICS = (EPOCH_TEST_ACCURACY, MEMORIZED, NOISY_TRUE_LABEL, CLEAN_TRAIN_ACCURACY)
BEST_EPOCH = "best_epoch"  # the epoch with the highest val_accuracy (the first of ties)
TEST_ACCURACY_BEST = "test_accuracy_best"  # the test accuracy after that epoch
PREDICT_BATCH = 1000  # images per prediction call of a probe (and of a pack's evaluation)
PROBE_STREAM = 0x9E30B0  # keeps the probe's draw apart from every other use of the seed


@dataclass(frozen=True)
class MemorizationProbe:
    """A fixed set of training examples, corrupted and clean, whose predictions are scored every epoch."""

    indices: np.ndarray  # into the training split, ascending
    given: np.ndarray  # the labels trained on (corrupted for some)
    true: np.ndarray  # the labels before the noise
    corrupted: np.ndarray  # bool: given != true

    def metrics(self, predicted: np.ndarray) -> dict[str, float]:
        """The probe's metrics from the predicted classes of `indices`, in their order."""
        noisy, clean = predicted[self.corrupted], predicted[~self.corrupted]
        metrics = {}
        if len(noisy):
            metrics[MEMORIZED] = float(np.mean(noisy == self.given[self.corrupted]))
            metrics[NOISY_TRUE_LABEL] = float(np.mean(noisy == self.true[self.corrupted]))
        if len(clean):
            metrics[CLEAN_TRAIN_ACCURACY] = float(np.mean(clean == self.given[~self.corrupted]))
        return metrics


def memorization_probe(dataset: Dataset, size: int, seed: int) -> MemorizationProbe | None:
    """Up to `size` corrupted and `size` clean training examples, drawn once from `seed` (all of them when
    there are fewer); None without label noise or with `size` 0."""
    if size <= 0 or dataset.clean_train_labels is None:
        return None
    given, true = dataset.train.labels, dataset.clean_train_labels
    rng = np.random.default_rng([seed, PROBE_STREAM])
    chosen = []
    for mask in (given != true, given == true):
        candidates = np.flatnonzero(mask)
        chosen.append(rng.choice(candidates, size=min(size, len(candidates)), replace=False))
    indices = np.sort(np.concatenate(chosen))
    return MemorizationProbe(indices, given[indices], true[indices], given[indices] != true[indices])


@dataclass(frozen=True)
class EpochProbes:
    """What one run measures after each epoch: the test set (or not) and its memorization probe (or None)."""

    test_labels: np.ndarray | None
    memorization: MemorizationProbe | None

    @classmethod
    def of(cls, cfg: DictConfig, dataset: Dataset) -> EpochProbes:
        labels = dataset.test.labels if cfg.trainer.test_every_epoch else None
        return cls(labels, memorization_probe(dataset, cfg.trainer.memorization_probe, cfg.seed))

    def __bool__(self) -> bool:
        return self.test_labels is not None or self.memorization is not None

    def metrics(self, test_predicted: np.ndarray | None, probe_predicted: np.ndarray | None) -> dict[str, float]:
        """The epoch's probe metrics from predicted classes of the test set and of the probe's examples."""
        metrics = {}
        if self.test_labels is not None and test_predicted is not None:
            metrics[EPOCH_TEST_ACCURACY] = float(np.mean(test_predicted == self.test_labels))
        if self.memorization is not None and probe_predicted is not None:
            metrics.update(self.memorization.metrics(probe_predicted))
        return metrics


def best_epoch(history: Sequence[dict[str, float]]) -> int | None:
    """The epoch (from 1) with the highest val_accuracy, the first of ties: the one early stopping would keep."""
    accuracies = [h.get("val_accuracy", np.nan) for h in history]
    if not accuracies or np.all(np.isnan(accuracies)):
        return None
    return int(np.nanargmax(accuracies)) + 1


def best_epoch_metrics(history: Sequence[dict[str, float]]) -> dict[str, float]:
    """`best_epoch` and the test accuracy after it, for a run whose test set was evaluated every epoch."""
    epoch = best_epoch(history)
    if epoch is None or EPOCH_TEST_ACCURACY not in history[epoch - 1]:
        return {}
    return {BEST_EPOCH: float(epoch), TEST_ACCURACY_BEST: history[epoch - 1][EPOCH_TEST_ACCURACY]}
