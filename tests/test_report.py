"""The report: numbers checked against hand-built stores with known values, edge cases, the CLI."""

from __future__ import annotations

import math
import subprocess
import sys

import pandas as pd
import pytest
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient
from scipy import stats

from mixup_sweeps import report
from tests.conftest import EXPERIMENT, ROOT


def add_run(client, exp_id, params, test_accuracy, status="FINISHED", parent=None, sweep_id=None, curve=(0.5, 0.6)):
    tags = {"mlflow.parentRunId": parent, "sweep_id": sweep_id} if parent else {}
    run_id = client.create_run(exp_id, run_name=",".join(f"{k}={v}" for k, v in params.items()), tags=tags).info.run_id
    metrics = [Metric("test_accuracy", test_accuracy, 0, len(curve)), Metric("test_loss", 1 - test_accuracy, 0, 2)]
    metrics += [Metric("val_accuracy", v, 0, step) for step, v in enumerate(curve, start=1)]
    metrics += [Metric("epoch_seconds", 2.0, 0, step) for step in range(1, len(curve) + 1)]
    params = {"dataset.name": "fashion_mnist", "model.name": "seed_cnn", "trainer.epochs": 2, **params}
    client.log_batch(run_id, metrics=metrics, params=[Param(k, str(v)) for k, v in params.items()])
    client.set_terminated(run_id, status)
    return run_id


def new_store(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri)
    return uri, client, client.create_experiment(EXPERIMENT, artifact_location=(tmp_path / "art").as_uri())


def new_sweep(client, exp_id, sweep_id):
    tags = {"sweep_parent": "true", "sweep_id": sweep_id, "sweep_dir": f"/x/{sweep_id}"}
    return client.create_run(exp_id, run_name=f"sweep {sweep_id}", tags=tags).info.run_id


@pytest.fixture
def known_store(tmp_path):
    """baseline vs mixup 0.2 (small, noisy effect) vs mixup 0.4 (clear effect), 3 seeds; one FAILED run."""
    uri, client, exp_id = new_store(tmp_path)
    parent = new_sweep(client, exp_id, "s1")
    accuracies = {
        ("none", None): [0.80, 0.82, 0.84],
        ("mixup", 0.2): [0.81, 0.84, 0.85],
        ("mixup", 0.4): [0.85, 0.87, 0.89],
    }
    for (name, alpha), values in accuracies.items():
        for seed, acc in enumerate(values):
            params = {"aug.name": name, "seed": seed, **({"aug.alpha": alpha} if alpha else {})}
            add_run(client, exp_id, params, acc, parent=parent, sweep_id="s1", curve=(0.5, acc - 0.01, acc - 0.02))
    add_run(client, exp_id, {"aug.name": "mixup", "aug.alpha": 0.8, "seed": 0}, 0.1, "FAILED", parent, "s1")
    client.set_terminated(parent, "FINISHED")
    return uri, client, exp_id, tmp_path


def test_paired_deltas_and_intervals_on_known_values(known_store):
    uri, _, _, tmp_path = known_store
    run_set = report.fetch_runs(uri, EXPERIMENT, "latest")
    assert run_set.label == "s1" and run_set.left_out == {"FAILED": 1} and len(run_set.runs) == 9
    report.write_report(run_set, uri, EXPERIMENT, tmp_path / "out")
    summary = pd.read_csv(tmp_path / "out" / "summary.csv")
    assert list(summary["group"]) == ["aug.name=none", "aug.name=mixup,aug.alpha=0.2", "aug.name=mixup,aug.alpha=0.4"]
    t = stats.t.ppf(0.975, 2)
    base = summary.iloc[0]
    assert base["n"] == 3 and base["test_accuracy_mean"] == pytest.approx(0.82)
    assert base["test_accuracy_std"] == pytest.approx(0.02)
    assert base["test_accuracy_ci_low"] == pytest.approx(0.82 - t * 0.02 / math.sqrt(3))
    assert math.isnan(base["delta_vs_baseline"])
    small = summary.iloc[1]  # diffs 0.01, 0.02, 0.01
    diffs = pd.Series([0.01, 0.02, 0.01])
    half = t * diffs.std() / math.sqrt(3)
    assert small["delta_vs_baseline"] == pytest.approx(diffs.mean())
    assert small["delta_ci_low"] == pytest.approx(diffs.mean() - half)
    assert small["delta_ci_high"] == pytest.approx(diffs.mean() + half)
    assert small["delta_pairs"] == 3 and not small["significant"]  # the CI includes 0
    clear = summary.iloc[2]  # diffs 0.05, 0.05, 0.05: zero spread, CI excludes 0
    assert clear["delta_vs_baseline"] == pytest.approx(0.05) and clear["significant"]
    assert base["best_val_accuracy"] == pytest.approx(0.81) and base["best_val_epoch"] == 2
    runs = pd.read_csv(tmp_path / "out" / "runs.csv")
    assert len(runs) == 9 and runs["link"].str.startswith("#/experiments/").all()


def test_pairs_only_over_seeds_present_in_both(tmp_path):
    uri, client, exp_id = new_store(tmp_path)
    parent = new_sweep(client, exp_id, "s2")
    for seed, acc in [(0, 0.80), (1, 0.82), (2, 0.90)]:
        add_run(client, exp_id, {"aug.name": "none", "seed": seed}, acc, parent=parent, sweep_id="s2")
    for seed, acc in [(0, 0.83), (1, 0.83)]:  # no seed 2
        add_run(
            client, exp_id, {"aug.name": "mixup", "aug.alpha": 0.2, "seed": seed}, acc, parent=parent, sweep_id="s2"
        )
    run_set = report.fetch_runs(uri, EXPERIMENT, "s2")
    summary = report.write_report(run_set, uri, EXPERIMENT, tmp_path / "out")["summary.csv"]
    mixup = pd.read_csv(summary).iloc[1]
    assert mixup["delta_pairs"] == 2 and mixup["delta_vs_baseline"] == pytest.approx((0.03 + 0.01) / 2)


def test_one_seed_per_group_shows_ci_as_na(tmp_path):
    uri, client, exp_id = new_store(tmp_path)
    parent = new_sweep(client, exp_id, "s3")
    add_run(client, exp_id, {"aug.name": "none", "seed": 0}, 0.8, parent=parent, sweep_id="s3")
    add_run(client, exp_id, {"aug.name": "mixup", "aug.alpha": 0.2, "seed": 0}, 0.82, parent=parent, sweep_id="s3")
    files = report.write_report(report.fetch_runs(uri, EXPERIMENT, "latest"), uri, EXPERIMENT, tmp_path / "out")
    md = files["report.md"].read_text()
    assert "0.8000 ± n/a" in md and "| n/a " in md and "+0.0200 (1)" in md


def test_different_models_are_separate_tables_never_averaged(tmp_path):
    uri, client, exp_id = new_store(tmp_path)
    for model, acc in (("seed_cnn", 0.80), ("wide_cnn", 0.90)):
        for seed in (0, 1):
            add_run(client, exp_id, {"aug.name": "none", "seed": seed, "model.name": model}, acc + seed / 100)
    files = report.write_report(report.fetch_runs(uri, EXPERIMENT, "all"), uri, EXPERIMENT, tmp_path / "out")
    summary = pd.read_csv(files["summary.csv"])
    assert sorted(summary["model.name"]) == ["seed_cnn", "wide_cnn"]
    assert sorted(summary["test_accuracy_mean"].round(3)) == [0.805, 0.905]
    md = files["report.md"].read_text()
    assert "## dataset.name=fashion_mnist / model.name=seed_cnn" in md and "model.name=wide_cnn" in md
    html = files["report.html"].read_text()
    assert html.count("data:image/png;base64,") == 2 and 'src="http' not in html


def test_no_runs_is_a_message_and_exit_code_2(tmp_path):
    uri, client, exp_id = new_store(tmp_path)
    with pytest.raises(report.ReportError, match="No runs"):
        report.fetch_runs(uri, EXPERIMENT, "latest")
    add_run(client, exp_id, {"aug.name": "none", "seed": 0}, 0.8)
    with pytest.raises(report.ReportError, match="No sweep"):
        report.fetch_runs(uri, EXPERIMENT, "latest")
    with pytest.raises(report.ReportError, match="No sweep 'nope'"):
        report.fetch_runs(uri, EXPERIMENT, "nope")
    result = subprocess.run(
        [sys.executable, "-m", "mixup_sweeps.report", "--output-dir", str(tmp_path / "empty")],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2 and "Error: No experiment" in result.stderr and "Traceback" not in result.stderr


def test_sql_fast_path_reads_the_same_as_the_client(known_store):
    uri, client, exp_id, _ = known_store
    engine = report._sql_engine(client)
    assert engine is not None
    fast = report._sql_runs_frame(engine, exp_id).set_index("run_id").sort_index()
    slow = report._client_runs_frame(client, exp_id).set_index("run_id").sort_index()
    assert len(fast) == len(slow) == 11  # 9 finished + 1 failed + the parent
    assert sorted(fast.columns) == sorted(slow.columns)
    for column in slow.columns:
        if column.startswith("metrics.") or column == "start_time":
            pd.testing.assert_series_equal(fast[column].astype(float), slow[column].astype(float), check_names=False)
        else:
            assert fast[column].fillna("<na>").equals(slow[column].fillna("<na>")), column
    run_ids = list(slow.index)
    fast_curves = report.metric_histories(uri, run_ids, "val_accuracy").sort_values(["run_id", "step"])
    expected = [(r, m.step, m.value) for r in sorted(run_ids) for m in client.get_metric_history(r, "val_accuracy")]
    assert [tuple(row) for row in fast_curves.itertuples(index=False)] == sorted(expected)
