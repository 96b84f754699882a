"""The MLflow tracking server on PostgreSQL without Ray: an outage in the middle of a sweep loses nothing, and a
search's Optuna study lives in a PostgreSQL database of its own. Apart from tests/e2e/test_cluster.py (the Ray
cluster) so that the two long files can run on different pytest-xdist workers; each starts its own loopback
PostgreSQL (the `postgres` fixture: tests/e2e/conftest.py)."""

from __future__ import annotations

import subprocess
import sys
import time

from mlflow.tracking import MlflowClient

from tests.e2e.conftest import postgres_bin, start_server, stop_server
from tests.helpers import ROOT, cli, free_port, run_cli, start_cli, wait_until


def test_a_server_that_goes_away_mid_sweep_loses_nothing(postgres, tmp_path, real_data_dir):
    """The tracking server stops during a job's second epoch and comes back 20 s later: the sweep rides it out
    (MLflow's retries) or ends the job resumable; the same command afterwards finds every run FINISHED once,
    every epoch's metrics there once."""
    artifacts, port, log = tmp_path / "artifacts", free_port(), tmp_path / "server.log"
    artifacts.mkdir()
    uri = f"http://127.0.0.1:{port}"
    env = {"MLFLOW_TRACKING_URI": uri}
    experiment = "server-outage"
    command = ["-m", "tracking=server", f"tracking.experiment={experiment}", "aug=none,mixup",
               "dataset.train_size=1024", "trainer.epochs=3", f"paths.output_dir={tmp_path / 'out'}",
               "hydra/launcher=basic"]  # fmt: skip  # one process: the jobs in turn
    server = start_server(postgres, artifacts, port, log)
    try:
        sweep = start_cli(cli(*command), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        client = MlflowClient(uri)

        def first_epoch_logged() -> bool:
            exp = client.get_experiment_by_name(experiment)
            runs = client.search_runs([exp.experiment_id]) if exp else []
            jobs = [r for r in runs if "sweep_parent" not in r.data.tags]
            return any(client.get_metric_history(r.info.run_id, "loss") for r in jobs)

        wait_until(first_epoch_logged, "epoch 1 of the first job", timeout=300)
        stop_server(server)  # during epoch 2 of the first job
        time.sleep(20)
        server = start_server(postgres, artifacts, port, log)
        output = sweep.communicate(timeout=600)[0]
        again = run_cli(*command, env=env)
        assert again.returncode == 0, output[-2000:] + again.stderr[-3000:]
        exp = client.get_experiment_by_name(experiment)
        runs = [r for r in client.search_runs([exp.experiment_id]) if "sweep_parent" not in r.data.tags]
        finished = [r for r in runs if r.info.status == "FINISHED"]
        assert sorted(r.data.params["aug.name"] for r in finished) == ["mixup", "none"], output[-3000:]
        for run in finished:
            for key in ("loss", "accuracy", "val_loss", "val_accuracy", "epoch_seconds"):
                steps = sorted(m.step for m in client.get_metric_history(run.info.run_id, key))
                assert steps == [1, 2, 3], (key, steps)  # none missing, none twice
            assert "test_accuracy" in run.data.metrics
    finally:
        stop_server(server)


def test_a_search_study_lives_in_its_own_postgresql_database(postgres):
    """`hydra.sweeper.storage=postgresql+psycopg://...`: a database of its own beside MLflow's (both keep an Alembic
    version table); the sweeper's process asks, a job's process reports its epochs to the trial through it."""
    from mixup_sweeps.sweeps import study as studies
    from tests.unit.test_search import settings

    port = postgres.rsplit(":", 1)[1].split("/")[0]
    subprocess.run([postgres_bin("createdb"), "-h", "127.0.0.1", "-p", port, "-U", "mlflow", "optuna"],
                   check=True, capture_output=True)  # fmt: skip
    url = f"postgresql+psycopg://mlflow@127.0.0.1:{port}/optuna"
    chosen = settings(storage=url)
    study = studies.open_study(chosen, url, "pg-study")
    trial = study.ask({"x": __import__("optuna").distributions.FloatDistribution(0, 1)})
    job = (
        "from mixup_sweeps.sweeps.study import EpochReporter; from tests.unit.test_search import settings\n"
        f"reporter = EpochReporter(settings(storage={url!r}), {url!r}, 'pg-study', {trial.number}, 0)\n"
        "reporter(1, {'val_accuracy': 0.25}); reporter(2, {'val_accuracy': 0.5})\n"
    )
    subprocess.run([sys.executable, "-c", job], cwd=ROOT, check=True, capture_output=True, timeout=120)
    assert study.get_trials()[0].intermediate_values == {0: 0.25, 1: 0.5}
    study.tell(trial, 0.5)
    assert studies.open_study(chosen, url, "pg-study").best_value == 0.5


def test_the_same_race_twice_at_once_on_a_tracking_server_splits_the_work(postgres, tmp_path, real_data_dir):
    """tests/e2e/test_shared_sweeps.py's race on SQLite, here through a tracking server on PostgreSQL: the claims
    are experiments of the server's store, and the two processes have no disk in common (output dirs apart)."""
    from tests.e2e.test_shared_sweeps import ANSWER, RACE, assert_split_once, finish, start

    artifacts, port = tmp_path / "artifacts", free_port()
    artifacts.mkdir()
    server = start_server(postgres, artifacts, port, tmp_path / "server.log")
    uri = f"http://127.0.0.1:{port}"
    try:
        env = {"MLFLOW_TRACKING_URI": uri}
        first = start(*RACE, "tracking=server", f"paths.output_dir={tmp_path / 'a'}", env=env)
        time.sleep(2)
        second = start(*RACE, "tracking=server", f"paths.output_dir={tmp_path / 'b'}", env=env)
        outputs = finish(first, second)
        assert_split_once(uri, outputs)
        answers = [ANSWER.findall(output) for output in outputs]
        assert answers[0] and answers[0] == answers[1]
    finally:
        stop_server(server)
