"""The search (`hydra/sweeper=search`): its space and settings, pruning paired by seed, a killed study continued,
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

import optuna
import pytest

from mixup_sweeps.errors import ConfigError
from mixup_sweeps.multirun import preflight
from mixup_sweeps.report import fetch_runs, write_report
from mixup_sweeps.store import liveness, tags
from mixup_sweeps.sweeps import identity, search
from mixup_sweeps.sweeps import study as studies
from tests.helpers import EXPERIMENT, ROOT, free_port, mlflow_runs, run_cli, steps, wait_until

optuna.logging.set_verbosity(optuna.logging.ERROR)
SEARCH = ["hydra/sweeper=search", "dataset.train_size=1024", "dataset.val_size=200"]
SLOW_LR, GOOD_LR, BAD_LR = 0.001, 0.003, 1e-7  # 1e-7: the model does not move from chance
RATES = f"trainer.learning_rate=choice({SLOW_LR}, {GOOD_LR}, {BAD_LR})"


def settings(**changes) -> search.SearchSettings:
    from omegaconf import OmegaConf

    node = OmegaConf.to_container(OmegaConf.load(ROOT / "conf/hydra/sweeper/search.yaml"))
    node.pop("defaults")
    return search.settings_of({**node, **changes})


# --- the space and the settings ------------------------------------------------------------------------------
def test_the_plugins_syntax_becomes_optuna_distributions():
    space, fixed = search.search_space([
        "aug.alpha=tag(log, interval(0.05, 8))", "trainer.epochs=3", "trainer.batch_size=range(32, 129, 32)",
        "trainer.learning_rate=choice(0.001, 0.003)", "dataset.train_size=int(interval(100, 200))",
    ])  # fmt: skip
    assert fixed == ["trainer.epochs=3"]
    assert space["aug.alpha"] == optuna.distributions.FloatDistribution(0.05, 8.0, log=True)
    assert space["trainer.batch_size"] == optuna.distributions.IntDistribution(32, 128, step=32)
    assert space["trainer.learning_rate"] == optuna.distributions.CategoricalDistribution([0.001, 0.003])
    assert space["dataset.train_size"] == optuna.distributions.IntDistribution(100, 200)
    assert search.overrides_of({"aug.alpha": 0.1 + 0.2, "aug": "mixup"}) == [
        "aug.alpha=0.30000000000000004",
        "aug=mixup",
    ]


@pytest.mark.parametrize(
    "argument, message",
    [
        ("aug.alpha=interval(2, 1)", "interval(low, high) needs high > low"),
        ("aug.alpha=interval(1, 1)", "interval(low, high) needs high > low"),
        ("aug.alpha=tag(log, interval(0, 8))", "needs low > 0"),
        ("seed=interval(0, 9)", "the search owns the seed"),
        ("seed=3", "the search owns the seed"),
        ("trainer.epochs=3", "needs a range to search"),
    ],
)
def test_a_space_that_cannot_be_searched_is_one_line(argument, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        search.search_space([argument])


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ["hydra.sweeper.n_trials=0", "aug.alpha=interval(0.1, 1)"],
            "hydra.sweeper.n_trials=0: must be an integer >= 1",
        ),
        (
            ["hydra.sweeper.confirm_seeds=1", "aug.alpha=interval(0.1, 1)"],
            "confirm_seeds=1: 0 (no confirmation) or >= 2",
        ),
        (["hydra.sweeper.metric=test_accuracy", "aug.alpha=interval(0.1, 1)"], "validation only"),
        (["hydra.sweeper.pruner=hyperband", "aug.alpha=interval(0.1, 1)"], "hydra.sweeper.pruner"),
        (["aug.nosuchkey=interval(0.1, 1)"], "aug.nosuchkey"),
        (["aug.alpha=interval(0, 1)"], "aug.alpha"),  # alpha 0 is not a Beta distribution: the low end is checked
        (["aug=none", "aug.alpha=interval(0.1, 1)"], "alpha"),  # no alpha without mixing
    ],
)
def test_preflight_refuses_a_search_that_cannot_work(argv, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")) as info:
        preflight.check(["-m", "hydra/sweeper=search", *argv])
    assert "\n" not in str(info.value)


def test_a_bad_search_from_the_command_line_is_one_line_exit_2_and_records_nothing(tmp_path):
    result = run_cli(
        "-m", "hydra/sweeper=search", "aug.alpha=tag(log, interval(-1, 8))", f"paths.output_dir={tmp_path}"
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert "tag(log, interval(low, high)) needs low > 0" in result.stderr.strip().splitlines()[-1]
    assert not mlflow_runs(tmp_path)[1] and not (tmp_path / studies.STUDY_FILE).exists()


def test_the_study_is_defined_by_the_search_not_by_how_many_trials(tmp_path):
    from tests.helpers import compose_config

    def fingerprint(*overrides: str) -> str:
        settings = [o for o in overrides if o.startswith("hydra.")]
        config = compose_config(["hydra/sweeper=search", *settings], str(tmp_path), return_hydra_config=True)
        config.hydra.overrides.task = ["hydra/sweeper=search", *overrides]  # as Hydra records a multirun's
        return identity.sweep_fingerprint(config)

    space = "aug.alpha=interval(0.1, 1)"
    assert fingerprint(space) == fingerprint(space, "hydra.sweeper.n_trials=99", "hydra.sweeper.confirm_seeds=5")
    assert fingerprint(space) != fingerprint(space, "hydra.sweeper.seeds_per_trial=2")
    assert fingerprint(space) != fingerprint("aug.alpha=interval(0.1, 2)")


# --- pruning paired by seed ----------------------------------------------------------------------------------
def _study(pruner: str, seeds: int, **changes) -> tuple[optuna.Study, search.SearchSettings]:
    chosen = settings(pruner=pruner, seeds_per_trial=seeds, n_startup_trials=1, n_warmup_epochs=1, **changes)
    return studies.open_study(chosen, "sqlite:///:memory:", "test"), chosen


def _finished_trial(study: optuna.Study, curves: dict[int, list[float]], seeds: int) -> None:
    trial = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    for seed, curve in curves.items():
        for epoch, value in enumerate(curve, start=1):
            trial.report(value, studies.step_of(epoch, seed, seeds))
    study.tell(trial, sum(curve[-1] for curve in curves.values()) / len(curves))


def test_the_median_pruner_compares_a_job_with_other_trials_at_the_same_epoch_and_seed():
    """Seed 1 is an easy seed in every trial: a job is judged against the others' *seed 1*, not their mean."""
    study, chosen = _study("median", seeds=2)
    _finished_trial(study, {0: [0.50, 0.60, 0.70], 1: [0.80, 0.85, 0.90]}, seeds=2)
    trial = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    for epoch, (seed0, seed1) in enumerate([(0.55, 0.70), (0.65, 0.75)], start=1):
        trial.report(seed0, studies.step_of(epoch, 0, 2))
        trial.report(seed1, studies.step_of(epoch, 1, 2))
    # epoch 2: seed 0's best 0.65 beats the finished trial's seed 0 (0.60); seed 1's 0.75 is below its 0.85
    assert not studies.should_prune(study, trial._trial_id, seed=0, seeds=2)
    assert studies.should_prune(study, trial._trial_id, seed=1, seeds=2)
    # the pooled comparison would prune neither (0.70 mean vs the finished trial's 0.725 mean: close)


def test_no_pruning_before_the_warmup_epoch_or_the_startup_trials():
    study, _ = _study("median", seeds=1)
    trial = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    trial.report(0.1, studies.step_of(2, 0, 1))
    assert not studies.should_prune(study, trial._trial_id, seed=0, seeds=1)  # no finished trial yet
    _finished_trial(study, {0: [0.5, 0.6]}, seeds=1)
    late = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    late.report(0.1, studies.step_of(1, 0, 1))
    assert not studies.should_prune(study, late._trial_id, seed=0, seeds=1)  # epoch 1: warm-up
    late.report(0.1, studies.step_of(2, 0, 1))
    assert studies.should_prune(study, late._trial_id, seed=0, seeds=1)


def test_the_wilcoxon_pruner_pairs_every_common_step_with_the_best_trial():
    study, _ = _study("wilcoxon", seeds=3)
    _finished_trial(study, {s: [0.5 + 0.05 * s, 0.6 + 0.05 * s, 0.7 + 0.05 * s] for s in range(3)}, seeds=3)
    trial = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    for epoch in (1, 2, 3):
        for seed in range(3):
            trial.report(0.2 + 0.01 * seed, studies.step_of(epoch, seed, 3))
    assert studies.should_prune(study, trial._trial_id, seed=0, seeds=3)


# --- a killed study --------------------------------------------------------------------------------------------
def test_a_trial_left_running_by_a_dead_sweep_is_asked_again_and_not_counted(tmp_path):
    from mixup_sweeps.multirun.search import INTERRUPTED, OWNER, SearchRun

    url = f"sqlite:///{tmp_path}/optuna.db"
    study = studies.open_study(settings(), url, "s")
    space = {"x": optuna.distributions.FloatDistribution(0, 1)}
    done = study.ask(space)
    study.tell(done, 0.5)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    ghost = study.ask(space)
    ghost.set_user_attr(OWNER, {"host": os.uname().nodename, "pid": str(dead.pid), "process_start": "1:1"})
    alive = study.ask(space)
    alive.set_user_attr(OWNER, liveness.process_tags())  # this test's own process: alive
    SearchRun._recover(study)
    trials = {t.number: t for t in study.get_trials()}
    assert trials[ghost.number].state == optuna.trial.TrialState.FAIL and trials[ghost.number].user_attrs[INTERRUPTED]
    assert trials[alive.number].state == optuna.trial.TrialState.RUNNING  # another live sweep's trial is left alone
    assert SearchRun._counted(study) == 1  # the finished trial; the interrupted one does not count
    again = study.ask(space)
    assert again.params == ghost.params  # its parameters come first: its jobs skip or resume


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


@pytest.mark.slow
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


def _study_name(out: Path) -> str:
    (name,) = optuna.get_all_study_names(f"sqlite:///{out}/optuna.db")
    return name


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
def test_optunas_dashboard_shows_the_stored_study(searched, tmp_path):
    from playwright.sync_api import sync_playwright

    from tests.test_mlflow_ui import CHROMIUM, CHROMIUM_ARGS

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


@pytest.mark.slow
def test_a_killed_search_continues_without_losing_or_repeating_a_finished_trial(tmp_path, real_data_dir):
    """kill -9 once the first trial is told; the same command again ends with n_trials counted trials, the first
    session's finished trials as they were, and no job trained twice."""
    args = ["-m", *SEARCH, "trainer.epochs=2", "aug.alpha=tag(log, interval(0.05, 8))",
            "hydra.sweeper.n_trials=3", f"paths.output_dir={tmp_path}"]  # fmt: skip
    process = subprocess.Popen([sys.executable, "-m", "mixup_sweeps.run", *args], cwd=ROOT, start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
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


@pytest.mark.slow
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


def test_a_storage_password_is_never_recorded():
    assert studies.shown_url("postgresql+psycopg://ann:s3cret@db/optuna") == "postgresql+psycopg://ann:***@db/optuna"
    assert studies.shown_url("sqlite:////tmp/outputs/optuna.db") == "sqlite:////tmp/outputs/optuna.db"
