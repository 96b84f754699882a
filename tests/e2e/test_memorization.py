"""The end-to-end part (the command line, real sweeps; slow) of these tests; beside them:
tests/unit/test_memorization.py.

Label noise in the memorizing regime (#21): per-epoch probes (test accuracy; the corrupted labels' memorized
share), the best-validation epoch's test accuracy, and the report's best-epoch columns and memorization figure."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mixup_sweeps.train import probes
from tests.helpers import mlflow_runs, run_cli, run_report, steps

PROBE_METRICS = (probes.MEMORIZED, probes.NOISY_TRUE_LABEL, probes.CLEAN_TRAIN_ACCURACY)


PROBED = ["model=flat_cnn", "trainer.test_every_epoch=true", "trainer.memorization_probe=60"]


@pytest.mark.parametrize("backend, epochs", [("tensorflow", 30), ("jax", 4)])
def test_a_noisy_run_logs_memorization_every_epoch_and_memorizes_when_trained_long(
    tmp_path, real_data_dir, backend, epochs
):
    """200 images at 50 % noise, 30 epochs of 13 steps: the wide network fits the wrong labels (here ~1.0 of
    them by the last epoch, ~0.2 after the first), and the probe shows it. On JAX, whose single runs train
    through the same Keras fit and probe callbacks, 4 epochs: every epoch probed, the same bookkeeping."""
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
    if epochs == 30:
        assert curves[probes.MEMORIZED][-1] > 0.8 > curves[probes.MEMORIZED][0] + 0.3  # it memorized
        assert curves[probes.CLEAN_TRAIN_ACCURACY][-1] > 0.9
    metrics = run.data.metrics
    assert curves[probes.EPOCH_TEST_ACCURACY][-1] == pytest.approx(metrics["test_accuracy"], abs=1e-9)
    best = int(metrics[probes.BEST_EPOCH])
    val = sorted(client.get_metric_history(run.info.run_id, "val_accuracy"), key=lambda m: m.step)
    assert val[best - 1].value == max(m.value for m in val)
    assert metrics[probes.TEST_ACCURACY_BEST] == pytest.approx(curves[probes.EPOCH_TEST_ACCURACY][best - 1])


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


def test_the_report_gives_best_epoch_intervals_and_the_memorization_plot_on_the_parent(tmp_path, real_data_dir):
    out = tmp_path / "out"
    result = run_cli("-m", "aug=none,mixup", "seed=0,1", "dataset.train_size=256", "trainer.epochs=2",
                     "dataset.label_noise=0.0,0.5", *PROBED, f"paths.output_dir={out}")  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert run_report("--output-dir", out, "--out", out / "report") == 0
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
