"""A job's first half: check -> data -> skip / resume / start -> its MLflow run open (`open_job`).

Bad input stops here with one line, before anything is recorded. A job whose computation (its config
fingerprint) already FINISHED is skipped and returns what that run recorded; an interrupted one with a
checkpoint here is resumed in the same run; anything else starts a new run under its sweep's parent.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from mlflow.entities import Run
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig, open_dict, read_write

from mixup_sweeps.config import config_fingerprint
from mixup_sweeps.data import datasets
from mixup_sweeps.job.compose import check_model_fits, validate
from mixup_sweeps.job.context import Job, Outcome, outcome
from mixup_sweeps.store import claims, liveness, networks, tags, tracking
from mixup_sweeps.sweeps import identity, progress, search, sharing, study
from mixup_sweeps.sweeps.overrides import job_run_name, task_overrides
from mixup_sweeps.train import backends, training

log = logging.getLogger("mixup_sweeps")


def open_job(cfg: DictConfig) -> Job | Outcome:
    """check -> data -> skip / resume / start: the job with its open MLflow run, or a skipped job's outcome.
    Runs inside the job's Hydra context."""
    validate(cfg)
    dataset = datasets.load(cfg.dataset, cfg.seed)
    with_data_shape(cfg, dataset)
    hydra_cfg: DictConfig = HydraConfig.get()  # type: ignore[assignment]  # a DictConfig at run time
    client, experiment_id = tracking.connect(cfg.tracking, check=hydra_cfg.mode != RunMode.MULTIRUN)
    parent, name = _place_in_sweep(hydra_cfg, client, experiment_id)
    output_dir = Path(cfg.paths.output_dir).resolve()
    fingerprint = config_fingerprint(cfg)
    backup_dir = output_dir / "backups" / fingerprint
    trial_tags = search_run_tags(hydra_cfg)
    diverged_is_final = identity.races(hydra_cfg.sweeper) or bool(trial_tags)
    decision = decide(client, experiment_id, fingerprint, training.has_checkpoint(backup_dir), cfg.resume,
                      diverged_is_final)  # fmt: skip
    claim, held = None, held_by(client, experiment_id, cfg)
    while decision.action in ("start", "resume") and cfg.resume:  # this job trains: claimed first, or waited for
        claim = claims.claim(client, experiment_id, JOB_SUBJECT + fingerprint, held)
        if not claim.mine():
            if sharing.defers(hydra_cfg):
                log.info("later %s: %s trains it (claim %s)", name, claim.describe(), claim.name)
                return {sharing.DEFERRED: 1.0}
            _wait_for(claim, held, name)
        # what the claim's last owner left (a finished run, a checkpoint), or what another process did meanwhile
        decision = decide(client, experiment_id, fingerprint, training.has_checkpoint(backup_dir), cfg.resume,
                          diverged_is_final)  # fmt: skip
        if claim.mine():
            break
    if decision.action == "diverged":  # a race's or a search's fact about its arm: the sweeper scores it
        assert decision.run is not None
        log.info("skip %s: diverged already as run %s (a race or search does not train it again)",
                 name, decision.run.info.run_id)  # fmt: skip
        raise training.TrainingDiverged(decision.run.data.tags.get(tags.ERROR, "diverged"))
    if decision.action == "skip":
        assert decision.run is not None
        tracking.mark_reused(client, decision.run, parent)
        for key, value in trial_tags.items():
            client.set_tag(decision.run.info.run_id, key, value)
        recorded = decision.run.data.metrics
        log.info("skip %s: FINISHED already as run %s (test_accuracy=%s); resume=false runs it again",
                 name, decision.run.info.run_id, recorded.get("test_accuracy"))  # fmt: skip
        history = client.get_metric_history(decision.run.info.run_id, "val_accuracy")
        return outcome(recorded, [m.value for m in history])

    backends.prepare(cfg.backend, cfg.trainer.deterministic)  # Keras starts after this, on cfg.backend
    threads, source = backends.job_threads(cfg.trainer.get("threads"))
    backends.set_threads(threads, cfg.backend)
    log.debug("%d threads (%s)", threads, source)
    run_id = _open_run(decision, client, experiment_id, cfg, dataset, name, parent, backup_dir)
    if claim is not None:
        client.set_tag(run_id, tags.CLAIM, claim.name)
    for key, value in trial_tags.items():
        client.set_tag(run_id, key, value)
    parent_run_id = parent.info.run_id if parent is not None else None
    job_dir = Path(hydra_cfg.runtime.output_dir)
    reporter = study.reporter_for(hydra_cfg, str(output_dir), cfg.seed)
    log_file = job_dir / f"{hydra_cfg.job.name}.log"
    return Job(cfg, dataset, client, run_id, parent_run_id, name, job_dir, output_dir, backup_dir, reporter, log_file)


JOB_SUBJECT = "job-"  # + the config fingerprint: the claim on one computation


def held_by(client: MlflowClient, experiment_id: str, cfg: DictConfig) -> Callable[[claims.Claim], bool]:
    """A job's claim holds while its owner lives and the run it opened under the claim has not ended: an owner
    whose job failed or was interrupted has let go (the next claimant reruns or resumes it)."""

    def held(claim: claims.Claim) -> bool:
        runs = client.search_runs([experiment_id], filter_string=f"tags.{tags.CLAIM} = '{claim.name}'", max_results=1)
        if runs and runs[0].info.status != "RUNNING":
            return False
        heartbeat = liveness.last_heartbeat(runs[0].data.tags) if runs else None
        epoch = runs[0].data.metrics.get("epoch_seconds") if runs else None
        return claim.owner_alive(heartbeat, liveness.heartbeat_limit(epoch, cfg.tracking.heartbeat_timeout_s))

    return held


def _wait_for(claim: claims.Claim, held: Callable[[claims.Claim], bool], name: str) -> None:
    """Wait while another process trains this job: a sweep needs its result, not a second training of it."""
    log.info("wait %s: %s trains it (claim %s); its result is this job's", name, claim.describe(), claim.name)
    while held(claim):
        time.sleep(sharing.POLL_S)


def with_data_shape(cfg: DictConfig, dataset: datasets.Dataset) -> None:
    """A `dataset.image_shape` or `num_classes` left null (npz, folder, CIFAR-100) becomes what the files hold,
    before the run's fingerprint, params and model are made of the config; then the model must fit the images."""
    node = cfg.dataset
    with read_write(node), open_dict(node):
        if node.image_shape is None:
            node.image_shape = list(dataset.image_shape)
        if node.num_classes is None:
            node.num_classes = dataset.num_classes
    check_model_fits(cfg.model, node.image_shape)


def search_run_tags(hydra_cfg: Any) -> dict[str, str]:
    """Tags of a search job's run: its study and trial number, or that it confirms the winner (as its sweeper told
    it)."""
    env = hydra_cfg.job.env_set
    trial_tags = {}
    if env.get(search.TRIAL_ENV) is not None:
        trial_tags[tags.TRIAL] = str(env[search.TRIAL_ENV])
        trial_tags[tags.SEARCH_STUDY] = str(env[search.STUDY_ENV])
    if env.get(search.CONFIRM_ENV) is not None:
        trial_tags[tags.CONFIRM] = str(env[search.CONFIRM_ENV])
    return trial_tags


def _place_in_sweep(hydra_cfg: DictConfig, client: MlflowClient, experiment_id: str) -> tuple[Run | None, str]:
    """The sweep's parent run (None for a single run) and this job's run name; logs the sweep progress line."""
    parent, keys = None, None
    if hydra_cfg.mode == RunMode.MULTIRUN:
        parent = tracking.find_parent(client, experiment_id, str(Path(hydra_cfg.sweep.dir).resolve()))
        if parent is not None and tags.SWEEP_KEYS in parent.data.tags:
            keys = json.loads(parent.data.tags[tags.SWEEP_KEYS])
    name = job_run_name(task_overrides(hydra_cfg), keys)
    if hydra_cfg.mode == RunMode.MULTIRUN:
        started = progress.sweep_started(hydra_cfg)
        durations = tracking.finished_durations(client, experiment_id, parent, started) if parent and started else []
        log.info("%s%s", progress.progress(hydra_cfg, durations), name)
    return parent, name


@dataclass(frozen=True)
class Decision:
    """What a job does about earlier runs of its computation (the same config fingerprint)."""

    action: Literal["skip", "resume", "start", "diverged"]
    run: Run | None = None  # the FINISHED run it skips to, the interrupted run it resumes, or the diverged run


def decide(
    client: MlflowClient,
    experiment_id: str,
    fingerprint: str,
    checkpointed: bool,
    resume: bool,
    diverged_is_final: bool = False,
) -> Decision:
    """Skip when a run of this computation FINISHED; with `diverged_is_final` (a race or a search: a diverged job
    is a result about its arm), report one that diverged again without training; resume an interrupted one
    whose checkpoint is here (`checkpointed`); else start (a failed job of a grid runs again).

    `resume=false` always starts a fresh run.
    """
    if not resume:
        return Decision("start")
    statuses = ["FINISHED", "RUNNING", "KILLED", *(["FAILED"] if diverged_is_final else [])]
    attempts = tracking.runs_with_fingerprint(client, experiment_id, fingerprint, statuses)
    finished = [r for r in attempts if r.info.status == "FINISHED"]
    if finished:
        return Decision("skip", finished[0])
    diverged = [r for r in attempts if tracking.diverged(r)]
    if diverged:
        return Decision("diverged", diverged[0])
    interrupted = [r for r in attempts if r.info.status in ("RUNNING", "KILLED")]
    if interrupted and checkpointed:
        return Decision("resume", interrupted[0])
    return Decision("start")


def _open_run(
    decision: Decision,
    client: MlflowClient,
    experiment_id: str,
    cfg: DictConfig,
    dataset: datasets.Dataset,
    name: str,
    parent: Run | None,
    backup_dir: Path,
) -> str:
    """The MLflow run this job records into: the interrupted run taken over, or a new one (params, data tags)."""
    if decision.action == "resume":  # continue the same run from its last saved epoch
        assert decision.run is not None
        run_id = decision.run.info.run_id
        liveness.claim_run(client, run_id)
        log.info("resume %s: run %s from its backup in %s", name, run_id, backup_dir)
        return run_id
    shutil.rmtree(backup_dir, ignore_errors=True)  # a stale backup of a failed or forced-fresh run
    data_tags = {tags.DATASET_DIR: str(dataset.source_dir), tags.DATASET_ORIGIN: dataset.origin or "your own files"}
    data_tags.update({f"{tags.DATASET_SHA256}{file}": digest for file, digest in dataset.sha256.items()})
    run_id = tracking.start_job_run(client, experiment_id, cfg, name, parent, data_tags)
    digests = datasets.split_digests(cfg.dataset, dataset, cfg.seed)
    networks.log_datasets(client, run_id, dataset, digests)  # the UI's dataset column
    log.info("start %s (run %s, %d training images)", name, run_id, len(dataset.train))
    return run_id
