"""`python -m mixup_sweeps.run [-m] key=value ...`: one Hydra job = one tracked training run.

Order of a job (`run_one`): check the config, load and check the data (bad input stops here, before anything is
recorded), decide (skip a finished run, resume an interrupted one, or start), open the MLflow run, then shared
initial weights -> augmentation preview -> training -> test -> artifacts. Keras (on cfg.backend) and MLflow are
imported inside the job so that --help and --cfg stay fast.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import shutil
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import CompactHydraException
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from mixup_sweeps.config import SWEEP_STARTED_ENV, config_fingerprint, recordable, register_configs, validate

if TYPE_CHECKING:  # imported inside the job at run time (Keras and its backend, MLflow: slow to import)
    from mlflow.entities import Run
    from mlflow.tracking import MlflowClient

    from mixup_sweeps.data import Dataset
    from mixup_sweeps.search import EpochReporter
    from mixup_sweeps.training import TrainResult

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's C++ start-up chatter out of the logs

log = logging.getLogger("mixup_sweeps")
PACK_TAG = "pack_members"  # on a JAX run: how many jobs its packed program trained (1: alone)
ENGINES = {"tensorflow": "fit", "jax": "packed"}  # backend -> the engine module that trains its jobs
register_configs()


Outcome = dict[str, float]  # what a job returns to its sweeper: its final metrics (`outcome`)


def outcome(metrics: Mapping[str, float], val_accuracy: Sequence[float]) -> Outcome:
    """A job's final metrics (test_accuracy, the last epoch's val_accuracy and val_loss, ...) and
    `best_val_accuracy`, the best epoch's: what the sweepers decide on (seeds until precise, races)."""
    best = max(val_accuracy) if val_accuracy else float("nan")
    return {**{key: float(value) for key, value in metrics.items()}, "best_val_accuracy": float(best)}


def run_one(cfg: DictConfig) -> Outcome:
    """One job, in order: check -> data -> skip / resume / start -> train -> artifacts; returns its `outcome`."""
    job = open_job(cfg)
    if not isinstance(job, Job):
        return job  # skipped: the test accuracy its FINISHED run recorded
    (outcome,) = execute([job])
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome


def open_job(cfg: DictConfig) -> Job | Outcome:
    """check -> data -> skip / resume / start: the job with its open MLflow run, or a skipped job's outcome.

    Bad input stops here with one line, before anything is recorded. Runs inside the job's Hydra context.
    """
    validate(cfg)
    from mixup_sweeps import data, search, tracking, training

    dataset = data.load(cfg.dataset, cfg.seed)
    hydra_cfg: DictConfig = HydraConfig.get()  # type: ignore[assignment]  # a DictConfig at run time
    client, experiment_id = tracking.connect(cfg.tracking, check=hydra_cfg.mode != RunMode.MULTIRUN)
    parent, name = _place_in_sweep(hydra_cfg, client, experiment_id)
    output_dir = Path(cfg.paths.output_dir).resolve()
    fingerprint = config_fingerprint(cfg)
    backup_dir = output_dir / "backups" / fingerprint
    decision = decide(client, experiment_id, fingerprint, training.has_checkpoint(backup_dir), cfg.resume)
    search_tags = search.run_tags(hydra_cfg)
    if decision.action == "skip":
        assert decision.run is not None
        tracking.mark_reused(client, decision.run, parent)
        for key, value in search_tags.items():
            client.set_tag(decision.run.info.run_id, key, value)
        recorded = decision.run.data.metrics
        log.info("skip %s: FINISHED already as run %s (test_accuracy=%s); resume=false runs it again",
                 name, decision.run.info.run_id, recorded.get("test_accuracy"))  # fmt: skip
        history = client.get_metric_history(decision.run.info.run_id, "val_accuracy")
        return outcome(recorded, [m.value for m in history])

    from mixup_sweeps import backends

    backends.prepare(cfg.backend, cfg.trainer.deterministic)  # Keras starts after this, on cfg.backend
    threads, source = backends.job_threads(cfg.trainer.get("threads"))
    backends.set_threads(threads, cfg.backend)
    log.debug("%d threads (%s)", threads, source)
    run_id = _open_run(decision, client, experiment_id, cfg, dataset, name, parent, backup_dir)
    for key, value in search_tags.items():
        client.set_tag(run_id, key, value)
    parent_run_id = parent.info.run_id if parent is not None else None
    job_dir = Path(hydra_cfg.runtime.output_dir)
    reporter = search.reporter_for(hydra_cfg, str(output_dir), cfg.seed)
    log_file = job_dir / f"{hydra_cfg.job.name}.log"
    return Job(cfg, dataset, client, run_id, parent_run_id, name, job_dir, output_dir, backup_dir, reporter, log_file)


def _place_in_sweep(hydra_cfg: DictConfig, client: MlflowClient, experiment_id: str) -> tuple[Run | None, str]:
    """The sweep's parent run (None for a single run) and this job's run name; logs the sweep progress line."""
    from mixup_sweeps import sweep

    parent, keys = None, None
    if hydra_cfg.mode == RunMode.MULTIRUN:
        parent = sweep.find_parent(client, experiment_id, str(Path(hydra_cfg.sweep.dir).resolve()))
        if parent is not None and sweep.SWEEP_KEYS_TAG in parent.data.tags:
            keys = json.loads(parent.data.tags[sweep.SWEEP_KEYS_TAG])
    name = sweep.job_run_name(sweep.task_overrides(hydra_cfg), keys)
    if hydra_cfg.mode == RunMode.MULTIRUN:
        started = hydra_cfg.job.env_set.get(SWEEP_STARTED_ENV)
        durations = (
            sweep.finished_durations(client, experiment_id, parent, float(started)) if parent and started else []
        )
        log.info("%s%s", sweep.progress(hydra_cfg, durations), name)
    return parent, name


@dataclass(frozen=True)
class Decision:
    """What a job does about earlier runs of its computation (the same config fingerprint)."""

    action: Literal["skip", "resume", "start"]
    run: Run | None = None  # the FINISHED run it skips to, or the interrupted run it resumes


def decide(client: MlflowClient, experiment_id: str, fingerprint: str, checkpointed: bool, resume: bool) -> Decision:
    """Skip when a run of this computation FINISHED; resume an interrupted one whose checkpoint is here
    (`checkpointed`); else start.

    `resume=false` always starts a fresh run.
    """
    from mixup_sweeps import tracking

    if not resume:
        return Decision("start")
    attempts = tracking.runs_with_fingerprint(client, experiment_id, fingerprint, ["FINISHED", "RUNNING", "KILLED"])
    finished = [r for r in attempts if r.info.status == "FINISHED"]
    if finished:
        return Decision("skip", finished[0])
    interrupted = [r for r in attempts if r.info.status in ("RUNNING", "KILLED")]
    if interrupted and checkpointed:
        return Decision("resume", interrupted[0])
    return Decision("start")


def _open_run(
    decision: Decision,
    client: MlflowClient,
    experiment_id: str,
    cfg: DictConfig,
    dataset: Dataset,
    name: str,
    parent: Run | None,
    backup_dir: Path,
) -> str:
    """The MLflow run this job records into: the interrupted run taken over, or a new one (params, data tags)."""
    from mixup_sweeps import liveness, tracking

    if decision.action == "resume":  # continue the same run from its last saved epoch
        assert decision.run is not None
        run_id = decision.run.info.run_id
        liveness.claim_run(client, run_id)
        log.info("resume %s: run %s from its backup in %s", name, run_id, backup_dir)
        return run_id
    shutil.rmtree(backup_dir, ignore_errors=True)  # a stale backup of a failed or forced-fresh run
    data_tags = {"dataset.dir": str(dataset.source_dir)}
    data_tags.update({f"dataset.sha256.{file}": digest for file, digest in dataset.sha256.items()})
    run_id = tracking.start_job_run(client, experiment_id, cfg, name, parent, data_tags)
    log.info("start %s (run %s, %d training images)", name, run_id, len(dataset.train))
    return run_id


def execute(jobs: list[Job]) -> list[Outcome | BaseException]:
    """Train the jobs and record each: the engine of their backend (`ENGINES`: TensorFlow jobs with Keras's
    `fit`, JAX jobs as one packed program, a lone JAX job a pack of one). A job that fails ends its run FAILED
    (KILLED on a signal) with its traceback and comes back as its exception; the others go on. A signal or a
    crash of the engine itself ends every open run and is raised."""
    from mixup_sweeps.training import INTERRUPTS

    started = time.perf_counter()
    outcomes: dict[int, Outcome | BaseException] = {}
    restore_signals = INTERRUPTS.install()
    try:
        ready: list[tuple[int, Path]] = []
        for i, job in enumerate(jobs):
            try:
                ready.append((i, _before_training(job)))
            except Exception as exc:
                outcomes[i] = _fail(job, exc, started)

        def fail(index: int, exc: BaseException) -> None:  # a member that failed alone (its loss diverged)
            outcomes[ready[index][0]] = _fail(jobs[ready[index][0]], exc, started)

        results = _train([jobs[i] for i, _ in ready], [weights for _, weights in ready], fail) if ready else []
        for (i, _), result in zip(ready, results):
            job = jobs[i]
            if i in outcomes:
                continue  # ended already
            try:
                if result is None:
                    raise RuntimeError("the training engine ended without a result for this job")
                recorded = _record_results(job, result)
                job.client.set_terminated(job.run_id, "FINISHED")
                final = {**result.history[-1], **recorded}
                outcomes[i] = outcome(final, [epoch.get("val_accuracy", float("nan")) for epoch in result.history])
                job.log(logging.INFO, "done %s: test_accuracy=%.4f in %.1f s (run %s)",
                        job.name, result.test_accuracy, time.perf_counter() - started, job.run_id)  # fmt: skip
            except Exception as exc:
                outcomes[i] = _fail(job, exc, started)
    except BaseException as exc:  # an interrupt, or the engine failed: no run may stay RUNNING
        for i, job in enumerate(jobs):
            if i not in outcomes:
                outcomes[i] = _fail(job, exc, started)
        raise
    finally:
        restore_signals()
    return [outcomes[i] for i in range(len(jobs))]


def _fail(job: Job, exc: BaseException, started: float) -> BaseException:
    """End the job's run: KILLED and tagged `pruned` when a search pruned it, else FAILED (KILLED on a signal)
    with its traceback."""
    from mixup_sweeps import tracking, training

    if isinstance(exc, training.Pruned):
        tracking.end_pruned_run(job.client, job.run_id, exc.epoch, str(exc))
        job.log(logging.INFO, "PRUNED %s after epoch %d (%.1f s)", job.name, exc.epoch, time.perf_counter() - started)
        return exc
    tracking.end_failed_run(job.client, job.run_id, exc, job.job_dir)
    job.log(logging.ERROR, "FAILED %s after %.1f s: %s: %s", job.name, time.perf_counter() - started,
            type(exc).__name__, exc)  # fmt: skip
    return exc


def _train(
    jobs: list[Job], initial_weights: list[Path], fail: Callable[[int, BaseException], None]
) -> list[TrainResult | None]:
    """Each job's training result; None for a member that `fail` was told about as it failed."""
    from mixup_sweeps import tracking, training

    def on_epoch(job: Job) -> training.EpochHook:
        def record(epoch: int, metrics: dict[str, float]) -> None:
            tracking.log_metrics(job.client, job.run_id, metrics, epoch)
            if job.reporter is not None:  # a search's trial: report the epoch, maybe raise training.Pruned
                job.reporter(epoch, metrics)

        return record

    (backend,) = {job.cfg.backend for job in jobs}  # a launch groups jobs by program (backend included)
    engine = importlib.import_module(f"mixup_sweeps.{ENGINES[backend]}")
    members = [
        training.Member(job.cfg, job.dataset, weights, on_epoch(job), job.backup_dir, partial(fail, i))
        for i, (job, weights) in enumerate(zip(jobs, initial_weights))
    ]
    if backend == "jax":
        for job in jobs:
            job.client.set_tag(job.run_id, PACK_TAG, str(len(jobs)))
    engine.train(members)
    return [member.result for member in members]


@dataclass
class Job:
    """One job's context once its MLflow run exists: what it computes, where it records and writes."""

    cfg: DictConfig
    dataset: Dataset
    client: MlflowClient
    run_id: str
    parent_run_id: str | None  # the sweep's parent run (shared initial weights), None for a single run
    name: str  # the run name: the job's own overrides
    job_dir: Path  # Hydra's directory of this job: preview, curves, model
    output_dir: Path  # paths.output_dir: initial-weights cache, backups, store
    backup_dir: Path  # BackupAndRestore state of this computation (fingerprint)
    reporter: EpochReporter | None = None  # a search trial's job: reports each epoch, may prune it
    log_file: Path | None = None  # Hydra's log file of this job (`<job dir>/<job name>.log`)

    def log(self, level: int, message: str, *args: object) -> None:
        """Log a line about this job, and put it in the job's own log file when that file is not where the
        logging goes now (a pack's members are trained after their job contexts closed)."""
        log.log(level, message, *args)
        path = self.log_file
        if path is None or not path.parent.is_dir():
            return
        handlers = logging.getLogger().handlers + log.handlers
        if any(isinstance(h, logging.FileHandler) and Path(h.baseFilename) == path for h in handlers):
            return
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        with open(path, "a") as file:
            file.write(f"[{stamp}][{log.name}][{logging.getLevelName(level)}] - {message % args}\n")

    def log_artifact(self, path: Path, folder: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(path), folder)


def _before_training(job: Job) -> Path:
    """Tags, shared initial weights, the inputs on record, epochs saved but not yet logged; the weights file."""
    import keras

    from mixup_sweeps import backends, tracking, training

    keras.backend.clear_session()
    for key, value in {
        **backends.versions(),
        "accelerator": backends.accelerator(),
        **backends.thread_tags(job.cfg.backend),
    }.items():
        job.client.set_tag(job.run_id, key, value)
    weights = _job_initial_weights(job)
    training.seed_everything(job.cfg.seed, job.cfg.trainer.deterministic)
    _record_inputs(job)
    for epoch, metrics in _epochs_saved_but_not_logged(job):  # killed between its backup and MLflow
        tracking.log_metrics(job.client, job.run_id, metrics, epoch)
    return weights


def _job_initial_weights(job: Job) -> Path:
    """The weights every run of this (model, data shape, seed) starts from (created here or fetched from the
    sweep's parent run), recorded with the run."""
    from mixup_sweeps import models, tracking

    cfg = job.cfg
    input_shape, num_classes = tuple(cfg.dataset.image_shape), cfg.dataset.num_classes
    cache = job.output_dir / "initial_weights"
    weights = tracking.exchange_initial_weights(
        job.client,
        job.parent_run_id,
        models.initial_weights_path(cache, cfg.model, input_shape, num_classes, cfg.seed),
        lambda: models.create_initial_weights(cache, cfg.model, input_shape, num_classes, cfg.seed),
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
    from mixup_sweeps import training

    logged = {m.step for m in job.client.get_metric_history(job.run_id, "loss")}
    saved = enumerate(training.completed_epochs(job.backup_dir), start=1)
    return [(epoch, metrics) for epoch, metrics in saved if epoch not in logged]


def _test_metrics(job: Job, result: TrainResult) -> dict[str, float]:
    """What a run records at its end: test metrics, the best-validation epoch's, throughput."""
    from mixup_sweeps import probes

    return {
        "test_loss": result.test_loss,
        "test_accuracy": result.test_accuracy,
        "test_nll": result.test_nll,
        "test_ece": result.test_reliability.ece,
        "train_images_per_second": result.train_images_per_second,
        "label_noise_realized": job.dataset.label_noise,
        **probes.best_epoch_metrics(result.history),
    }


def _record_results(job: Job, result: TrainResult) -> dict[str, float]:
    """Test metrics (and the best-validation epoch's), the curves and reliability diagram, the trained weights;
    returns the metrics it logged."""
    from mixup_sweeps import plots, tracking

    metrics = _test_metrics(job, result)
    tracking.log_metrics(job.client, job.run_id, metrics, step=len(result.history))
    job.log_artifact(plots.save_curves(result.history, job.job_dir / "curves.png", title=job.name))
    job.log_artifact(plots.save_reliability(result.test_reliability, job.job_dir / "reliability.png", title=job.name))
    model_path = job.job_dir / "model.weights.h5"
    result.save_weights(model_path)
    job.log_artifact(model_path)
    return metrics


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> Outcome:
    try:
        return run_one(cfg)
    except CompactHydraException as exc:  # a bad config value, missing data, a lock held too long: one line
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            raise  # Hydra records this job as failed and the sweep goes on
        print(f"Error: {exc}", file=sys.stderr)
        sys.exit(2)


def cli() -> None:
    """`python -m mixup_sweeps.run`: the error boundary first (`preflight.check`: a config, sweep or job that
    cannot work is one line, exit 2, before anything exists), then Hydra's main."""
    from mixup_sweeps import preflight
    from mixup_sweeps.errors import ConfigError

    try:
        preflight.check(sys.argv[1:])
    except ConfigError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        sys.exit(2)
    main()


if __name__ == "__main__":
    cli()
