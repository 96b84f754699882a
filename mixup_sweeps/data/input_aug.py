"""Input augmentation (`trainer.input_aug`): what is drawn for each image of an epoch besides its mixing.

`crop_flip` is the CIFAR recipe's (the mixup paper's code: `RandomCrop(32, padding=4)` then
`RandomHorizontalFlip`): the image zero-padded by `trainer.crop_padding` on each side, a window of its own
size at a uniform offset, mirrored with probability 1/2. The host draws the offsets and flips in the epoch's
plan (NumPy, from the seed's own stream for it), the compiled step moves the pixels (`training_stream`). The
draws of the positions come first and do not depend on the augmentation, so every arm of a seed sees the same
crops and flips; a partner image gets a crop and flip of its own, drawn after.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mixup_sweeps.errors import require

INPUT_AUGS = ("none", "crop_flip")


def check(trainer: Any) -> None:
    """One `ConfigError` line for `trainer.input_aug` or `trainer.crop_padding` that cannot work."""
    require(trainer.input_aug in INPUT_AUGS, "trainer.input_aug", trainer.input_aug, f"one of {list(INPUT_AUGS)}")
    padding = trainer.crop_padding
    require(padding >= 0, "trainer.crop_padding", padding, "must be an integer >= 0 (pixels of zeros on each side)")


def padding_of(trainer: Any) -> int | None:
    """The crop padding when `trainer.input_aug` crops and flips; None for no input augmentation."""
    return int(trainer.crop_padding) if trainer.get("input_aug", "none") == "crop_flip" else None


def draw_crops(rng: np.random.Generator, n: int, padding: int) -> np.ndarray:
    """(n, 3) int32: each window's shift from the centre, rows then columns (each in [-padding, padding]: the
    offset in the padded image minus the padding), and whether it is flipped. (0, 0, 0) is the image itself."""
    shifts = rng.integers(0, 2 * padding + 1, size=(n, 2)) - padding
    flips = rng.random(n) < 0.5
    return np.concatenate([shifts, flips[:, None]], axis=1).astype(np.int32)
