"""What a job puts on record: the shared initial weights, its inputs (a preview, the resolved config, Hydra's
files; its MLflow datasets are logged when its run is made, `job.open`) before training, and its results (the
trained network as an MLflow Model, the test metrics linked to it, curves, reliability) after."""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

from mixup_sweeps import plots
from mixup_sweeps.config import recordable
from mixup_sweeps.data import datasets
from mixup_sweeps.job.context import Job
from mixup_sweeps.store import networks, tags, tracking
from mixup_sweeps.train import probes
from mixup_sweeps.train.training import TrainResult


def initial_weights(job: Job) -> Path:
    """The weights every run of this (model, data shape, seed) starts from (created here or fetched from the
    sweep's parent run), recorded with the run."""
    from mixup_sweeps.train import models  # Keras: after the job chose its backend

    cfg = job.cfg
    input_shape, num_classes = tuple(cfg.dataset.image_shape), cfg.dataset.num_classes
    cache = job.output_dir / "initial_weights"
    weights = tracking.exchange_initial_weights(
        job.client,
        job.parent_run_id,
        models.initial_weights_path(cache, cfg.model, input_shape, num_classes, cfg.seed),
        lambda: models.create_initial_weights(cache, cfg.model, input_shape, num_classes, cfg.seed),
    )
    job.client.set_tag(job.run_id, tags.INIT_WEIGHTS_SHA256, models.sha256_file(weights))
    job.log_artifact(weights, tags.INITIAL_WEIGHTS)
    return weights


def record_inputs(job: Job) -> None:
    """A preview of the training stream (samples.png), the resolved config and Hydra's own files."""
    from mixup_sweeps.data import input_aug, training_stream  # Keras: after the job chose its backend

    cfg = job.cfg
    images, labels = training_stream.preview(
        job.dataset.train,
        cfg.aug,
        cfg.trainer.batch_size,
        cfg.dataset.num_classes,
        seed=cfg.seed,
        crop_padding=input_aug.padding_of(cfg.trainer),
    )
    job.log_artifact(plots.save_samples(images, labels, job.job_dir / "samples.png", job.dataset.class_names))
    resolved = job.job_dir / "config.yaml"
    resolved.write_text(OmegaConf.to_yaml(recordable(cfg)))
    job.log_artifact(resolved)
    hydra_dir = job.job_dir / ".hydra"
    if hydra_dir.is_dir():
        job.client.log_artifacts(job.run_id, str(hydra_dir), "hydra")


def test_metrics(job: Job, result: TrainResult) -> dict[str, float]:
    """What a run records at its end: test metrics, the best-validation epoch's, throughput."""
    return {
        "test_loss": result.test_loss,
        "test_accuracy": result.test_accuracy,
        "test_nll": result.test_nll,
        "test_ece": result.test_reliability.ece,
        "train_images_per_second": result.train_images_per_second,
        "label_noise_realized": job.dataset.label_noise,
        **probes.best_epoch_metrics(result.history),
    }


def _digests(job: Job) -> dict[str, str]:
    return datasets.split_digests(job.cfg.dataset, job.dataset, job.cfg.seed)


def record_results(job: Job, result: TrainResult) -> dict[str, float]:
    """The trained network as the run's MLflow Model, then the test metrics (and the best-validation epoch's)
    linked to it and to the test dataset, the curves and reliability diagram; returns the metrics it logged.
    The model comes first: a run whose model cannot be logged fails, it never ends FINISHED without it."""
    from mixup_sweeps.data import training_stream  # Keras: after the job chose its backend

    test, few = job.dataset.test, networks.SIGNATURE_IMAGES
    images = training_stream.scaled(datasets.Split(test.images[:few], test.labels[:few]))
    model_id = networks.log_network(job.client, job.run_id, result.trained_network(), images, job.cfg.backend)
    metrics = test_metrics(job, result)
    test_ref = networks.split_refs(job.dataset, _digests(job))["test"]
    networks.link_metrics(job.client, job.run_id, model_id, metrics, len(result.history), test_ref)
    job.log_artifact(plots.save_curves(result.history, job.job_dir / "curves.png", title=job.name))
    job.log_artifact(plots.save_reliability(result.test_reliability, job.job_dir / "reliability.png", title=job.name))
    return metrics
