"""The end-to-end part (the command line, real sweeps; slow) of these tests; beside them:
tests/integration/test_racing.py (bad race input through the command line), tests/unit/test_racing.py (the rule
in thousands of simulated races).

A real race over learning rates where one arm diverges: the diverged arm is scored as the worst accuracy and
leaves, the race ends with a winner, the parent carries the outcome, the same command again trains nothing (the
diverged jobs are not retrained), and the report lists each arm's round."""

from __future__ import annotations

import json

import pandas as pd
from playwright.sync_api import sync_playwright

from mixup_sweeps.store.tracking import ui_runs_link
from tests.e2e.test_mlflow_ui import CHROMIUM, CHROMIUM_ARGS, mlflow_ui
from tests.helpers import EXPERIMENT, TEST_IMAGES, accuracy_in_fresh_python, mlflow_runs, run_cli, run_report
from tests.integration.test_racing import RACE


def test_a_real_race_with_a_diverged_arm_records_its_rounds_resumes_and_reports(tmp_path, real_data_dir):
    """Two learning rates, 2 seeds then a third: 1e30 diverges on every seed (loss NaN), is scored 0 and leaves
    (after the first look, or the second if 0.001's first two seeds disagree much); the sweep ends well (a
    diverged arm is a result), the parent carries the outcome, the sweep's last lines say it, the same command
    again skips every job, and the report lists each arm's round."""
    command = ["-m", "trainer.learning_rate=0.001,1e30", "hydra.sweeper.race.epsilon=0", *RACE,
               f"paths.output_dir={tmp_path}"]  # fmt: skip
    first = run_cli(*command)
    assert first.returncode == 0, first.stderr[-3000:]
    client, runs = mlflow_runs(tmp_path)
    (parent,) = [r for r in runs if r.data.tags.get("sweep_parent") == "true"]
    assert parent.info.status == "FINISHED"
    record = json.loads(parent.data.tags["race_result"])
    children = [r for r in runs if r.data.tags.get("sweep_parent") != "true"]
    assert record["seed_runs"] == len(children) in (4, 6) and record["exhaustive_runs"] == 6 and record["epochs"] == 1
    arms = {arm["group"]: arm for arm in record["arms"]}
    assert set(arms) == {"trainer.learning_rate=0.001", "trainer.learning_rate=1e+30"}
    assert record["reason"] == "one_left" and record["remaining"] == ["trainer.learning_rate=0.001"]
    diverged = arms["trainer.learning_rate=1e+30"]
    assert diverged["outcome"] == "eliminated" and diverged["diverged"] == diverged["seeds"] and diverged["mean"] == 0
    seeds = diverged["seeds"]
    assert sorted(r.info.status for r in children) == ["FAILED"] * seeds + ["FINISHED"] * seeds
    output = first.stdout + first.stderr  # Hydra's log lines
    assert "race: spent" in output and f"race: {record['lines'][0]}" in output
    assert f"diverged (loss NaN) on {seeds} of its {seeds} seeds" in output
    again = run_cli(*command)
    assert again.returncode == 0, again.stderr[-3000:]
    assert (again.stdout + again.stderr).count(" - skip ") == len(children)  # the diverged jobs too: not retrained
    assert len(mlflow_runs(tmp_path)[1]) == len(runs)
    (parent,) = [r for r in mlflow_runs(tmp_path)[1] if r.data.tags.get("sweep_parent") == "true"]
    assert json.loads(parent.data.tags["race_result"])["lines"] == record["lines"]
    assert run_report("--output-dir", tmp_path) == 0
    summary = pd.read_csv(next((tmp_path / "reports").glob("*/summary.csv")))
    assert set(summary["race_outcome"]) == {"winner"}  # the diverged arm has no FINISHED run to summarize
    assert "race: " in next((tmp_path / "reports").glob("*/report.md")).read_text()
    winner_registered_and_loads_by_alias(client, children, parent, tmp_path)


def winner_registered_and_loads_by_alias(client, children, parent, tmp_path) -> None:
    """Issue 39: the race's winner is the registered model's `champion`: of its seeds the best on validation, once
    however often the sweep or the report ran, the race's answer its description; `models:/<experiment>@champion`
    in a fresh Python gives that run's test accuracy. The UI shows it (test_mlflow_ui.py)."""
    versions = client.search_model_versions(f"name = '{EXPERIMENT}'")
    assert len(versions) == 1  # the sweep, the same command again and the report: one version
    champion = client.get_model_version_by_alias(EXPERIMENT, "champion")
    arm = [r for r in children if r.data.params["trainer.learning_rate"] == "0.001"]
    best = max(arm, key=lambda r: r.data.metrics["val_accuracy"])
    assert champion.run_id == best.info.run_id and champion.tags["group"] == "trainer.learning_rate=0.001"
    assert champion.tags["sweep_id"] == parent.data.tags["sweep_id"] and "race" in champion.description
    assert client.get_run(parent.info.run_id).data.tags["registered_model"] == f"{EXPERIMENT}/1@champion"
    accuracy, _ = accuracy_in_fresh_python(f"models:/{EXPERIMENT}@champion", "tensorflow", client.tracking_uri)
    assert abs(accuracy - best.data.metrics["test_accuracy"]) <= 1.01 / TEST_IMAGES
    ui_shows_the_model_the_champion_and_the_datasets(tmp_path, parent.info.experiment_id, champion, tmp_path)


def ui_shows_the_model_the_champion_and_the_datasets(out, experiment_id, champion, shots) -> None:
    """`mlflow ui` on the finished race, in Chromium: the runs table's dataset column, the winner's run page with
    its logged model, the registered model's page with its `champion` version (screenshots: docs/images/)."""
    with mlflow_ui(out) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.goto(ui_runs_link(experiment_id, url), wait_until="domcontentloaded")
        page.get_by_text("sweep ").first.wait_for(timeout=60_000)
        page.locator('button[data-component-id*="runnamecellrenderer"]').first.click()  # expand the parent
        page.get_by_text("fashion_mnist-train").first.wait_for(timeout=30_000)  # the dataset column
        page.screenshot(path=str(shots / "ui-runs-datasets.png"))

        page.goto(f"{url}/#/experiments/{experiment_id}/runs/{champion.run_id}", wait_until="domcontentloaded")
        page.get_by_text("Logged models (1)").first.wait_for(timeout=60_000)  # its network, an MLflow Model
        page.get_by_text("fashion_mnist-test (#").first.wait_for(timeout=30_000)  # the test metrics' dataset
        page.screenshot(path=str(shots / "ui-run-model.png"))

        page.goto(f"{url}/#/models/{EXPERIMENT}", wait_until="domcontentloaded")
        page.get_by_text("Version 1").first.wait_for(timeout=60_000)
        page.get_by_text("@ champion").first.wait_for(timeout=30_000)
        page.screenshot(path=str(shots / "ui-registered-champion.png"))
        browser.close()
