"""The end-to-end part (the command line, real sweeps; slow) of these tests; beside them:
tests/integration/test_racing.py, tests/unit/test_racing.py.

The racing rule (`mixup_sweeps.sweeps.racing`) in thousands of simulated races with known normal noise: the best arm
is eliminated in at most δ of races, in a separable regime the race spends at most half the exhaustive grid, in
a near-equal regime it says the arms cannot be told apart, and the naive rule (an uncorrected 95 % interval at
every look) breaks the guarantee. NumPy only: no training."""

from __future__ import annotations

import json

import pandas as pd

from tests.helpers import mlflow_runs, run_cli, run_report
from tests.integration.test_racing import RACE


def test_a_real_race_records_its_rounds_resumes_and_reports(tmp_path, real_data_dir):
    """Two arms, 2 seeds then a third: the parent carries the outcome, the sweep's last lines say it, the same
    command again skips every job and reaches the same outcome, and the report lists each arm's round."""
    command = ["-m", "aug=none,mixup", "hydra.sweeper.race.epsilon=0", *RACE, f"paths.output_dir={tmp_path}"]
    first = run_cli(*command)
    assert first.returncode == 0, first.stderr[-3000:]
    client, runs = mlflow_runs(tmp_path)
    (parent,) = [r for r in runs if r.data.tags.get("sweep_parent") == "true"]
    record = json.loads(parent.data.tags["race_result"])
    children = [r for r in runs if r.data.tags.get("sweep_parent") != "true"]
    assert record["seed_runs"] == len(children) and record["exhaustive_runs"] == 6 and record["epochs"] == 1
    assert {arm["group"] for arm in record["arms"]} == {"aug=none", "aug=mixup"}
    output = first.stdout + first.stderr  # Hydra's log lines
    assert "race: spent" in output and f"race: {record['lines'][0]}" in output
    again = run_cli(*command)
    assert again.returncode == 0 and (again.stdout + again.stderr).count(" - skip ") == len(children)
    (parent,) = [r for r in mlflow_runs(tmp_path)[1] if r.data.tags.get("sweep_parent") == "true"]
    assert json.loads(parent.data.tags["race_result"])["lines"] == record["lines"]
    assert run_report("--output-dir", tmp_path) == 0
    summary = pd.read_csv(next((tmp_path / "reports").glob("*/summary.csv")))
    assert set(summary["race_outcome"]) <= {"winner", "eliminated", "undecided", "equivalent"}
    assert summary["race_seeds"].notna().all()
    assert "race: " in next((tmp_path / "reports").glob("*/report.md")).read_text()
