"""The training stream: plain (aug=none) or mixup of two independently shuffled streams, as in the seed.

Zhang et al. 2018 / the Keras mixup example: lambda ~ Beta(alpha, alpha) per sample, from two Gamma draws,
x = lambda*x1 + (1-lambda)*x2 and the same lambda on the one-hot labels. Images stay uint8 in memory and the
shuffles run over indices; a whole batch is gathered, scaled and mixed at once inside the tf.data graph.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from omegaconf import DictConfig

from mixup_sweeps.data import Split

AUTOTUNE = tf.data.AUTOTUNE
_TINY = float(np.finfo(np.float32).tiny)


def sample_beta(size: tf.Tensor | int, alpha: float) -> tf.Tensor:
    """Beta(alpha, alpha) as G1 / (G1 + G2) with Gi ~ Gamma(alpha), computed in log space.

    log G(alpha) = log G(alpha + 1) + log(U) / alpha has the same distribution and does not underflow,
    so a tiny alpha gives lambdas near 0 or 1 instead of the 0/0 = NaN the direct ratio produces.
    """
    shape = tf.reshape(tf.cast(size, tf.int32), [1])
    log_gammas = [
        tf.math.log(tf.random.gamma(shape, alpha + 1.0)) + tf.math.log(tf.random.uniform(shape, _TINY, 1.0)) / alpha
        for _ in range(2)
    ]
    return tf.math.sigmoid(log_gammas[0] - log_gammas[1])


def mix_up(
    images_one: tf.Tensor, labels_one: tf.Tensor, images_two: tf.Tensor, labels_two: tf.Tensor, alpha: float
) -> tuple[tf.Tensor, tf.Tensor]:
    """Mix two batches sample by sample with one lambda per sample for both images and labels."""
    lam = sample_beta(tf.shape(images_one)[0], alpha)
    image_lam = tf.reshape(lam, [-1, 1, 1, 1])
    label_lam = tf.reshape(lam, [-1, 1])
    images = images_one * image_lam + images_two * (1.0 - image_lam)
    labels = labels_one * label_lam + labels_two * (1.0 - label_lam)
    return images, labels


def _batch_fetcher(split: Split, num_classes: int):
    images = tf.constant(split.images)
    onehot = tf.one_hot(tf.constant(split.labels, dtype=tf.int32), num_classes)

    def fetch(indices: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        return tf.cast(tf.gather(images, indices), tf.float32) / 255.0, tf.gather(onehot, indices)

    return fetch


def _shuffled_index_batches(n: int, batch_size: int, shuffle_buffer: int) -> tf.data.Dataset:
    return tf.data.Dataset.range(n).shuffle(shuffle_buffer, reshuffle_each_iteration=True).batch(batch_size)


def training_stream(
    split: Split, aug: DictConfig, batch_size: int, shuffle_buffer: int, num_classes: int
) -> tf.data.Dataset:
    """Batches of (float images in [0, 1], soft labels), reshuffled every epoch."""
    fetch = _batch_fetcher(split, num_classes)
    if aug.name == "none":
        stream = _shuffled_index_batches(len(split), batch_size, shuffle_buffer).map(fetch, num_parallel_calls=AUTOTUNE)
    elif aug.name == "mixup":
        alpha = float(aug.alpha)
        pairs = tf.data.Dataset.zip(
            _shuffled_index_batches(len(split), batch_size, shuffle_buffer),
            _shuffled_index_batches(len(split), batch_size, shuffle_buffer),
        )
        stream = pairs.map(lambda one, two: mix_up(*fetch(one), *fetch(two), alpha), num_parallel_calls=AUTOTUNE)
    else:
        raise ValueError(f"unknown aug.name {aug.name!r}")
    return stream.prefetch(AUTOTUNE)


def evaluation_stream(split: Split, batch_size: int, num_classes: int) -> tf.data.Dataset:
    """Fixed-order batches of a validation or test split, cached after the first pass."""
    fetch = _batch_fetcher(split, num_classes)
    return tf.data.Dataset.range(len(split)).batch(batch_size).map(fetch).cache().prefetch(AUTOTUNE)
