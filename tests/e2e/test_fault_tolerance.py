"""Reliability through the real CLI: skip finished work, parallel jobs, bad input (kill and resume: test_resume)."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.helpers import EPOCH_METRICS, ROOT, TINY, mlflow_runs, run_cli


def test_rerun_skips_finished_reruns_failed_and_resume_false_forces(tmp_path, real_data_dir):
    command = ["-m", "aug=none", "trainer.learning_rate=1e30,0.001", *TINY, f"paths.output_dir={tmp_path}"]
    first = run_cli(*command)
    assert first.returncode != 0  # the 1e30 job diverges
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
    report = subprocess.run(
        [sys.executable, "-m", "mixup_sweeps.report", "--output-dir", str(tmp_path), "--sweep", second_id],
        capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    assert report.returncode == 0, report.stderr[-2000:]
    summary = (tmp_path / "reports" / second_id / "summary.csv").read_text()
    assert "aug.alpha=0.2" in summary and "aug.alpha=0.4" in summary and "aug.alpha=0.1" not in summary


def test_four_parallel_joblib_jobs_on_one_store_lose_nothing(tmp_path, real_data_dir):
    result = run_cli(
        "-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=4", "aug.alpha=0.1,0.2,0.3,0.4", *TINY,
        f"paths.output_dir={tmp_path}",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "database is locked" not in result.stdout + result.stderr
    client, runs = mlflow_runs(tmp_path)
    children = [r for r in runs if "sweep_parent" not in r.data.tags]
    assert len(runs) == 5 and len(children) == 4 and all(r.info.status == "FINISHED" for r in runs)
    rows = sum(len(client.get_metric_history(r.info.run_id, k)) for r in children for k in EPOCH_METRICS)
    assert rows == 4 * 2 * len(EPOCH_METRICS)
    assert all(len(r.data.params) == len(children[0].data.params) for r in children)
    assert len({r.data.tags["init_weights_sha256"] for r in children}) == 1
    assert len(list((tmp_path / "initial_weights").glob("*.weights.h5"))) == 1


def test_several_processes_creating_a_new_store_at_once(tmp_path, real_data_dir):
    jobs = [
        subprocess.Popen(
            [sys.executable, "-m", "mixup_sweeps.run", f"aug.alpha={alpha}", *TINY, f"paths.output_dir={tmp_path}"],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for alpha in (0.1, 0.2, 0.3)
    ]
    errors = [job.communicate(timeout=600)[1] for job in jobs]
    assert [job.returncode for job in jobs] == [0, 0, 0], "\n".join(e[-1500:] for e in errors)
    _, runs = mlflow_runs(tmp_path)
    assert len(runs) == 3 and all(r.info.status == "FINISHED" for r in runs)
    assert len({r.data.tags["init_weights_sha256"] for r in runs}) == 1


def test_two_different_sweeps_started_together_stay_two_sweeps(tmp_path, real_data_dir):
    """Started in the same second, they still get their own sweep directory, parent run and job dirs."""
    commands = [["-m", f"aug.alpha={alphas}", *TINY, "trainer.epochs=1", f"paths.output_dir={tmp_path}"]
                for alphas in ("0.1,0.2", "0.3,0.4")]  # fmt: skip
    jobs = [
        subprocess.Popen([sys.executable, "-m", "mixup_sweeps.run", *command], cwd=ROOT, text=True,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        for command in commands
    ]  # fmt: skip
    errors = [job.communicate(timeout=600)[1] for job in jobs]
    assert [job.returncode for job in jobs] == [0, 0], "\n".join(e[-1500:] for e in errors)
    _, runs = mlflow_runs(tmp_path)
    parents = [r for r in runs if r.data.tags.get("sweep_parent") == "true"]
    assert len(parents) == 2 and len({p.data.tags["sweep_dir"] for p in parents}) == 2
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
    result = run_cli("seed=-1", *TINY, f"paths.output_dir={tmp_path}", timeout=120)
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
        return run_cli(*TINY, f"paths.output_dir={outs[override]}", *override.split(" "), timeout=300)

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


def test_no_environment_variable_becomes_a_param_or_tag(tmp_path, real_data_dir):
    secrets = {"AWS_SECRET_ACCESS_KEY": "aws-s3cr3t-0001", "MLFLOW_TRACKING_PASSWORD": "pw-s3cr3t-0002",
               "MIXUP_NAME": "named-s3cr3t-0003"}  # fmt: skip
    result = run_cli(
        "aug=none", *TINY, "dataset.name=${oc.env:MIXUP_NAME}", f"paths.output_dir={tmp_path}", env=secrets
    )
    assert result.returncode == 0, result.stderr[-2000:]
    client, runs = mlflow_runs(tmp_path)
    values = [*runs[0].data.params.values(), *runs[0].data.tags.values(), runs[0].info.run_name]
    assert not [v for v in values if any(secret in v for secret in secrets.values())]
    assert runs[0].data.params["dataset.name"] == "${oc.env:MIXUP_NAME}"
    assert not [k for k in os.environ if k in runs[0].data.params]
    config_yaml = open(client.download_artifacts(runs[0].info.run_id, "config.yaml")).read()
    assert "${oc.env:MIXUP_NAME}" in config_yaml and not any(s in config_yaml for s in secrets.values())
