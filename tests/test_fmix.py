"""FMix (Harris et al. 2020), added through the augmentation registry: its masks' statistics and determinism
(NumPy, fast), its stream, its config check, and (slow) the whole path: a packed JAX sweep with the report,
and an exact resume of the fit engine from an epoch's checkpoint."""

from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
import pytest
from keras import ops
from omegaconf import OmegaConf

from mixup_sweeps.data import augmentations, datasets, training_stream
from mixup_sweeps.data.datasets import Split
from mixup_sweeps.errors import ConfigError
from mixup_sweeps.job.compose import validate
from mixup_sweeps.train import fit, models, training
from tests.helpers import ROOT, TINY, compose_config, dataset_config, mlflow_runs, run_cli

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


@pytest.mark.slow
def test_fmix_in_a_packed_jax_sweep_beside_mixup_and_in_the_report(tmp_path, real_data_dir):
    """One pack of none, mixup and fmix members (the pack's step takes lam and pasted masks), then the report."""
    out = tmp_path / "out"
    result = run_cli(
        "-m", "hydra/launcher=packed", "backend=jax", "aug=none,mixup,fmix", *TINY, f"paths.output_dir={out}"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    _, runs = mlflow_runs(out)
    finished = {
        r.data.params["aug.name"]: r for r in runs if r.info.status == "FINISHED" and "aug.name" in r.data.params
    }
    assert set(finished) == {"none", "mixup", "fmix"}
    assert finished["fmix"].data.params["aug.decay_power"] == "3.0"
    assert {r.data.tags["pack_members"] for r in finished.values()} == {"3"}
    report = run_cli_report(out, tmp_path / "report")
    assert "fmix" in report and "Δ" in report


def run_cli_report(out, report_dir) -> str:
    """`python -m mixup_sweeps.report` over the sweep in `out`; the report's Markdown."""
    job = subprocess.run(
        [sys.executable, "-m", "mixup_sweeps.report", "--output-dir", str(out), "--out", str(report_dir)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert job.returncode == 0, job.stderr[-3000:]
    return (report_dir / "report.md").read_text()


@pytest.mark.slow
def test_fmix_resumes_exactly_from_an_epochs_checkpoint(tmp_path, real_data_dir):
    """The fit engine, deterministic: a run continued from its checkpoint after epoch 1 ends as the run that
    was never stopped (every epoch's metrics and the test accuracy)."""
    cfg = compose_config(["aug=fmix", "trainer.epochs=2", "trainer.deterministic=true"])
    dataset = datasets.load(dataset_config(real_data_dir, val_size=200, train_size=512), 0)
    weights = models.create_initial_weights(tmp_path / "iw", cfg.model, (28, 28, 1), 10, cfg.seed)

    def run(backup_dir, on_epoch=lambda epoch, metrics: None) -> training.TrainResult:
        def fail(exc: BaseException) -> None:
            raise exc

        member = training.Member(cfg, dataset, weights, on_epoch, backup_dir, fail)
        training.seed_everything(cfg.seed, deterministic=True)
        fit.train([member])
        assert member.result is not None
        return member.result

    def keep_epoch_one(epoch: int, metrics: dict) -> None:
        if epoch == 1:
            shutil.copytree(tmp_path / "whole", tmp_path / "stopped")

    whole = run(tmp_path / "whole", keep_epoch_one)
    assert training.completed_epochs(tmp_path / "stopped") == whole.history[:1]
    resumed = run(tmp_path / "stopped")
    training.seed_everything(0, deterministic=False)
    strip = [{k: v for k, v in h.items() if k != "epoch_seconds"} for h in whole.history]
    assert [{k: v for k, v in h.items() if k != "epoch_seconds"} for h in resumed.history] == strip
    assert resumed.test_accuracy == whole.test_accuracy
