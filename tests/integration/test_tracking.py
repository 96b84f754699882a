"""The integration part (real Hydra, MLflow, Keras in this process or one subprocess) of these tests; beside them:
tests/unit/test_tracking.py.

Ghost runs: a RUNNING run whose process died (kill -9) is ended KILLED by the next job or report on its host."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from mixup_sweeps import files, report
from mixup_sweeps.store import claims, liveness, tags, tracking
from tests.helpers import compose_config, free_port, run_cli, sqlite_store


@pytest.fixture
def live_process() -> Iterator[subprocess.Popen]:
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        yield process
    finally:
        process.kill()
        process.wait()


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()  # exited and reaped: no process has this pid now (until the system reuses it)
    return process.pid


def start_run(client, experiment_id: str, name: str, host: str, pid: int, started: str) -> str:
    owner = {tags.HOST: host, tags.PID: str(pid), tags.PROCESS_START: started}
    return client.create_run(experiment_id, run_name=name, tags=owner).info.run_id


def test_next_job_ends_ghost_runs_of_this_host_and_leaves_the_rest(tmp_path, live_process):
    cfg = compose_config(output_dir=str(tmp_path))
    client, experiment_id = tracking.connect(cfg.tracking)
    here = socket.gethostname()
    live_start = liveness.process_start(live_process.pid)
    assert live_start is not None
    runs = {
        "ghost": start_run(client, experiment_id, "ghost", here, dead_pid(), "boot:1"),
        "pid_reused": start_run(client, experiment_id, "pid_reused", here, live_process.pid, "another-boot:7"),
        "alive": start_run(client, experiment_id, "alive", here, live_process.pid, live_start),
        "other_host": start_run(client, experiment_id, "other_host", "another-machine", dead_pid(), "boot:1"),
        "this_process": start_run(client, experiment_id, "this_process", here, *_own_process()),
    }
    client, experiment_id = tracking.connect(cfg.tracking)  # what the next job on this store does first
    status = {name: client.get_run(run_id).info.status for name, run_id in runs.items()}
    assert status == {"ghost": "KILLED", "pid_reused": "KILLED", "alive": "RUNNING", "other_host": "RUNNING",
                      "this_process": "RUNNING"}  # fmt: skip
    ghost = client.get_run(runs["ghost"])
    assert ghost.data.tags["failure_reason"] == "process_gone" and "ended without closing" in ghost.data.tags["error"]

    liveness.claim_run(client, runs["ghost"])  # a resumed job takes the run over with its own process tags
    claimed = client.get_run(runs["ghost"])
    assert claimed.info.status == "RUNNING" and claimed.data.tags[tags.PID] == str(_own_process()[0])
    assert liveness.end_ghost_runs(client, experiment_id) == []


def test_the_report_ends_ghost_runs_too(tmp_path):
    cfg = compose_config(output_dir=str(tmp_path))
    client, experiment_id = tracking.connect(cfg.tracking)
    run_id = start_run(client, experiment_id, "ghost", socket.gethostname(), dead_pid(), "boot:1")
    assert report.main(["--output-dir", str(tmp_path), "--sweep", "all"]) == 2  # no FINISHED run to report
    assert client.get_run(run_id).info.status == "KILLED"


def _own_process() -> tuple[int, str]:
    owner = liveness.process_tags()
    return int(owner[tags.PID]), owner[tags.PROCESS_START]


HOLD_LOCK = """
import sys, time
from pathlib import Path
from mixup_sweeps import files
with files.file_lock(Path(sys.argv[1]), 5, "a test"):
    print("held", flush=True)
    time.sleep(60)
"""


def test_a_lock_held_too_long_names_the_file_and_its_holder(tmp_path):
    lock = tmp_path / "store.db.lock"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(lock)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(files.LockTimeout) as caught:
            with files.file_lock(lock, 0.5, "the MLflow store"):
                pass
        message = str(caught.value)
        assert str(lock) in message and f"process {holder.pid} on {socket.gethostname()}" in message
        assert "0.5 s" in message and "\n" not in message
    finally:
        holder.kill()
        holder.wait()
    with files.file_lock(lock, 0.5, "the MLflow store"):  # a dead holder's lock is free at once
        assert (tmp_path / "store.db.lock.owner").read_text() == f"process {os.getpid()} on {socket.gethostname()}"
    assert not (tmp_path / "store.db.lock.owner").exists()


@pytest.mark.parametrize("multirun", [False, True], ids=["single", "sweep"])
def test_a_store_that_cannot_be_reached_is_one_line_at_once(tmp_path, multirun):
    """No server on the port (MLflow alone retried for 251 s), or a URI MLflow cannot open: one line, exit 2."""
    sweep = ["-m", "aug=none", "seed=0,1"] if multirun else ["aug=none"]
    cases = [
        (["tracking=server"], {"MLFLOW_TRACKING_URI": f"http://127.0.0.1:{free_port()}"}, "no MLflow tracking server"),
        (["tracking.uri=bogus://x"], {}, "MLflow cannot open this store"),
    ]
    for overrides, env, what in cases:
        started = time.monotonic()
        result = run_cli(*sweep, *overrides, f"paths.output_dir={tmp_path}", env=env, timeout=120, fresh_python=True)
        assert time.monotonic() - started < 60
        assert result.returncode == 2, result.stderr[-2000:]
        errors = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
        assert len(errors) == 1 and "tracking.uri=" in errors[0] and what in errors[0], result.stderr[-2000:]
        assert "Traceback" not in result.stderr
    assert not (tmp_path / "mlflow.db").exists() and not list(tmp_path.glob("multirun/*/*"))


def test_every_registered_dataset_is_logged_as_three_mlflow_datasets_with_their_source(tmp_path):
    """Issue 39: whichever dataset a job reads (the registry's readers on small files in their published formats),
    its training, validation and test splits become MLflow datasets of the run: named by the dataset and split,
    tagged with their context, their source the file or folder read, their digest the split rule's."""
    import numpy as np

    from mixup_sweeps.data import datasets
    from mixup_sweeps.store import networks
    from tests.helpers import dataset_config, write_fake_dataset
    from tests.published_formats import write_cifar10, write_folder

    rng = np.random.default_rng(0)
    colour = (rng.integers(0, 256, (30, 32, 32, 3), dtype=np.uint8), np.arange(30) % 10)
    grey = (rng.integers(0, 256, (30, 12, 12, 1), dtype=np.uint8), np.arange(30) % 3)
    np.savez(tmp_path / "mine.npz", x_train=grey[0], y_train=grey[1], x_test=grey[0][:6], y_test=grey[1][:6])
    sources = {
        "fashion_mnist": write_fake_dataset(tmp_path / "fmnist"),
        "cifar10": write_cifar10(tmp_path / "cifar", colour, (colour[0][:6], colour[1][:6])),
        "npz": tmp_path / "mine.npz",
        "folder": write_folder(tmp_path / "folder", {"train": grey, "test": (grey[0][:6], grey[1][:6])},
                               ["a", "b", "c"]),
    }  # fmt: skip
    cfg = compose_config([f"paths.output_dir={tmp_path}"])
    client, experiment_id = tracking.connect(cfg.tracking)
    for name, path in sources.items():
        dataset_cfg = dataset_config(path, name, val_size=5)
        dataset = datasets.load(dataset_cfg)
        run_id = client.create_run(experiment_id, run_name=name).info.run_id
        networks.log_datasets(client, run_id, dataset, datasets.split_digests(dataset_cfg, dataset, 0))
        logged = {i.tags[0].value: i.dataset for i in client.get_run(run_id).inputs.dataset_inputs}
        assert set(logged) == {"training", "validation", "test"}, name
        assert logged["training"].name == f"{name}-train" and logged["test"].name == f"{name}-test"
        assert str(dataset.source_dir) in logged["training"].source, (name, logged["training"].source)
        assert len({d.digest for d in logged.values()}) == 3


def test_a_job_that_loses_the_race_to_log_a_new_dataset_still_logs_its_inputs(tmp_path, monkeypatch):
    """Two jobs logging the same new split at once: MLflow's SQL store looks the row up, then inserts it, and the
    later insert breaks the unique key (seen with jobs side by side). Here the other job's row is in the store and
    this job's first call fails as it did then: the inputs are logged on the second, a different error is raised."""
    from mlflow.exceptions import MlflowException

    from mixup_sweeps.data import datasets
    from mixup_sweeps.store import networks
    from tests.helpers import dataset_config, write_fake_dataset

    dataset_cfg = dataset_config(write_fake_dataset(tmp_path / "fmnist"), "fashion_mnist", val_size=5)
    dataset = datasets.load(dataset_cfg)
    digests = datasets.split_digests(dataset_cfg, dataset, 0)
    client, experiment_id = tracking.connect(compose_config([f"paths.output_dir={tmp_path}"]).tracking)
    other, mine = (client.create_run(experiment_id).info.run_id for _ in range(2))
    networks.log_datasets(client, other, dataset, digests)  # the job that won the insert
    real = client.log_inputs
    calls = []

    def first_call_lost(run_id, datasets=None, models=None):
        calls.append(run_id)
        if len(calls) == 1:
            raise MlflowException("(sqlite3.IntegrityError) UNIQUE constraint failed: datasets.experiment_id, "
                                  "datasets.name, datasets.digest")  # fmt: skip
        return real(run_id, datasets=datasets)

    monkeypatch.setattr(client, "log_inputs", first_call_lost)
    networks.log_datasets(client, mine, dataset, digests)
    assert len(calls) == 2 and len(client.get_run(mine).inputs.dataset_inputs) == 3
    monkeypatch.setattr(client, "log_inputs", lambda *a, **k: (_ for _ in ()).throw(MlflowException("other")))
    with pytest.raises(MlflowException, match="other"):
        networks.log_datasets(client, mine, dataset, digests)


def test_a_new_sqlite_store_is_a_copy_of_one_empty_store_made_once_by_mlflow(tmp_path, monkeypatch):
    """The first new store on a machine has MLflow run its migrations into the cached template; every later new
    store is a copy of it: the same schema version, and a store that takes runs. An existing store is opened as
    it is (its runs stay)."""
    import sqlite3

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    template = tracking.empty_store_template()
    assert str(template).startswith(str(tmp_path / "cache")) and not template.exists()

    def schema(db) -> list:
        with sqlite3.connect(db) as connection:
            tables = connection.execute("SELECT name, sql FROM sqlite_master ORDER BY name").fetchall()
            return [*tables, connection.execute("SELECT version_num FROM alembic_version").fetchall()]

    first = compose_config(output_dir=str(tmp_path / "first")).tracking
    client, experiment_id = tracking.connect(first)
    made = template.stat().st_mtime_ns
    run_id = client.create_run(experiment_id).info.run_id
    second = compose_config(output_dir=str(tmp_path / "second")).tracking
    client, experiment_id = tracking.connect(second)
    assert template.stat().st_mtime_ns == made  # copied, not made again
    assert schema(tmp_path / "second" / "mlflow.db") == schema(template)
    assert client.create_run(experiment_id).info.status == "RUNNING"
    client, experiment_id = tracking.connect(first)  # an existing store: its run is still there
    assert client.get_run(run_id).info.experiment_id == experiment_id


def test_without_a_writable_cache_mlflow_makes_the_new_store_itself(tmp_path, monkeypatch):
    (tmp_path / "cache").write_text("a file where the cache directory would be")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    client, experiment_id = tracking.connect(compose_config(output_dir=str(tmp_path / "out")).tracking)
    assert client.create_run(experiment_id).info.status == "RUNNING"


def test_a_shared_tag_set_by_two_processes_at_once_is_set_not_a_failure(tmp_path, monkeypatch):
    """`claims.set_shared_tag`: the other process's write lands between this one's look and its insert, and
    MLflow's store refuses the insert (on PostgreSQL a UniqueViolation: a fresh clone's race through a tracking
    server ended FAILED on it). This write is then made as an update; a failure with no such tag is raised."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    uri = sqlite_store(tmp_path)
    client, other = MlflowClient(tracking_uri=uri), MlflowClient(tracking_uri=uri)
    run_id = client.create_run(client.create_experiment("e")).info.run_id
    real_set_tag, calls = client.set_tag, []

    def collides(run: str, key: str, value: str) -> None:
        calls.append(key)
        if len(calls) == 1:
            other.set_tag(run, key, "the other process's outcome")
            raise MlflowException('duplicate key value violates unique constraint "tag_pk"')
        real_set_tag(run, key, value)

    monkeypatch.setattr(client, "set_tag", collides)
    claims.set_shared_tag(client, run_id, "race_result", "this outcome")
    assert calls == ["race_result", "race_result"]
    assert client.get_run(run_id).data.tags["race_result"] == "this outcome"

    def fails(run: str, key: str, value: str) -> None:
        raise MlflowException("the store is read-only")

    monkeypatch.setattr(client, "set_tag", fails)
    with pytest.raises(MlflowException, match="read-only"):
        claims.set_shared_tag(client, run_id, "search_result", "x")
