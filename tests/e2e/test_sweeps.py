"""End to end through the real CLI: Hydra multirun on real Fashion-MNIST into a real MLflow SQLite store."""

from __future__ import annotations

import json
import statistics

import pandas as pd
import pytest

from tests.helpers import mlflow_runs, report_command, run_cli, run_command, run_report

EPOCH_METRICS = ["loss", "accuracy", "val_loss", "val_accuracy", "learning_rate", "epoch_seconds"]


def split_parent(runs):
    parents = [r for r in runs if r.data.tags.get("sweep_parent") == "true"]
    children = [r for r in runs if r.data.tags.get("sweep_parent") != "true"]
    return parents, children


@pytest.fixture(scope="module")
def alpha_sweep(shared_sweep):
    """The session's shared sweep (tests/e2e/conftest.py): aug.alpha=0.1,0.2,0.4 on 256 images, 2 epochs."""
    client, runs = mlflow_runs(shared_sweep.out)
    return shared_sweep.out, client, runs, shared_sweep.log


def test_parent_and_three_finished_children(alpha_sweep):
    _, _, runs, _ = alpha_sweep
    parents, children = split_parent(runs)
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    parent = parents[0]
    assert len(children) == 3 and all(r.info.status == "FINISHED" for r in children)
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parent.info.run_id}
    assert {r.data.tags["sweep_id"] for r in children} == {parent.data.tags["sweep_id"]}
    assert sorted(r.info.run_name for r in children) == ["aug.alpha=0.1", "aug.alpha=0.2", "aug.alpha=0.4"]


def test_params_are_the_flattened_config(alpha_sweep):
    _, _, runs, _ = alpha_sweep
    _, children = split_parent(runs)
    assert sorted(float(r.data.params["aug.alpha"]) for r in children) == [0.1, 0.2, 0.4]
    for run in children:
        params = run.data.params
        assert params["aug.name"] == "mixup" and params["trainer.epochs"] == "2" and params["seed"] == "0"
        assert params["dataset.train_size"] == "256" and params["model.name"] == "seed_cnn"
        assert params["trainer.batch_size"] == "64" and params["dataset.val_size"] == "2000"


def test_metrics_per_epoch_and_at_the_end(alpha_sweep):
    _, client, runs, _ = alpha_sweep
    _, children = split_parent(runs)
    for run in children:
        for key in EPOCH_METRICS:
            history = client.get_metric_history(run.info.run_id, key)
            assert sorted(m.step for m in history) == [1, 2], key
        assert 0.0 <= run.data.metrics["test_accuracy"] <= 1.0 and run.data.metrics["test_loss"] > 0
        assert run.data.metrics["train_images_per_second"] > 0
        assert 0.0 <= run.data.metrics["test_ece"] <= 1.0 and run.data.metrics["test_nll"] > 0
        assert run.data.metrics["label_noise_realized"] == 0.0


def test_artifacts_and_tags(alpha_sweep):
    _, client, runs, _ = alpha_sweep
    _, children = split_parent(runs)
    digests = []
    for run in children:
        top = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {
            "config.yaml",
            "samples.png",
            "curves.png",
            "reliability.png",
            "hydra",
            "initial_weights",
        } <= top
        hydra_files = {a.path for a in client.list_artifacts(run.info.run_id, "hydra")}
        assert {"hydra/config.yaml", "hydra/overrides.yaml", "hydra/hydra.yaml"} <= hydra_files
        local = client.download_artifacts(run.info.run_id, "samples.png")
        assert open(local, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
        tags = run.data.tags
        assert tags["keras_version"].startswith("3.") and tags["tensorflow_version"].startswith("2.")
        assert tags["keras_backend"] == "tensorflow" and tags["accelerator"] == "cpu"
        assert len(tags["git_commit"]) >= 40 and tags["dataset.dir"]
        assert len(tags["dataset.sha256.train-images-idx3-ubyte.gz"]) == 64
        # MLflow's own source tags (the UI's source and user columns) beside the harness's git_commit
        assert tags["mlflow.source.git.commit"] == tags["git_commit"].removesuffix("-dirty")
        assert tags["mlflow.source.name"].endswith("mixup_sweeps/run.py") and tags["mlflow.user"]
        # the splits as MLflow datasets: the dataset column, digests of the split rule (the same for every α)
        inputs = {i.tags[0].value: i.dataset for i in run.inputs.dataset_inputs}
        assert set(inputs) == {"training", "validation", "test"}
        assert inputs["training"].name == "fashion_mnist-train" and inputs["training"].source_type == "local"
        assert json.loads(inputs["training"].profile)["features_shape"] == [256, 28, 28, 1]
        digests.append({context: dataset.digest for context, dataset in inputs.items()})
        # the network as an MLflow Model, its test metrics linked to it
        (output,) = run.outputs.model_outputs
        model = client.get_logged_model(output.model_id)
        assert model.source_run_id == run.info.run_id and model.name == "model"
        linked = {m.key: m for m in model.metrics}
        assert linked["test_accuracy"].value == run.data.metrics["test_accuracy"]
        assert linked["test_accuracy"].dataset_digest == inputs["test"].digest
        assert linked["train_images_per_second"].dataset_digest is None  # not measured on the test set
    assert len({json.dumps(d, sort_keys=True) for d in digests}) == 1 and len(set(digests[0].values())) == 3
    experiment = client.get_experiment(children[0].info.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"  # the UI opens on training runs
    assert len({r.data.tags["init_weights_sha256"] for r in children}) == 1  # same start for every alpha
    assert len({r.data.tags["config_fingerprint"] for r in children}) == 3


def test_everything_written_under_output_dir(alpha_sweep):
    out, _, _, _ = alpha_sweep
    assert (out / "mlflow.db").is_file() and (out / "mlartifacts").is_dir()
    assert len(list((out / "initial_weights").glob("*.weights.h5"))) == 1
    assert len(list((out / "multirun").glob("*/*/samples.png"))) == 3


def test_the_report_of_an_alpha_grid_on_one_seed_names_the_best_and_the_command_that_would_answer(
    alpha_sweep, tmp_path
):
    """No aug=none and one seed (the card's first command): compared with the best α, and the same sweep with
    seed=0,1,2 is the command that answers."""
    out, _, _, _ = alpha_sweep
    assert run_report("--output-dir", out, "--out", tmp_path / "r") == 0
    answer = (tmp_path / "r" / "report.md").read_text().split("## Answer")[1].split("\n\n")[1]
    assert "no aug=none in these runs: each group against the best observed one, aug.alpha=" in answer
    (line,) = [li for li in answer.splitlines() if "one seed per group" in li]
    assert line.endswith("seed=0,1,2") and "python -m mixup_sweeps.run -m " in line and "aug.alpha=0.1,0.2,0.4" in line


def test_one_line_per_job_start_and_end(alpha_sweep):
    *_, log = alpha_sweep
    assert log.count("] - start aug.alpha=") == 3
    assert log.count("] - done aug.alpha=") == 3 and "test_accuracy=" in log


@pytest.fixture(scope="module")
def default_sweep(tmp_path_factory, real_data_dir):
    out = tmp_path_factory.mktemp("default_sweep")
    result = run_cli(
        "-m", "experiment=default_sweep", "seed=0,1", "dataset.train_size=256", "trainer.epochs=1",
        f"paths.output_dir={out}",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return out


def test_default_sweep_preset_is_one_sweep_with_shared_weights_per_seed(default_sweep):
    _, runs = mlflow_runs(default_sweep)
    parents, children = split_parent(runs)
    assert len(parents) == 1 and len(children) == 4  # seed=0,1 on the command line replaces the preset's 0,1,2
    assert all(r.info.status == "FINISHED" for r in runs)
    names = sorted(r.info.run_name for r in children)
    assert names == sorted(f"seed={s},{v}" for s in (0, 1) for v in ("aug=none", "aug=mixup,aug.alpha=0.2"))
    baseline = [r for r in children if r.data.params["aug.name"] == "none"]
    assert len(baseline) == 2 and all("aug.alpha" not in r.data.params for r in baseline)
    by_seed = {}
    for run in children:
        by_seed.setdefault(run.data.params["seed"], set()).add(run.data.tags["init_weights_sha256"])
    assert all(len(shas) == 1 for shas in by_seed.values())  # same seed: byte-identical start
    assert by_seed["0"] != by_seed["1"]  # another seed: other weights


def test_report_numbers_equal_those_from_the_client(default_sweep):
    result = run_command(report_command("--output-dir", str(default_sweep)), timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    client, runs = mlflow_runs(default_sweep)
    parents, children = split_parent(runs)
    sweep_id = parents[0].data.tags["sweep_id"]
    out = default_sweep / "reports" / sweep_id
    assert str(out) in result.stdout
    summary = pd.read_csv(out / "summary.csv")
    assert len(summary) == 2 and (summary["n"] == 2).all()
    accuracy = {(r.data.params["aug.name"], r.data.params.get("aug.alpha"), r.data.params["seed"]):
                r.data.metrics["test_accuracy"] for r in children}  # fmt: skip
    for _, row in summary.iterrows():
        alpha = None if pd.isna(row.get("aug.alpha")) else f"{row['aug.alpha']:g}"
        values = [accuracy[(row["aug.name"], alpha, seed)] for seed in ("0", "1")]
        assert row["test_accuracy_mean"] == pytest.approx(statistics.mean(values))
        assert row["test_accuracy_std"] == pytest.approx(statistics.stdev(values))
        if row["aug.name"] == "mixup":
            deltas = [accuracy[("mixup", alpha, s)] - accuracy[("none", None, s)] for s in ("0", "1")]
            assert row["delta_vs_baseline"] == pytest.approx(statistics.mean(deltas))
            assert row["delta_pairs"] == 2
    for name in ("summary.csv", "runs.csv", "report.md", "report.html", "accuracy_vs_alpha.png", "learning_curves.png"):
        assert (out / name).is_file(), name
    logged = {a.path for a in client.list_artifacts(parents[0].info.run_id, "report")}
    assert "report/report.html" in logged and "report/summary.csv" in logged


def test_default_output_dir_is_outputs_under_the_current_directory(alpha_sweep):
    """The shared sweep was typed without paths.output_dir in a directory of its own."""
    out, _, runs, _ = alpha_sweep
    assert out.name == "outputs" and (out / "mlflow.db").is_file()
    _, children = split_parent(runs)
    assert {r.data.params["paths.output_dir"] for r in children} == {str(out)}


def test_variants_preset_with_label_noise_one_command(tmp_path, real_data_dir):
    """The variants preset (mixup x lam x pairing, CutMix, FMix, baseline) on noisy labels, two seeds: every job
    trains and records; a report of one seed has nothing to correct, of both six comparisons corrected together."""
    out = tmp_path / "variants"
    tiny = ["dataset.train_size=256", "trainer.epochs=1", "dataset.val_size=500", "dataset.label_noise=0.2", "seed=0,1"]
    result = run_cli("-m", "experiment=variants", *tiny, f"paths.output_dir={out}")
    assert result.returncode == 0, result.stderr[-3000:]
    _, runs = mlflow_runs(out)
    _, children = split_parent(runs)
    assert len(children) == 14 and all(r.info.status == "FINISHED" for r in children)
    variants = {
        (r.data.params["aug.name"], r.data.params.get("aug.lam"), r.data.params.get("aug.pairing")) for r in children
    }
    assert variants == {
        ("none", None, None),
        ("cutmix", None, None),
        ("fmix", None, None),
        *(("mixup", lam, pairing) for lam in ("per_sample", "per_batch") for pairing in ("two_streams", "permute")),
    }
    for run in children:
        assert run.data.params["dataset.label_noise"] == "0.2"
        assert run.data.metrics["label_noise_realized"] == pytest.approx(round(0.2 * 256) / 256)
        assert "test_ece" in run.data.metrics and "test_nll" in run.data.metrics
    assert run_report("--output-dir", out, "--where", "seed=0", "--out", out / "one-seed") == 0
    text = (out / "one-seed" / "report.md").read_text()  # readable labels in the report, the full keys in summary.csv
    assert "test ECE" in text and "| mixup α=0.2 per_batch permute " in text and "| cutmix α=1 " in text
    assert "| fmix α=1 " in text
    groups = pd.read_csv(out / "one-seed" / "summary.csv")["group"]
    assert groups.str.contains("aug.pairing=permute").any() and groups.str.contains("aug.name=cutmix").any()
    assert "Verdicts: no paired test (a comparison needs 2 seeds)" in text  # one seed: nothing to correct

    # both seeds: six paired comparisons with none, corrected together
    assert run_report("--output-dir", out, "--out", out / "two-seeds") == 0
    text = (out / "two-seeds" / "report.md").read_text()
    assert "Holm's step-down correction over the 6 paired comparisons of each table" in text
    summary = pd.read_csv(out / "two-seeds" / "summary.csv")
    assert (summary["comparisons"] == 6).all() and summary["p_holm"].notna().sum() == 6


def test_precision_sweep_starts_both_runs_from_the_same_float32_weights(tmp_path, real_data_dir):
    tiny = ["dataset.train_size=256", "trainer.epochs=1"]
    result = run_cli("-m", "trainer.precision=float32,mixed_bfloat16", *tiny, f"paths.output_dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-3000:]
    client, runs = mlflow_runs(tmp_path)
    _, children = split_parent(runs)
    by_precision = {r.data.params["trainer.precision"]: r for r in children}
    assert sorted(by_precision) == ["float32", "mixed_bfloat16"]
    assert all(r.info.status == "FINISHED" for r in children)
    assert len({r.data.tags["init_weights_sha256"] for r in children}) == 1
    assert len({r.data.tags["config_fingerprint"] for r in children}) == 2
    bf16 = by_precision["mixed_bfloat16"]
    assert [m.step for m in client.get_metric_history(bf16.info.run_id, "val_accuracy")] == [1]
    assert {"test_accuracy", "test_ece", "test_nll"} <= set(bf16.data.metrics)


def test_seeds_until_precise_is_one_sweep_that_ends_at_the_width_or_max_seeds(tmp_path, real_data_dir):
    """Stein's two stages as Hydra launches of one sweep; the report shows that procedure's interval; a rerun
    skips everything."""
    half_width, first, most = 0.02, 2, 3  # t(1) = 12.7: stage 2 is all but certain (so it is exercised)
    command = ["-m", "experiment=seed_reproduction", f"hydra.sweeper.until.half_width={half_width}",
               f"hydra.sweeper.until.min_seeds={first}", f"hydra.sweeper.until.max_seeds={most}",
               "dataset.train_size=256", "trainer.epochs=1", f"paths.output_dir={tmp_path}"]  # fmt: skip
    result = run_cli(*command)
    assert result.returncode == 0, result.stderr[-3000:]
    output = result.stdout + result.stderr
    assert "Seeds until precise, stage 1: 4 jobs" in output and "[1/4] aug=none,seed=0" in output
    last = [line for line in result.stdout.splitlines() if line.strip()][-1]  # the log (stderr: TF's noise)
    assert "seeds until precise: aug=none:" in last and "aug=mixup aug.alpha=0.2:" in last, last
    _, runs = mlflow_runs(tmp_path)
    (parent,), children = split_parent(runs)
    outcome = {e["group"]: e for e in json.loads(parent.data.tags["seeds_until_result"])}
    mixup, none = outcome["aug=mixup aug.alpha=0.2"], outcome["aug=none"]
    assert first <= mixup["seeds"] <= most and none["seeds"] == mixup["seeds"]  # the baseline runs the same seeds
    assert mixup["reached"] == (mixup["half_width"] <= half_width) and (mixup["reached"] or mixup["seeds"] == most)
    seeds_run = sorted((r.data.params["aug.name"], int(r.data.params["seed"])) for r in children)
    assert seeds_run == sorted((aug, s) for aug in ("mixup", "none") for s in range(mixup["seeds"]))

    assert run_report("--output-dir", tmp_path) == 0
    summary = pd.read_csv(next((tmp_path / "reports").glob("*/summary.csv"))).set_index("label")
    row = summary.loc["mixup"]
    assert row["interval"] == f"Stein, first {first} seeds" and row["delta_pairs"] == mixup["seeds"]
    assert (row["delta_ci_high"] - row["delta_ci_low"]) / 2 == pytest.approx(mixup["half_width"])

    again = run_cli(*command)
    assert again.returncode == 0 and (again.stdout + again.stderr).count("FINISHED already") == 2 * mixup["seeds"]
    assert len(mlflow_runs(tmp_path)[1]) == len(runs)
