"""The fit engine on a small real subset: it learns, and running several steps per call changes nothing."""

from __future__ import annotations

import subprocess
import sys

import pytest

from mixup_sweeps.data import datasets
from mixup_sweeps.train import fit, models, training
from tests.helpers import ROOT, TEST_IMAGES, TINY, compose_config, dataset_config, mlflow_runs, run_cli


@pytest.fixture(scope="module")
def subset(real_data_dir):
    return datasets.load(dataset_config(real_data_dir, val_size=500, train_size=4096))


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
    # kept by the engine: the job removes it once the run's FINISHED is recorded (tests/e2e/test_resume.py), so a
    # process that takes the job over in between finds it whole (issue 41)
    assert training.completed_epochs(tmp_path / "backup")


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


def test_a_job_reads_back_the_threads_it_was_given_and_threads_change_no_result(tmp_path, real_data_dir):
    """trainer.threads sizes TensorFlow's pools (read back from TensorFlow into the run's tags); it is not part of
    the run's fingerprint, and one thread or two give the same training up to float reordering (each job in
    its own process: TensorFlow's pools are fixed at its start)."""
    accuracies = {}
    for threads in (1, 2):
        out = tmp_path / str(threads)
        result = run_cli(*TINY, f"trainer.threads={threads}", "trainer.deterministic=true", f"paths.output_dir={out}")
        assert result.returncode == 0, result.stderr[-3000:]
        (run,) = mlflow_runs(out)[1]
        assert (run.data.tags["threads"], run.data.tags["tf_intra_op_threads"]) == (str(threads), str(threads))
        accuracies[threads] = (run.data.tags["config_fingerprint"], run.data.metrics["test_accuracy"])
    assert accuracies[1][0] == accuracies[2][0]  # the same computation
    assert abs(accuracies[1][1] - accuracies[2][1]) <= 5 / TEST_IMAGES  # at most 5 test images differ


# Two fresh processes (slow: moved out of the edit loop's tests/integration/test_models.py).
CREATE = """
import sys
from mixup_sweeps.train import models
from tests.helpers import compose_config
path = models.create_initial_weights(sys.argv[1], compose_config().model, (28, 28, 1), 10, seed=7)
print(models.sha256_file(path))
"""


def test_two_processes_starting_at_once_create_one_file(tmp_path):
    procs = [
        subprocess.Popen([sys.executable, "-c", CREATE, str(tmp_path)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    digests = {p.communicate(timeout=120)[0].strip() for p in procs}
    assert all(p.returncode == 0 for p in procs)
    assert len(digests) == 1
    files = sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock"))
    assert len(files) == 1 and files[0].endswith(".weights.h5")  # no temp file left behind
