"""A search's stored study: where it lives, its sampler and pruner, and each job's report after an epoch.

The sweeper (`multirun.search`) asks and tells; each trial's jobs report their validation metric per epoch to
the same stored study (`EpochReporter`) and stop when the pruner says the trial is hopeless (`training.Pruned`).
Optuna is imported inside the functions: it is loaded only by a search.
"""

from __future__ import annotations

import math
import threading
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mixup_sweeps.errors import ConfigError
from mixup_sweeps.sweeps.search import STUDY_ENV, STUDY_FILE, TRIAL_ENV, SearchSettings, is_search, settings_of
from mixup_sweeps.text import one_line
from mixup_sweeps.train.training import Pruned

if TYPE_CHECKING:
    import optuna


def storage_url(settings: SearchSettings, output_dir: str) -> str:
    """`hydra.sweeper.storage`, or Optuna's own SQLite file beside mlflow.db (both libraries keep an Alembic version
    table: not the same database)."""
    return settings.storage or f"sqlite:///{output_dir}/{STUDY_FILE}"


STORAGE_WAIT_S = 15.0  # how long a study's database server may take to answer before the sweep says so


def check_storage(url: str, key: str = "hydra.sweeper.storage", wait_s: float = STORAGE_WAIT_S) -> None:
    """`ConfigError` (one line) for a study storage URL that no installed database driver opens, or whose server
    does not answer within `wait_s`. A SQLite file is not created here: its directory must exist."""
    from sqlalchemy import create_engine  # SQLAlchemy: loaded by a search that names a storage
    from sqlalchemy.engine import make_url

    allowed = "a database URL, e.g. sqlite:////abs/path/optuna.db or postgresql+psycopg://user@host/db"
    try:
        parsed = make_url(url)
        engine = create_engine(url)
    except Exception as exc:  # an unknown scheme, a driver that is not installed, a malformed URL
        raise ConfigError(f"Invalid value {key}={shown_url(url)}: {allowed} ({one_line(exc)})") from None
    if parsed.get_backend_name() == "sqlite":
        folder = Path(parsed.database or ".").expanduser().resolve().parent
        if parsed.database not in (None, "", ":memory:") and not folder.is_dir():
            raise ConfigError(f"Invalid value {key}={shown_url(url)}: the folder {folder} does not exist")
        return
    failure: list[BaseException] = []

    def connect() -> None:
        try:
            with engine.connect():
                pass
        except Exception as exc:
            failure.append(exc)

    attempt = threading.Thread(target=connect, daemon=True)
    attempt.start()
    attempt.join(wait_s)
    if attempt.is_alive():
        raise ConfigError(f"{key}={shown_url(url)}: the database did not answer in {wait_s:.0f} s")
    if failure:
        raise ConfigError(f"{key}={shown_url(url)}: cannot connect ({one_line(failure[0])})")


def shown_url(url: str) -> str:
    """The storage URL as it may be recorded: the password hidden."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url


def study_name(settings: SearchSettings, fingerprint: str) -> str:
    return settings.study_name or f"mixup-search-{fingerprint}"


def make_pruner(settings: SearchSettings) -> optuna.pruners.BasePruner:
    import optuna

    if settings.pruner == "median":
        warmup = settings.n_warmup_epochs * settings.seeds_per_trial  # steps are (epoch, seed) pairs
        return optuna.pruners.MedianPruner(n_startup_trials=settings.n_startup_trials, n_warmup_steps=warmup)
    if settings.pruner == "wilcoxon":
        startup = max(2, settings.n_warmup_epochs * settings.seeds_per_trial)
        return optuna.pruners.WilcoxonPruner(n_startup_steps=startup)
    return optuna.pruners.NopPruner()


def make_sampler(settings: SearchSettings, trials_so_far: int = 0) -> optuna.samplers.BaseSampler:
    """The sampler; with `sampler_seed`, seeded by it plus the trials the study already holds, so a continued
    study draws reproducible suggestions that are not the first session's again."""
    import optuna

    seed = None if settings.sampler_seed is None else settings.sampler_seed + trials_so_far
    if settings.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if settings.sampler == "qmc":
        return optuna.samplers.QMCSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=max(1, settings.n_startup_trials))


def open_study(settings: SearchSettings, storage: str | optuna.storages.BaseStorage, name: str) -> optuna.Study:
    """The stored study (created on the first call): the sweeper asks and tells, each job reports and prunes."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.create_study(
        storage=storage,
        study_name=name,
        direction="maximize" if settings.direction == "maximize" else "minimize",
        sampler=make_sampler(settings),
        pruner=make_pruner(settings),
        load_if_exists=True,
    )


def name_metric(study: optuna.Study, settings: SearchSettings) -> None:
    """The objective's name in Optuna's dashboards and dataframes (`set_metric_names`; Optuna marks it
    experimental, its warning is not the user's business)."""
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names([settings.metric])


def stored_trial(study: optuna.Study, storage: optuna.storages.BaseStorage, number: int) -> optuna.trial.Trial:
    """Trial `number` of the stored study as a `Trial` that reports and records from any process. Optuna's
    public API reaches a trial by number only through the storage (`get_trial_id_from_study_id_trial_number`)."""
    import optuna

    study_id = storage.get_study_id_from_name(study.study_name)
    return optuna.trial.Trial(study, storage.get_trial_id_from_study_id_trial_number(study_id, number))


def step_of(epoch: int, seed: int, seeds: int) -> int:
    """The intermediate step of (epoch from 1, seed): every (epoch, seed) pair its own step."""
    return (epoch - 1) * seeds + seed


def should_prune(study: optuna.Study, number: int, seed: int, seeds: int) -> bool:
    """Whether this job (trial `number`'s `seed`) is hopeless: the median pruner sees only this seed's steps (so
    it compares with the other trials at the same epoch and seed); the Wilcoxon pruner sees all of the trial's."""
    import optuna

    (trial,) = [t for t in study.get_trials(deepcopy=False) if t.number == number]
    if not isinstance(study.pruner, optuna.pruners.WilcoxonPruner):
        own = {step: v for step, v in trial.intermediate_values.items() if step % seeds == seed}
        trial = optuna.trial.FrozenTrial(
            number=trial.number, state=trial.state, value=None, datetime_start=trial.datetime_start,
            datetime_complete=None, params=trial.params, distributions=trial.distributions,
            user_attrs=trial.user_attrs, system_attrs=trial.system_attrs, intermediate_values=own,
            trial_id=trial.number,  # the pruner reads the values; the storage's id is not public
        )  # fmt: skip
    return bool(study.pruner.prune(study, trial))


class EpochReporter:
    """A search job's hook after each epoch: report its validation metric to its trial, raise `training.Pruned`
    when the pruner says the trial is hopeless (after the epoch's checkpoint and MLflow record)."""

    def __init__(self, settings: SearchSettings, url: str, name: str, number: int, seed: int) -> None:
        self.settings, self.url, self.name, self.number, self.seed = settings, url, name, number, seed
        self.study: optuna.Study | None = None
        self.trial: optuna.trial.Trial | None = None

    def __call__(self, epoch: int, metrics: Mapping[str, float]) -> None:
        import optuna

        if self.study is None or self.trial is None:
            storage = optuna.storages.RDBStorage(self.url)
            self.study = open_study(self.settings, storage, self.name)
            self.trial = stored_trial(self.study, storage, self.number)
        value = float(metrics.get(self.settings.epoch_metric, math.nan))
        seeds = self.settings.seeds_per_trial
        self.trial.report(value, step_of(epoch, self.seed, seeds))
        if should_prune(self.study, self.number, self.seed, seeds):
            raise Pruned(f"pruned by the {self.settings.pruner} pruner after epoch {epoch}", epoch)


def reporter_for(hydra_cfg: Any, output_dir: str, seed: int) -> EpochReporter | None:
    """The job's `EpochReporter` when the search sweeper launched it for a trial, else None."""
    env = hydra_cfg.job.env_set
    if env.get(TRIAL_ENV) is None or not is_search(hydra_cfg.sweeper):
        return None
    settings = settings_of(hydra_cfg.sweeper)
    return EpochReporter(settings, storage_url(settings, output_dir), str(env[STUDY_ENV]), int(env[TRIAL_ENV]), seed)
