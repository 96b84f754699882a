"""The integration part (real Hydra, MLflow, Keras in this process or one subprocess) of these tests; beside them:
tests/unit/test_config.py.

Every config group composes; types and keys are checked by Hydra, values by `validate`."""

from __future__ import annotations

import pytest

from tests.helpers import mlflow_runs, run_cli


@pytest.mark.parametrize(
    "override,key",
    [
        ("aug.alpha=-1", "aug.alpha"),
        ("trainer.epochs=0", "trainer.epochs"),
        ("trainer.batch_size=0", "trainer.batch_size"),
        ("dataset.val_size=60000", "dataset.val_size"),
        ("dataset.train_size=0", "dataset.train_size"),
        ("trainer.precision=half", "trainer.precision"),
    ],
)
def test_cli_bad_value_one_line_error_nonzero_exit_no_run(override, key, tmp_path, real_data_dir):
    result = run_cli("dataset.train_size=256", f"paths.output_dir={tmp_path}", override, fresh_python=True, timeout=120)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and key in lines[0] and "Invalid value" in lines[0], result.stderr
    _, runs = mlflow_runs(tmp_path)
    assert runs == []  # nothing recorded, so nothing recorded as successful


def test_cli_unknown_option_is_one_line_naming_the_options(tmp_path):
    result = run_cli("aug=cutmixx", f"paths.output_dir={tmp_path}", fresh_python=True, timeout=60)
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line == "Error: In 'config': Could not find 'aug/cutmixx' (available: cutmix, fmix, mixup, none)"
    assert not (tmp_path / "mlflow.db").exists()
