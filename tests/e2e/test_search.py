"""The end-to-end part (the command line, real sweeps; slow) of these tests; beside them:
tests/integration/test_search.py, tests/unit/test_search.py.

The search (`hydra/sweeper=search`): its space and settings, pruning paired by seed, a killed study continued,
and real searches end to end (pruned jobs, the confirmation on fresh seeds, the report, packed members, the
dashboard). Fast tests build Optuna studies directly; slow ones train tiny models."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import mlflow
import optuna
import pytest

from mixup_sweeps.report import fetch_runs, write_report
from mixup_sweeps.store import tags
from tests.helpers import EXPERIMENT, cli, free_port, mlflow_runs, run_cli, start_cli, steps, wait_until

SEARCH = ["hydra/sweeper=search", "dataset.train_size=512", "dataset.val_size=200"]


SLOW_LR, GOOD_LR, BAD_LR = 0.001, 0.003, 1e-7  # 1e-7: the model does not move from chance


RATES = f"trainer.learning_rate=choice({SLOW_LR}, {GOOD_LR}, {BAD_LR})"


# --- end to end ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def searched(tmp_path_factory, real_data_dir):
    """A real search: 3 trials over (alpha, learning rate) on the TF engine, trial #1 at a learning rate that
    cannot learn (the random sampler's seed 0 draws 0.001, 1e-7, 0.003), pruned after epoch 2 of 3; the best
    confirmed against aug=none on 2 fresh seeds; then the report."""
    out = tmp_path_factory.mktemp("search")
    result = run_cli(
        "-m", *SEARCH, "trainer.epochs=3", "aug.alpha=interval(0.1, 1.0)", RATES,
        "hydra.sweeper.n_trials=3", "hydra.sweeper.sampler=random", "hydra.sweeper.sampler_seed=0",
        "hydra.sweeper.n_startup_trials=1", "hydra.sweeper.confirm_seeds=2", f"paths.output_dir={out}",
        "hydra/launcher=basic",  # one trial at a time: #1 is judged against the finished #0
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    client, runs = mlflow_runs(out)
    run_set = fetch_runs(f"sqlite:///{out}/mlflow.db", EXPERIMENT, "latest")
    files = write_report(run_set, f"sqlite:///{out}/mlflow.db", EXPERIMENT, out / "report")
    return out, client, runs, run_set, files, result.stdout + result.stderr


def test_every_trial_is_ordinary_runs_under_one_parent_and_the_bad_one_is_pruned(searched):
    out, client, runs, _, _, _ = searched
    (parent,) = [r for r in runs if r.data.tags.get("sweep_parent") == "true"]
    assert parent.info.status == "FINISHED"  # a pruned trial is no failure
    children = [r for r in runs if r is not parent]
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parent.info.run_id}
    trials = [r for r in children if tags.TRIAL in r.data.tags]
    assert sorted(int(r.data.tags[tags.TRIAL]) for r in trials) == [0, 1, 2]
    assert {r.data.params["seed"] for r in trials} == {"0"}  # the same seed for every trial: paired
    (pruned,) = [r for r in trials if r.data.tags.get(tags.PRUNED) == "true"]
    assert float(pruned.data.params["trainer.learning_rate"]) == BAD_LR
    assert pruned.info.status == "KILLED" and pruned.data.tags[tags.PRUNED_EPOCH] == "2"
    assert steps(client, pruned.info.run_id, "val_accuracy") == [1, 2]  # stopped mid-training
    for run in trials:
        if run is not pruned:
            assert run.info.status == "FINISHED" and steps(client, run.info.run_id, "val_accuracy") == [1, 2, 3]
    assert json.loads(parent.data.tags["search"])["seeds_per_trial"] == 1  # the study's settings on the parent
    study = optuna.load_study(study_name=_study_name(out), storage=f"sqlite:///{out}/optuna.db")
    states = {t.number: t.state.name for t in study.trials}
    assert states == {0: "COMPLETE", 1: "PRUNED", 2: "COMPLETE"}
    assert study.trials[0].value == pytest.approx(
        next(r for r in trials if r.data.tags[tags.TRIAL] == "0").data.metrics["val_accuracy"]
    )
    # issue 39: the trials in MLflow as Optuna users expect, and Optuna knows which runs each trial made
    assert study.metric_names == ["val_accuracy"]
    for run in trials:
        number = int(run.data.tags[tags.TRIAL])
        assert run.data.tags[tags.SEARCH_STUDY] == study.study_name
        assert run.data.tags[tags.TRIAL_STATE] == states[number]
        assert study.trials[number].user_attrs["mlflow_run_ids"] == [run.info.run_id]
    mlflow.set_tracking_uri(f"sqlite:///{out}/mlflow.db")
    try:
        ranked = mlflow.search_runs(
            experiment_names=[EXPERIMENT], filter_string=f"tags.{tags.SEARCH_STUDY} = '{study.study_name}'",
            order_by=["metrics.trial_value DESC"],
        )  # fmt: skip
    finally:
        mlflow.set_tracking_uri(None)
    complete = sorted((t for t in study.trials if t.state.name == "COMPLETE"), key=lambda t: -t.value)
    assert list(ranked["tags.search_trial"][: len(complete)]) == [str(t.number) for t in complete]
    assert list(ranked["metrics.trial_value"][: len(complete)]) == [t.value for t in complete]
    assert ranked["metrics.trial_value"].isna().sum() == 1  # the pruned trial has no objective


def _study_name(out: Path) -> str:
    (name,) = optuna.get_all_study_names(f"sqlite:///{out}/optuna.db")
    return name


def test_the_winner_is_confirmed_on_seeds_the_search_never_used(searched):
    out, client, runs, run_set, _, output = searched
    record = run_set.search
    best = record["best"]
    assert best["params"]["trainer.learning_rate"] in (SLOW_LR, GOOD_LR)
    confirm = [r for r in runs if tags.CONFIRM in r.data.tags]
    assert sorted((r.data.tags[tags.CONFIRM], r.data.params["seed"]) for r in confirm) == [
        ("baseline", "1"), ("baseline", "2"), ("best", "1"), ("best", "2")
    ]  # fmt: skip
    search_seeds = {r.data.params["seed"] for r in runs if tags.TRIAL in r.data.tags}
    assert search_seeds.isdisjoint({r.data.params["seed"] for r in confirm})
    for run in confirm:  # the baseline is aug=none at the winner's learning rate (the report's baseline rule)
        assert float(run.data.params["trainer.learning_rate"]) == best["params"]["trainer.learning_rate"]
        assert run.data.params["aug.name"] == ("none" if run.data.tags[tags.CONFIRM] == "baseline" else "mixup")
    by = {(r.data.tags[tags.CONFIRM], r.data.params["seed"]): r.data.metrics["test_accuracy"] for r in confirm}
    delta = sum(by[("best", s)] - by[("baseline", s)] for s in ("1", "2")) / 2
    assert record["confirmation"]["delta"] == pytest.approx(delta)
    assert f"Δ {delta:+.4f}" in output  # the sweep's last lines say it
    assert "why the two differ" in output
    # issue 39: the search registered its best configuration's best seed on validation, champion only when
    # the confirmation's interval is above 0
    (found,) = client.search_model_versions(f"name = '{EXPERIMENT}'")
    version = client.get_model_version(EXPERIMENT, found.version)  # with its aliases
    alias = "champion" if record["confirmation"]["low"] > 0 else "candidate"
    assert version.aliases == [alias] and version.tags["decided_by"].startswith(f"trial {best['number']}")
    lr = str(best["params"]["trainer.learning_rate"])
    same = [
        r
        for r in runs
        if r.data.params.get("trainer.learning_rate") == lr
        and r.data.params["aug.name"] == "mixup"
        and float(r.data.params["aug.alpha"]) == best["params"]["aug.alpha"]
        and r.info.status == "FINISHED"
    ]
    assert len(same) == 3  # the trial's seed 0 and the two confirming seeds
    assert version.run_id == max(same, key=lambda r: r.data.metrics["val_accuracy"]).info.run_id


def test_the_report_has_the_search_answer_section_and_counts_the_pruned_run(searched):
    out, _, _, run_set, files, _ = searched
    assert run_set.left_out == {"PRUNED": 1}
    report = files["report.md"].read_text()
    answer = report.split("## Answer")[1].split("\n\n")[1]
    assert answer.splitlines()[0].startswith("- search: 2 trials complete, 1 pruned, 0 failed; 8 model-epochs")
    assert "confirmed on 2 fresh seeds" in answer and "the search's own score" in answer
    assert "## Search" in report and "Best trials:" in report
    for name in ("search_history.png", "search_importances.png"):
        assert (out / "report" / name).stat().st_size > 5000
        assert f"![{name}]({name})" in report
    assert "search_history.png" in files["report.html"].read_text()


def test_optunas_dashboard_shows_the_stored_study(searched, tmp_path):
    from playwright.sync_api import sync_playwright

    from tests.e2e.test_mlflow_ui import CHROMIUM, CHROMIUM_ARGS

    out = searched[0]
    port = free_port()
    dashboard = Path(sys.executable).with_name("optuna-dashboard")
    command = [str(dashboard), f"sqlite:///{out}/optuna.db", "--host", "127.0.0.1", "--port", str(port)]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        assert server.poll() is None, "optuna-dashboard exited"
        try:
            return urllib.request.urlopen(f"{url}/api/studies", timeout=2).status == 200
        except OSError:
            return False

    try:
        wait_until(up, "optuna-dashboard", timeout=60)
        name = _study_name(out)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.goto(f"{url}/dashboard", wait_until="domcontentloaded")
            page.get_by_text(name).first.wait_for(timeout=60_000)  # the study list
            page.goto(f"{url}/dashboard/studies/1/trials", wait_until="domcontentloaded")
            page.get_by_text("3 Trials").first.wait_for(timeout=30_000)
            for trial in ("Trial 0", "Trial 1", "Trial 2"):
                page.get_by_text(trial, exact=True).first.wait_for(timeout=30_000)
            page.get_by_text("Pruned", exact=True).first.wait_for(timeout=30_000)  # trial #1's state
            page.screenshot(path=str(tmp_path / "dashboard.png"))
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def test_a_killed_search_continues_without_losing_or_repeating_a_finished_trial(tmp_path, real_data_dir):
    """kill -9 once the first trial is told; the same command again ends with n_trials counted trials, the first
    session's finished trials as they were, and no job trained twice."""
    args = ["-m", *SEARCH, "trainer.epochs=2", "aug.alpha=tag(log, interval(0.05, 8))",
            "hydra.sweeper.n_trials=3", f"paths.output_dir={tmp_path}"]  # fmt: skip
    process = start_cli(cli(*args), start_new_session=True)
    url = f"sqlite:///{tmp_path}/optuna.db"

    def complete() -> list[optuna.trial.FrozenTrial]:
        try:
            (name,) = optuna.get_all_study_names(url)
            return optuna.load_study(study_name=name, storage=url).get_trials(
                states=(optuna.trial.TrialState.COMPLETE,)
            )
        except Exception:
            return []

    deadline = time.monotonic() + 300
    while not complete():
        assert process.poll() is None and time.monotonic() < deadline, "the first trial did not finish"
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    before = {t.number: (t.params, t.value) for t in complete()}
    result = run_cli(*args)
    assert result.returncode == 0, result.stderr[-4000:]
    study = optuna.load_study(study_name=_study_name(tmp_path), storage=url)
    counted = [t for t in study.trials if t.state.is_finished() and not t.user_attrs.get("interrupted")]
    assert len(counted) == 3 and all(t.state == optuna.trial.TrialState.COMPLETE for t in counted)
    for number, (params, value) in before.items():
        assert (study.trials[number].params, study.trials[number].value) == (params, value)  # not lost
    assert len({json.dumps(t.params, sort_keys=True) for t in counted}) == 3  # none repeated
    _, runs = mlflow_runs(tmp_path)
    finished = [r for r in runs if r.info.status == "FINISHED" and tags.TRIAL in r.data.tags]
    fingerprints = [r.data.tags["config_fingerprint"] for r in finished]
    assert len(fingerprints) == len(set(fingerprints)) == 3  # no job trained to the end twice


def test_a_packed_search_prunes_a_member_alone(tmp_path, real_data_dir):
    """JAX packs of two trials: in the second pack trial #3 (a learning rate that cannot learn) is pruned after
    epoch 2 while #2 (the fastest learning rate, above the finished trials) trains on to the end (the random
    sampler's seed 76 draws 0.001, 0.001, 0.003, 1e-7)."""
    result = run_cli(
        "-m", *SEARCH, "backend=jax", "hydra/launcher=packed", "hydra.launcher.pack_size=2", "trainer.epochs=3",
        "aug.alpha=interval(0.1, 1.0)", RATES,
        "hydra.sweeper.n_trials=4", "hydra.sweeper.sampler=random", "hydra.sweeper.sampler_seed=76",
        "hydra.sweeper.n_startup_trials=1", f"paths.output_dir={tmp_path}",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    client, runs = mlflow_runs(tmp_path)
    by_trial = {int(r.data.tags[tags.TRIAL]): r for r in runs if tags.TRIAL in r.data.tags}
    assert sorted(by_trial) == [0, 1, 2, 3]
    assert {r.data.tags["pack_members"] for r in by_trial.values()} == {"2"}  # trained as packs of two
    assert by_trial[3].data.tags.get(tags.PRUNED) == "true" and by_trial[3].info.status == "KILLED"
    assert steps(client, by_trial[3].info.run_id, "val_accuracy") == [1, 2]
    assert by_trial[2].info.status == "FINISHED" and steps(client, by_trial[2].info.run_id, "val_accuracy") == [1, 2, 3]
