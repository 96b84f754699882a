"""The fast part (no training, no subprocess) of these tests; beside them:
tests/e2e/test_search.py, tests/integration/test_search.py.

The search (`hydra/sweeper=search`): its space and settings, pruning paired by seed, a killed study continued,
and real searches end to end (pruned jobs, the confirmation on fresh seeds, the report, packed members, the
dashboard). Fast tests build Optuna studies directly; slow ones train tiny models."""

from __future__ import annotations

import optuna
import pytest

from mixup_sweeps.errors import ConfigError
from mixup_sweeps.multirun import preflight
from mixup_sweeps.sweeps import identity, search
from mixup_sweeps.sweeps import study as studies
from tests.helpers import ROOT, compose_config


def settings(**changes) -> search.SearchSettings:
    from omegaconf import OmegaConf

    node = OmegaConf.to_container(OmegaConf.load(ROOT / "conf/hydra/sweeper/search.yaml"))
    node.pop("defaults")
    return search.settings_of({**node, **changes})


# --- the space and the settings ------------------------------------------------------------------------------
def test_the_plugins_syntax_becomes_optuna_distributions():
    space, fixed = search.search_space([
        "aug.alpha=tag(log, interval(0.05, 8))", "trainer.epochs=3", "trainer.batch_size=range(32, 129, 32)",
        "trainer.learning_rate=choice(0.001, 0.003)", "dataset.train_size=int(interval(100, 200))",
    ])  # fmt: skip
    assert fixed == ["trainer.epochs=3"]
    assert space["aug.alpha"] == optuna.distributions.FloatDistribution(0.05, 8.0, log=True)
    assert space["trainer.batch_size"] == optuna.distributions.IntDistribution(32, 128, step=32)
    assert space["trainer.learning_rate"] == optuna.distributions.CategoricalDistribution([0.001, 0.003])
    assert space["dataset.train_size"] == optuna.distributions.IntDistribution(100, 200)
    assert search.overrides_of({"aug.alpha": 0.1 + 0.2, "aug": "mixup"}) == [
        "aug.alpha=0.30000000000000004",
        "aug=mixup",
    ]


@pytest.mark.parametrize(
    "argument, message",
    [
        ("aug.alpha=interval(2, 1)", "interval(low, high) needs high > low"),
        ("aug.alpha=interval(1, 1)", "interval(low, high) needs high > low"),
        ("aug.alpha=tag(log, interval(0, 8))", "needs low > 0"),
        ("seed=interval(0, 9)", "the search owns the seed"),
        ("seed=3", "the search owns the seed"),
        ("trainer.epochs=3", "needs a range to search"),
    ],
)
def test_a_space_that_cannot_be_searched_is_one_line(argument, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        search.search_space([argument])


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ["hydra.sweeper.n_trials=0", "aug.alpha=interval(0.1, 1)"],
            "hydra.sweeper.n_trials=0: must be an integer >= 1",
        ),
        (
            ["hydra.sweeper.confirm_seeds=1", "aug.alpha=interval(0.1, 1)"],
            "confirm_seeds=1: 0 (no confirmation) or >= 2",
        ),
        (["hydra.sweeper.metric=test_accuracy", "aug.alpha=interval(0.1, 1)"], "validation only"),
        (["hydra.sweeper.pruner=hyperband", "aug.alpha=interval(0.1, 1)"], "hydra.sweeper.pruner"),
        (["aug.nosuchkey=interval(0.1, 1)"], "aug.nosuchkey"),
        (["aug.alpha=interval(0, 1)"], "aug.alpha"),  # alpha 0 is not a Beta distribution: the low end is checked
        (["aug=none", "aug.alpha=interval(0.1, 1)"], "alpha"),  # no alpha without mixing
    ],
)
def test_preflight_refuses_a_search_that_cannot_work(argv, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")) as info:
        preflight.check(["-m", "hydra/sweeper=search", *argv])
    assert "\n" not in str(info.value)


def test_the_study_is_defined_by_the_search_not_by_how_many_trials(tmp_path):
    from tests.helpers import compose_config

    def fingerprint(*overrides: str) -> str:
        settings = [o for o in overrides if o.startswith("hydra.")]
        config = compose_config(["hydra/sweeper=search", *settings], str(tmp_path), return_hydra_config=True)
        config.hydra.overrides.task = ["hydra/sweeper=search", *overrides]  # as Hydra records a multirun's
        return identity.sweep_fingerprint(config)

    space = "aug.alpha=interval(0.1, 1)"
    assert fingerprint(space) == fingerprint(space, "hydra.sweeper.n_trials=99", "hydra.sweeper.confirm_seeds=5")
    assert fingerprint(space) != fingerprint(space, "hydra.sweeper.seeds_per_trial=2")
    assert fingerprint(space) != fingerprint("aug.alpha=interval(0.1, 2)")


# --- pruning paired by seed ----------------------------------------------------------------------------------
def _study(pruner: str, seeds: int, **changes) -> tuple[optuna.Study, search.SearchSettings]:
    chosen = settings(pruner=pruner, seeds_per_trial=seeds, n_startup_trials=1, n_warmup_epochs=1, **changes)
    return studies.open_study(chosen, "sqlite:///:memory:", "test"), chosen


def _finished_trial(study: optuna.Study, curves: dict[int, list[float]], seeds: int) -> None:
    trial = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    for seed, curve in curves.items():
        for epoch, value in enumerate(curve, start=1):
            trial.report(value, studies.step_of(epoch, seed, seeds))
    study.tell(trial, sum(curve[-1] for curve in curves.values()) / len(curves))


def test_the_median_pruner_compares_a_job_with_other_trials_at_the_same_epoch_and_seed():
    """Seed 1 is an easy seed in every trial: a job is judged against the others' *seed 1*, not their mean."""
    study, chosen = _study("median", seeds=2)
    _finished_trial(study, {0: [0.50, 0.60, 0.70], 1: [0.80, 0.85, 0.90]}, seeds=2)
    trial = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    for epoch, (seed0, seed1) in enumerate([(0.55, 0.70), (0.65, 0.75)], start=1):
        trial.report(seed0, studies.step_of(epoch, 0, 2))
        trial.report(seed1, studies.step_of(epoch, 1, 2))
    # epoch 2: seed 0's best 0.65 beats the finished trial's seed 0 (0.60); seed 1's 0.75 is below its 0.85
    assert not studies.should_prune(study, trial.number, seed=0, seeds=2)
    assert studies.should_prune(study, trial.number, seed=1, seeds=2)


def test_no_pruning_before_the_warmup_epoch_or_the_startup_trials():
    study, _ = _study("median", seeds=1)
    trial = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    trial.report(0.1, studies.step_of(2, 0, 1))
    assert not studies.should_prune(study, trial.number, seed=0, seeds=1)  # no finished trial yet
    _finished_trial(study, {0: [0.5, 0.6]}, seeds=1)
    late = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    late.report(0.1, studies.step_of(1, 0, 1))
    assert not studies.should_prune(study, late.number, seed=0, seeds=1)  # epoch 1: warm-up
    late.report(0.1, studies.step_of(2, 0, 1))
    assert studies.should_prune(study, late.number, seed=0, seeds=1)


def test_the_wilcoxon_pruner_pairs_every_common_step_with_the_best_trial():
    study, _ = _study("wilcoxon", seeds=3)
    _finished_trial(study, {s: [0.5 + 0.05 * s, 0.6 + 0.05 * s, 0.7 + 0.05 * s] for s in range(3)}, seeds=3)
    trial = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    for epoch in (1, 2, 3):
        for seed in range(3):
            trial.report(0.2 + 0.01 * seed, studies.step_of(epoch, seed, 3))
    assert studies.should_prune(study, trial.number, seed=0, seeds=3)


def test_a_storage_password_is_never_recorded():
    assert studies.shown_url("postgresql+psycopg://ann:s3cret@db/optuna") == "postgresql+psycopg://ann:***@db/optuna"
    assert studies.shown_url("sqlite:////tmp/outputs/optuna.db") == "sqlite:////tmp/outputs/optuna.db"


# Sweep fingerprints of searches recorded by the version before `hydra/sweeper=optuna` was renamed (bd9265b):
# a study stored then is named after them, so the same search under the new name must find it.
FINGERPRINTS_BEFORE_THE_RENAME = {
    "aug.alpha=interval(0.1, 1)": "cc5a649de7e00678",
    "aug.alpha=tag(log, interval(0.05, 8))": "7278774e81d4e986",
}


@pytest.mark.parametrize("space", FINGERPRINTS_BEFORE_THE_RENAME)
def test_a_search_stored_under_the_old_sweeper_name_is_the_same_sweep(space):
    config = compose_config(["hydra/sweeper=search"], "/tmp/fp", return_hydra_config=True)
    config.hydra.overrides.task = ["hydra/sweeper=search", space]
    assert identity.sweep_fingerprint(config) == FINGERPRINTS_BEFORE_THE_RENAME[space]


def test_the_old_sweeper_name_is_one_line_pointing_to_the_new():
    with pytest.raises(ConfigError, match=r"^hydra/sweeper=optuna is now hydra/sweeper=search "):
        preflight.check(["-m", "hydra/sweeper=optuna", "aug.alpha=interval(0.1, 1)"])
