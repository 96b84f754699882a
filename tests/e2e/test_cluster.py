"""Scale-out on loopback: a sweep through Hydra's Ray launcher, tracked by an MLflow server on PostgreSQL.

Everything listens on 127.0.0.1 only and is torn down at the end: a fresh PostgreSQL cluster (Debian's
`postgresql`, `.ci/run` installs it), `mlflow server --backend-store-uri postgresql://... --artifacts-destination`
and a Ray head (`ray start --head`). The jobs reach the server through MLFLOW_TRACKING_URI, which the
`ray_cluster` launcher preset hands to the Ray workers; artifacts travel through the server's artifact
serving, and the shared initial weights through the sweep parent run.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.e2e.conftest import PATIENT_RAY, one_ray_at_a_time, start_server, stop_server
from tests.helpers import EXPERIMENT, TEST_SIZE, free_port, report_command, run_cli, run_command

TINY = ["dataset.train_size=256", "trainer.epochs=1", TEST_SIZE]
# Ray rewrites a 127.0.0.1 address to the machine's outward IP, where a loopback-only head does not listen
# (ray-project/ray#59110). This switch keeps Ray on loopback; it also forbids adding other nodes, which a
# loopback test does not do. A real cluster uses the head's real address and needs no such setting.
LOOPBACK_RAY = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
NO_LOG_DEDUP = {"RAY_DEDUP_LOGS": "0"}  # Ray folds similar log lines of different workers into one; count them all
RAY_SWEEP = ["hydra/launcher=ray_cluster", "tracking=server"]


@pytest.fixture(scope="module")
def mlflow_server(postgres, tmp_path_factory) -> Iterator[tuple[str, Path]]:
    """`mlflow server` on the PostgreSQL store, serving artifacts from its own directory; yields (URI, that dir)."""
    artifacts = tmp_path_factory.mktemp("server-artifacts")
    port = free_port()
    server = start_server(postgres, artifacts, port, artifacts.parent / "mlflow-server.log")
    try:
        yield f"http://127.0.0.1:{port}", artifacts
    finally:
        stop_server(server)


@pytest.fixture(scope="module")
def ray_token() -> Iterator[dict[str, str]]:
    """Ray token authentication as a cluster should run it, with a token made here for this test only.

    The token lives in a private temporary file (not ~/.ray/auth_token) that the head, its workers (they
    inherit the head's environment) and the driver are pointed at; it is removed afterwards.
    """
    directory = Path(tempfile.mkdtemp(prefix="mixup-ray-token-"))
    token = directory / "auth_token"
    token.write_text(secrets.token_hex(32))
    token.chmod(0o600)
    try:
        yield {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)}
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="module")
def ray_head(ray_token, tmp_path_factory) -> Iterator[str]:
    """A Ray head node on 127.0.0.1 with 2 CPUs; yields its address (what RAY_ADDRESS holds on a cluster)."""
    ray = str(Path(sys.executable).with_name("ray"))
    port = free_port()
    env = {**os.environ, **LOOPBACK_RAY, **PATIENT_RAY, **ray_token}
    with one_ray_at_a_time(tmp_path_factory):
        started = subprocess.run(
            [ray, "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(port), "--num-cpus", "2",
             "--include-dashboard=false", "--disable-usage-stats"],
            capture_output=True, text=True, timeout=180, env=env,
        )  # fmt: skip
        assert started.returncode == 0, started.stdout[-2000:] + started.stderr[-2000:]
        try:
            yield f"127.0.0.1:{port}"
        finally:
            subprocess.run([ray, "stop", "--force"], capture_output=True, timeout=120, env=env)


@pytest.fixture(scope="module")
def cluster(mlflow_server, ray_head, ray_token, tmp_path_factory):
    uri, artifacts = mlflow_server
    # what a user on a cluster has: the server's URI, the Ray address and the cluster's token, no MLflow store
    env = {"MLFLOW_TRACKING_URI": uri, "RAY_ADDRESS": ray_head, **LOOPBACK_RAY, **PATIENT_RAY, **ray_token,
           **NO_LOG_DEDUP}  # fmt: skip
    out = tmp_path_factory.mktemp("driver")
    first = run_cli("-m", *RAY_SWEEP, "aug.alpha=0.1,0.2,0.4", *TINY, f"paths.output_dir={out}", env=env)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    return uri, artifacts, env, out, first


def sweep_runs(uri: str):
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if r.data.tags.get("sweep_parent") == "true"]
    return client, experiment, parents, [r for r in runs if r.data.tags.get("sweep_parent") != "true"]


def test_three_job_sweep_through_ray_reaches_the_server(cluster):
    uri, _, _, out, first = cluster
    assert "Ray Launcher is launching 3 jobs" in first.stdout + first.stderr
    client, _, parents, children = sweep_runs(uri)
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert len(children) == 3 and all(r.info.status == "FINISHED" for r in children)
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parents[0].info.run_id}
    assert sorted(float(r.data.params["aug.alpha"]) for r in children) == [0.1, 0.2, 0.4]
    for run in children:
        assert [m.step for m in client.get_metric_history(run.info.run_id, "val_accuracy")] == [1]
        assert {"test_accuracy", "test_ece", "test_nll"} <= set(run.data.metrics)
        assert run.data.params["tracking.uri"] == "${oc.env:MLFLOW_TRACKING_URI,null}"  # the text, not the URI
        # remote.num_cpus: 1 -> the job's pools have one thread (TensorFlow's own default would be every core)
        assert (run.data.tags["threads"], run.data.tags["tf_intra_op_threads"]) == ("1", "1")
    # nothing went to a local store: the driver's output dir has no MLflow database or artifact folder
    assert not (out / "mlflow.db").exists() and not (out / "mlartifacts").exists()


def test_the_cluster_refuses_a_driver_without_the_token(cluster, ray_head):
    """Token authentication is really on, and the token never became a per-user file."""
    no_token = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH_TOKEN")}
    refused = subprocess.run(
        [sys.executable, "-c", f"import ray; ray.init(address={ray_head!r})"],
        capture_output=True, text=True, timeout=120, env={**no_token, **LOOPBACK_RAY, "RAY_AUTH_MODE": "token"},
    )  # fmt: skip
    assert refused.returncode != 0
    assert "AuthenticationError" in refused.stderr, refused.stderr[-2000:]
    assert not (Path.home() / ".ray" / "auth_token").exists()


def test_artifacts_travel_through_the_servers_artifact_serving(cluster):
    uri, artifacts, _, _, _ = cluster
    client, experiment, _, children = sweep_runs(uri)
    assert experiment.artifact_location.startswith("mlflow-artifacts:")
    for run in children:
        assert run.info.artifact_uri.startswith("mlflow-artifacts:")
        names = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"config.yaml", "samples.png", "curves.png", "reliability.png"} <= names
        assert run.outputs.model_outputs  # the network: an MLflow Model, its files served by the server too
        with tempfile.TemporaryDirectory() as tmp:
            png = Path(client.download_artifacts(run.info.run_id, "reliability.png", tmp))
            assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # ... and are stored where the server keeps them
    assert len(list(artifacts.rglob("model.keras"))) == 3


def test_initial_weights_are_shared_through_the_sweep_parent(cluster):
    uri, _, _, _, _ = cluster
    client, _, (parent,), children = sweep_runs(uri)
    (published,) = client.list_artifacts(parent.info.run_id, "initial_weights")
    with tempfile.TemporaryDirectory() as tmp:
        digest = hashlib.sha256(Path(client.download_artifacts(parent.info.run_id, published.path, tmp)).read_bytes())
    assert {r.data.tags["init_weights_sha256"] for r in children} == {digest.hexdigest()}


def test_report_reads_the_server(cluster, tmp_path):
    uri, _, _, _, _ = cluster
    report = run_command(report_command("--tracking-uri", uri, "--out", str(tmp_path / "r")), timeout=300)
    assert report.returncode == 0, report.stderr[-2000:]
    summary = (tmp_path / "r" / "summary.csv").read_text()
    assert summary.count("aug.alpha=") == 3
    _, _, (parent,), _ = sweep_runs(uri)
    client = MlflowClient(tracking_uri=uri)
    assert "report/report.md" in {a.path for a in client.list_artifacts(parent.info.run_id, "report")}


def test_same_sweep_again_under_ray_skips_every_finished_job(cluster):
    uri, _, env, out, _ = cluster
    again = run_cli("-m", *RAY_SWEEP, "aug.alpha=0.1,0.2,0.4", *TINY, f"paths.output_dir={out}", env=env)
    assert again.returncode == 0, again.stderr[-3000:]
    assert (again.stdout + again.stderr).count("FINISHED already") == 3
    _, _, parents, children = sweep_runs(uri)
    assert len(parents) == 1 and len(children) == 3  # same sweep, same parent, no new runs


def test_a_crashing_job_under_ray_ends_failed_with_its_traceback(cluster):
    uri, _, env, out, _ = cluster
    failed = run_cli("-m", *RAY_SWEEP, "aug=none", "trainer.learning_rate=1e30", *TINY, f"paths.output_dir={out}",
                     env=env)  # fmt: skip
    assert failed.returncode != 0
    client, _, parents, children = sweep_runs(uri)
    (run,) = [r for r in children if r.data.params["trainer.learning_rate"] == "1e+30"]
    assert run.info.status == "FAILED" and run.data.tags["failure_reason"] == "nan_loss"
    assert "traceback.txt" in {a.path for a in client.list_artifacts(run.info.run_id)}
    assert sorted(p.info.status for p in parents) == ["FAILED", "FINISHED"]
