"""A job's second half: train the open jobs and record each (`execute`), for one job or a pack.

The engine is the backend's (`ENGINES`): TensorFlow jobs with Keras's `fit`, JAX jobs as one packed program (a
lone JAX job a pack of one). Each job ends FINISHED after its last artifact, or FAILED (KILLED on a signal) with
its traceback, or KILLED and tagged `pruned` when a search stopped it; no run is ever left RUNNING.
"""

from __future__ import annotations

import importlib
import logging
import shutil
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

from mixup_sweeps import errors
from mixup_sweeps.job import record
from mixup_sweeps.job.context import Job, Outcome, outcome
from mixup_sweeps.store import networks, tags, tracking
from mixup_sweeps.train import backends, training

ENGINES = {"tensorflow": "fit", "jax": "packed"}  # backend -> the engine module (mixup_sweeps.train.*) of its jobs


def execute(jobs: list[Job]) -> list[Outcome | BaseException]:
    """Train the jobs and record each. A job that fails ends its run FAILED (KILLED on a signal) with its
    traceback and comes back as its exception; the others go on. A signal or a crash of the engine itself ends
    every open run and is raised."""
    started = time.perf_counter()
    outcomes: dict[int, Outcome | BaseException] = {}
    restore_signals = training.INTERRUPTS.install()
    try:
        ready: list[tuple[int, Path]] = []
        for i, job in enumerate(jobs):
            try:
                ready.append((i, _before_training(job)))
            except Exception as exc:
                outcomes[i] = _fail(job, exc, started)

        def fail(index: int, exc: BaseException) -> None:  # a member that failed alone (its loss diverged)
            outcomes[ready[index][0]] = _fail(jobs[ready[index][0]], exc, started)

        system_metrics = networks.SystemMetrics()
        if ready and (first := jobs[ready[0][0]]).cfg.tracking.system_metrics:  # a pack: on its first member
            system_metrics.start(first.client, first.run_id)
        try:
            results = _train([jobs[i] for i, _ in ready], [weights for _, weights in ready], fail) if ready else []
        finally:
            system_metrics.stop()
        for (i, _), result in zip(ready, results):
            job = jobs[i]
            if i in outcomes:
                continue  # ended already
            try:
                if result is None:
                    raise RuntimeError("the training engine ended without a result for this job")
                recorded = record.record_results(job, result)
                job.client.set_terminated(job.run_id, "FINISHED")
                shutil.rmtree(job.backup_dir, ignore_errors=True)  # after FINISHED: nothing left to resume
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
    if isinstance(exc, training.Pruned):
        tracking.end_pruned_run(job.client, job.run_id, exc.epoch, str(exc))
        job.log(logging.INFO, "PRUNED %s after epoch %d (%.1f s)", job.name, exc.epoch, time.perf_counter() - started)
        return exc
    if (full := errors.disk_full(exc)) is not None:
        errors.quiet_from_now()
    try:
        tracking.end_failed_run(job.client, job.run_id, exc, job.job_dir)
    except Exception as again:  # the disk filled: marked where the store can still be written, else next time
        if (full := full or errors.disk_full(again)) is None:
            raise
        errors.quiet_from_now()
    if full is not None:
        job.log(logging.ERROR, "FAILED %s: %s", job.name, full)
        return full
    job.log(logging.ERROR, "FAILED %s after %.1f s: %s: %s", job.name, time.perf_counter() - started,
            type(exc).__name__, exc)  # fmt: skip
    return exc


def _train(
    jobs: list[Job], initial_weights: list[Path], fail: Callable[[int, BaseException], None]
) -> list[training.TrainResult | None]:
    """Each job's training result; None for a member that `fail` was told about as it failed."""

    def on_epoch(job: Job) -> training.EpochHook:
        def record_epoch(epoch: int, metrics: dict[str, float]) -> None:
            tracking.log_metrics(job.client, job.run_id, metrics, epoch)
            if job.reporter is not None:  # a search's trial: report the epoch, maybe raise training.Pruned
                job.reporter(epoch, metrics)

        return record_epoch

    (backend,) = {job.cfg.backend for job in jobs}  # a launch groups jobs by program (backend included)
    # The engine imports Keras: only now, after `backends.prepare` chose the backend.
    engine = importlib.import_module(f"mixup_sweeps.train.{ENGINES[backend]}")
    members = [
        training.Member(job.cfg, job.dataset, weights, on_epoch(job), job.backup_dir, partial(fail, i))
        for i, (job, weights) in enumerate(zip(jobs, initial_weights))
    ]
    if backend == "jax":
        for job in jobs:
            job.client.set_tag(job.run_id, tags.PACK_MEMBERS, str(len(jobs)))
    engine.train(members)
    return [member.result for member in members]


def _before_training(job: Job) -> Path:
    """Tags, shared initial weights, the inputs on record, epochs saved but not yet logged; the weights file."""
    import keras  # after `backends.prepare` (open_job): Keras starts on the job's backend

    keras.backend.clear_session(free_memory=False)  # no gc.collect(): ~0.5 s a job
    for key, value in {
        **backends.versions(),
        tags.ACCELERATOR: backends.accelerator(),
        **backends.thread_tags(job.cfg.backend),
    }.items():
        job.client.set_tag(job.run_id, key, value)
    weights = record.initial_weights(job)
    training.seed_everything(job.cfg.seed, job.cfg.trainer.deterministic)
    record.record_inputs(job)
    for epoch, metrics in _epochs_saved_but_not_logged(job):  # killed between its backup and MLflow
        tracking.log_metrics(job.client, job.run_id, metrics, epoch)
    return weights


def _epochs_saved_but_not_logged(job: Job) -> list[tuple[int, dict[str, float]]]:
    logged = {m.step for m in job.client.get_metric_history(job.run_id, "loss")}
    saved = enumerate(training.completed_epochs(job.backup_dir), start=1)
    return [(epoch, metrics) for epoch, metrics in saved if epoch not in logged]
