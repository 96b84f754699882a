"""Reliability through the real CLI: skip finished work, parallel jobs, bad input (kill and resume: test_resume)."""

from __future__ import annotations

import os
import sqlite3
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.helpers import (
    EPOCH_METRICS,
    TINY,
    cli,
    mlflow_runs,
    report_command,
    run_cli,
    run_command,
    run_report,
    start_cli,
)
from tests.integration.test_user_errors import one_line_exit_2


def test_a_failing_job_ends_failed_with_its_traceback_and_the_sweep_goes_on(tmp_path, real_data_dir):
    """1e30 makes the loss NaN within a few steps: TerminateOnNaN stops it, the run ends FAILED, the next job
    trains. Then the same command again skips the finished job and reruns the failed one; resume=false forces."""
    command = ["-m", "aug=none", "trainer.learning_rate=1e30,0.001", *TINY, f"paths.output_dir={tmp_path}"]
    first = run_cli(*command)
    assert first.returncode != 0
    log = first.stdout + first.stderr
    assert "ended FAILED: 1 FAILED, 1 FINISHED" in log  # the closing summary names the failed job
    assert "  FAILED trainer.learning_rate=1e+30: TrainingDiverged" in log
    client, runs = mlflow_runs(tmp_path)
    assert [r.info.status for r in runs if r.data.tags.get("sweep_parent") == "true"] == ["FAILED"]
    status = {r.data.params["trainer.learning_rate"]: r for r in runs if "sweep_parent" not in r.data.tags}
    assert status["1e+30"].info.status == "FAILED" and status["0.001"].info.status == "FINISHED"
    failed = status["1e+30"]
    assert failed.data.tags["failure_reason"] == "nan_loss" and "NaN" in failed.data.tags["error"]
    text = open(client.download_artifacts(failed.info.run_id, "traceback.txt")).read()
    assert "Traceback" in text and "TrainingDiverged" in text
    assert not [r for r in runs if r.info.status == "RUNNING"]

    second = run_cli(*command)
    assert second.returncode != 0
    assert "] - skip trainer.learning_rate=0.001: FINISHED already" in second.stdout + second.stderr
    _, runs = mlflow_runs(tmp_path)
    parents = [r for r in runs if r.data.tags.get("sweep_parent") == "true"]
    children = [r for r in runs if r.data.tags.get("sweep_parent") != "true"]
    assert len(parents) == 1  # the same sweep command continues the same sweep
    by_lr = {}
    for run in children:
        by_lr.setdefault(run.data.params["trainer.learning_rate"], []).append(run.info.status)
    assert by_lr == {"0.001": ["FINISHED"], "1e+30": ["FAILED", "FAILED"]}  # failed work runs again

    forced = run_cli(*command[:-1], "resume=false", command[-1])
    assert forced.returncode != 0 and "] - skip " not in forced.stdout + forced.stderr
    _, runs = mlflow_runs(tmp_path)
    finished = [r for r in runs if r.info.status == "FINISHED" and "sweep_parent" not in r.data.tags]
    assert len(finished) == 2 and len({r.data.tags["config_fingerprint"] for r in finished}) == 1
    assert not [r for r in runs if r.info.status == "RUNNING"]


def test_a_new_sweep_reuses_finished_jobs_of_an_earlier_one_and_reports_them(tmp_path, real_data_dir):
    """aug.alpha=0.1,0.2 then aug.alpha=0.2,0.4: the second sweep trains only 0.4, and its report has both."""
    out = f"paths.output_dir={tmp_path}"
    assert run_cli("-m", "aug.alpha=0.1,0.2", *TINY, out).returncode == 0
    second = run_cli("-m", "aug.alpha=0.2,0.4", *TINY, out)
    assert second.returncode == 0 and "] - skip aug.alpha=0.2: FINISHED already" in second.stdout + second.stderr
    _, runs = mlflow_runs(tmp_path)
    parents = sorted((r for r in runs if r.data.tags.get("sweep_parent") == "true"), key=lambda r: r.info.start_time)
    children = [r for r in runs if r.data.tags.get("sweep_parent") != "true"]
    assert len(parents) == 2 and len(children) == 3  # 0.2 trained once
    (reused,) = [r for r in children if r.data.params["aug.alpha"] == "0.2"]
    second_id = parents[1].data.tags["sweep_id"]
    assert reused.data.tags[f"reused_in_sweep.{second_id}"] == parents[1].info.run_id
    assert run_report("--output-dir", tmp_path, "--sweep", second_id) == 0
    summary = (tmp_path / "reports" / second_id / "summary.csv").read_text()
    assert "aug.alpha=0.2" in summary and "aug.alpha=0.4" in summary and "aug.alpha=0.1" not in summary


def test_three_parallel_joblib_jobs_on_one_store_lose_nothing(tmp_path, real_data_dir):
    result = run_cli(
        "-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=3", "aug.alpha=0.1,0.2,0.4", *TINY,
        f"paths.output_dir={tmp_path}",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "database is locked" not in result.stdout + result.stderr
    client, runs = mlflow_runs(tmp_path)
    children = [r for r in runs if "sweep_parent" not in r.data.tags]
    assert len(runs) == 4 and len(children) == 3 and all(r.info.status == "FINISHED" for r in runs)
    rows = sum(len(client.get_metric_history(r.info.run_id, k)) for r in children for k in EPOCH_METRICS)
    assert rows == 3 * 2 * len(EPOCH_METRICS)
    assert all(len(r.data.params) == len(children[0].data.params) for r in children)
    assert len({r.data.tags["init_weights_sha256"] for r in children}) == 1
    assert len(list((tmp_path / "initial_weights").glob("*.weights.h5"))) == 1


def test_two_different_sweeps_started_together_stay_two_sweeps(tmp_path, real_data_dir):
    """Started in the same second on an empty directory, they create one store and one set of initial weights
    together, and still get their own sweep directory, parent run and job dirs."""
    commands = [["-m", f"aug.alpha={alphas}", *TINY, "trainer.epochs=1", f"paths.output_dir={tmp_path}",
                 "hydra/launcher=basic"]
                for alphas in ("0.1,0.2", "0.3,0.4")]  # fmt: skip
    jobs = [
        start_cli(cli(*command), stderr=subprocess.PIPE)
        for command in commands
    ]  # fmt: skip
    errors = [job.communicate(timeout=600)[1] for job in jobs]
    assert [job.returncode for job in jobs] == [0, 0], "\n".join(e[-1500:] for e in errors)
    _, runs = mlflow_runs(tmp_path)
    parents = [r for r in runs if r.data.tags.get("sweep_parent") == "true"]
    assert len(parents) == 2 and len({p.data.tags["sweep_dir"] for p in parents}) == 2
    jobs = [r for r in runs if "sweep_parent" not in r.data.tags]
    assert len(jobs) == 4 and all(r.info.status == "FINISHED" for r in runs)
    assert len({r.data.tags["init_weights_sha256"] for r in jobs}) == 1  # one start, made once by either
    for parent in parents:
        children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
        alphas = sorted(r.data.params["aug.alpha"] for r in children)
        assert alphas in (["0.1", "0.2"], ["0.3", "0.4"]) and parent.info.status == "FINISHED"
    sweep_dirs = list((tmp_path / "multirun").iterdir())
    assert len(sweep_dirs) == 2
    for sweep_dir in sweep_dirs:  # each job directory holds one job's files
        for job_dir in (sweep_dir / "0", sweep_dir / "1"):
            assert len(list(job_dir.glob("samples.png"))) == 1
    overrides = sorted((d / "0" / ".hydra" / "overrides.yaml").read_text() for d in sweep_dirs)
    assert "aug.alpha=0.1" in overrides[0] and "aug.alpha=0.3" in overrides[1]


def test_a_bad_seed_is_one_line_exit_2_and_records_nothing(tmp_path, real_data_dir):
    result = run_cli("seed=-1", *TINY, f"paths.output_dir={tmp_path}", fresh_python=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "Error: Invalid value seed=-1: must be an integer in [0, 4294967295] (2**32 - 1)"
    ]
    assert mlflow_runs(tmp_path)[1] == []


# Bad input that only the job can find (the data, the output directory): through the real CLI. Every other bad
# value is refused before Hydra starts (tests/integration/test_user_errors.py checks each in this process).
BAD_AT_THE_JOB = ["dataset.val_size=60000", "dataset.train_size=58001", "dataset.path=/nonexistent",
                  "paths.output_dir=/etc/passwd/sub"]  # fmt: skip


@pytest.fixture(scope="module")
def bad_input_results(tmp_path_factory, real_data_dir):
    """Each bad override through the real CLI, in its own process and output dir, two at a time."""
    outs = {override: tmp_path_factory.mktemp("bad") for override in BAD_AT_THE_JOB}

    def attempt(override: str):
        out = f"paths.output_dir={outs[override]}"
        return run_cli(*TINY, out, *override.split(" "), fresh_python=True, timeout=300)

    with ThreadPoolExecutor(max_workers=2) as pool:
        return {o: (outs[o], result) for o, result in zip(BAD_AT_THE_JOB, pool.map(attempt, BAD_AT_THE_JOB))}


@pytest.mark.parametrize("override", BAD_AT_THE_JOB)
def test_bad_input_fails_cleanly_and_records_nothing_successful(override, bad_input_results):
    out, result = bad_input_results[override]
    overrides = override.split(" ")
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines and "Traceback" not in result.stderr, result.stderr
    key = overrides[-1].split("=")[0].lstrip("+")
    assert key.split(".")[-1] in lines[0] or key in lines[0] or "paths.output_dir" in lines[0], lines[0]
    _, runs = mlflow_runs(out)
    assert not [r for r in runs if r.info.status in ("FINISHED", "RUNNING")]


def test_a_single_run_has_no_parent_and_no_environment_variable_becomes_a_param_or_tag(tmp_path, real_data_dir):
    secrets = {"AWS_SECRET_ACCESS_KEY": "aws-s3cr3t-0001", "MLFLOW_TRACKING_PASSWORD": "pw-s3cr3t-0002",
               "MIXUP_NAME": "named-s3cr3t-0003"}  # fmt: skip
    result = run_cli("aug=none", *TINY, "model.name=${oc.env:MIXUP_NAME}", f"paths.output_dir={tmp_path}", env=secrets)
    assert result.returncode == 0, result.stderr[-2000:]
    client, runs = mlflow_runs(tmp_path)
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    assert "mlflow.parentRunId" not in runs[0].data.tags and "sweep_id" not in runs[0].data.tags
    # the overrides as typed, paths.* left out
    assert runs[0].info.run_name == (
        "aug=none,dataset.train_size=256,trainer.epochs=2,dataset.test_size=1000,model.name=${oc.env:MIXUP_NAME}"
    )
    values = [*runs[0].data.params.values(), *runs[0].data.tags.values(), runs[0].info.run_name]
    assert not [v for v in values if any(secret in v for secret in secrets.values())]
    assert runs[0].data.params["model.name"] == "${oc.env:MIXUP_NAME}"  # (dataset.name is a registry key now)
    assert not [k for k in os.environ if k in runs[0].data.params]
    config_yaml = open(client.download_artifacts(runs[0].info.run_id, "config.yaml")).read()
    assert "${oc.env:MIXUP_NAME}" in config_yaml and not any(s in config_yaml for s in secrets.values())


def test_a_store_file_that_is_not_a_database_is_one_line_and_left_untouched(tmp_path):
    store = tmp_path / "mlflow.db"
    store.write_text("these are my notes, not a database\n" * 10)
    before = store.read_bytes()
    for args in ([*TINY], ["-m", "aug=none,mixup", *TINY]):
        one_line_exit_2(run_cli(*args, f"paths.output_dir={tmp_path}"), "is not an SQLite database")
    report = run_command(report_command("--output-dir", str(tmp_path)), timeout=120)
    one_line_exit_2(report, "is not an SQLite database")
    assert store.read_bytes() == before


def test_a_run_whose_network_cannot_be_logged_ends_failed_never_finished_without_its_model(tmp_path, real_data_dir):
    """Issue 39: the trained network is logged (an MLflow Model) before the test metrics and the end: where it
    cannot be written (here a file stands where the store keeps its models), the run ends FAILED with the reason
    in one line and its traceback, not FINISHED without its model."""
    (tmp_path / "mlartifacts").mkdir()
    (tmp_path / "mlartifacts" / "models").write_text("not a folder")
    result = run_cli("aug=none", *TINY, f"paths.output_dir={tmp_path}")
    assert result.returncode != 0
    client, (run,) = mlflow_runs(tmp_path)
    assert run.info.status == "FAILED" and "test_accuracy" not in run.data.metrics
    assert run.data.tags["error"].startswith(("NotADirectoryError", "FileExistsError")), run.data.tags["error"]
    assert "\n" not in run.data.tags["error"] and "traceback.txt" in {
        a.path for a in client.list_artifacts(run.info.run_id)
    }
    failed_lines = [line for line in (result.stdout + result.stderr).splitlines() if " - FAILED " in line]
    assert len(failed_lines) == 1 and "mlartifacts/models" in failed_lines[0], result.stdout[-2000:]


@pytest.fixture
def small_disk(tmp_path) -> Iterator[Path]:
    """A 48 MB tmpfs of its own (mounting needs root: CI runs as root; elsewhere the test is skipped)."""
    where = tmp_path / "small-disk"
    where.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", str(where)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()[:200]}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def fill(disk: Path) -> Path:
    """Fill `disk` to the last byte with one file; returns it (removing it frees the space)."""
    ballast = disk / "ballast"
    with open(ballast, "wb") as file:
        try:
            while True:
                file.write(b"\0" * (1 << 20))
                file.flush()
        except OSError:
            pass
    return ballast


def test_a_disk_that_fills_mid_sweep_is_one_line_and_the_rerun_finishes(small_disk):
    """The disk fills after the first job finished: the sweep ends with one line (exit 1), no traceback, the store
    intact; with space freed, the same command finishes the rest and skips the finished job."""
    command = cli("-m", "aug=none,mixup", "seed=0", "dataset.train_size=512",
               "trainer.epochs=3", "hydra/launcher=basic",
               f"paths.output_dir={small_disk / 'out'}")  # fmt: skip
    sweep = start_cli(command, env={"PYTHONUNBUFFERED": "1"}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    seen = []
    for line in sweep.stdout:  # type: ignore[union-attr]
        seen.append(line)
        if "] - done " in line:  # the first job is FINISHED; fill the disk under the second
            break
    ballast = fill(small_disk)
    output = "".join(seen) + sweep.communicate(timeout=600)[0]
    assert sweep.returncode == 1, output[-3000:]
    assert "disk full writing " in output and ": free space and run the same command again" in output
    assert "Traceback" not in output and "Logging error" not in output, output[-3000:]
    database = small_disk / "out" / "mlflow.db"
    with sqlite3.connect(database) as store:
        assert store.execute("pragma integrity_check").fetchone() == ("ok",)
    ballast.unlink()
    again = run_command(command)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "skip aug=none: FINISHED already" in again.stdout + again.stderr
    _, runs = mlflow_runs(small_disk / "out")
    jobs = [r for r in runs if "sweep_parent" not in r.data.tags]
    finished = [r for r in jobs if r.info.status == "FINISHED"]
    assert sorted(r.data.params["aug.name"] for r in finished) == ["mixup", "none"]
