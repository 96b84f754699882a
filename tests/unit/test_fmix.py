"""The fast part (no training, no subprocess) of these tests; beside them:
tests/e2e/test_fmix.py, tests/integration/test_fmix.py.

FMix (Harris et al. 2020), added through the augmentation registry: its masks' statistics and determinism
(NumPy, fast), its stream, its config check, and (slow) the whole path: a packed JAX sweep with the report,
and an exact resume of the fit engine from an epoch's checkpoint."""

from __future__ import annotations

import numpy as np
import pytest
from omegaconf import OmegaConf

from mixup_sweeps.data import augmentations, training_stream
from mixup_sweeps.data.datasets import Split
from mixup_sweeps.errors import ConfigError
from mixup_sweeps.job.compose import validate
from tests.helpers import compose_config

FMIX = {"name": "fmix", "alpha": 1.0, "decay_power": 3.0}


PIXELS = 28 * 28


def masks(seed: int, n: int = 2000, alpha: float = 1.0, decay: float = 3.0) -> tuple[np.ndarray, np.ndarray]:
    """(λ, kept masks) as FMix draws them from one generator."""
    rng = np.random.default_rng(seed)
    lam = augmentations.sample_beta(rng, n, alpha)
    return lam, augmentations.FMix.masks(rng, lam, 28, 28, decay)


@pytest.mark.parametrize("alpha", [0.2, 1.0, 4.0])
def test_a_mask_keeps_lambda_of_the_image_within_half_a_pixel(alpha):
    lam, kept = masks(0, alpha=alpha)
    assert kept.dtype == bool and kept.shape == (2000, 28, 28)  # binary
    share = kept.reshape(len(kept), -1).mean(axis=1)
    assert np.max(np.abs(share - lam)) <= 0.5 / PIXELS + 1e-7  # round(λ · 784) pixels: within half a pixel
    assert abs(share.mean() - 0.5) < 0.03  # Beta(α, α) is symmetric


def test_masks_are_low_frequency_blobs_smoother_for_a_larger_decay_power():
    """Neighbouring pixels agree far more often than in a random mask of the same share, more so for δ = 3 than
    δ = 1 (the noise's amplitude falls as 1/f^δ)."""

    def agreement(kept: np.ndarray) -> float:
        return float(np.mean(kept[:, :, 1:] == kept[:, :, :-1]))

    lam, smooth = masks(1, decay=3.0)
    _, rough = masks(1, decay=1.0)
    random_pairs = float(np.mean(lam**2 + (1 - lam) ** 2))  # what independent pixels would give
    assert agreement(smooth) > agreement(rough) > random_pairs + 0.05
    assert agreement(smooth) > 0.9


def test_the_same_seed_and_epoch_give_the_same_masks():
    split = Split(np.zeros((300, 28, 28, 1), np.uint8), (np.arange(300) % 10).astype(np.uint8))
    aug = OmegaConf.create(FMIX)
    one, again = (training_stream.epoch_plan(split, aug, 64, 10, 7, 2) for _ in range(2))
    other_epoch, other_seed = (
        training_stream.epoch_plan(split, aug, 64, 10, 7, 3),
        training_stream.epoch_plan(split, aug, 64, 10, 8, 2),
    )
    assert one.masks["pasted"].tobytes() == again.masks["pasted"].tobytes()
    assert one.labels.tobytes() == again.labels.tobytes()
    assert one.masks["pasted"].tobytes() != other_epoch.masks["pasted"].tobytes()
    assert one.masks["pasted"].tobytes() != other_seed.masks["pasted"].tobytes()
    assert np.array_equal(
        one.order, training_stream.epoch_plan(split, OmegaConf.create({"name": "none"}), 64, 10, 7, 2).order
    )


@pytest.mark.parametrize(
    "override, message",
    [
        ("aug.decay_power=0", "Invalid value aug.decay_power=0.0: must be a finite number > 0"),
        ("aug.alpha=-1", "Invalid value aug.alpha=-1.0: must be a finite number > 0"),
        ("+aug.lam=per_batch", "Unknown key aug.lam"),  # mixup's key, not FMix's
    ],
)
def test_bad_fmix_settings_are_one_line(override, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.").replace("+", r"\+")):
        validate(compose_config(["aug=fmix", override]))
