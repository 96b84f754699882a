"""The end-to-end part (the command line, real sweeps; slow) of these tests; beside them:
tests/e2e/test_backend_setup.py.

`backend=tensorflow|jax`: a JAX job needs no TensorFlow, a sweep may cross backends, and every job is set
up to share a GPU before its backend starts (checked here without a GPU: what the job sets, and when)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.e2e.test_backend_setup import TINY, WITHOUT_TENSORFLOW
from tests.helpers import EPOCH_METRICS, ROOT, TEST_IMAGES, accuracy_in_fresh_python, logged_model, mlflow_runs, run_cli

ARTIFACTS = {
    "samples.png",
    "config.yaml",
    "curves.png",
    "reliability.png",
    "hydra",
    "initial_weights",
}


TEST_METRICS = {"test_loss", "test_accuracy", "test_nll", "test_ece", "train_images_per_second"}


def check_tracked_run(run, client, backend: str) -> None:
    assert run.info.status == "FINISHED"
    assert {*EPOCH_METRICS, *TEST_METRICS} <= set(run.data.metrics)
    assert {a.path for a in client.list_artifacts(run.info.run_id)} >= ARTIFACTS
    tags = run.data.tags
    assert tags["keras_backend"] == backend and tags["accelerator"] == "cpu" and tags[f"{backend}_version"]
    assert run.data.params["backend"] == backend


def assert_loads_and_predicts_as_the_run(client, run, backend: str, tmp_path) -> None:
    """`mlflow.keras.load_model("runs:/<id>/model")` in a fresh process on the run's backend: the network's test
    accuracy is the run's (its test pass; within one of the test images, for a prediction batched otherwise),
    and loading it imported nothing of the harness."""
    accuracy, harness = accuracy_in_fresh_python(f"runs:/{run.info.run_id}/model", backend, client.tracking_uri)
    assert abs(accuracy - run.data.metrics["test_accuracy"]) <= 1.01 / TEST_IMAGES and harness == []
    model_dir = logged_model(client, run.info.run_id, tmp_path)
    requirements = (model_dir / "requirements.txt").read_text()
    assert {"keras", backend} <= {line.split("==")[0].removesuffix("-cpu") for line in requirements.split()}


def test_a_jax_job_runs_where_tensorflow_is_not_installed(tmp_path, real_data_dir):
    job = subprocess.run(
        [sys.executable, "-c", WITHOUT_TENSORFLOW, "backend=jax", *TINY, f"paths.output_dir={tmp_path}"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert job.returncode == 0, job.stderr[-3000:]
    assert "tensorflow loaded: False" in job.stdout
    client, runs = mlflow_runs(tmp_path)
    (run,) = runs
    check_tracked_run(run, client, "jax")
    assert "tensorflow_version" not in run.data.tags


def test_one_sweep_over_both_backends_in_one_process(tmp_path, real_data_dir):
    """Hydra's basic launcher runs both jobs in one process: the second switches Keras to the other backend. The
    jobs train a recipe's network (issue 38: the ResNet of resnet20.yaml at depth 8, one block a stage, to keep the
    suite short; SGD with decay, a step schedule, crops and flips): it runs on both engines, Keras's fit and the
    packed JAX program, from the same initial weights."""
    recipe = [
        "model=resnet20", "model.depth=8", "trainer.optimizer=sgd", "trainer.learning_rate=0.05",
        "trainer.weight_decay=0.0001", "trainer.schedule=step", "trainer.milestones=[1]", "trainer.input_aug=crop_flip",
    ]  # fmt: skip
    result = run_cli("-m", "backend=tensorflow,jax", *TINY, *recipe, f"paths.output_dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-3000:]
    client, runs = mlflow_runs(tmp_path)
    children = {r.data.params["backend"]: r for r in runs if r.data.tags.get("sweep_parent") != "true"}
    assert set(children) == {"tensorflow", "jax"}
    for backend, run in children.items():
        check_tracked_run(run, client, backend)
    fingerprints = {r.data.tags["config_fingerprint"] for r in children.values()}
    assert len(fingerprints) == 2  # the backend is part of what a run computes
    assert len({r.data.tags["init_weights_sha256"] for r in children.values()}) == 1  # the same start
    for backend, run in children.items():  # each network loads in a fresh Python, without the harness
        assert_loads_and_predicts_as_the_run(client, run, backend, tmp_path)
    for run in children.values():
        rates = [
            m.value for m in sorted(client.get_metric_history(run.info.run_id, "learning_rate"), key=lambda m: m.step)
        ]
        assert rates == pytest.approx([0.05, 0.005]) and run.data.params["model.name"] == "resnet20"
