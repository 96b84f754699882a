"""Label noise in the memorizing regime (#21): per-epoch probes (test accuracy; the corrupted labels' memorized
share), the best-validation epoch's test accuracy, and the report's best-epoch columns and memorization figure."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from mixup_sweeps.data import datasets
from mixup_sweeps.train import probes
from tests.helpers import ROOT, dataset_config, mlflow_runs, run_cli, steps, write_fake_dataset

PROBE_METRICS = (probes.MEMORIZED, probes.NOISY_TRUE_LABEL, probes.CLEAN_TRAIN_ACCURACY)
PROBED = ["model=flat_cnn", "trainer.test_every_epoch=true", "trainer.memorization_probe=60"]


def noisy_dataset(tmp_path, fraction=0.5, seed=0, **values):
    directory = write_fake_dataset(tmp_path / "data", n_train=220)
    return datasets.load(dataset_config(directory, val_size=20, label_noise=fraction, **values), seed)


def test_probe_metrics_count_memorized_true_label_and_clean_accuracy():
    given = np.array([1, 2, 3, 4, 5, 6])
    true = np.array([0, 0, 0, 4, 5, 6])  # the first three are corrupted
    probe = probes.MemorizationProbe(np.arange(6), given, true, given != true)
    metrics = probe.metrics(np.array([1, 0, 7, 4, 5, 0]))  # memorized 1, true label 1, neither 1; clean 2 of 3
    assert metrics == pytest.approx({probes.MEMORIZED: 1 / 3, probes.NOISY_TRUE_LABEL: 1 / 3,
                                     probes.CLEAN_TRAIN_ACCURACY: 2 / 3})  # fmt: skip


def test_the_probe_draws_up_to_its_size_from_corrupted_and_clean_examples_fixed_by_the_seed(tmp_path):
    dataset = noisy_dataset(tmp_path)  # 200 training images, 100 corrupted
    probe = probes.memorization_probe(dataset, 30, seed=3)
    assert probe is not None and probe.corrupted.sum() == 30 and (~probe.corrupted).sum() == 30
    assert np.array_equal(probe.given, dataset.train.labels[probe.indices])
    assert np.array_equal(probe.true, dataset.clean_train_labels[probe.indices])
    assert np.array_equal(probe.corrupted, probe.given != probe.true)
    assert np.array_equal(probes.memorization_probe(dataset, 30, seed=3).indices, probe.indices)
    assert not np.array_equal(probes.memorization_probe(dataset, 30, seed=4).indices, probe.indices)
    every = probes.memorization_probe(dataset, 10_000, seed=3)  # fewer than asked: all of them
    assert every is not None and len(every.indices) == len(dataset.train)


def test_no_probe_without_noise_or_with_size_zero(tmp_path):
    assert probes.memorization_probe(noisy_dataset(tmp_path), 0, seed=0) is None
    clean = noisy_dataset(tmp_path, fraction=0.0)
    assert clean.clean_train_labels is None and probes.memorization_probe(clean, 30, seed=0) is None


def test_validation_labels_stay_clean_unless_noisy_validation(tmp_path):
    clean_val = datasets.load(dataset_config(write_fake_dataset(tmp_path / "d", n_train=1020), val_size=1000), 0).val
    kept = datasets.load(dataset_config(tmp_path / "d", val_size=1000, label_noise=0.3), 0)
    assert np.array_equal(kept.val.labels, clean_val.labels) and not kept.noisy_validation
    noisy = datasets.load(dataset_config(tmp_path / "d", val_size=1000, label_noise=0.3, noisy_validation=True), 0)
    assert noisy.noisy_validation and np.mean(noisy.val.labels != clean_val.labels) == pytest.approx(0.3)
    assert np.array_equal(noisy.train.labels, kept.train.labels)  # the training noise does not change


def test_the_best_epoch_is_the_first_with_the_highest_validation_accuracy():
    history = [{"val_accuracy": a, probes.EPOCH_TEST_ACCURACY: t} for a, t in [(0.5, 0.4), (0.7, 0.6), (0.7, 0.65)]]
    assert probes.best_epoch(history) == 2
    assert probes.best_epoch_metrics(history) == {probes.BEST_EPOCH: 2.0, probes.TEST_ACCURACY_BEST: 0.6}
    assert probes.best_epoch([]) is None
    assert probes.best_epoch_metrics([{"val_accuracy": 0.5}]) == {}  # test set not evaluated every epoch


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_a_noisy_run_logs_memorization_every_epoch_and_memorizes_when_trained_long(tmp_path, real_data_dir, backend):
    """200 images at 50 % noise, 30 epochs of 13 steps: the wide network fits the wrong labels (here ~1.0 of
    them by the last epoch, ~0.2 after the first), and the probe shows it."""
    epochs = 30
    result = run_cli(f"backend={backend}", "aug=none", "dataset.train_size=200", f"trainer.epochs={epochs}",
                     "trainer.batch_size=16",
                     "dataset.label_noise=0.5", *PROBED, f"paths.output_dir={tmp_path}")  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    client, (run,) = mlflow_runs(tmp_path)
    curves = {}
    for key in (*PROBE_METRICS, probes.EPOCH_TEST_ACCURACY):
        assert steps(client, run.info.run_id, key) == list(range(1, epochs + 1)), key
        history = sorted(client.get_metric_history(run.info.run_id, key), key=lambda m: m.step)
        curves[key] = [m.value for m in history]
        assert all(0 <= v <= 1 for v in curves[key])
    assert all(m + t <= 1 for m, t in zip(curves[probes.MEMORIZED], curves[probes.NOISY_TRUE_LABEL]))
    assert curves[probes.MEMORIZED][-1] > 0.8 > curves[probes.MEMORIZED][0] + 0.3  # it memorized
    assert curves[probes.CLEAN_TRAIN_ACCURACY][-1] > 0.9
    metrics = run.data.metrics
    assert curves[probes.EPOCH_TEST_ACCURACY][-1] == pytest.approx(metrics["test_accuracy"], abs=1e-9)
    best = int(metrics[probes.BEST_EPOCH])
    val = sorted(client.get_metric_history(run.info.run_id, "val_accuracy"), key=lambda m: m.step)
    assert val[best - 1].value == max(m.value for m in val)
    assert metrics[probes.TEST_ACCURACY_BEST] == pytest.approx(curves[probes.EPOCH_TEST_ACCURACY][best - 1])


@pytest.mark.slow
def test_pack_members_are_probed_and_validated_against_their_own_noisy_labels(tmp_path, real_data_dir):
    """Two seeds in one pack, each with its own corrupted training and validation labels, match a lone run."""
    small = ["backend=jax", "dataset.train_size=256", "trainer.epochs=2", "dataset.label_noise=0.5",
             "dataset.noisy_validation=true", *PROBED]  # fmt: skip
    packed = run_cli("-m", "hydra/launcher=packed", "seed=0,1", *small, f"paths.output_dir={tmp_path / 'pack'}")
    assert packed.returncode == 0, packed.stderr[-3000:]
    alone = run_cli("seed=1", *small, f"paths.output_dir={tmp_path / 'alone'}")
    assert alone.returncode == 0, alone.stderr[-3000:]
    pack_client, pack_runs = mlflow_runs(tmp_path / "pack")
    (in_pack,) = [r for r in pack_runs if r.data.params.get("seed") == "1"]
    alone_client, (lone,) = mlflow_runs(tmp_path / "alone")
    assert in_pack.data.tags["pack_members"] == "2"
    for key in ("val_accuracy", *PROBE_METRICS, probes.EPOCH_TEST_ACCURACY):
        packed_curve = [
            m.value for m in sorted(pack_client.get_metric_history(in_pack.info.run_id, key), key=lambda m: m.step)
        ]
        lone_curve = [
            m.value for m in sorted(alone_client.get_metric_history(lone.info.run_id, key), key=lambda m: m.step)
        ]
        assert len(packed_curve) == 2 and np.allclose(packed_curve, lone_curve, rtol=0, atol=1.01 / 60), key


@pytest.mark.slow
def test_the_report_gives_best_epoch_intervals_and_the_memorization_plot_on_the_parent(tmp_path, real_data_dir):
    out = tmp_path / "out"
    result = run_cli("-m", "aug=none,mixup", "seed=0,1", "dataset.train_size=256", "trainer.epochs=3",
                     "dataset.label_noise=0.0,0.5", *PROBED, f"paths.output_dir={out}")  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    report = subprocess.run([sys.executable, "-m", "mixup_sweeps.report", "--output-dir", str(out), "--out",
                             str(out / "report")], capture_output=True, text=True, cwd=ROOT)  # fmt: skip
    assert report.returncode == 0, report.stderr[-2000:]
    summary = pd.read_csv(out / "report" / "summary.csv")
    best = ["test_accuracy_best_mean", "test_accuracy_best_ci_low", "best_delta_vs_baseline", "best_delta_ci_low",
            "best_delta_ci_high", "best_epoch_mean", "memorized_mean"]  # fmt: skip
    assert set(best) <= set(summary.columns)
    mixup = summary[summary["aug.name"] == "mixup"]
    assert len(mixup) == 2 and mixup["best_delta_ci_low"].notna().all()  # paired over 2 seeds, per noise level
    noisy = summary[summary["dataset.label_noise"] == 0.5]
    assert noisy["memorized_mean"].between(0, 1).all()
    assert summary.loc[summary["dataset.label_noise"] == 0.0, "memorized_mean"].isna().all()
    text = (out / "report" / "report.md").read_text()
    assert "test acc at best val epoch" in text and "Δ at best [95% CI]" in text and "n/a ± n/a" not in text
    assert "Best epoch: the epoch with the highest val_accuracy" in text and "whose labels are clean" in text
    assert "at the best-validation epoch Δ" in text and "![memorization.png](memorization.png)" in text
    assert (out / "report" / "memorization.png").stat().st_size > 10_000
    client, runs = mlflow_runs(out)
    (parent,) = [r for r in runs if r.data.tags.get("sweep_parent") == "true"]
    assert "report/memorization.png" in {a.path for a in client.list_artifacts(parent.info.run_id, "report")}
    published = client.get_run(parent.info.run_id).data.metrics
    assert {"acc_best label_noise_0.5 none", "Δacc_best label_noise_0.5 mixup ci_low"} <= set(published)
