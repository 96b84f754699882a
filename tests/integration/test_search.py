"""The integration part (real Hydra, MLflow, Keras in this process or one subprocess) of these tests; beside them:
tests/e2e/test_search.py, tests/unit/test_search.py.

The search (`hydra/sweeper=search`): its space and settings, pruning paired by seed, a killed study continued,
and real searches end to end (pruned jobs, the confirmation on fresh seeds, the report, packed members, the
dashboard). Fast tests build Optuna studies directly; slow ones train tiny models."""

from __future__ import annotations

import os
import subprocess
import sys

import optuna

from mixup_sweeps.store import liveness
from mixup_sweeps.sweeps import study as studies
from tests.helpers import mlflow_runs, run_cli
from tests.unit.test_search import settings


def test_a_bad_search_from_the_command_line_is_one_line_exit_2_and_records_nothing(tmp_path):
    result = run_cli(
        "-m",
        "hydra/sweeper=search",
        "aug.alpha=tag(log, interval(-1, 8))",
        f"paths.output_dir={tmp_path}",
        fresh_python=True,  # its stderr as a fresh process's: one line
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert "tag(log, interval(low, high)) needs low > 0" in result.stderr.strip().splitlines()[-1]
    assert not mlflow_runs(tmp_path)[1] and not (tmp_path / studies.STUDY_FILE).exists()


# --- a killed study --------------------------------------------------------------------------------------------
def test_a_trial_left_running_by_a_dead_sweep_is_asked_again_and_not_counted(tmp_path):
    from mixup_sweeps.multirun.search import INTERRUPTED, OWNER, SearchRun

    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path}/optuna.db")
    study = studies.open_study(settings(), storage, "s")
    space = {"x": optuna.distributions.FloatDistribution(0, 1)}
    done = study.ask(space)
    study.tell(done, 0.5)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    ghost = study.ask(space)
    ghost.set_user_attr(OWNER, {"host": os.uname().nodename, "pid": str(dead.pid), "process_start": "1:1"})
    alive = study.ask(space)
    alive.set_user_attr(OWNER, liveness.process_tags())  # this test's own process: alive
    SearchRun._recover(study, storage)
    trials = {t.number: t for t in study.get_trials()}
    assert trials[ghost.number].state == optuna.trial.TrialState.FAIL and trials[ghost.number].user_attrs[INTERRUPTED]
    assert trials[alive.number].state == optuna.trial.TrialState.RUNNING  # another live sweep's trial is left alone
    assert SearchRun._counted(study) == 1  # the finished trial; the interrupted one does not count
    again = study.ask(space)
    assert again.params == ghost.params  # its parameters come first: its jobs skip or resume
