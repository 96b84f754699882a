"""The integration part (real Hydra, MLflow, Keras in this process or one subprocess) of these tests; beside them:
tests/e2e/test_racing.py (a real race), tests/unit/test_racing.py (the rule in thousands of simulated races).

Bad race input through the command line: one line, exit 2, no run and no parent recorded."""

from __future__ import annotations

import pytest

from tests.helpers import mlflow_runs, run_cli

RACE = ["hydra.sweeper.race.min_seeds=2", "hydra.sweeper.race.max_seeds=3", "dataset.train_size=256",
        "trainer.epochs=1"]  # fmt: skip


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["aug=none,mixup", "hydra.sweeper.race.epsilon=-1"], "hydra.sweeper.race.epsilon=-1"),
        (["aug=none,mixup", "hydra.sweeper.race.epsilon=0", "hydra.sweeper.until.half_width=0.01"], "use one of"),
        (["aug=none", "hydra.sweeper.race.epsilon=0"], "needs at least two groups"),
        (["aug=none,mixup", "hydra.sweeper.race.epsilon=0", "hydra.sweeper.race.metric=test_accuracy"], "metric"),
        (
            ["aug=none,mixup", "hydra.sweeper.race.epsilon=0", "hydra.sweeper.race.metric=best_val_accuracy"],
            "set trainer.test_every_epoch=true",
        ),
    ],
)
def test_bad_race_input_is_one_line_exit_2_and_records_nothing(tmp_path, overrides, message):
    result = run_cli("-m", *overrides, *RACE, f"paths.output_dir={tmp_path}", fresh_python=True)  # stderr: one line
    assert result.returncode == 2, result.stderr[-2000:]
    assert message in result.stderr.strip().splitlines()[-1] and "Traceback" not in result.stderr
    assert not mlflow_runs(tmp_path)[1]  # no run, no parent
