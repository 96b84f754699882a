"""The integration part (real Hydra, MLflow, Keras in this process or one subprocess) of these tests; beside them:
tests/e2e/test_fmix.py, tests/unit/test_fmix.py.

FMix (Harris et al. 2020), added through the augmentation registry: its masks' statistics and determinism
(NumPy, fast), its stream, its config check, and (slow) the whole path: a packed JAX sweep with the report,
and an exact resume of the fit engine from an epoch's checkpoint."""

from __future__ import annotations

import numpy as np
from keras import ops
from omegaconf import OmegaConf

from mixup_sweeps.data import training_stream
from mixup_sweeps.data.datasets import Split
from tests.unit.test_fmix import FMIX


def test_an_fmix_batch_takes_masked_pixels_of_a_batch_member_and_labels_by_the_masks_mean():
    n = 64  # pixel value = class: every output pixel says where it came from
    split = Split(np.stack([np.full((28, 28, 1), i, np.uint8) for i in range(n)]), np.arange(n, dtype=np.uint8))
    stream = training_stream.TrainingStream(split, OmegaConf.create(FMIX), n, n, seed=1)
    assert stream.form == ("pasted",)
    (images, partners, pasted), soft = stream.batch(0, 0)
    mixed = np.round(ops.convert_to_numpy(training_stream.MixImages(stream.form)([images, partners, pasted])) * 255)
    mixed = mixed.astype(int)[..., 0]
    assert sorted(partners[:, 0, 0, 0]) == sorted(images[:, 0, 0, 0])  # partners come from the batch
    for image, partner, taken, mixed_image, label in zip(images, partners, pasted, mixed, soft):
        expected = np.where(taken.astype(bool), int(partner[0, 0, 0]), int(image[0, 0, 0]))
        np.testing.assert_array_equal(mixed_image, expected)  # each pixel the image's own or the partner's
        own = 1.0 - taken.mean()
        if image[0, 0, 0] != partner[0, 0, 0]:
            np.testing.assert_allclose(label[image[0, 0, 0]], own, atol=1e-6)
            np.testing.assert_allclose(label[partner[0, 0, 0]], 1.0 - own, atol=1e-6)
