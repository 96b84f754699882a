"""The training stream: plain (aug=none), mixup, or CutMix, as batches of (images in [0, 1], soft labels).

Zhang et al. 2018 / the Keras mixup example (the defaults): lambda ~ Beta(alpha, alpha) per sample, from two
Gamma draws, x = lambda*x1 + (1-lambda)*x2 of two independently shuffled streams, the same lambda on the one-hot
labels. The variants: `aug.lam=per_batch` draws one lambda per batch and `aug.pairing=permute` mixes a batch
with a permutation of itself (both as in the paper's own code; the mixing is `keras.layers.MixUp`'s);
`aug=cutmix` pastes a box of the partner image (`keras.layers.CutMix`). Images stay uint8 in memory and the
shuffles run over indices; a whole batch is gathered, scaled and mixed at once inside the tf.data graph.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
from omegaconf import DictConfig

from mixup_sweeps.data import Split

AUTOTUNE = tf.data.AUTOTUNE
_TINY = float(np.finfo(np.float32).tiny)


def sample_beta(size: tf.Tensor | int, alpha: float, seed: tf.Tensor) -> tf.Tensor:
    """Beta(alpha, alpha) as G1 / (G1 + G2) with Gi ~ Gamma(alpha), computed in log space; `seed` is a
    stateless seed (2 integers), so a stream's draws depend on its seed and position only, not on thread order.

    log G(alpha) = log G(alpha + 1) + log(U) / alpha has the same distribution and does not underflow,
    so a tiny alpha gives lambdas near 0 or 1 instead of the 0/0 = NaN the direct ratio produces.
    """
    shape = tf.reshape(tf.cast(size, tf.int32), [1])
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 4)
    log_gammas = [
        tf.math.log(tf.random.stateless_gamma(shape, seeds[2 * i], alpha + 1.0))
        + tf.math.log(tf.random.stateless_uniform(shape, seeds[2 * i + 1], _TINY, 1.0)) / alpha
        for i in range(2)
    ]
    return tf.math.sigmoid(log_gammas[0] - log_gammas[1])


def sample_lambdas(batch_size: tf.Tensor | int, alpha: float, seed: tf.Tensor, lam: str = "per_sample") -> tf.Tensor:
    """`batch_size` lambdas (`aug.lam`): independent ("per_sample"), or one draw repeated ("per_batch")."""
    if lam == "per_batch":
        return tf.repeat(sample_beta(1, alpha, seed), tf.reshape(tf.cast(batch_size, tf.int32), [1]))
    return sample_beta(batch_size, alpha, seed)


def mix_up(
    images_one: tf.Tensor,
    labels_one: tf.Tensor,
    images_two: tf.Tensor,
    labels_two: tf.Tensor,
    alpha: float,
    seed: tf.Tensor,
    lam_mode: str = "per_sample",
) -> tuple[tf.Tensor, tf.Tensor]:
    """Mix two batches with one lambda per sample (or per batch) for both images and labels."""
    lam = sample_lambdas(tf.shape(images_one)[0], alpha, seed, lam_mode)
    image_lam = tf.reshape(lam, [-1, 1, 1, 1])
    label_lam = tf.reshape(lam, [-1, 1])
    images = images_one * image_lam + images_two * (1.0 - image_lam)
    labels = labels_one * label_lam + labels_two * (1.0 - label_lam)
    return images, labels


def mix_up_permuted(
    layer: keras.layers.MixUp,
    images: tf.Tensor,
    labels: tf.Tensor,
    alpha: float,
    seed: tf.Tensor,
    lam_mode: str = "per_sample",
) -> tuple[tf.Tensor, tf.Tensor]:
    """Mix a batch with a permutation of itself: keras.layers.MixUp draws the permutation and does the mixing;
    the lambdas are ours (log-space Beta that cannot give 0/0 at small alpha, and one per batch if asked)."""
    transformation = layer.get_random_transformation({"images": images, "labels": labels})
    transformation["mix_weight"] = sample_lambdas(tf.shape(images)[0], alpha, seed, lam_mode)
    return layer.transform_images(images, transformation), layer.transform_labels(labels, transformation)


def cut_mix(layer: keras.layers.CutMix, images: tf.Tensor, labels: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """keras.layers.CutMix on one batch: a box of a permuted partner, labels weighted by the box's area."""
    mixed = layer({"images": images, "labels": labels})
    return mixed["images"], mixed["labels"]


def _batch_fetcher(split: Split, num_classes: int):
    images = tf.constant(split.images)
    onehot = tf.one_hot(tf.constant(split.labels, dtype=tf.int32), num_classes)

    def fetch(indices: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        return tf.cast(tf.gather(images, indices), tf.float32) / 255.0, tf.gather(onehot, indices)

    return fetch


def _shuffled_index_batches(n: int, batch_size: int, shuffle_buffer: int) -> tf.data.Dataset:
    return tf.data.Dataset.range(n).shuffle(shuffle_buffer, reshuffle_each_iteration=True).batch(batch_size)


def _batch_seeds(seed: int) -> tf.data.Dataset:
    """One stateless seed per batch, different every epoch (like the reshuffles) and fixed by `seed`."""
    return tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)


def training_stream(
    split: Split, aug: DictConfig, batch_size: int, shuffle_buffer: int, num_classes: int, seed: int = 0
) -> tf.data.Dataset:
    """Batches of (float images in [0, 1], soft labels), reshuffled every epoch; `seed` seeds the Keras layers."""
    fetch = _batch_fetcher(split, num_classes)

    def batches() -> tf.data.Dataset:
        return _shuffled_index_batches(len(split), batch_size, shuffle_buffer)

    if aug.name == "none":
        stream = batches().map(fetch, num_parallel_calls=AUTOTUNE)
    elif aug.name == "mixup" and aug.pairing == "two_streams":
        alpha, lam_mode = float(aug.alpha), str(aug.lam)
        stream = tf.data.Dataset.zip(batches(), batches(), _batch_seeds(seed)).map(
            lambda one, two, rng: mix_up(*fetch(one), *fetch(two), alpha, rng, lam_mode), num_parallel_calls=AUTOTUNE
        )
    elif aug.name == "mixup" and aug.pairing == "permute":
        alpha, lam_mode = float(aug.alpha), str(aug.lam)
        layer = keras.layers.MixUp(alpha=alpha, seed=seed)
        stream = tf.data.Dataset.zip(batches(), _batch_seeds(seed)).map(
            lambda ids, rng: mix_up_permuted(layer, *fetch(ids), alpha, rng, lam_mode)
        )
    elif aug.name == "cutmix":
        # CutMix's `factor` range (a, a) means Beta(a, a), as in the CutMix paper (alpha 1.0: uniform area).
        layer = keras.layers.CutMix(factor=(float(aug.alpha), float(aug.alpha)), seed=seed)
        stream = batches().map(lambda ids: cut_mix(layer, *fetch(ids)))
    else:
        raise ValueError(f"unknown augmentation {dict(aug)!r}")
    return stream.prefetch(AUTOTUNE)


def evaluation_stream(split: Split, batch_size: int, num_classes: int) -> tf.data.Dataset:
    """Fixed-order batches of a validation or test split, cached after the first pass."""
    fetch = _batch_fetcher(split, num_classes)
    return tf.data.Dataset.range(len(split)).batch(batch_size).map(fetch).cache().prefetch(AUTOTUNE)
