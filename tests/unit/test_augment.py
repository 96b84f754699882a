"""The fast part (no training, no subprocess) of these tests (beside them: tests/integration/test_augment.py).

The training stream: lambda's distribution, convex combinations, pairings, CutMix boxes, and that epoch e's
batches are a function of (seed, e, config) alone."""

from __future__ import annotations

import numpy as np
import pytest
from keras import ops
from omegaconf import OmegaConf

from mixup_sweeps.data import augmentations, training_stream
from mixup_sweeps.data.datasets import Split

MIXUP = {"name": "mixup", "alpha": 0.4, "lam": "per_sample", "pairing": "two_streams"}


CUTMIX = {"name": "cutmix", "alpha": 1.0}


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def test_lambdas_depend_on_the_seed_only():
    one, again, other = (augmentations.sample_beta(rng(s), 100, 0.2) for s in (1, 1, 2))
    np.testing.assert_array_equal(one, again)
    assert not np.allclose(one, other)


@pytest.mark.parametrize("alpha", [0.1, 0.2, 0.4, 1.0, 4.0])
def test_lambda_is_beta_alpha_alpha(alpha):
    lam = augmentations.sample_beta(rng(), 20000, alpha)
    assert lam.dtype == np.float32 and np.all((lam >= 0) & (lam <= 1)) and not np.isnan(lam).any()
    assert abs(lam.mean() - 0.5) < 0.02  # symmetric
    expected_var = 1.0 / (4.0 * (2.0 * alpha + 1.0))  # Var of Beta(a, a)
    assert abs(lam.var() - expected_var) / expected_var < 0.08


def test_tiny_alpha_gives_nearly_unmixed_pairs_not_nan():
    lam = augmentations.sample_beta(rng(), 5000, 1e-3)
    assert not np.isnan(lam).any()
    assert np.mean(np.minimum(lam, 1 - lam) < 1e-3) > 0.95


def _split(n=200):
    """Image i has every pixel = i % 256 and class i % 10: a mixed pixel says which two images made it."""
    images = (np.arange(n)[:, None, None, None] % 256 * np.ones((1, 28, 28, 1))).astype(np.uint8)
    return Split(images=images, labels=(np.arange(n) % 10).astype(np.uint8))


def test_every_variant_sees_the_images_in_the_same_order():
    """The shuffle has its own random stream: aug=none and mixup of one (seed, epoch) share the first images."""
    split = _split(300)
    orders = [
        training_stream.epoch_plan(split, OmegaConf.create(a), 64, 10, 4, 2).order
        for a in ({"name": "none"}, MIXUP, CUTMIX)
    ]
    assert all(np.array_equal(orders[0], order) for order in orders[1:])


def test_validation_inputs_pass_through_unmixed():
    split = _split(40)
    for aug in ({"name": "none"}, MIXUP, CUTMIX):
        form = augmentations.of(aug).inputs
        inputs = training_stream.unmixed_inputs(split.images, form)
        images = ops.convert_to_numpy(training_stream.MixImages(form)(list(inputs)))
        np.testing.assert_array_equal(images, training_stream.scaled(split))


def test_the_next_epoch_is_drawn_ahead_and_is_the_same_plan():
    """`PlansAhead`: asking for epoch e draws e (if not yet) and starts e + 1, never past `last`; a plan drawn
    ahead is the plan itself (FMix's masks included), whatever thread drew it."""
    drawn: list[int] = []
    split = Split(np.arange(200 * 28 * 28, dtype=np.uint8).reshape(200, 28, 28, 1) % 251, np.arange(200) % 10)
    fmix = OmegaConf.create({"name": "fmix", "alpha": 1.0, "decay_power": 3.0})

    def draw(epoch: int) -> training_stream.EpochPlan:
        drawn.append(epoch)
        return training_stream.epoch_plan(split, fmix, 64, 10, seed=3, epoch=epoch)

    ahead = training_stream.PlansAhead(draw, last=2)
    for epoch in range(3):
        plan = ahead.get(epoch)
        direct = training_stream.epoch_plan(split, fmix, 64, 10, seed=3, epoch=epoch)
        assert np.array_equal(plan.masks["pasted"], direct.masks["pasted"]) and np.array_equal(plan.order, direct.order)
        ahead._pool.submit(lambda: None).result()  # the draw started ahead has finished
        assert drawn == list(range(min(epoch + 2, 3)))
    ahead.close()
    assert drawn == [0, 1, 2]  # nothing past the last epoch
