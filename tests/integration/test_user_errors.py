"""Errors a user causes at the edges of a run: the sweeper's and launcher's settings, a store file that is not a
store, the report's options. Each is one line, exit 2, and records nothing (no run, no sweep parent)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import TINY, mlflow_runs, run_cli, run_report
from tests.unit.test_fuzz_config import REFUSED_FIRST
from tests.unit.test_report import known_store  # noqa: F401 - the fixture


def one_line_exit_2(result: subprocess.CompletedProcess, message: str) -> None:
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert message in result.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["experiment=variants", "aug=none"], "hydra.sweeper.variants already sets aug; drop it from the command line"),
        (["aug=none,mixup", "hydra.sweeper.until.half_width=0"], "hydra.sweeper.until: need half_width > 0"),
        (
            ["aug=none,mixup", "hydra.sweeper.until.half_width=0.01", "hydra.sweeper.until.baseline=nokey"],
            "hydra.sweeper.until.baseline",
        ),
        (
            ["aug=none,mixup", "backend=jax", "hydra/launcher=packed", "hydra.launcher.pack_size=0"],
            "Invalid value hydra.launcher.pack_size=0: must be an integer >= 1",
        ),
        *((argv[1:], message) for argv, message in REFUSED_FIRST),  # once opened a parent run first (#36)
        (  # a recipe that cannot work, in a sweep (issue 38; each key's refusal: tests/unit/test_recipe.py)
            ["aug=none,mixup", "trainer.optimizer=sgd", "trainer.schedule=step", "trainer.milestones=[1,0]"],
            "must be increasing epochs",
        ),
    ],
)
def test_sweep_settings_are_checked_before_the_sweep_records_anything(tmp_path, overrides, message):
    one_line_exit_2(run_cli("-m", *overrides, *TINY, f"paths.output_dir={tmp_path}", fresh_python=True), message)
    assert not mlflow_runs(tmp_path)[1]  # no parent run, no job run


def test_the_report_refuses_a_baseline_or_directory_that_cannot_work(known_store, capsys):  # noqa: F811
    """The report's main in this process (its exit code and stderr line are what the command prints and returns;
    the command itself refuses a store in tests/e2e/test_fault_tolerance.py, test_a_store_file_that_is_not_...)."""
    _, _, _, tmp_path = known_store
    (tmp_path / "a_file").write_text("x")

    def refused(message: str, *args: str | Path) -> None:
        capsys.readouterr()
        assert run_report("--output-dir", tmp_path, *args) == 2
        err = capsys.readouterr().err.strip()
        assert "Traceback" not in err and message in err.splitlines()[-1], err

    refused("--out: cannot write", "--out", tmp_path / "a_file" / "report")
    refused("no run has trainer.precision", "--baseline", "trainer.precision=float32")
    refused("no run has that value (aug.name: mixup, none)", "--baseline", "aug=cutmix")
    refused("--where nokey=1: no such key", "--where", "nokey=1")
    assert run_report("--output-dir", tmp_path, "--baseline", "aug=none", "--out", tmp_path / "r") == 0  # what works


# Bad values the command line is checked for before Hydra starts (`preflight.check`, what `python -m
# mixup_sweeps.run` runs first: a `ConfigError` there is one line on stderr and exit 2, tests/e2e/
# test_fault_tolerance.py shows it for seed=-1 through the real CLI). Bad input only a job can find (the data,
# the output directory) is tests/e2e/test_fault_tolerance.py's `BAD_AT_THE_JOB`.
REFUSED_BEFORE_HYDRA = [
    "aug.alpha=0", "aug.alpha=-1", "aug.alpha=nan", "aug.alpha=inf", "aug.alpha=abc", "aug.alpha=",
    "trainer.epochs=0", "trainer.epochs=-3", "trainer.epochs=1.5", "trainer.epochs=abc",
    "trainer.batch_size=0", "trainer.learning_rate=0", "trainer.learning_rate=-0.1", "backend=torch",
    "dataset.val_size=0", "dataset.val_size=1e9", "dataset.train_size=0", "model.dropout=1.5",
    "model.conv_filters=[]", "model.kernel_size=0", "model.kernel_size=30", "model.conv_filters=[8,8,8,8]",
    "seed=abc", "seed=-1", "seed=4294967296", "aug=cutmixx", "model=resnet", "nokey=1", "+trainer.extra=1",
    "aug=none aug.alpha=0.2",
    # the data: a dataset's own keys, then its files (found, read and checked before anything is made)
    "dataset=npz", "dataset=folder", "dataset=npz dataset.path=/nonexistent/mine.npz", "dataset=bogus",
    "dataset=cifar100 dataset.label_mode=medium", "dataset.image_shape=[28,28]", "dataset.num_classes=1",
    "dataset=folder dataset.path=/tmp dataset.image_size=[0,3]", "dataset.download=false dataset=kmnist",
    "dataset=cifar10 dataset.path=/nonexistent", "dataset.image_shape=[32,32,3]",
]  # fmt: skip


@pytest.mark.parametrize("override", REFUSED_BEFORE_HYDRA)
def test_bad_values_are_one_line_naming_the_key_before_anything_is_made(override, tmp_path):
    from mixup_sweeps.errors import ConfigError
    from mixup_sweeps.multirun import preflight

    out = tmp_path / "out"
    with pytest.raises(ConfigError) as refused:
        preflight.check(["dataset.train_size=256", "trainer.epochs=2", f"paths.output_dir={out}", *override.split()])
    message = str(refused.value)
    assert "\n" not in message and "Traceback" not in message
    key = override.split()[-1].split("=")[0].lstrip("+")
    assert key.split(".")[-1] in message or key in message or "kernel_size" in message, message
    assert not out.exists()  # nothing made: no directory, no store, no run


def test_a_multirun_on_data_that_cannot_be_read_records_nothing(tmp_path):
    """The data is read before the sweep's parent run exists: a bad file is one line, no store, no directory."""
    from mixup_sweeps.errors import ConfigError
    from mixup_sweeps.multirun import preflight

    bad = tmp_path / "bad.npz"
    np.savez(bad, x_train=np.zeros((4, 8, 8), np.uint8), y_train=np.zeros(4, int))
    out = tmp_path / "out"
    with pytest.raises(ConfigError, match="missing arrays x_test, y_test"):
        preflight.check(["-m", "dataset=npz", f"dataset.path={bad}", "aug=none,mixup", f"paths.output_dir={out}"])
    assert not out.exists()
