"""The fast part (no training, no subprocess) of these tests (beside them: tests/integration/test_report.py).

The report: numbers checked against hand-built stores with known values, edge cases, the CLI."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient
from scipy import stats

from mixup_sweeps import report
from mixup_sweeps.report import store
from tests.helpers import EXPERIMENT, sqlite_store


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
    uri = sqlite_store(tmp_path)
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


def test_one_seed_per_group_says_so_instead_of_na(tmp_path):
    uri, client, exp_id = new_store(tmp_path)
    parent = new_sweep(client, exp_id, "s3")
    add_run(client, exp_id, {"aug.name": "none", "seed": 0}, 0.8, parent=parent, sweep_id="s3")
    add_run(client, exp_id, {"aug.name": "mixup", "aug.alpha": 0.2, "seed": 0}, 0.82, parent=parent, sweep_id="s3")
    files = report.write_report(report.fetch_runs(uri, EXPERIMENT, "latest"), uri, EXPERIMENT, tmp_path / "out")
    md = files["report.md"].read_text()
    assert "± n/a" not in md and "| 0.8000 " in md and "1 seed: no interval" in md and "+0.0200 (1)" in md
    # one alpha only: it does not distinguish the groups, so the label is just "mixup"
    assert "- mixup: 1 seed: no interval vs none (Δ test accuracy +0.0200, 1 seed)" in md


def test_labels_name_only_what_distinguishes_a_group_and_the_answer_comes_first(known_store):
    uri, _, exp_id, tmp_path = known_store
    files = report.write_report(report.fetch_runs(uri, EXPERIMENT, "latest"), uri, EXPERIMENT, tmp_path / "out",
                                ui_url="http://mlflow.example:5000")  # fmt: skip
    summary = pd.read_csv(files["summary.csv"])
    assert list(summary["label"]) == ["none", "mixup α=0.2", "mixup α=0.4"]
    md = files["report.md"].read_text()
    answer = md.split("## Answer", 1)[1].split("\n\n", 2)[1]
    assert answer.splitlines() == [
        "- mixup α=0.2: no detectable difference vs none (Δ test accuracy +0.0133, 95% CI [-0.0010, +0.0277], 3 seeds)",
        "- mixup α=0.4: better than none (Δ test accuracy +0.0500, 95% CI [+0.0500, +0.0500], 3 seeds)",
    ]
    page = files["report.html"].read_text()
    assert "`" not in page.split("<img", 1)[0]  # no literal Markdown
    assert f'href="http://mlflow.example:5000/#/experiments/{exp_id}/runs?workflowType=machine_learning"' in page
    assert page.count(f'href="http://mlflow.example:5000/#/experiments/{exp_id}/runs/') == 9  # every run, once
    # seeds the observed paired spread implies: diffs 0.01, 0.02, 0.01 -> s = 0.00577, t(2) = 4.303
    small = summary.iloc[1]
    assert (small["seeds_for_0.005"], small["seeds_for_0.01"]) == (25, 7)  # (4.303·s/h)² = 24.7 and 6.2


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


def test_sql_fast_path_reads_the_same_as_the_client(known_store):
    uri, client, exp_id, _ = known_store
    engine = store._sql_engine(client)
    assert engine is not None
    fast = store._sql_runs_frame(engine, exp_id).set_index("run_id").sort_index()
    slow = store._client_runs_frame(client, exp_id).set_index("run_id").sort_index()
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


def test_a_changed_mlflow_schema_falls_back_to_the_client_with_one_warning(known_store, monkeypatch, caplog):
    """A new MLflow that renames a table the fast path reads: the report still reads everything, and says why."""
    uri, client, exp_id, tmp_path = known_store
    expected = store.runs_frame(client, exp_id).set_index("run_id").sort_index()
    curves = store.metric_histories(uri, list(expected.index), "val_accuracy").sort_values(["run_id", "step"])
    monkeypatch.setitem(store.SQL_TABLES, "latest_metrics", "latest_metrics_v2")
    monkeypatch.setitem(store.SQL_TABLES, "metrics", "metrics_v2")
    with caplog.at_level("WARNING", logger=store.__name__):
        read = store.runs_frame(client, exp_id).set_index("run_id").sort_index()
        read_curves = store.metric_histories(uri, list(expected.index), "val_accuracy").sort_values(["run_id", "step"])
    assert sorted(read.columns) == sorted(expected.columns) and list(read.index) == list(expected.index)
    assert read["metrics.test_accuracy"].astype(float).equals(expected["metrics.test_accuracy"].astype(float))
    assert read_curves.reset_index(drop=True).equals(curves.reset_index(drop=True).astype(read_curves.dtypes))
    warnings = [r.getMessage() for r in caplog.records if r.name == store.__name__]
    assert len(warnings) == 2 and all("search_runs" in w and "no such table" in w for w in warnings)
    assert "latest_metrics_v2" in warnings[0] and "metrics_v2" in warnings[1]
    files = report.write_report(report.fetch_runs(uri, EXPERIMENT, "latest"), uri, EXPERIMENT, tmp_path / "fallback")
    assert pd.read_csv(files["summary.csv"])["n"].sum() == 9


def test_baseline_option_pairs_precisions_on_accuracy_and_ece(tmp_path):
    """--baseline trainer.precision=float32: each other precision against float32 with the same aug, by seed."""
    uri, client, exp_id = new_store(tmp_path)
    parent = new_sweep(client, exp_id, "s4")
    known = {  # (aug, precision) -> per seed (test accuracy, test ECE)
        ("none", "float32"): [(0.80, 0.010), (0.82, 0.012), (0.84, 0.011)],
        ("none", "mixed_bfloat16"): [(0.81, 0.013), (0.82, 0.015), (0.86, 0.014)],
        ("mixup", "float32"): [(0.83, 0.050), (0.84, 0.060), (0.85, 0.055)],
        ("mixup", "mixed_bfloat16"): [(0.83, 0.050), (0.84, 0.061), (0.85, 0.057)],
    }
    for (aug, precision), values in known.items():
        for seed, (accuracy, ece) in enumerate(values):
            params = {"aug.name": aug, "trainer.precision": precision, "seed": seed}
            if aug == "mixup":
                params["aug.alpha"] = 0.2
            run_id = add_run(client, exp_id, params, accuracy, parent=parent, sweep_id="s4")
            client.log_metric(run_id, "test_ece", ece)
    out = tmp_path / "out"
    code = report.main(["--output-dir", str(tmp_path), "--sweep", "s4", "--out", str(out),
                        "--baseline", "trainer.precision=float32"])  # fmt: skip
    assert code == 0
    summary = pd.read_csv(out / "summary.csv").set_index("group")
    bf16_none = summary.loc["aug.name=none,trainer.precision=mixed_bfloat16"]
    assert bf16_none["delta_vs_baseline"] == pytest.approx((0.01 + 0.0 + 0.02) / 3)
    assert bf16_none["ece_delta_vs_baseline"] == pytest.approx(0.003)
    assert bf16_none["ece_delta_ci_low"] == pytest.approx(0.003) and bf16_none["delta_pairs"] == 3  # zero spread
    bf16_mixup = summary.loc["aug.name=mixup,aug.alpha=0.2,trainer.precision=mixed_bfloat16"]
    assert bf16_mixup["delta_vs_baseline"] == pytest.approx(0.0)  # paired with mixup float32, not with none
    assert bf16_mixup["ece_delta_vs_baseline"] == pytest.approx(0.001)
    assert summary.loc["aug.name=mixup,aug.alpha=0.2,trainer.precision=float32", "delta_pairs"] == 0
    md = (out / "report.md").read_text()
    assert "against the baseline trainer.precision=float32" in md
    assert "- none precision=mixed_bfloat16: no detectable difference vs trainer.precision=float32" in md
    assert report.main(["--output-dir", str(tmp_path), "--baseline", "precision"]) == 2


def test_runs_on_different_accelerators_are_separate_groups_and_where_selects_them(tmp_path):
    """The `accelerator` tag splits groups like a config key; --where accelerator=... keeps one kind of hardware."""
    uri, client, exp_id = new_store(tmp_path)
    for accelerator, base in (("cpu", 0.80), ("NVIDIA H200", 0.90)):
        for aug in ("none", "mixup"):
            for seed in (0, 1):
                run_id = add_run(client, exp_id, {"aug.name": aug, "seed": seed, "backend": "jax"}, base + seed / 100)
                client.set_tag(run_id, "accelerator", accelerator)
    run_set = report.fetch_runs(uri, EXPERIMENT, "all")
    summary = pd.read_csv(report.write_report(run_set, uri, EXPERIMENT, tmp_path / "all")["summary.csv"])
    assert sorted(zip(summary["accelerator"], summary["aug.name"])) == [
        ("NVIDIA H200", "mixup"), ("NVIDIA H200", "none"), ("cpu", "mixup"), ("cpu", "none"),
    ]  # fmt: skip
    gpu_only = report.select_runs(run_set, report.parse_where(["accelerator=NVIDIA H200", "backend=jax"]))
    assert len(gpu_only.runs) == 4 and set(gpu_only.runs["accelerator"]) == {"NVIDIA H200"}
    summary = pd.read_csv(report.write_report(gpu_only, uri, EXPERIMENT, tmp_path / "gpu")["summary.csv"])
    assert sorted(summary["test_accuracy_mean"].round(3)) == [0.905, 0.905]
    with pytest.raises(report.ReportError, match="no such key"):
        report.select_runs(run_set, {"acelerator": "cpu"})
    with pytest.raises(report.ReportError, match="No FINISHED runs"):
        report.select_runs(run_set, {"accelerator": "tpu"})
    with pytest.raises(report.ReportError, match="expected KEY=VALUE"):
        report.parse_where(["accelerator"])


def test_verdicts_are_corrected_for_the_comparisons_of_a_table(tmp_path):
    """Three mixup groups against none: one difference that its own interval calls real (p = 0.03) is not
    one after Holm's correction for 3 comparisons (3 x 0.03 > 0.05); the report says which correction."""
    uri, client, exp_id = new_store(tmp_path)
    parent = new_sweep(client, exp_id, "s5")
    base = [0.80, 0.81, 0.82, 0.83]
    diffs = {0.1: [0.01, 0.02, 0.005, 0.015], 0.2: [0.01, -0.01, 0.005, -0.005], 0.4: [-0.01, 0.01, 0.0, 0.005]}
    for seed, accuracy in enumerate(base):
        add_run(client, exp_id, {"aug.name": "none", "seed": seed}, accuracy, parent=parent, sweep_id="s5")
        for alpha, d in diffs.items():
            params = {"aug.name": "mixup", "aug.alpha": alpha, "seed": seed}
            add_run(client, exp_id, params, accuracy + d[seed], parent=parent, sweep_id="s5")
    files = report.write_report(report.fetch_runs(uri, EXPERIMENT, "s5"), uri, EXPERIMENT, tmp_path / "out")
    summary = pd.read_csv(files["summary.csv"]).set_index("label")
    alone = stats.ttest_1samp(diffs[0.1], 0.0).pvalue
    first = summary.loc["mixup α=0.1"]
    assert first["p_value"] == pytest.approx(alone) and 0.0167 < alone < 0.05
    assert first["significant"] and not first["significant_holm"] and first["p_holm"] == pytest.approx(3 * alone)
    assert (summary["comparisons"] == 3).all()
    md = files["report.md"].read_text()
    assert "- mixup α=0.1: no detectable difference vs none (Δ test accuracy +0.0125" in md
    assert f"4 seeds; not after Holm's correction for 3 comparisons (p = {3 * alone:.3f}))" in md
    assert "Holm's step-down correction over the 3 paired comparisons of each table" in md


def test_the_sweeps_parent_run_carries_the_answer(known_store):
    """What `mlflow ui` shows on the parent's row without opening a child: per group the mean test accuracy
    and its interval, the paired Δ and its bounds (metrics), and the answer (tag `answer`)."""
    uri, client, exp_id, tmp_path = known_store
    assert report.main(["--output-dir", str(tmp_path), "--sweep", "s1", "--out", str(tmp_path / "r")]) == 0
    (parent,) = client.search_runs([exp_id], filter_string="tags.sweep_id = 's1' and tags.sweep_parent = 'true'")
    metrics, summary = parent.data.metrics, pd.read_csv(tmp_path / "r" / "summary.csv").set_index("label")
    assert metrics["acc none"] == pytest.approx(summary.loc["none", "test_accuracy_mean"])
    assert metrics["acc mixup α_0.4 ci_low"] == pytest.approx(summary.loc["mixup α=0.4", "test_accuracy_ci_low"])
    assert metrics["Δacc mixup α_0.4"] == pytest.approx(0.05)
    assert metrics["Δacc mixup α_0.2 ci_high"] == pytest.approx(summary.loc["mixup α=0.2", "delta_ci_high"])
    assert "Δacc none" not in metrics  # the baseline has no Δ
    answer = parent.data.tags["answer"]
    assert (
        answer.startswith("mixup α=0.2: no detectable difference vs none") and "mixup α=0.4: better than none" in answer
    )
    assert "report/report.html" in {a.path for a in client.list_artifacts(parent.info.run_id, "report")}


def test_an_alpha_grid_without_a_baseline_is_compared_with_its_best_group(tmp_path):
    """`-m aug.alpha=0.1,0.2,0.4 seed=0,1,2` has no aug=none: the answer names the best α, compares the others
    with it paired by seed (Holm), says that is optimistic, and the parent run carries the same answer."""
    uri, client, exp_id = new_store(tmp_path)
    parent = new_sweep(client, exp_id, "grid")
    for alpha, values in {0.1: [0.80, 0.82, 0.84], 0.2: [0.845, 0.86, 0.88], 0.4: [0.85, 0.87, 0.89]}.items():
        for seed, acc in enumerate(values):
            params = {"aug.name": "mixup", "aug.alpha": alpha, "seed": seed}
            add_run(client, exp_id, params, acc, parent=parent, sweep_id="grid")
    client.set_terminated(parent, "FINISHED")
    run_set = report.fetch_runs(uri, EXPERIMENT, "latest")
    files = report.write_report(run_set, uri, EXPERIMENT, tmp_path / "out", publish=True)
    answer = files["report.md"].read_text().split("## Answer")[1].split("\n\n")[1].splitlines()
    assert answer[0].startswith("- no aug=none in these runs: each group against the best observed one, "
                                "aug.alpha=0.4, paired by seed, Holm over the 2 comparisons; optimistic")  # fmt: skip
    assert "hydra.sweeper.race.epsilon=" in answer[0] and "add aug=none to the sweep" in answer[0]
    (low,) = [line for line in answer if line.startswith("- mixup α=0.1:")]
    assert "worse than aug.alpha=0.4" in low and "95% CI [" in low and "3 seeds" in low  # diffs 0.05, 0.05, 0.05
    summary = pd.read_csv(tmp_path / "out" / "summary.csv")
    assert summary["p_holm"].notna().sum() == 2
    tag = client.get_run(parent).data.tags["answer"]
    assert tag.startswith("no aug=none in these runs") and "worse than aug.alpha=0.4" in tag
