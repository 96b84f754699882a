"""Exact resume and reproducible runs, through the real CLI on both backends: with trainer.deterministic=true a
config run twice gives the same metrics and weights, and a job killed after epoch 1 and run again ends bit for
bit as the uninterrupted job. The job trains with the recipe where resume has the most to restore (issue 38):
SGD with momentum and coupled weight decay, a step schedule whose milestone falls on epoch 2 (the one the kill
interrupts: the rerun starts right after the milestone), crops and flips."""

from __future__ import annotations

import signal
import subprocess
import time

import pytest
from mlflow.tracking import MlflowClient

from tests.helpers import (
    EPOCH_METRICS,
    EXPERIMENT,
    TINY,
    cli,
    mlflow_runs,
    network_weights,
    run_cli,
    run_command,
    start_cli,
    steps,
)

RECIPE = ["trainer.optimizer=sgd", "trainer.learning_rate=0.05", "trainer.weight_decay=0.0005",
          "trainer.schedule=step", "trainer.milestones=[1]", "trainer.input_aug=crop_flip"]  # fmt: skip
RESUMABLE = ["dataset.train_size=2048", "trainer.epochs=3", "trainer.deterministic=true", *RECIPE]  # epochs 2-3: kill
TRAINING_METRICS = ("loss", "accuracy", "val_loss", "val_accuracy", "learning_rate")  # epoch_seconds is wall time


def outcome(client: MlflowClient, run_id: str, tmp_path) -> tuple[dict, list]:
    """A run's per-epoch training metrics and test accuracy, and its trained weights as arrays."""
    metrics = {k: [m.value for m in sorted(client.get_metric_history(run_id, k), key=lambda m: m.step)]
               for k in TRAINING_METRICS}  # fmt: skip
    metrics["test_accuracy"] = client.get_run(run_id).data.metrics["test_accuracy"]
    return metrics, network_weights(client, run_id, tmp_path)


def assert_same_outcome(first: tuple[dict, list], second: tuple[dict, list]) -> None:
    assert first[0] == second[0]  # every epoch's loss/accuracy/val_*, rate, and the test accuracy, exactly
    assert first[0]["learning_rate"] == pytest.approx([0.05, 0.005, 0.005])  # the milestone
    assert [name for name, _ in first[1]] == [name for name, _ in second[1]] and len(first[1]) >= 8
    for (name, one), (_, two) in zip(first[1], second[1]):
        assert one.tobytes() == two.tobytes(), name  # bit for bit


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, real_data_dir):
    """Per backend: the resumable job run twice without interruption (the second with resume=false)."""
    results = {}

    def run(backend: str) -> list[tuple[dict, list]]:
        if backend not in results:
            out = tmp_path_factory.mktemp(f"uninterrupted-{backend}")
            for extra in ([], ["resume=false"]):
                result = run_cli(*RESUMABLE, f"backend={backend}", f"paths.output_dir={out}", *extra)
                assert result.returncode == 0, result.stderr[-2000:]
            client, runs = mlflow_runs(out)
            assert len(runs) == 2 and all(r.data.tags["keras_backend"] == backend for r in runs)
            results[backend] = [outcome(client, r.info.run_id, out) for r in runs]
        return results[backend]

    return run


@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_deterministic_runs_of_one_config_are_identical(backend, uninterrupted):
    """trainer.deterministic=true: two runs, two processes, the same metrics and weights, on either backend."""
    first, second = uninterrupted(backend)
    assert_same_outcome(first, second)


@pytest.mark.parametrize(
    "sig, backend",
    [(signal.SIGTERM, "tensorflow"), (signal.SIGKILL, "tensorflow"), (signal.SIGKILL, "jax")],
    ids=lambda v: getattr(v, "name", v),
)  # fmt: skip
def test_killed_during_epoch_2_continues_in_the_same_run_exactly(sig, backend, tmp_path, uninterrupted):
    """Killed after epoch 1, run again: the same run, ending exactly as the uninterrupted job (metrics, weights)."""
    args = cli(*RESUMABLE, f"backend={backend}", f"paths.output_dir={tmp_path}")
    # PYTHONUNBUFFERED: see the job's "start" line when it is printed
    job = start_cli(args, env={"PYTHONUNBUFFERED": "1"}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    for line in job.stdout:  # the store exists once the job says it started
        if "] - start " in line:
            break
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    run_id = client.search_runs([client.get_experiment_by_name(EXPERIMENT).experiment_id])[0].info.run_id
    deadline = time.monotonic() + 300
    while not client.get_metric_history(run_id, "loss"):  # epoch 1 is saved and logged: epoch 2 is running
        assert job.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    assert len(client.get_metric_history(run_id, "loss")) < 3  # still training when the signal goes out
    job.send_signal(sig)
    output = job.communicate(timeout=120)[0]
    assert job.returncode != 0, output[-3000:]
    expected = "RUNNING" if sig == signal.SIGKILL else "KILLED"  # kill -9 leaves no chance to say anything
    assert client.get_run(run_id).info.status == expected
    assert steps(client, run_id, "loss") in ([1], [1, 2])
    if sig == signal.SIGTERM:  # what follows is the same resume as after kill -9 (the two cases below)
        assert any((tmp_path / "backups").rglob("*.json"))  # its epoch's journal and state, kept to resume from
        return
    if sig == signal.SIGKILL:  # the next job on this store sees that the run's process is gone
        other = run_cli("aug=none", *TINY, f"backend={backend}", f"paths.output_dir={tmp_path}")
        assert other.returncode == 0, other.stderr[-2000:]
        ghost = client.get_run(run_id)
        assert ghost.info.status == "KILLED" and ghost.data.tags["failure_reason"] == "process_gone"
        assert ghost.data.tags["pid"] == str(job.pid)

    again = run_command(args)
    assert again.returncode == 0, again.stderr[-2000:]
    name = ",".join(a for a in args[3:] if not a.startswith("paths."))  # the overrides as typed, paths left out
    assert f"resume {name}: run {run_id}" in again.stdout + again.stderr
    _, runs = mlflow_runs(tmp_path)
    runs = [r for r in runs if r.data.params["aug.name"] == "mixup"]
    assert [r.info.run_id for r in runs] == [run_id] and runs[0].info.status == "FINISHED"
    assert runs[0].data.tags["pid"] != str(job.pid)  # the resuming process owns the run now
    # issue 41: FINISHED, so no longer failed: the kill is history, not the run's error
    assert "error" not in runs[0].data.tags and "failure_reason" not in runs[0].data.tags
    if sig == signal.SIGKILL:
        assert f"process_gone: process {job.pid} on " in runs[0].data.tags["interrupted_at"]
    for key in EPOCH_METRICS:
        assert steps(client, run_id, key) == [1, 2, 3], key  # none missing, none twice
    assert_same_outcome(outcome(client, run_id, tmp_path), uninterrupted(backend)[0])
    assert not (tmp_path / "backups" / runs[0].data.tags["config_fingerprint"]).exists()
