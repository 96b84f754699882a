"""The search sweeper's work: Optuna 5's ask/tell over ranges, trials on paired seeds, pruned by epoch, the winner
confirmed on fresh seeds (the rules: `sweeps.search`; the stored study and pruning: `sweeps.study`).

Each launch is a batch of trials, as many as the launcher runs jobs at once (`jobs_at_once`) divided by the
seeds per trial, so `hydra/launcher=packed` trains a batch as one program and Ray spreads it. Each job is an
ordinary run under the sweep's one parent. The study is stored: a trial that a killed sweep left RUNNING is marked
failed (user attribute `interrupted`, not counted) and its parameters are asked again first, so its jobs skip or
resume from their checkpoints; finished trials are never run again. Optuna is imported where it is used: it loads
only when a search runs.
"""

from __future__ import annotations

import json
import logging
import socket
import time
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Any

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.utils import JobReturn
from mlflow.entities import Run
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

from mixup_sweeps.config import CONF_DIR, SEED
from mixup_sweeps.multirun.in_process import job_failure
from mixup_sweeps.store import claims, liveness, registry, tags, tracking
from mixup_sweeps.sweeps import search, winner
from mixup_sweeps.sweeps.baseline import baseline_setting
from mixup_sweeps.sweeps.identity import sweep_fingerprint
from mixup_sweeps.sweeps.overrides import config_key, override_key, override_values
from mixup_sweeps.sweeps.progress import jobs_at_once, progress_overrides
from mixup_sweeps.sweeps.search import objective
from mixup_sweeps.sweeps.study import (
    make_sampler,
    name_metric,
    open_study,
    shown_url,
    storage_url,
    stored_trial,
    study_name,
)
from mixup_sweeps.train.training import Pruned

log = logging.getLogger(__name__)
INTERRUPTED = "interrupted"  # user attribute of a trial a killed sweep left RUNNING (marked FAIL, asked again)
OWNER = "owner"  # user attribute: the process that asked the trial (`liveness.process_tags`)
MODEL_EPOCHS, MODEL_EPOCHS_UNPRUNED = "model_epochs", "model_epochs_unpruned"  # user attributes of a told trial
MLFLOW_RUNS = "mlflow_run_ids"  # user attribute: the MLflow runs of the trial's jobs


class SearchRun:
    """One search of `hydra/sweeper=search` (the plugin `SearchSweeper` hands its work to this)."""

    def __init__(self, sweeper: BasicSweeper, settings: dict[str, Any]) -> None:
        self.sweeper = sweeper
        defaults = OmegaConf.load(CONF_DIR / "hydra" / "sweeper" / "search.yaml")  # also for a sweeper made by hand
        merged = OmegaConf.merge({k: v for k, v in defaults.items() if k != "defaults"}, settings)
        self.settings_node: dict[str, Any] = OmegaConf.to_container(merged)  # type: ignore[assignment]
        self.started = time.time()
        self.job_idx = 0
        self.study_name = ""
        self._mlflow: tuple[MlflowClient, str] | None = None

    def sweep(self, arguments: list[str]) -> Any:
        assert self.sweeper.config is not None and self.sweeper.launcher is not None
        settings = search.settings_of(self.settings_node)
        space, fixed = search.search_space(self.sweeper._parse_config() + list(arguments))
        sweep_dir = Path(self.sweeper.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.sweeper.config, sweep_dir / "multirun.yaml")  # as the basic sweeper does
        url = storage_url(settings, str(Path(self.sweeper.config.paths.output_dir).resolve()))
        name = study_name(settings, sweep_fingerprint(self.sweeper.config))
        import optuna  # loaded by a search only

        storage = optuna.storages.RDBStorage(url)
        self.study_name = name
        study = open_study(settings, storage, name)
        name_metric(study, settings)
        study.sampler = make_sampler(settings, trials_so_far=len(study.get_trials(deepcopy=False)))
        log.info("Search: study %r in %s, %d trials of %d seeds", name, shown_url(url), settings.n_trials,
                 settings.seeds_per_trial)  # fmt: skip
        self._recover(study, storage)
        parallel = jobs_at_once(self.sweeper.launcher, self.sweeper.config.hydra.launcher)
        per_launch = max(1, parallel // settings.seeds_per_trial)
        seeds = range(settings.seeds_per_trial)
        while (done := self._counted(study)) < settings.n_trials:
            trials = [study.ask(space) for _ in range(min(per_launch, settings.n_trials - done))]
            total = self.job_idx + (settings.n_trials - done) * len(seeds) + 2 * settings.confirm_seeds
            extra = progress_overrides(total, self.started, parallel)
            jobs, owners = [], []
            for trial in trials:
                trial.set_user_attr(OWNER, _owner())
                env = [f"++hydra.job.env_set.{search.TRIAL_ENV}={trial.number}",
                       f"++hydra.job.env_set.{search.STUDY_ENV}={name}"]  # fmt: skip
                for seed in seeds:
                    jobs.append([*fixed, *search.overrides_of(trial.params), f"{SEED}={seed}", *env, *extra])
                    owners.append(trial)
            log.info("Search: trials %s (%d jobs)", ", ".join(f"#{t.number}" for t in trials), len(jobs))
            returns = self._launch(jobs)
            for trial in trials:
                self._tell(study, trial, [r for r, t in zip(returns, owners) if t is trial], settings)
        record = self._record(study, settings, space, name, url)
        if settings.confirm_seeds and record.get("best"):
            record["confirmation"] = self._confirm(record["best"]["params"], fixed, settings)
        self._publish(record)
        return record

    # --- trials -----------------------------------------------------------------------------------------
    def _launch(self, jobs: list[list[str]]) -> list[JobReturn]:
        assert self.sweeper.launcher is not None
        self.sweeper.validate_batch_is_legal(jobs)
        returns = list(self.sweeper.launcher.launch(jobs, initial_job_idx=self.job_idx))
        self.job_idx += len(jobs)
        return returns

    def _tell(self, study: Any, trial: Any, returns: list[JobReturn], settings: Any) -> None:
        """A trial's outcome from its jobs: the mean metric, PRUNED when a job was pruned, FAIL when one failed."""
        import optuna

        assert self.sweeper.config is not None
        full = int(trial.params.get("trainer.epochs", self.sweeper.config.trainer.epochs))
        failures = [job_failure(ret) for ret in returns]
        spent = sum(exc.epoch if isinstance(exc, Pruned) else full for exc in failures)
        trial.set_user_attr(MODEL_EPOCHS, int(spent))
        trial.set_user_attr(MODEL_EPOCHS_UNPRUNED, full * len(returns))
        runs = self._trial_runs(trial.number)
        trial.set_user_attr(MLFLOW_RUNS, [run.info.run_id for run in runs])  # which MLflow runs the trial made
        value: float | None = None
        if any(isinstance(exc, Pruned) for exc in failures):
            state = optuna.trial.TrialState.PRUNED
            log.info("Search: trial #%d pruned", trial.number)
        elif any(failures):
            first = next(exc for exc in failures if exc is not None)
            state = optuna.trial.TrialState.FAIL
            log.warning("Search: trial #%d failed: %s: %s", trial.number, type(first).__name__, first)
        else:
            state = optuna.trial.TrialState.COMPLETE
            value = objective([float(ret.return_value[settings.metric]) for ret in returns])
            log.info("Search: trial #%d %s=%.4f %s", trial.number, settings.metric, value, trial.params)
        study.tell(trial, value, state=state)
        self._mark_runs(runs, state.name, value)

    def _store(self) -> tuple[MlflowClient, str]:
        if self._mlflow is None:
            assert self.sweeper.config is not None
            self._mlflow = tracking.connect(self.sweeper.config.tracking, check=False)  # checked at the start
        return self._mlflow

    def _trial_runs(self, number: int) -> list[Run]:
        """The MLflow runs of trial `number` of this study (its jobs tag them; a reused run too)."""
        client, experiment_id = self._store()
        where = f"tags.{tags.SEARCH_STUDY} = '{self.study_name}' and tags.{tags.TRIAL} = '{number}'"
        return client.search_runs([experiment_id], filter_string=where)

    def _mark_runs(self, runs: list[Run], state: str, value: float | None) -> None:
        """The told trial on its runs: its state as a tag, its objective as the metric `trial_value` (the runs of
        a search sort by it in the UI and in `mlflow.search_runs`)."""
        client, _ = self._store()
        for run in runs:
            client.set_tag(run.info.run_id, tags.TRIAL_STATE, state)
            if value is not None:
                client.log_metric(run.info.run_id, tags.TRIAL_VALUE, value)

    @staticmethod
    def _counted(study: Any) -> int:
        """Trials that count towards n_trials: finished (complete, pruned or failed), not interrupted."""
        import optuna

        states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.FAIL)
        return sum(1 for t in study.get_trials(deepcopy=False, states=states) if not t.user_attrs.get(INTERRUPTED))

    @staticmethod
    def _recover(study: Any, storage: Any) -> None:
        """Trials left RUNNING by a sweep that died (its process is gone): marked FAIL and `interrupted`, and their
        parameters asked again first, so their jobs skip (finished) or resume (checkpointed) instead of being lost."""
        import optuna

        for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            if _alive(trial.user_attrs.get(OWNER) or {}):
                continue  # another sweep on the same study is running it
            stored_trial(study, storage, trial.number).set_user_attr(INTERRUPTED, True)
            study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
            study.enqueue_trial(trial.params)
            log.info("Search: trial #%d was interrupted; its parameters are tried again first", trial.number)

    # --- the winner confirmed -------------------------------------------------------------------------------
    def _confirm(self, params: dict[str, Any], fixed: list[str], settings: Any) -> dict[str, Any]:
        """The best configuration and its baseline on `confirm_seeds` seeds the search never used, paired."""

        baseline = baseline_setting(settings.baseline, search.KEY)
        best = [*fixed, *search.overrides_of(params)]
        if baseline.includes(override_values(best)):
            return {"note": f"the best trial is the baseline ({baseline.name}) itself: nothing to confirm against"}
        keep = [o for o in best if not baseline.owns(config_key(override_key(o))) and config_key(override_key(o))
                != baseline.key]  # fmt: skip
        base = [*keep, baseline.override]
        seeds = range(settings.seeds_per_trial, settings.seeds_per_trial + settings.confirm_seeds)
        extra = progress_overrides(self.job_idx + 2 * len(seeds), self.started, 1)
        jobs = [[*group, f"{SEED}={seed}", f"++hydra.job.env_set.{search.CONFIRM_ENV}={role}", *extra]
                for role, group in (("best", best), ("baseline", base)) for seed in seeds]  # fmt: skip
        log.info("Search: confirming the best trial and %s on seeds %d-%d (%d jobs)", baseline.name, seeds.start,
                 seeds.stop - 1, len(jobs))  # fmt: skip
        returns = self._launch(jobs)
        failures = [exc for exc in map(job_failure, returns) if exc is not None]
        if failures:
            return {"note": f"confirmation failed: {type(failures[0]).__name__}: {failures[0]}"}
        accuracy = [float(ret.return_value["test_accuracy"]) for ret in returns]
        n = len(seeds)
        return {**search.confirmation(accuracy[:n], accuracy[n:]), "baseline": baseline.name,
                "seeds_used": [seeds.start, seeds.stop - 1], "overrides": best, "baseline_overrides": base}  # fmt: skip

    # --- the record -------------------------------------------------------------------------------------
    def _record(self, study: Any, settings: Any, space: dict, name: str, url: str) -> dict[str, Any]:
        import optuna

        trials = [t for t in study.get_trials(deepcopy=False) if not t.user_attrs.get(INTERRUPTED)]
        finished = [t for t in trials if t.state.is_finished()]
        complete = [t for t in finished if t.state == optuna.trial.TrialState.COMPLETE]
        best = None
        if complete:
            winner = study.best_trial
            best = {"number": winner.number, "params": winner.params, "value": winner.value}
        return {
            "settings": {**asdict(settings), "storage": shown_url(url), "direction": settings.direction},
            "study": name,
            "space": {key: optuna.distributions.distribution_to_json(dist) for key, dist in space.items()},
            "counts": dict(Counter(t.state.name for t in finished)),
            "model_epochs": sum(int(t.user_attrs.get(MODEL_EPOCHS, 0)) for t in finished),
            "model_epochs_unpruned": sum(int(t.user_attrs.get(MODEL_EPOCHS_UNPRUNED, 0)) for t in finished),
            "trials": [
                {
                    "number": t.number,
                    "state": t.state.name,
                    "value": t.value,
                    "params": t.params,
                    "model_epochs": t.user_attrs.get(MODEL_EPOCHS),
                }
                for t in finished
            ],  # fmt: skip
            "best": best,
        }

    def _publish(self, record: dict[str, Any]) -> None:
        """The search's lines on the parent run (tag `search_result`, the sweep's last lines) and the whole
        record as its artifact `search/search.json`."""

        assert self.sweeper.config is not None
        record["lines"] = lines = search.describe(record)
        client, experiment_id = tracking.connect(self.sweeper.config.tracking, check=False)  # checked at the start
        parent = tracking.find_parent(client, experiment_id, str(Path(self.sweeper.config.hydra.sweep.dir).resolve()))
        if parent is None:  # no parent callback: the lines go to the log here (else they are the sweep's last)
            for line in lines:
                log.info("Search: %s", line)
            return
        shown = [line[:1000] for line in lines]
        while len(json.dumps(shown)) > 5000:  # MLflow's tag limit: whole lines dropped, the JSON stays valid
            shown.pop()
        claims.set_shared_tag(client, parent.info.run_id, tags.SEARCH_RESULT, json.dumps(shown))
        path = Path(self.sweeper.config.hydra.sweep.dir) / Path(tags.SEARCH_RECORD).name
        path.write_text(search.to_json(record))
        client.log_artifact(parent.info.run_id, str(path), str(Path(tags.SEARCH_RECORD).parent))
        runs = tracking.sweep_runs(client, experiment_id, parent)
        registry.register_winner(client, parent, runs, winner.search_winner(record), "\n".join(lines))


def _owner() -> dict[str, str]:
    return liveness.process_tags()


def _alive(owner: dict[str, str]) -> bool:
    """Whether the process that asked a trial still runs (on this host; another host's is taken for alive)."""

    if not owner:
        return False
    if owner.get(tags.HOST) != socket.gethostname():
        return True
    return liveness.process_start(int(owner[tags.PID])) == owner.get(tags.PROCESS_START)
