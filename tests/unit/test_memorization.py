"""The fast part (no training, no subprocess) of these tests (beside them: tests/e2e/test_memorization.py).

Label noise in the memorizing regime (#21): per-epoch probes (test accuracy; the corrupted labels' memorized
share), the best-validation epoch's test accuracy, and the report's best-epoch columns and memorization figure."""

from __future__ import annotations

import numpy as np
import pytest

from mixup_sweeps.data import datasets
from mixup_sweeps.train import probes
from tests.helpers import dataset_config, write_fake_dataset


def noisy_dataset(tmp_path, fraction=0.5, seed=0, **values):
    directory = write_fake_dataset(tmp_path / "data", n_train=220)
    return datasets.load(dataset_config(directory, val_size=20, label_noise=fraction, **values), seed)


def test_probe_metrics_count_memorized_true_label_and_clean_accuracy():
    given = np.array([1, 2, 3, 4, 5, 6])
    true = np.array([0, 0, 0, 4, 5, 6])  # the first three are corrupted
    probe = probes.MemorizationProbe(np.arange(6), given, true, given != true)
    metrics = probe.metrics(np.array([1, 0, 7, 4, 5, 0]))  # memorized 1, true label 1, neither 1; clean 2 of 3
    assert metrics == pytest.approx({probes.MEMORIZED: 1 / 3, probes.NOISY_TRUE_LABEL: 1 / 3,
                                     probes.CLEAN_TRAIN_ACCURACY: 2 / 3})  # fmt: skip


def test_the_probe_draws_up_to_its_size_from_corrupted_and_clean_examples_fixed_by_the_seed(tmp_path):
    dataset = noisy_dataset(tmp_path)  # 200 training images, 100 corrupted
    probe = probes.memorization_probe(dataset, 30, seed=3)
    assert probe is not None and probe.corrupted.sum() == 30 and (~probe.corrupted).sum() == 30
    assert np.array_equal(probe.given, dataset.train.labels[probe.indices])
    assert np.array_equal(probe.true, dataset.clean_train_labels[probe.indices])
    assert np.array_equal(probe.corrupted, probe.given != probe.true)
    assert np.array_equal(probes.memorization_probe(dataset, 30, seed=3).indices, probe.indices)
    assert not np.array_equal(probes.memorization_probe(dataset, 30, seed=4).indices, probe.indices)
    every = probes.memorization_probe(dataset, 10_000, seed=3)  # fewer than asked: all of them
    assert every is not None and len(every.indices) == len(dataset.train)


def test_no_probe_without_noise_or_with_size_zero(tmp_path):
    assert probes.memorization_probe(noisy_dataset(tmp_path), 0, seed=0) is None
    clean = noisy_dataset(tmp_path, fraction=0.0)
    assert clean.clean_train_labels is None and probes.memorization_probe(clean, 30, seed=0) is None


def test_validation_labels_stay_clean_unless_noisy_validation(tmp_path):
    clean_val = datasets.load(dataset_config(write_fake_dataset(tmp_path / "d", n_train=1020), val_size=1000), 0).val
    kept = datasets.load(dataset_config(tmp_path / "d", val_size=1000, label_noise=0.3), 0)
    assert np.array_equal(kept.val.labels, clean_val.labels) and not kept.noisy_validation
    noisy = datasets.load(dataset_config(tmp_path / "d", val_size=1000, label_noise=0.3, noisy_validation=True), 0)
    assert noisy.noisy_validation and np.mean(noisy.val.labels != clean_val.labels) == pytest.approx(0.3)
    assert np.array_equal(noisy.train.labels, kept.train.labels)  # the training noise does not change


def test_the_best_epoch_is_the_first_with_the_highest_validation_accuracy():
    history = [{"val_accuracy": a, probes.EPOCH_TEST_ACCURACY: t} for a, t in [(0.5, 0.4), (0.7, 0.6), (0.7, 0.65)]]
    assert probes.best_epoch(history) == 2
    assert probes.best_epoch_metrics(history) == {probes.BEST_EPOCH: 2.0, probes.TEST_ACCURACY_BEST: 0.6}
    assert probes.best_epoch([]) is None
    assert probes.best_epoch_metrics([{"val_accuracy": 0.5}]) == {}  # test set not evaluated every epoch
