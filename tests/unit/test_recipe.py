"""The recipe's rules (no training): each schedule's learning rate per epoch against its formula, the checks of
the recipe keys, and the crops and flips of `trainer.input_aug` in the epoch plan and in the step."""

from __future__ import annotations

import math

import numpy as np
import pytest
from keras import ops
from omegaconf import OmegaConf

from mixup_sweeps.data import input_aug, training_stream
from mixup_sweeps.data.datasets import Split
from mixup_sweeps.errors import ConfigError
from mixup_sweeps.job.compose import validate
from mixup_sweeps.train import recipe
from tests.helpers import compose_config

MIXUP = {"name": "mixup", "alpha": 1.0, "lam": "per_batch", "pairing": "permute"}


def trainer(**keys) -> object:
    base = {"learning_rate": 0.1, "epochs": 200, "schedule": "constant", "milestones": [], "step_factor": 0.1,
            "warmup_epochs": 0}  # fmt: skip
    return OmegaConf.create({**base, **keys})


def test_constant_is_the_rate_every_epoch():
    assert {recipe.learning_rate(trainer(), e) for e in range(200)} == {0.1}


def test_step_is_the_papers_rate():
    """The mixup paper's code: 0.1, divided by 10 from epoch 100 and again from epoch 150."""
    t = trainer(schedule="step", milestones=[100, 150])
    rates = [recipe.learning_rate(t, e) for e in range(200)]
    assert rates[:100] == [0.1] * 100
    assert all(math.isclose(r, 0.01) for r in rates[100:150]) and all(math.isclose(r, 0.001) for r in rates[150:])


def test_cosine_after_warmup_follows_its_formula():
    t = trainer(schedule="cosine", epochs=20, warmup_epochs=5)
    for e in range(20):
        expected = 0.1 * (e + 1) / 5 if e < 5 else 0.1 * 0.5 * (1 + math.cos(math.pi * (e - 5) / 15))
        assert math.isclose(recipe.learning_rate(t, e), expected), e
    assert math.isclose(recipe.learning_rate(t, 4), 0.1) and recipe.learning_rate(t, 5) == 0.1  # the ramp ends at it
    assert recipe.learning_rate(t, 19) < 0.1 * 0.02  # near 0 at the end


def test_warmup_then_step():
    t = trainer(schedule="step", epochs=10, milestones=[6], warmup_epochs=2, step_factor=0.5)
    assert [recipe.learning_rate(t, e) for e in range(10)] == [0.05, 0.1, 0.1, 0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.05]


@pytest.mark.parametrize(
    "overrides, key",
    [
        (["trainer.optimizer=rmsprop"], "trainer.optimizer"),
        (["trainer.schedule=linear"], "trainer.schedule"),
        (["trainer.schedule=step", "trainer.milestones=[6,3]"], "trainer.milestones"),
        (["trainer.schedule=step", "trainer.milestones=[3,10]"], "trainer.milestones"),  # past trainer.epochs=10
        (["trainer.milestones=[3]"], "trainer.milestones"),  # constant has none
        (["trainer.optimizer=sgd", "trainer.weight_decay=-0.0001"], "trainer.weight_decay"),
        (["trainer.weight_decay=0.0005"], "trainer.weight_decay"),  # adam: use adamw or sgd
        (["trainer.schedule=cosine", "trainer.warmup_epochs=10"], "trainer.warmup_epochs"),
        (["trainer.crop_padding=-1"], "trainer.crop_padding"),
        (["trainer.input_aug=cutout"], "trainer.input_aug"),
        (["trainer.optimizer=sgd", "trainer.momentum=1.0"], "trainer.momentum"),
        (["trainer.step_factor=0"], "trainer.step_factor"),
        (["model=preact_resnet18", "dataset.image_shape=[4,4,1]"], "model.widths"),  # 3 stride-2 stages need 8x8
        (["model=resnet20", "model.depth=21"], "model.depth"),
    ],
)
def test_a_recipe_that_cannot_work_is_one_line_naming_its_key(overrides, key):
    with pytest.raises(ConfigError) as error:
        validate(compose_config(overrides))
    message = str(error.value)
    assert f" {key}=" in f" {message}" and "\n" not in message, message


def test_the_papers_recipe_is_valid():
    validate(compose_config(["experiment=paper_cifar10"]))
    validate(compose_config(["experiment=recipe_fashion_mnist"]))


def _split(n: int) -> Split:
    images = np.random.default_rng(0).integers(0, 256, (n, 8, 8, 1), dtype=np.uint8)
    return Split(images, np.arange(n) % 10)


def test_every_arm_of_a_seed_sees_the_same_crops_and_flips():
    split = _split(500)
    none, mixup = (
        training_stream.epoch_plan(split, OmegaConf.create(aug), 64, 10, seed=3, epoch=2, crop_padding=4)
        for aug in ({"name": "none"}, MIXUP)
    )
    assert none.crops is not None and mixup.crops is not None
    np.testing.assert_array_equal(none.order, mixup.order)
    np.testing.assert_array_equal(none.crops[:, :3], mixup.crops[:, :3])  # the images' own crops and flips
    shifts, flips = none.crops[:, :2], none.crops[:, 2]
    assert shifts.min() == -4 and shifts.max() == 4 and set(np.unique(flips)) == {0, 1}
    assert abs(flips.mean() - 0.5) < 0.08 and abs(shifts.mean()) < 0.5
    other_epoch = training_stream.epoch_plan(split, OmegaConf.create(MIXUP), 64, 10, 3, 3, crop_padding=4)
    assert not np.array_equal(other_epoch.crops, mixup.crops)
    plain = training_stream.epoch_plan(split, OmegaConf.create(MIXUP), 64, 10, 3, 2)
    assert plain.crops is None  # no input augmentation: the plan as before
    np.testing.assert_array_equal(plain.order, mixup.order)
    np.testing.assert_array_equal(plain.masks["lam"], mixup.masks["lam"])  # crops drawn beside, not instead


def _reference_crop(image: np.ndarray, dy: int, dx: int, flip: int, padding: int) -> np.ndarray:
    """torchvision's RandomCrop(padding) then RandomHorizontalFlip, written with NumPy: pad, cut, mirror."""
    h, w = image.shape[:2]
    padded = np.pad(image, ((padding, padding), (padding, padding), (0, 0)))
    window = padded[padding + dy : padding + dy + h, padding + dx : padding + dx + w]
    return window[:, ::-1] if flip else window


def test_the_step_crops_and_flips_as_pad_cut_mirror():
    rng = np.random.default_rng(1)
    images = rng.random((40, 7, 9, 3)).astype(np.float32)
    crops = input_aug.draw_crops(rng, 40, padding=3)
    got = ops.convert_to_numpy(training_stream.shift_and_flip(images, crops))
    for i, (dy, dx, flip) in enumerate(crops):
        np.testing.assert_array_equal(got[i], _reference_crop(images[i], dy, dx, flip, 3))
    identity = ops.convert_to_numpy(training_stream.shift_and_flip(images, np.zeros((40, 3), np.int32)))
    np.testing.assert_array_equal(identity, images)
