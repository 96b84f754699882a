"""How far predicted confidence is from accuracy: expected calibration error (ECE) and negative log-likelihood.

Mixup is reported to give better-calibrated networks (Thulasidasan et al. 2019); these numbers let a sweep check.
ECE follows Guo et al. 2017: the top-class confidence split into equal-width bins over (0, 1], and the
bin-size-weighted mean of |accuracy - mean confidence| per bin.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ECE_BINS = 15


@dataclass
class Reliability:
    """Per-bin counts, accuracy and mean confidence; empty bins have count 0 and NaN accuracy/confidence."""

    edges: np.ndarray  # (bins + 1,)
    counts: np.ndarray
    accuracy: np.ndarray
    confidence: np.ndarray

    @property
    def ece(self) -> float:
        filled = self.counts > 0
        weights = self.counts[filled] / self.counts.sum()
        return float(np.sum(weights * np.abs(self.accuracy[filled] - self.confidence[filled])))


def reliability(probabilities: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> Reliability:
    """Bin the predictions by top-class confidence; a confidence c falls in the bin (lo, hi] holding it."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, bins - 1)
    counts = np.bincount(index, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracy = np.bincount(index, weights=correct, minlength=bins) / counts
        mean_confidence = np.bincount(index, weights=confidence, minlength=bins) / counts
    return Reliability(edges, counts, accuracy, mean_confidence)


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> float:
    return reliability(probabilities, labels, bins).ece


def negative_log_likelihood(probabilities: np.ndarray, labels: np.ndarray, eps: float = 1e-7) -> float:
    """Mean -log p(true class), with p clipped at `eps` as Keras's cross-entropy does."""
    picked = probabilities[np.arange(len(labels)), labels]
    return float(-np.mean(np.log(np.clip(picked, eps, 1.0))))
