"""Mixup math: lambda's distribution, convex combinations, label sums, and the two-stream pipeline."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
from omegaconf import OmegaConf

from mixup_sweeps import augment
from mixup_sweeps.data import Split

SEED = tf.constant([12, 34], tf.int64)
MIXUP = {"name": "mixup", "alpha": 0.4, "lam": "per_sample", "pairing": "two_streams"}


@pytest.fixture(autouse=True)
def seeded():
    tf.random.set_seed(1234)


def test_lambdas_depend_on_the_seed_only():
    one, again, other = (
        augment.sample_beta(100, 0.2, tf.constant(s, tf.int64)).numpy() for s in ([1, 2], [1, 2], [1, 3])
    )
    np.testing.assert_array_equal(one, again)
    assert not np.allclose(one, other)


@pytest.mark.parametrize("alpha", [0.1, 0.2, 0.4, 1.0, 4.0])
def test_lambda_is_beta_alpha_alpha(alpha):
    lam = augment.sample_beta(20000, alpha, SEED).numpy()
    assert np.all((lam >= 0) & (lam <= 1)) and not np.isnan(lam).any()
    assert abs(lam.mean() - 0.5) < 0.02  # symmetric
    expected_var = 1.0 / (4.0 * (2.0 * alpha + 1.0))  # Var of Beta(a, a)
    assert abs(lam.var() - expected_var) / expected_var < 0.08


def test_tiny_alpha_gives_nearly_unmixed_pairs_not_nan():
    lam = augment.sample_beta(5000, 1e-3, SEED).numpy()
    assert not np.isnan(lam).any()
    assert np.mean(np.minimum(lam, 1 - lam) < 1e-3) > 0.95


def _batch(n, seed):
    rng = np.random.default_rng(seed)
    images = rng.random((n, 28, 28, 1), dtype=np.float32)
    labels = np.eye(10, dtype=np.float32)[rng.integers(0, 10, n)]
    return tf.constant(images), tf.constant(labels)


def test_mix_up_is_a_convex_combination_with_the_same_lambda_on_labels():
    (x1, y1), (x2, y2) = _batch(256, 0), _batch(256, 1)
    x, y = augment.mix_up(x1, y1, x2, y2, alpha=0.2, seed=SEED)
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
    stream = augment.training_stream(split, OmegaConf.create(MIXUP), 50, 6400, 10)
    mixed = 0
    for images, labels in stream:
        labels = labels.numpy()
        np.testing.assert_allclose(labels.sum(1), 1.0, atol=1e-5)
        assert np.all(labels >= 0) and labels.shape == (50, 10)
        mixed += int(np.sum(labels.max(1) < 0.99))
        assert images.shape == (50, 28, 28, 1)
    assert mixed > 100  # most samples are real mixtures of two different images


@pytest.mark.parametrize("pairing", ["two_streams", "permute"])
def test_per_batch_lambda_is_one_draw_shared_by_the_whole_batch(pairing):
    split = _split(200)
    aug = OmegaConf.create({**MIXUP, "lam": "per_batch", "pairing": pairing})
    draws, stream = [], augment.training_stream(split, aug, 50, 6400, 10, seed=7)
    for _epoch in range(2):
        for _images, labels in stream:
            labels = labels.numpy()
            np.testing.assert_allclose(labels.sum(1), 1.0, atol=1e-5)
            # two-class samples carry (lam, 1 - lam): every row's pair of weights is the same pair
            two_class = labels[(labels > 1e-6).sum(1) == 2]
            weights = np.sort(two_class, axis=1)[:, -2:]
            np.testing.assert_allclose(weights, np.broadcast_to(weights[0], weights.shape), atol=1e-5)
            draws.append(weights[0, 1])
    assert len(set(np.round(draws, 5))) == len(draws)  # a new lambda for every batch and every epoch


def test_permute_pairing_mixes_each_batch_with_a_permutation_of_itself():
    x, y = _batch(64, 5)
    mixed, soft = augment.mix_up_permuted(keras.layers.MixUp(alpha=0.4, seed=0), x, y, 0.4, SEED)
    mixed, soft, x, y = mixed.numpy(), soft.numpy(), x.numpy(), y.numpy()
    lam = augment.sample_lambdas(64, 0.4, SEED).numpy()  # the same seed gives the lambdas that were used
    partners = []
    for i in np.flatnonzero(np.minimum(lam, 1 - lam) > 1e-3):  # near 0 or 1 the partner is not identifiable
        residual = np.abs(mixed[i] - (lam[i] * x[i] + (1 - lam[i]) * x)).reshape(64, -1).max(1)
        j = int(np.argmin(residual))
        assert residual[j] < 1e-5  # x_i mixed with exactly one member of its own batch
        np.testing.assert_allclose(soft[i], lam[i] * y[i] + (1 - lam[i]) * y[j], atol=1e-5)
        partners.append(j)
    assert len(partners) > 30 and len(set(partners)) == len(partners)  # a permutation: nobody's partner twice


def test_permute_stream_has_soft_labels_and_fresh_lambdas_every_epoch():
    aug = OmegaConf.create({**MIXUP, "pairing": "permute"})
    stream = augment.training_stream(_split(200), aug, 50, 6400, 10, seed=3)
    epochs = [np.concatenate([labels.numpy() for _, labels in stream]) for _ in range(2)]
    for labels in epochs:
        np.testing.assert_allclose(labels.sum(1), 1.0, atol=1e-5)
        assert np.sum(labels.max(1) < 0.99) > 50
    assert not np.allclose(epochs[0], epochs[1])


def test_cutmix_pastes_a_box_of_a_batch_member_and_weights_labels_by_its_area():
    n = 64  # one class per image, pixel value = class: every output pixel says where it came from
    split = Split(
        images=np.stack([np.full((28, 28, 1), i, np.uint8) for i in range(n)]), labels=np.arange(n, dtype=np.uint8)
    )
    stream = augment.training_stream(split, OmegaConf.create({"name": "cutmix", "alpha": 1.0}), n, 6400, n, seed=1)
    smaller_parts = []
    for _ in range(3):
        for mixed, soft in stream:
            for image, label in zip(np.round(mixed.numpy() * 255).astype(int), soft.numpy()):
                values, counts = np.unique(image, return_counts=True)
                assert len(values) <= 2  # own pixels and one partner's box, nothing blended
                np.testing.assert_allclose(label.sum(), 1.0, atol=1e-5)
                # each class's label weight is its share of the pixels (box edges are fractional: < 1 px per side)
                np.testing.assert_allclose(label[values], counts / image.size, atol=0.08)
                if len(values) == 2:
                    smaller_parts.append(counts.min() / image.size)
    # the box area ratio is Beta(1, 1) = uniform, so the smaller part averages E[min(U, 1 - U)] = 0.25
    assert len(smaller_parts) > 150 and 0.2 < np.mean(smaller_parts) < 0.3
