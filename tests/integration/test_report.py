"""The integration part (real Hydra, MLflow, Keras in this process or one subprocess) of these tests; beside them:
tests/unit/test_report.py.

The report: numbers checked against hand-built stores with known values, edge cases, the CLI."""

from __future__ import annotations

import pytest

from mixup_sweeps import report
from tests.helpers import EXPERIMENT, report_command, run_command
from tests.unit.test_report import add_run, new_store


def test_no_runs_is_a_message_and_exit_code_2(tmp_path):
    uri, client, exp_id = new_store(tmp_path)
    with pytest.raises(report.ReportError, match="No runs"):
        report.fetch_runs(uri, EXPERIMENT, "latest")
    add_run(client, exp_id, {"aug.name": "none", "seed": 0}, 0.8)
    with pytest.raises(report.ReportError, match="No sweep"):
        report.fetch_runs(uri, EXPERIMENT, "latest")
    with pytest.raises(report.ReportError, match="No sweep 'nope'"):
        report.fetch_runs(uri, EXPERIMENT, "nope")
    result = run_command(report_command("--output-dir", str(tmp_path / "empty")), timeout=120)
    assert result.returncode == 2 and "Error: No experiment" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "empty").exists()  # reading made no store
