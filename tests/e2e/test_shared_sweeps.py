"""Several processes on one store at once (issue 41): the same command twice splits the work, two presets that
share a job train it once, a process killed with -9 leaves its claimed job to the other, which resumes it.

Every claim goes through the store (`store.claims`): these tests run the processes on one SQLite store;
tests/e2e/test_tracking_server.py runs the same race twice against a tracking server on PostgreSQL.
"""

from __future__ import annotations

import re
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

from mlflow.tracking import MlflowClient

from tests.helpers import EXPERIMENT, cli, start_cli

# a race of two arms over at most 3 seeds, small enough to be quick, long enough for the two to overlap
RACE = ["-m", "aug.alpha=0.2,1.0", "hydra.sweeper.race.epsilon=0.002", "hydra.sweeper.race.max_seeds=3",
        "dataset.train_size=256", "trainer.epochs=1", "hydra/launcher=basic"]  # fmt: skip
ANSWER = re.compile(r"\]\[HYDRA\] race: (.*)$", re.MULTILINE)  # the answer lines the parent callback prints at the end


def start(*args: str, env: dict | None = None) -> subprocess.Popen:
    """`python -m mixup_sweeps.run ARGS` in the background, its output as one text stream."""
    return start_cli(cli(*args), env={"PYTHONUNBUFFERED": "1", **(env or {})}, stdout=subprocess.PIPE,
                     stderr=subprocess.STDOUT)  # fmt: skip


def finish(*jobs: subprocess.Popen) -> list[str]:
    outputs = [job.communicate(timeout=600)[0] for job in jobs]
    assert [job.returncode for job in jobs] == [0] * len(jobs), "\n=====\n".join(o[-3000:] for o in outputs)
    return outputs


def store_runs(uri: str) -> tuple[MlflowClient, list]:
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    return client, client.search_runs([experiment.experiment_id])


def assert_split_once(uri: str, outputs: list[str]) -> list:
    """One FINISHED parent; every job a child of it, trained once (one run, one `start` line, in either
    process's output); both processes did some of the training; returns the job runs."""
    _, runs = store_runs(uri)
    parents = [r for r in runs if r.data.tags.get("sweep_parent") == "true"]
    jobs = [r for r in runs if r.data.tags.get("sweep_parent") != "true"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED", [p.info for p in parents]
    assert {r.data.tags.get("mlflow.parentRunId") for r in jobs} == {parents[0].info.run_id}  # no orphans
    assert all(r.info.status == "FINISHED" for r in jobs)
    fingerprints = Counter(r.data.tags["config_fingerprint"] for r in jobs)
    assert set(fingerprints.values()) == {1}, fingerprints  # each job one run
    started = [re.findall(r"\] - start (\S+) \(run", output) for output in outputs]
    assert sorted(sum(started, [])) == sorted(r.info.run_name for r in jobs)  # each trained by one process
    assert all(started), "each process trained some of the jobs"
    assert not any(key.startswith("participant.") for key in parents[0].data.tags)  # both signed off
    return jobs


def test_the_same_race_twice_at_once_splits_the_work_and_gives_one_answer(tmp_path, real_data_dir):
    out = tmp_path / "race"
    first = start(*RACE, f"paths.output_dir={out}")
    time.sleep(2)  # as a user starting it again on a second machine a moment later
    second = start(*RACE, f"paths.output_dir={out}")
    outputs = finish(first, second)
    assert_split_once(f"sqlite:///{out}/mlflow.db", outputs)
    answers = [ANSWER.findall(output) for output in outputs]
    assert answers[0] and answers[0] == answers[1]  # the same race, decided from the same results
    assert "later " in outputs[0] + outputs[1]  # a claimed job was left to its owner, not waited on in turn


def test_two_presets_that_share_jobs_train_them_once(tmp_path, real_data_dir):
    """The default sweep (none, α=0.2) and the alpha grid (none, α=0.1, 0.2, 0.4, 1.0) share two jobs at one seed:
    started together, each shared job has one run, which both sweeps count (the other as reused)."""
    small = [
        "seed=0",
        "dataset.train_size=256",
        "trainer.epochs=1",
        "hydra/launcher=basic",
        f"paths.output_dir={tmp_path}",
    ]
    finish(start("-m", "experiment=default_sweep", *small), start("-m", "experiment=alpha_grid", *small))
    _, runs = store_runs(f"sqlite:///{tmp_path}/mlflow.db")
    children = [r for r in runs if r.data.tags.get("sweep_parent") != "true"]
    assert len(children) == 5 and all(r.info.status == "FINISHED" for r in children)
    assert len({r.data.tags["config_fingerprint"] for r in children}) == 5  # none trained twice
    parents = {p.data.tags["sweep_id"]: p for p in runs if p.data.tags.get("sweep_parent") == "true"}
    assert len(parents) == 2 and all(p.info.status == "FINISHED" for p in parents.values())
    shared = [r for r in children if r.data.params["aug.name"] == "none" or r.data.params.get("aug.alpha") == "0.2"]
    for run in shared:  # a child of the sweep that trained it, reused by the other
        (other,) = set(parents) - {run.data.tags["sweep_id"]}
        assert run.data.tags[f"reused_in_sweep.{other}"] == parents[other].info.run_id


def test_kill_9_of_one_of_two_cooperating_sweeps_leaves_its_job_to_the_other(tmp_path, real_data_dir):
    """The killed process's job is taken over by the other once its owner is gone, resumed in the same run from
    its checkpoint: no job is trained from scratch twice."""
    grid = ["-m", "aug.alpha=0.2,1.0", "seed=0,1", "dataset.train_size=1024", "trainer.epochs=3",
            "hydra/launcher=basic", f"paths.output_dir={tmp_path}"]  # fmt: skip
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    victim = start(*grid)
    for line in victim.stdout:  # type: ignore[union-attr]
        if "] - start " in line:
            break
    survivor = start(*grid)
    client, runs = store_runs(uri)
    (run,) = [
        r for r in runs if r.data.tags.get("pid") == str(victim.pid) and r.data.tags.get("sweep_parent") != "true"
    ]
    deadline = time.monotonic() + 300
    while not client.get_metric_history(run.info.run_id, "loss"):  # epoch 1 saved and logged: epoch 2 runs
        assert victim.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)
    victim.wait(60)
    (output,) = finish(survivor)
    resumed = client.get_run(run.info.run_id)
    assert resumed.info.status == "FINISHED" and resumed.data.tags["pid"] == str(survivor.pid)
    assert f"resume {run.info.run_name}: run {run.info.run_id}" in output
    assert [m.step for m in client.get_metric_history(run.info.run_id, "loss")] == [1, 2, 3]
    _, runs = store_runs(uri)
    jobs = [r for r in runs if r.data.tags.get("sweep_parent") != "true"]
    assert len(jobs) == 4 and all(r.info.status == "FINISHED" for r in jobs)
    assert f"start {run.info.run_name} " not in output  # resumed, never started from scratch again
    parents = [r for r in runs if r.data.tags.get("sweep_parent") == "true"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert "error" not in parents[0].data.tags  # the victim's end is history on the parent, not its error
    assert not any(Path(tmp_path, "backups").glob("*/*"))  # every checkpoint removed after its FINISHED
