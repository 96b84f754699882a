"""The end-to-end part (the command line, real sweeps; slow) of these tests; beside them:
tests/integration/test_fmix.py, tests/unit/test_fmix.py.

FMix (Harris et al. 2020), added through the augmentation registry: its masks' statistics and determinism
(NumPy, fast), its stream, its config check, and (slow) the whole path: a packed JAX sweep with the report,
and an exact resume of the fit engine from an epoch's checkpoint."""

from __future__ import annotations

import shutil

from mixup_sweeps.data import datasets
from mixup_sweeps.train import fit, models, training
from tests.helpers import TINY, compose_config, dataset_config, mlflow_runs, run_cli, run_report


def test_fmix_in_a_packed_jax_sweep_beside_mixup_and_in_the_report(tmp_path, real_data_dir):
    """One pack of none, mixup and fmix members (the pack's step takes lam and pasted masks), then the report."""
    out = tmp_path / "out"
    result = run_cli(
        "-m", "hydra/launcher=packed", "backend=jax", "aug=none,mixup,fmix", *TINY, f"paths.output_dir={out}"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    _, runs = mlflow_runs(out)
    finished = {
        r.data.params["aug.name"]: r for r in runs if r.info.status == "FINISHED" and "aug.name" in r.data.params
    }
    assert set(finished) == {"none", "mixup", "fmix"}
    assert finished["fmix"].data.params["aug.decay_power"] == "3.0"
    assert {r.data.tags["pack_members"] for r in finished.values()} == {"3"}
    assert run_report("--output-dir", out, "--out", tmp_path / "report") == 0
    report = (tmp_path / "report" / "report.md").read_text()
    assert "fmix" in report and "Δ" in report


def test_fmix_resumes_exactly_from_an_epochs_checkpoint(tmp_path, real_data_dir):
    """The fit engine, deterministic: a run continued from its checkpoint after epoch 1 ends as the run that
    was never stopped (every epoch's metrics and the test accuracy)."""
    cfg = compose_config(["aug=fmix", "trainer.epochs=2", "trainer.deterministic=true"])
    dataset = datasets.load(dataset_config(real_data_dir, val_size=200, train_size=512), 0)
    weights = models.create_initial_weights(tmp_path / "iw", cfg.model, (28, 28, 1), 10, cfg.seed)

    def run(backup_dir, on_epoch=lambda epoch, metrics: None) -> training.TrainResult:
        def fail(exc: BaseException) -> None:
            raise exc

        member = training.Member(cfg, dataset, weights, on_epoch, backup_dir, fail)
        training.seed_everything(cfg.seed, deterministic=True)
        fit.train([member])
        assert member.result is not None
        return member.result

    def keep_epoch_one(epoch: int, metrics: dict) -> None:
        if epoch == 1:
            shutil.copytree(tmp_path / "whole", tmp_path / "stopped")

    whole = run(tmp_path / "whole", keep_epoch_one)
    assert training.completed_epochs(tmp_path / "stopped") == whole.history[:1]
    resumed = run(tmp_path / "stopped")
    training.seed_everything(0, deterministic=False)
    strip = [{k: v for k, v in h.items() if k != "epoch_seconds"} for h in whole.history]
    assert [{k: v for k, v in h.items() if k != "epoch_seconds"} for h in resumed.history] == strip
    assert resumed.test_accuracy == whole.test_accuracy
