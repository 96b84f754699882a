"""Mixup math: lambda's distribution, convex combinations, label sums, and the two-stream pipeline."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from omegaconf import OmegaConf

from mixup_sweeps import augment
from mixup_sweeps.data import Split


@pytest.fixture(autouse=True)
def seeded():
    tf.random.set_seed(1234)


@pytest.mark.parametrize("alpha", [0.1, 0.2, 0.4, 1.0, 4.0])
def test_lambda_is_beta_alpha_alpha(alpha):
    lam = augment.sample_beta(20000, alpha).numpy()
    assert np.all((lam >= 0) & (lam <= 1)) and not np.isnan(lam).any()
    assert abs(lam.mean() - 0.5) < 0.02  # symmetric
    expected_var = 1.0 / (4.0 * (2.0 * alpha + 1.0))  # Var of Beta(a, a)
    assert abs(lam.var() - expected_var) / expected_var < 0.08


def test_tiny_alpha_gives_nearly_unmixed_pairs_not_nan():
    lam = augment.sample_beta(5000, 1e-3).numpy()
    assert not np.isnan(lam).any()
    assert np.mean(np.minimum(lam, 1 - lam) < 1e-3) > 0.95


def _batch(n, seed):
    rng = np.random.default_rng(seed)
    images = rng.random((n, 28, 28, 1), dtype=np.float32)
    labels = np.eye(10, dtype=np.float32)[rng.integers(0, 10, n)]
    return tf.constant(images), tf.constant(labels)


def test_mix_up_is_a_convex_combination_with_the_same_lambda_on_labels():
    (x1, y1), (x2, y2) = _batch(256, 0), _batch(256, 1)
    x, y = augment.mix_up(x1, y1, x2, y2, alpha=0.2)
    x, y, x1, x2, y1, y2 = (t.numpy() for t in (x, y, x1, x2, y1, y2))
    np.testing.assert_allclose(y.sum(axis=1), 1.0, atol=1e-5)
    # recover each sample's lambda from its label and check the image uses the same one
    differ = np.argmax(y1, 1) != np.argmax(y2, 1)
    lam = y[np.arange(256), np.argmax(y1, 1)]
    np.testing.assert_allclose(
        x[differ],
        lam[differ, None, None, None] * x1[differ] + (1 - lam[differ, None, None, None]) * x2[differ],
        atol=1e-5,
    )
    assert np.all(x >= np.minimum(x1, x2) - 1e-6) and np.all(x <= np.maximum(x1, x2) + 1e-6)


def _split(n=200):
    images = (np.arange(n)[:, None, None, None] % 256 * np.ones((1, 28, 28, 1))).astype(np.uint8)
    return Split(images=images, labels=(np.arange(n) % 10).astype(np.uint8))


def test_plain_stream_visits_every_image_once_per_epoch_with_one_hot_labels():
    split = _split(200)
    stream = augment.training_stream(split, OmegaConf.create({"name": "none"}), 64, 6400, 10)
    for _ in range(2):
        seen, batches = [], 0
        for images, labels in stream:
            batches += 1
            assert images.dtype == tf.float32 and float(tf.reduce_max(images)) <= 1.0
            ids = np.round(images.numpy()[:, 0, 0, 0] * 255).astype(int)
            np.testing.assert_array_equal(np.argmax(labels.numpy(), 1), ids % 10)
            np.testing.assert_allclose(labels.numpy().max(1), 1.0)
            seen += ids.tolist()
        assert batches == 4 and sorted(seen) == list(range(200))


def test_mixup_stream_pairs_two_independent_shuffles_with_soft_labels():
    split = _split(200)
    stream = augment.training_stream(split, OmegaConf.create({"name": "mixup", "alpha": 0.4}), 50, 6400, 10)
    mixed = 0
    for images, labels in stream:
        labels = labels.numpy()
        np.testing.assert_allclose(labels.sum(1), 1.0, atol=1e-5)
        assert np.all(labels >= 0) and labels.shape == (50, 10)
        mixed += int(np.sum(labels.max(1) < 0.99))
        assert images.shape == (50, 28, 28, 1)
    assert mixed > 100  # most samples are real mixtures of two different images
