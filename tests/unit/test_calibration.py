"""ECE and NLL on hand-made predictions whose answers are worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mixup_sweeps import calibration


def _predictions(confidences: list[float], correct: list[bool], num_classes: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Rows whose top class 0 has the given probability (the rest spread evenly); label 0 if correct, else 1."""
    probs = np.array([[c] + [(1 - c) / (num_classes - 1)] * (num_classes - 1) for c in confidences])
    labels = np.array([0 if ok else 1 for ok in correct])
    return probs, labels


def test_perfectly_calibrated_bins_have_zero_ece():
    # 10 predictions at 0.8 confidence, 8 right: accuracy 0.8 = confidence
    probs, labels = _predictions([0.8] * 10, [True] * 8 + [False] * 2)
    assert calibration.expected_calibration_error(probs, labels) == pytest.approx(0.0, abs=1e-12)


def test_ece_is_the_bin_weighted_gap_between_accuracy_and_confidence():
    # bin (0.9, 0.9333]: 4 predictions at 0.92, 2 right -> gap |0.5 - 0.92| = 0.42, weight 4/10
    # bin (0.6, 0.6667]: 6 predictions at 0.65, all right -> gap |1.0 - 0.65| = 0.35, weight 6/10
    probs, labels = _predictions([0.92] * 4 + [0.65] * 6, [True, True, False, False] + [True] * 6)
    expected = 0.4 * 0.42 + 0.6 * 0.35
    assert calibration.expected_calibration_error(probs, labels) == pytest.approx(expected, abs=1e-9)
    bins = calibration.reliability(probs, labels)
    assert len(bins.counts) == 15 and bins.counts.sum() == 10
    assert bins.counts[13] == 4 and bins.counts[9] == 6  # 0.92 in (13/15, 14/15], 0.65 in (9/15, 10/15]
    assert math.isnan(bins.accuracy[0])  # empty bins stay empty, not zero


def test_bins_are_closed_on_the_right_and_confidence_one_is_counted():
    probs, labels = _predictions([1.0, 2 / 15 + 1e-12, 2 / 15], [True, True, True])
    bins = calibration.reliability(probs, labels)
    assert bins.counts[14] == 1 and bins.counts[2] == 1 and bins.counts[1] == 1


def test_nll_is_the_mean_negative_log_probability_of_the_true_class():
    probs, labels = _predictions([0.5, 0.25], [True, True])
    assert calibration.negative_log_likelihood(probs, labels) == pytest.approx(-(math.log(0.5) + math.log(0.25)) / 2)
    # a confidently wrong prediction is clipped, not infinite
    hard = np.eye(10)[[0]]
    assert calibration.negative_log_likelihood(hard, np.array([1])) == pytest.approx(-math.log(1e-7))
