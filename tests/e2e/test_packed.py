"""`hydra/launcher=packed`: several JAX jobs trained as one vmapped program, each an ordinary run.

Tolerance: the training step is the same function in a pack of any size (Keras's train_step under vmap, the
same batches, dropout masks and initial weights), but XLA batches a vmapped convolution differently for
another pack width, so results agree to float32 rounding (which Adam's early steps amplify), not bit for bit.
Measured (512 images, 2 epochs, 16 steps): training loss and accuracy and test accuracy equal, validation loss
2e-6 apart, weights at most 3e-5 apart (of ~0.05). Checked: losses within a relative 1e-4, accuracies within
one image, weights within 1e-4. Resuming a member is exact: the same pack before and after a kill gives the
same numbers bit for bit.
"""

from __future__ import annotations

import os
import subprocess

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from tests.e2e.conftest import PATIENT_RAY, one_ray_at_a_time
from tests.helpers import EPOCH_METRICS, ROOT, TEST_IMAGES, cli, mlflow_runs, network_weights, run_cli, steps

SMALL = ["backend=jax", "dataset.train_size=512", "trainer.epochs=2"]
PACKED = ["-m", "hydra/launcher=packed"]
SAMPLE_OFTEN = {"MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL": "0.5"}  # MLflow's system metrics within a short job
SYSTEM_CPU = "system/cpu_utilization_percentage"
LOSSES = ("loss", "val_loss")  # per epoch, within a relative 1e-4
ACCURACIES = {"accuracy": 512, "val_accuracy": 2000, "test_accuracy": TEST_IMAGES}  # within one image of these


def children(output_dir) -> list:
    _, runs = mlflow_runs(output_dir)
    return [r for r in runs if r.data.tags.get("sweep_parent") != "true"]


def member(runs: list, **params: str):
    (found,) = [r for r in runs if all(r.data.params.get(k) == v for k, v in params.items())]
    return found


def history(client: MlflowClient, run) -> dict[str, list[float]]:
    keys = (*LOSSES, "accuracy", "val_accuracy")
    return {k: [m.value for m in sorted(client.get_metric_history(run.info.run_id, k), key=lambda m: m.step)]
            for k in keys} | {"test_accuracy": [run.data.metrics["test_accuracy"]]}  # fmt: skip


def weights(client: MlflowClient, run, tmp_path) -> list[np.ndarray]:
    return [array for _, array in network_weights(client, run.info.run_id, tmp_path)]


def assert_same_training(one: tuple, two: tuple, exact: bool = False) -> None:
    (h1, w1), (h2, w2) = one, two
    assert len(w1) == len(w2) >= 8 and h1.keys() == h2.keys()
    if exact:
        assert h1 == h2 and all(a.tobytes() == b.tobytes() for a, b in zip(w1, w2))
        return
    for key in LOSSES:
        assert np.allclose(h1[key], h2[key], rtol=1e-4, atol=0), key
    for key, images in ACCURACIES.items():
        assert np.allclose(h1[key], h2[key], rtol=0, atol=1.01 / images), key
    assert max(float(np.max(np.abs(a - b))) for a, b in zip(w1, w2)) <= 1e-4


@pytest.fixture(scope="module")
def packed_sweep(tmp_path_factory, real_data_dir):
    out = tmp_path_factory.mktemp("packed")
    result = run_cli(*PACKED, "aug=none,mixup", "seed=0,1", *SMALL, f"paths.output_dir={out}", env=SAMPLE_OFTEN)
    assert result.returncode == 0, result.stderr[-3000:]
    return out, result.stdout + result.stderr


def test_a_packed_sweep_lands_ordinary_runs_that_an_unpacked_sweep_skips(packed_sweep):
    out, log = packed_sweep
    assert "Training 4 jobs as one packed program" in log
    client, _ = mlflow_runs(out)
    runs = children(out)
    assert len(runs) == 4 and all(r.info.status == "FINISHED" for r in runs)
    for run in runs:
        assert run.data.tags["pack_members"] == "4" and run.data.tags["keras_backend"] == "jax"
        assert {"test_accuracy", "test_loss", "test_ece", "test_nll", *EPOCH_METRICS} <= set(run.data.metrics)
        for key in EPOCH_METRICS:
            assert steps(client, run.info.run_id, key) == [1, 2], key
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"reliability.png", "curves.png", "samples.png", "config.yaml", "hydra"} <= artifacts
        assert run.outputs.model_outputs  # every member of the pack logs its network as an MLflow Model
    assert len({r.data.tags["init_weights_sha256"] for r in runs}) == 2  # one per seed: none and mixup start equal
    assert not list(out.glob("backups/*/*"))  # finished members keep no checkpoint
    # the machine is sampled once per process: on the pack's first member, not on each of its 4
    assert sum(SYSTEM_CPU in r.data.metrics for r in runs) == 1

    again = run_cli("-m", "aug=none,mixup", "seed=0,1", *SMALL, f"paths.output_dir={out}")  # the basic launcher
    assert again.returncode == 0, again.stderr[-3000:]
    assert (again.stdout + again.stderr).count("FINISHED already") == 4
    assert len(children(out)) == 4


def test_a_member_trains_as_it_would_alone(packed_sweep, tmp_path, real_data_dir):
    """A pack of 4 against a pack of 1. Other companions and another pack width (packs of two, with the other
    seed's members): the two tests below, which compare every member of this pack with its twin in a pack of 2."""
    out, _ = packed_sweep
    client, _ = mlflow_runs(out)
    in_pack_of_4 = member(children(out), **{"aug.name": "mixup", "seed": "1"})

    alone = run_cli("aug=mixup", "seed=1", *SMALL, f"paths.output_dir={tmp_path / 'alone'}",
                    "tracking.system_metrics=false", env=SAMPLE_OFTEN)  # fmt: skip
    assert alone.returncode == 0, alone.stderr[-3000:]
    (lone,) = children(tmp_path / "alone")
    assert not any(key.startswith("system/") for key in lone.data.metrics)  # switched off
    lone_client, _ = mlflow_runs(tmp_path / "alone")
    assert lone.data.tags["pack_members"] == "1"
    assert lone.data.tags["config_fingerprint"] == in_pack_of_4.data.tags["config_fingerprint"]
    assert_same_training(
        (history(client, in_pack_of_4), weights(client, in_pack_of_4, tmp_path)),
        (history(lone_client, lone), weights(lone_client, lone, tmp_path)),
    )


def _same_runs_as_the_local_pack(packed_sweep, out, tmp_path) -> None:
    (client, runs), (reference_client, reference) = mlflow_runs(out), mlflow_runs(packed_sweep[0])
    runs = [r for r in runs if r.data.tags.get("sweep_parent") != "true"]
    assert len(runs) == 4 and {r.info.status for r in runs} == {"FINISHED"}
    assert {r.data.tags["pack_members"] for r in runs} == {"2"}  # two packs of two
    assert len({r.data.tags["pid"] for r in runs}) == 2  # ... each trained by a worker process of its own
    for run in runs:
        params = {k: run.data.params[k] for k in ("aug.name", "seed")}
        local = member(reference, **params)
        assert_same_training(
            (history(client, run), weights(client, run, tmp_path)),
            (history(reference_client, local), weights(reference_client, local, tmp_path)),
        )


def test_two_packs_in_two_processes_land_the_same_runs_as_one_local_pack(packed_sweep, tmp_path):
    """`hydra.launcher.processes=2` (what a machine with two GPUs gets, one GPU per process)."""
    out = tmp_path / "processes"
    result = run_cli(*PACKED, "aug=none,mixup", "seed=0,1", *SMALL, "hydra.launcher.pack_size=2",
                     "hydra.launcher.processes=2", f"paths.output_dir={out}")  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Training 2 packs in 2 processes" in result.stdout + result.stderr
    _same_runs_as_the_local_pack(packed_sweep, out, tmp_path)


def test_two_packs_as_two_ray_tasks_land_the_same_runs_as_one_local_pack(packed_sweep, tmp_path, tmp_path_factory):
    """`hydra.launcher.ray=true` on a local Ray instance of 2 CPUs, no GPU asked for (on a cluster: one each).
    `address=local`: a new instance, not test_cluster.py's head (the two never run at once: `one_ray_at_a_time`)."""
    out = tmp_path / "ray"
    # a local instance, not a cluster; its own HOME: Ray writes the instance's new auth token to ~/.ray/auth_token,
    # and test_cluster.py checks that its cluster's token never becomes a file in the suite's HOME
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("RAY_")}, **PATIENT_RAY,
           "HOME": str(tmp_path / "home")}  # fmt: skip
    command = cli(*PACKED, "aug=none,mixup", "seed=0,1", *SMALL,
                  "hydra.launcher.pack_size=2", "hydra.launcher.ray=true", "hydra.launcher.ray_remote.num_gpus=0",
                  "+hydra.launcher.ray_init.num_cpus=2",
                  "+hydra.launcher.ray_init.include_dashboard=false", "+hydra.launcher.ray_init.address=local",
                  "+hydra.launcher.ray_init._node_ip_address=127.0.0.1",  # loopback: a sandbox's own IP may not connect
                  f"paths.output_dir={out}")  # fmt: skip
    with one_ray_at_a_time(tmp_path_factory):
        result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Training 2 packs as Ray tasks" in result.stdout + result.stderr
    _same_runs_as_the_local_pack(packed_sweep, out, tmp_path)


def test_each_member_logs_to_its_own_job_log_and_the_pack_logs_its_epochs(packed_sweep):
    out, output = packed_sweep
    first = sorted(out.glob("multirun/*"))[0]  # the packed sweep's (another test sweeps this store again)
    logs = sorted(first.glob("*/run.log"))
    assert len(logs) == 4
    for path in logs:
        text = path.read_text()
        (name,) = {line.split("start ", 1)[1].split(" (run")[0] for line in text.splitlines() if "] - start " in line}
        assert f"done {name}: test_accuracy=" in text  # written after the pack trained, into this job's file
        assert text.count("] - done ") == 1  # and no other member's
    assert "pack of 4: epoch 2/2, 4 training, mean val_accuracy" in output
