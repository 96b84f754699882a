"""`python -m mixup_sweeps.run [-m] key=value ...`: one Hydra job = one tracked training run.

Order of a job: check the config, load and check the data (bad input stops here, before anything is
recorded), open the MLflow run, then shared initial weights -> augmentation preview -> training -> test ->
artifacts. TensorFlow and MLflow are imported inside the job so that --help and --cfg stay fast.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import time
from pathlib import Path

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

    from mixup_sweeps.train import INTERRUPTS  # TensorFlow is imported from here on, before a run exists

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
        test_accuracy = _train_and_log(
            cfg, dataset, client, run_id, parent_run_id, job_dir, output_dir, backup_dir, name
        )
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


def _train_and_log(
    cfg: DictConfig,
    dataset,
    client,
    run_id: str,
    parent_run_id: str | None,
    job_dir: Path,
    output_dir: Path,
    backup_dir: Path,
    name: str,
) -> float:
    import keras
    import tensorflow as tf

    from mixup_sweeps import augment, models, plots, tracking, train

    keras.backend.clear_session()
    client.set_tag(run_id, "keras_version", keras.__version__)
    client.set_tag(run_id, "tensorflow_version", tf.__version__)
    input_shape, num_classes = tuple(cfg.dataset.image_shape), cfg.dataset.num_classes
    cache = output_dir / "initial_weights"
    weights = tracking.shared_initial_weights(
        client,
        parent_run_id,
        models.initial_weights_path(cache, cfg.model, input_shape, num_classes, cfg.seed),
        lambda: models.shared_initial_weights(cache, cfg.model, input_shape, num_classes, cfg.seed),
    )
    client.set_tag(run_id, "init_weights_sha256", models.sha256_file(weights))
    client.log_artifact(run_id, str(weights), tracking.INITIAL_WEIGHTS)

    train.seed_everything(cfg.seed, cfg.trainer.deterministic)
    preview = augment.training_stream(dataset.train, cfg.aug, 9, 64, num_classes, seed=cfg.seed)
    images, labels = next(iter(preview))
    client.log_artifact(run_id, str(plots.save_samples(images.numpy(), labels.numpy(), job_dir / "samples.png")))
    resolved = job_dir / "config.yaml"
    resolved.write_text(OmegaConf.to_yaml(recordable(cfg)))
    client.log_artifact(run_id, str(resolved))
    hydra_dir = job_dir / ".hydra"
    if hydra_dir.is_dir():
        client.log_artifacts(run_id, str(hydra_dir), "hydra")

    logged = {m.step for m in client.get_metric_history(run_id, "loss")}
    for epoch, metrics in enumerate(train.completed_epochs(backup_dir), start=1):
        if epoch not in logged:  # killed after its backup was saved but before it reached MLflow
            tracking.log_metrics(client, run_id, metrics, epoch)

    result = train.train(
        cfg,
        dataset,
        weights,
        on_epoch=lambda epoch, m: tracking.log_metrics(client, run_id, m, epoch),
        backup_dir=backup_dir,
    )
    tracking.log_metrics(
        client,
        run_id,
        {
            "test_loss": result.test_loss,
            "test_accuracy": result.test_accuracy,
            "test_nll": result.test_nll,
            "test_ece": result.test_reliability.ece,
            "train_images_per_second": result.train_images_per_second,
            "label_noise_realized": dataset.label_noise,
        },
        step=len(result.history),
    )
    client.log_artifact(run_id, str(plots.save_curves(result.history, job_dir / "curves.png", title=name)))
    reliability_png = plots.save_reliability(result.test_reliability, job_dir / "reliability.png", title=name)
    client.log_artifact(run_id, str(reliability_png))
    model_path = job_dir / "model.weights.h5"
    result.model.save_weights(model_path)
    client.log_artifact(run_id, str(model_path))
    client.set_terminated(run_id, "FINISHED")
    return result.test_accuracy


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
