"""The harness's training stream before the one-stream-for-every-backend change, kept as a benchmark reference.

tf.data over uint8 images in memory: two shuffled *index* streams (6,400-element buffers), a whole batch
gathered, scaled and mixed inside the tf.data graph with stateless per-batch lambda seeds, prefetched.
Only `aug=none` and `aug=mixup` (two streams, lambda per sample): what `train_throughput.py` compares.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from mixup_sweeps.data.datasets import Split

AUTOTUNE = tf.data.AUTOTUNE
SHUFFLE_BUFFER = 6400  # BATCH_SIZE * 100, as in the seed
_TINY = float(np.finfo(np.float32).tiny)


def sample_beta(size: tf.Tensor, alpha: float, seed: tf.Tensor) -> tf.Tensor:
    """Beta(alpha, alpha) in log space from stateless Gamma and uniform draws."""
    shape = tf.reshape(tf.cast(size, tf.int32), [1])
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 4)
    log_gammas = [
        tf.math.log(tf.random.stateless_gamma(shape, seeds[2 * i], alpha + 1.0))
        + tf.math.log(tf.random.stateless_uniform(shape, seeds[2 * i + 1], _TINY, 1.0)) / alpha
        for i in range(2)
    ]
    return tf.math.sigmoid(log_gammas[0] - log_gammas[1])


def training_stream(split: Split, aug: str, batch_size: int, num_classes: int, seed: int, alpha: float = 0.2):
    images = tf.constant(split.images)
    onehot = tf.one_hot(tf.constant(split.labels, dtype=tf.int32), num_classes)

    def fetch(indices):
        return tf.cast(tf.gather(images, indices), tf.float32) / 255.0, tf.gather(onehot, indices)

    def batches():
        return (
            tf.data.Dataset.range(len(split)).shuffle(SHUFFLE_BUFFER, reshuffle_each_iteration=True).batch(batch_size)
        )

    def mix(one, two, rng):
        (x1, y1), (x2, y2) = fetch(one), fetch(two)
        lam = sample_beta(tf.shape(x1)[0], alpha, rng)
        x_lam, y_lam = tf.reshape(lam, [-1, 1, 1, 1]), tf.reshape(lam, [-1, 1])
        return x1 * x_lam + x2 * (1.0 - x_lam), y1 * y_lam + y2 * (1.0 - y_lam)

    if aug == "none":
        return batches().map(fetch, num_parallel_calls=AUTOTUNE).prefetch(AUTOTUNE)
    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
    return tf.data.Dataset.zip(batches(), batches(), seeds).map(mix, num_parallel_calls=AUTOTUNE).prefetch(AUTOTUNE)
