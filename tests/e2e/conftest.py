"""Fixtures of the end-to-end tests: a loopback PostgreSQL and MLflow server (test_cluster, test_tracking_server),
and one small real sweep for the tests that only read its results (runs, params, metrics, artifacts, its log, the
UI and the report on its store), made once per test session.

`make test` runs pytest-xdist workers, each with its own session: the first worker to get here runs the sweep
under a file lock and writes where it is; the others wait on the lock and read the same store. A test that
changes a store (reruns, kills) makes its own."""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from filelock import FileLock

from tests.helpers import free_port, run_cli, wait_until

# the default launcher named, so that run_cli keeps it (the launcher test reads this sweep's log)
SHARED_SWEEP = ["-m", "hydra/launcher=local", "aug.alpha=0.1,0.2,0.4", "dataset.train_size=256", "trainer.epochs=2"]


@dataclass(frozen=True)
class Sweep:
    out: Path  # paths.output_dir: its store, artifacts and Hydra directories
    log: str  # what the command printed (stdout and stderr)


@pytest.fixture(scope="session")
def shared_sweep(tmp_path_factory: pytest.TempPathFactory, real_data_dir: Path) -> Sweep:
    """`python -m mixup_sweeps.run -m aug.alpha=0.1,0.2,0.4` on 256 images, 2 epochs: one parent, three runs;
    typed in a directory of its own with no paths.output_dir, so the store is that directory's `outputs/`."""
    root = tmp_path_factory.getbasetemp().parent  # shared by every xdist worker of this session
    record = root / "shared_sweep.json"
    with FileLock(str(root / "shared_sweep.lock")):
        if not record.is_file():
            where = root / "shared_sweep"
            where.mkdir()
            result = run_cli(*SHARED_SWEEP, cwd=where)
            out = where / "outputs"
            assert result.returncode == 0, result.stderr[-3000:]
            record.write_text(json.dumps({"out": str(out), "log": result.stdout + result.stderr}))
    saved = json.loads(record.read_text())
    return Sweep(Path(saved["out"]), saved["log"])


# Ray gives up on its GCS (the head's control store) after 60 s without an answer. A local Ray started while the
# suite's other workers load both cores (and test_cluster.py's head starts beside it) once took longer than that
# to answer (CI-like run, 2026-12-06): the tests that start or join a Ray instance wait up to 5 minutes instead.
PATIENT_RAY = {"RAY_gcs_rpc_server_reconnect_timeout_s": "300"}


def one_ray_at_a_time(tmp_path_factory: pytest.TempPathFactory) -> FileLock:
    """A lock shared by this session's pytest-xdist workers, held while a test's Ray runs: test_cluster.py's head
    is stopped with `ray stop --force`, which ends every Ray process on the machine, and so killed the local Ray
    of test_packed.py's Ray test when the two overlapped (its raylet died, or its GCS never answered)."""
    return FileLock(str(tmp_path_factory.getbasetemp().parent / "ray.lock"))


# --- a loopback PostgreSQL and an MLflow tracking server on it (test_cluster, test_tracking_server) -----------
def postgres_bin(name: str) -> str:
    """Debian keeps the server programs off PATH, under /usr/lib/postgresql/<version>/bin."""
    found = shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))[-1:]), None)
    if found is None:
        pytest.fail(f"PostgreSQL's {name} not found: install Debian's postgresql (`make test` does)")
    return found


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    """A throw-away PostgreSQL cluster on 127.0.0.1 with an empty database `mlflow`; yields its URI."""
    # initdb refuses to run as root: as root, the cluster belongs to Debian's `postgres` user
    as_owner = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    home = Path(tempfile.mkdtemp(prefix="mixup-pg-"))
    if as_owner:
        shutil.chown(home, "postgres")
    data, port = home / "data", free_port()
    subprocess.run([*as_owner, postgres_bin("initdb"), "-D", str(data), "-U", "mlflow", "--auth=trust", "-E", "UTF8"],
                   check=True, capture_output=True)  # fmt: skip
    options = f"-h 127.0.0.1 -p {port} -k {home}"
    subprocess.run([*as_owner, postgres_bin("pg_ctl"), "-D", str(data), "-l", str(home / "log"), "-o", options, "-w",
                    "start"], check=True, capture_output=True)  # fmt: skip
    try:
        subprocess.run([postgres_bin("createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "mlflow", "mlflow"],
                       check=True, capture_output=True)  # fmt: skip
        yield f"postgresql://mlflow@127.0.0.1:{port}/mlflow"
    finally:
        subprocess.run([*as_owner, postgres_bin("pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"],
                       capture_output=True)  # fmt: skip
        shutil.rmtree(home, ignore_errors=True)


# MLflow's server starts three job-runner processes (huey consumers, for its GenAI jobs) unless told not to;
# the harness uses none of them, and on two cores their start-up and polling slow every other test.
QUIET_SERVER = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


def start_server(store: str, artifacts: Path, port: int, log: Path) -> subprocess.Popen:
    """`mlflow server` on `store` at 127.0.0.1:`port`, serving artifacts from `artifacts`; returns once healthy."""
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", store,
         "--artifacts-destination", str(artifacts), "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        stdout=open(log, "a"), stderr=subprocess.STDOUT, start_new_session=True, env=QUIET_SERVER,
    )  # fmt: skip

    def healthy() -> bool:
        assert server.poll() is None, log.read_text()[-3000:]
        try:
            return urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2).status == 200
        except OSError:
            return False

    wait_until(healthy, "mlflow server", timeout=180)
    return server


def stop_server(server: subprocess.Popen) -> None:
    if server.poll() is None:
        os.killpg(server.pid, 15)
        server.wait(30)
