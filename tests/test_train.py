"""The fit engine on a small real subset: it learns, and running several steps per call changes nothing."""

from __future__ import annotations

import pytest

from mixup_sweeps import data, fit, models, training
from tests.helpers import compose_config, dataset_config

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def subset(real_data_dir):
    return data.load(dataset_config(real_data_dir, val_size=500, train_size=4096))


def fit_one(cfg, dataset, weights, backup_dir, on_epoch=lambda epoch, metrics: None) -> training.TrainResult:
    """One member through the fit engine; a failure is raised."""

    def fail(exc: BaseException) -> None:
        raise exc

    member = training.Member(cfg, dataset, weights, on_epoch, backup_dir, fail)
    fit.train([member])
    assert member.result is not None
    return member.result


@pytest.mark.parametrize("aug", ["aug=none", "aug=mixup", "aug=cutmix"])
def test_trains_to_a_sane_accuracy_on_a_small_subset(subset, aug, tmp_path):
    cfg = compose_config([aug, "trainer.epochs=3", "trainer.steps_per_execution=16"])
    weights = models.create_initial_weights(tmp_path, cfg.model, (28, 28, 1), 10, cfg.seed)
    epochs = []
    result = fit_one(cfg, subset, weights, tmp_path / "backup", on_epoch=lambda epoch, metrics: epochs.append(epoch))
    assert epochs == [1, 2, 3] and len(result.history) == 3
    assert result.test_accuracy > 0.6  # 10 classes: chance is 0.1; 3 epochs on 4,096 images reach ~0.7
    assert 0 <= result.test_reliability.ece < 0.3 and result.test_nll < 1.5
    assert not (tmp_path / "backup").exists()  # done: nothing to resume


def test_steps_per_execution_gives_the_same_training(subset, tmp_path):
    """Same weights, same data order, deterministic ops: one step per call or 32 per call, same model."""
    results = []
    for spe in (1, 32):
        cfg = compose_config(["aug=none", "trainer.epochs=1", "trainer.deterministic=true",
                              f"trainer.steps_per_execution={spe}"])  # fmt: skip
        weights = models.create_initial_weights(tmp_path, cfg.model, (28, 28, 1), 10, cfg.seed)
        training.seed_everything(cfg.seed, deterministic=True)
        results.append(fit_one(cfg, subset, weights, tmp_path / f"backup{spe}"))
    training.seed_everything(0, deterministic=False)
    assert results[0].history[0]["loss"] == pytest.approx(results[1].history[0]["loss"], rel=1e-5)
    assert results[0].test_accuracy == pytest.approx(results[1].test_accuracy, abs=1e-9)


def test_mixed_bfloat16_trains_from_the_same_initial_weights(subset, tmp_path):
    cfg = compose_config(["aug=mixup", "trainer.epochs=2", "trainer.precision=mixed_bfloat16"])
    weights = models.create_initial_weights(tmp_path, cfg.model, (28, 28, 1), 10, cfg.seed)
    result = fit_one(cfg, subset, weights, tmp_path / "backup")
    assert result.trained_network().layers[1].compute_dtype == "bfloat16"
    assert result.test_accuracy > 0.4 and 0 <= result.test_reliability.ece < 0.3  # chance: 0.1
