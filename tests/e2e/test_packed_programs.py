"""The packed program itself, apart from tests/e2e/test_packed.py's packed sweep so that the two long files can
run on different pytest-xdist workers: a kill −9 of a packed sweep resumes every member exactly (and a NaN member
fails alone), the GPU's batched program trains as the CPU's one-by-one program, and a TensorFlow job under the
packed launcher runs as the basic launcher would."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from tests.e2e.test_packed import PACKED, assert_same_training, children, history, member, weights
from tests.helpers import (
    EPOCH_METRICS,
    EXPERIMENT,
    ROOT,
    TEST_IMAGES,
    TINY,
    cli,
    mlflow_runs,
    run_cli,
    run_command,
    start_cli,
    steps,
)

RESUMABLE = ["backend=jax", "dataset.train_size=2048", "trainer.epochs=3"]  # long enough to kill in epoch 2


def test_kill_9_of_a_packed_sweep_resumes_every_member_exactly_and_a_nan_member_fails_alone(tmp_path, real_data_dir):
    sweep = [*PACKED, "aug=none,mixup", "trainer.learning_rate=0.001,1e30", "seed=0", *RESUMABLE]
    straight = run_cli(*sweep, f"paths.output_dir={tmp_path / 'straight'}")
    assert straight.returncode != 0  # the NaN members failed the sweep
    done = children(tmp_path / "straight")
    assert sorted(r.info.status for r in done) == ["FAILED", "FAILED", "FINISHED", "FINISHED"]

    out = tmp_path / "killed"
    args = cli(*sweep, f"paths.output_dir={out}")
    job = start_cli(args, env={"PYTHONUNBUFFERED": "1"}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    for line in job.stdout:
        if "Training 4 jobs as one packed program" in line:
            break
    client = MlflowClient(f"sqlite:///{out}/mlflow.db")
    experiment_id = client.get_experiment_by_name(EXPERIMENT).experiment_id
    deadline = time.monotonic() + 300
    while True:  # epoch 1 of the finite members is saved and logged: epoch 2 is running
        runs = [r for r in client.search_runs([experiment_id]) if r.data.params.get("trainer.learning_rate") == "0.001"]
        if len(runs) == 2 and all(client.get_metric_history(r.info.run_id, "loss") for r in runs):
            break
        assert job.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    job.send_signal(signal.SIGKILL)
    job.communicate(timeout=60)
    assert all(len(client.get_metric_history(r.info.run_id, "loss")) < 3 for r in runs)  # killed mid-training

    again = run_command(args, timeout=900)
    log = again.stdout + again.stderr
    assert again.returncode != 0 and log.count("resume ") == 2, log[-3000:]
    final = children(out)
    finished = [r for r in final if r.info.status == "FINISHED"]
    assert sorted(r.info.run_id for r in finished) == sorted(r.info.run_id for r in runs)  # the same runs, once
    nan = [r for r in final if r.data.params["trainer.learning_rate"] != "0.001"]
    assert nan and all(r.info.status in ("FAILED", "KILLED") for r in nan)
    assert any(r.data.tags.get("failure_reason") == "nan_loss" for r in nan if r.info.status == "FAILED")
    straight_client, _ = mlflow_runs(tmp_path / "straight")
    for run in finished:
        for key in EPOCH_METRICS:
            assert steps(client, run.info.run_id, key) == [1, 2, 3], key  # none missing, none twice
        reference = member(done, **{"aug.name": run.data.params["aug.name"], "trainer.learning_rate": "0.001"})
        assert_same_training(
            (history(client, run), weights(client, run, tmp_path)),
            (history(straight_client, reference), weights(straight_client, reference, tmp_path)),
            exact=True,  # the same pack of 4 before and after the kill
        )
        assert not (out / "backups" / run.data.tags["config_fingerprint"]).exists()


def test_the_batched_program_trains_as_the_one_by_one_program(tmp_path, real_data_dir):
    """The GPU's program (vmap over members, scan over the steps of a call) against the CPU's, one after the
    other in one process (`packed.BATCHED` is read when a pack trains). The pack is a recipe's (issue 38): the seed CNN
    with batch norm, SGD, a step schedule, crops and flips, its members differing in seed, augmentation, learning
    rate and weight decay: in the one-by-one program each member is a computation of its own, so the batched one
    agreeing shows each member's own batch-norm statistics, rate and decay."""
    code = f"""
import json, sys
from pathlib import Path
from mixup_sweeps.train import backends
backends.prepare("jax")
from mixup_sweeps.data import datasets
from mixup_sweeps.train import models
from mixup_sweeps.train import packed
from mixup_sweeps.train import training
from mixup_sweeps.job.compose import load_config
results = []
for mode in ("batched", "one_by_one"):
    packed.BATCHED = mode == "batched"
    members = []
    for seed, aug, rate, decay in ((0, "mixup", 0.1, 1e-4), (1, "cutmix", 0.05, 5e-3), (0, "none", 0.1, 0.0)):
        cfg = load_config("{tmp_path}", [f"seed={{seed}}", f"aug={{aug}}", "dataset.train_size=200",
                                         "dataset.test_size={TEST_IMAGES}",
                                         "trainer.epochs=2", "trainer.steps_per_execution=2", "model.batch_norm=true",
                                         "trainer.optimizer=sgd", f"trainer.learning_rate={{rate}}",
                                         f"trainer.weight_decay={{decay}}", "trainer.schedule=step",
                                         "trainer.milestones=[1]", "trainer.input_aug=crop_flip"])
        weights = models.create_initial_weights(Path("{tmp_path}/iw"), cfg.model, (28, 28, 1), 10, seed)
        members.append(training.Member(cfg, datasets.load(cfg.dataset, seed), weights, lambda e, m: None,
                                       Path("{tmp_path}") / mode / str(len(members)), print))
    packed.train(members)
    results.append([[m.history, m.result.test_accuracy] for m in members])
    statistics = [[v.numpy().sum() for v in m.result.trained_network().non_trainable_variables] for m in members]
    assert len({{str(s) for s in statistics}}) == 3  # each member its own batch-norm statistics
print(json.dumps(results))
"""
    job = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert job.returncode == 0, job.stderr[-3000:]
    results = json.loads(job.stdout.strip().splitlines()[-1])
    for (batched_history, batched_test), (history_, test) in zip(*results):
        assert abs(batched_test - test) <= 1.01 / TEST_IMAGES * 20  # 20 test images at most
        for one, two in zip(batched_history, history_):
            assert np.allclose(one["loss"], two["loss"], rtol=1e-4) and np.allclose(
                one["val_loss"], two["val_loss"], rtol=1e-4
            )
            assert one["learning_rate"] == two["learning_rate"]
    rates = [e["learning_rate"] for h, _ in results[0] for e in h]
    assert rates == pytest.approx([0.1, 0.01, 0.05, 0.005, 0.1, 0.01])  # each member's schedule


def test_the_packed_launcher_runs_a_tensorflow_job_as_the_basic_launcher_would(tmp_path):
    """Jobs it cannot pack (not backend=jax) are not refused: each runs alone, as Hydra's basic launcher runs it."""
    result = run_cli(*PACKED, "aug=none,mixup", "backend=tensorflow", *TINY, f"paths.output_dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-3000:]
    runs = children(tmp_path)
    assert len(runs) == 2 and {r.info.status for r in runs} == {"FINISHED"}
    assert {r.data.tags["keras_backend"] for r in runs} == {"tensorflow"}
    assert not any("pack_members" in r.data.tags for r in runs)
