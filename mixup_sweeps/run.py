"""`python -m mixup_sweeps.run [-m] key=value ...`: one Hydra job = one tracked training run.

Order of a job: check the config, load and check the data (bad input stops here, before anything is
recorded), open the MLflow run, then shared initial weights -> augmentation preview -> training -> test ->
artifacts. Keras (on cfg.backend) and MLflow are imported inside the job so that --help and --cfg stay fast.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from mixup_sweeps.config import (
    SWEEP_JOBS_ENV,
    SWEEP_STARTED_ENV,
    ConfigError,
    config_fingerprint,
    recordable,
    register_configs,
    validate,
)

if TYPE_CHECKING:  # imported inside the job at run time (Keras and its backend, MLflow: slow to import)
    from mlflow.tracking import MlflowClient

    from mixup_sweeps.data import FashionMnist
    from mixup_sweeps.train import TrainResult

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's C++ start-up chatter out of the logs

log = logging.getLogger("mixup_sweeps")
register_configs()


def run_job(cfg: DictConfig) -> float:
    validate(cfg)
    from mixup_sweeps import data as fashion_mnist
    from mixup_sweeps import tracking

    dataset = fashion_mnist.load(
        path=cfg.dataset.path,
        val_size=cfg.dataset.val_size,
        train_size=cfg.dataset.train_size,
        image_shape=tuple(cfg.dataset.image_shape),
        num_classes=cfg.dataset.num_classes,
        download=cfg.dataset.download,
    )
    if cfg.dataset.label_noise > 0:
        dataset = fashion_mnist.with_label_noise(dataset, cfg.dataset.label_noise, cfg.dataset.num_classes, cfg.seed)
    hydra_cfg = HydraConfig.get()
    job_dir = Path(hydra_cfg.runtime.output_dir)
    output_dir = Path(cfg.paths.output_dir).resolve()
    fingerprint = config_fingerprint(cfg)
    client, experiment_id = tracking.connect(cfg.tracking)
    parent, keys = None, None
    if hydra_cfg.mode == RunMode.MULTIRUN:
        parent = tracking.find_sweep_parent(client, experiment_id, str(Path(hydra_cfg.sweep.dir).resolve()))
        if parent is not None and "sweep_keys" in parent.data.tags:
            keys = json.loads(parent.data.tags["sweep_keys"])
    name = tracking.job_run_name(tracking.task_overrides(hydra_cfg), keys)
    if hydra_cfg.mode == RunMode.MULTIRUN:
        log.info("%s%s", sweep_progress(hydra_cfg), name)
    backup_dir = output_dir / "backups" / fingerprint
    attempts = []  # earlier runs of this computation: FINISHED ones are skipped, interrupted ones resumed
    if cfg.resume:
        attempts = tracking.runs_with_fingerprint(client, experiment_id, fingerprint, ["FINISHED", "RUNNING", "KILLED"])
    finished = [r for r in attempts if r.info.status == "FINISHED"]
    if finished:
        run = finished[0]
        tracking.mark_reused(client, run, parent)
        log.info("skip %s: FINISHED already as run %s (test_accuracy=%s); resume=false runs it again",
                 name, run.info.run_id, run.data.metrics.get("test_accuracy"))  # fmt: skip
        return run.data.metrics.get("test_accuracy", float("nan"))

    from mixup_sweeps import backends

    backends.prepare(cfg.backend, cfg.trainer.deterministic)
    from mixup_sweeps.train import INTERRUPTS  # Keras starts here, on cfg.backend, before a run exists

    interrupted = []
    if (backup_dir / "training_metadata.json").exists():
        interrupted = [r for r in attempts if r.info.status in ("RUNNING", "KILLED")]
    if interrupted:  # continue the same run from its last saved epoch
        run_id = interrupted[0].info.run_id
        tracking.claim_run(client, run_id)
        log.info("resume %s: run %s from its backup in %s", name, run_id, backup_dir)
    else:
        shutil.rmtree(backup_dir, ignore_errors=True)  # a stale backup of a failed or forced-fresh run
        data_tags = {"dataset.dir": str(dataset.source_dir)}
        data_tags.update({f"dataset.sha256.{file}": digest for file, digest in dataset.sha256.items()})
        run_id = tracking.start_job_run(client, experiment_id, cfg, name, parent, data_tags)
        log.info("start %s (run %s, %d training images)", name, run_id, len(dataset.train))
    started = time.perf_counter()
    restore_signals = INTERRUPTS.install()
    try:
        parent_run_id = parent.info.run_id if parent is not None else None
        job = Job(cfg, dataset, client, run_id, parent_run_id, name, job_dir, output_dir, backup_dir)
        test_accuracy = _train_and_log(job)
    except BaseException as exc:
        tracking.end_failed_run(client, run_id, exc, job_dir)
        log.error("FAILED %s after %.1f s: %s: %s", name, time.perf_counter() - started, type(exc).__name__, exc)
        raise
    finally:
        restore_signals()
    log.info(
        "done %s: test_accuracy=%.4f in %.1f s (run %s)", name, test_accuracy, time.perf_counter() - started, run_id
    )
    return test_accuracy


def sweep_progress(hydra_cfg: DictConfig) -> str:
    """`[5/12] ... ETA 4 min `: where this job stands in its sweep (the variants sweeper tells it the count)."""
    env = hydra_cfg.job.env_set
    total, started = env.get(SWEEP_JOBS_ENV), env.get(SWEEP_STARTED_ENV)
    if total is None or started is None:
        return ""
    done = int(hydra_cfg.job.num)  # jobs launched before this one
    elapsed = time.time() - float(started)
    eta = f", ETA {format_duration(elapsed / done * (int(total) - done))}" if done else ""
    return f"[{done + 1}/{total}{eta}] "


def format_duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


@dataclass
class Job:
    """One job's context once its MLflow run exists: what it computes, where it records and writes."""

    cfg: DictConfig
    dataset: FashionMnist
    client: MlflowClient
    run_id: str
    parent_run_id: str | None  # the sweep's parent run (shared initial weights), None for a single run
    name: str  # the run name: the job's own overrides
    job_dir: Path  # Hydra's directory of this job: preview, curves, model
    output_dir: Path  # paths.output_dir: initial-weights cache, backups, store
    backup_dir: Path  # BackupAndRestore state of this computation (fingerprint)

    def log_artifact(self, path: Path, folder: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(path), folder)


def _train_and_log(job: Job) -> float:
    """shared initial weights -> inputs on record -> training -> test results and artifacts -> FINISHED."""
    import keras

    from mixup_sweeps import backends, tracking, train

    keras.backend.clear_session()
    for key, value in {**backends.versions(), "accelerator": backends.accelerator()}.items():
        job.client.set_tag(job.run_id, key, value)
    weights = _shared_initial_weights(job)
    train.seed_everything(job.cfg.seed, job.cfg.trainer.deterministic)
    _record_inputs(job)
    for epoch, metrics in _epochs_saved_but_not_logged(job):  # killed between its backup and MLflow
        tracking.log_metrics(job.client, job.run_id, metrics, epoch)
    result = train.train(
        job.cfg,
        job.dataset,
        weights,
        on_epoch=lambda epoch, m: tracking.log_metrics(job.client, job.run_id, m, epoch),
        backup_dir=job.backup_dir,
    )
    _record_results(job, result)
    job.client.set_terminated(job.run_id, "FINISHED")
    return result.test_accuracy


def _shared_initial_weights(job: Job) -> Path:
    """The weights every run of this (model, data shape, seed) starts from, recorded with the run."""
    from mixup_sweeps import models, tracking

    cfg = job.cfg
    input_shape, num_classes = tuple(cfg.dataset.image_shape), cfg.dataset.num_classes
    cache = job.output_dir / "initial_weights"
    weights = tracking.shared_initial_weights(
        job.client,
        job.parent_run_id,
        models.initial_weights_path(cache, cfg.model, input_shape, num_classes, cfg.seed),
        lambda: models.shared_initial_weights(cache, cfg.model, input_shape, num_classes, cfg.seed),
    )
    job.client.set_tag(job.run_id, "init_weights_sha256", models.sha256_file(weights))
    job.log_artifact(weights, tracking.INITIAL_WEIGHTS)
    return weights


def _record_inputs(job: Job) -> None:
    """A preview of the training stream (samples.png), the resolved config and Hydra's own files."""
    from mixup_sweeps import augment, plots

    cfg = job.cfg
    images, labels = augment.preview(
        job.dataset.train, cfg.aug, cfg.trainer.batch_size, cfg.dataset.num_classes, seed=cfg.seed
    )
    job.log_artifact(plots.save_samples(images, labels, job.job_dir / "samples.png"))
    resolved = job.job_dir / "config.yaml"
    resolved.write_text(OmegaConf.to_yaml(recordable(cfg)))
    job.log_artifact(resolved)
    hydra_dir = job.job_dir / ".hydra"
    if hydra_dir.is_dir():
        job.client.log_artifacts(job.run_id, str(hydra_dir), "hydra")


def _epochs_saved_but_not_logged(job: Job) -> list[tuple[int, dict[str, float]]]:
    from mixup_sweeps import train

    logged = {m.step for m in job.client.get_metric_history(job.run_id, "loss")}
    saved = enumerate(train.completed_epochs(job.backup_dir), start=1)
    return [(epoch, metrics) for epoch, metrics in saved if epoch not in logged]


def _record_results(job: Job, result: TrainResult) -> None:
    """Test metrics, the curves and reliability diagram, and the trained weights."""
    from mixup_sweeps import plots, tracking

    tracking.log_metrics(
        job.client,
        job.run_id,
        {
            "test_loss": result.test_loss,
            "test_accuracy": result.test_accuracy,
            "test_nll": result.test_nll,
            "test_ece": result.test_reliability.ece,
            "train_images_per_second": result.train_images_per_second,
            "label_noise_realized": job.dataset.label_noise,
        },
        step=len(result.history),
    )
    job.log_artifact(plots.save_curves(result.history, job.job_dir / "curves.png", title=job.name))
    job.log_artifact(plots.save_reliability(result.test_reliability, job.job_dir / "reliability.png", title=job.name))
    model_path = job.job_dir / "model.weights.h5"
    result.model.save_weights(model_path)
    job.log_artifact(model_path)


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> float:
    try:
        return run_job(cfg)
    except ConfigError as exc:
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            raise  # Hydra records this job as failed and the sweep goes on
        print(f"Error: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
