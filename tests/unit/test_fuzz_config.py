"""The fast part of the config fuzzer (tests/integration/test_fuzz_config.py has the fuzzing itself and says
what it promises): which keys it covers, and command lines known to be bad."""

from __future__ import annotations

import functools

import pytest
from omegaconf import OmegaConf

from mixup_sweeps.config import CONF_DIR
from mixup_sweeps.data import augmentations, datasets
from mixup_sweeps.errors import ConfigError
from mixup_sweeps.multirun import preflight
from tests.helpers import TESTS_DATA, compose_config

# The files each dataset's keys are fuzzed on: 30 real Fashion-MNIST images (labels mod 3) as your own data; the
# published datasets on no files and without downloading (each case would otherwise try the network).
FUZZ_DATA = {
    "npz": [f"dataset.path={TESTS_DATA / 'tiny.npz'}"],
    "folder": [f"dataset.path={TESTS_DATA / 'tiny_folder'}"],
    "fashion_mnist": [],
}


def leaf_keys(node, prefix: str = "") -> list[str]:
    if OmegaConf.is_dict(node):
        return [k for key in node for k in leaf_keys(node[key], f"{prefix}{key}.")]
    return [prefix[:-1]]


@functools.cache
def fuzzed_keys() -> list[tuple[list[str], str]]:
    """(overrides that select the schema, key) for every key the user can set: ~20 composes, made when a test first
    asks (not while pytest collects, in every worker)."""
    base = compose_config()
    own = [k for k in base if k not in ("hydra", "aug", "dataset", "model")]
    keys = [([], key) for key in leaf_keys(OmegaConf.masked_copy(base, own))]
    for name in sorted(datasets.DATASETS):
        chosen = [f"dataset={name}", *FUZZ_DATA.get(name, ["dataset.download=false"])]
        found = leaf_keys(compose_config(chosen).dataset)
        keys += [(chosen, f"dataset.{key}") for key in found if name in FUZZ_DATA or key != "download"]
    for name in sorted(p.stem for p in (CONF_DIR / "model").glob("*.yaml")):  # each architecture's keys
        keys += [([f"model={name}"], f"model.{key}") for key in leaf_keys(compose_config([f"model={name}"]).model)]
    for name in sorted(augmentations.AUGMENTATIONS):
        keys += [([f"aug={name}"], f"aug.{key}") for key in leaf_keys(compose_config([f"aug={name}"]).aug)]
    for section in ("until", "race"):
        sweeper = compose_config(return_hydra_config=True).hydra.sweeper[section]
        keys += [([], f"hydra.sweeper.{section}.{key}") for key in sweeper]
    keys.append((["hydra/launcher=packed", "backend=jax"], "hydra.launcher.pack_size"))
    keys += [([], "hydra.launcher.jobs"), ([], "hydra.launcher.threads")]  # the default (local) launcher's
    keys.append((["hydra.sweeper.race.epsilon=0", "aug=none,mixup"], "seed"))  # a seed list beside a race
    search = compose_config(["hydra/sweeper=search"], return_hydra_config=True).hydra.sweeper
    keys += [(["hydra/sweeper=search"], f"hydra.sweeper.{key}") for key in search if key not in ("_target_", "params")]
    return keys


# (the last: a case the fuzzer found on 2026-12-06, the launcher's settings read before they were checked)
KNOWN_BAD = [["trainer.epochs=abc"], ["nokey=1"], ["aug=nope"], ["aug.alpha=0.1,0.2"], ["-m", "seed=0,-1"],
             ["-m", "aug=none,mixup", "aug.alpha=x"], ["'a=[1,'"],
             ["-m", "aug=none,mixup", "hydra.launcher.jobs=${oc.env:NO_SUCH_VARIABLE}"]]  # fmt: skip


# Sweep settings that were refused only after the sweep's parent run opened (#36): now in the preflight.
REFUSED_FIRST = [
    (["-m", "aug.alpha=0.1,0.2", "seed=0,1,2", "hydra.sweeper.race.epsilon=0.01"], "seed=0,1,2: hydra.sweeper.race "
     "owns the seed axis"),
    (["-m", "aug=none,mixup", "hydra.launcher.jobs=0"], "Invalid value hydra.launcher.jobs=0: must be an integer >= 1"),
    (["-m", "aug=none,mixup", "hydra.launcher.threads=-1"], "Invalid value hydra.launcher.threads=-1"),
    (["-m", "hydra/sweeper=search", "aug.alpha=interval(0.1, 1)", "hydra.sweeper.storage=bogus://x"],
     "Invalid value hydra.sweeper.storage=bogus://x: a database URL"),
    (["-m", "hydra/sweeper=search", "aug.alpha=interval(0.1, 1)",
      "hydra.sweeper.storage=postgresql+psycopg://nobody@127.0.0.1:9/optuna"], "hydra.sweeper.storage="),
]  # fmt: skip


@pytest.mark.parametrize("argv, message", REFUSED_FIRST)
def test_sweep_settings_a_sweep_met_too_late_are_one_line_before_anything(argv, message):
    """The command line's preflight (what `python -m mixup_sweeps.run` runs before Hydra: exit 2, nothing
    recorded; tests/integration/test_user_errors.py shows that path through the command)."""
    with pytest.raises(ConfigError) as error:
        preflight.check(argv)
    assert message in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize("argv", KNOWN_BAD)
def test_known_bad_command_lines_are_one_line(argv):
    with pytest.raises(ConfigError) as error:
        preflight.check(argv)
    assert "\n" not in str(error.value)


def test_the_fuzzer_covers_every_schema_and_found_both_outcomes():
    """Every augmentation's keys and the sweeper's and launcher's are in the fuzzed set."""
    keys = {key for _, key in fuzzed_keys()}
    assert {
        "aug.decay_power",
        "aug.lam",
        "trainer.epochs",
        "hydra.sweeper.race.delta",
        "hydra.launcher.pack_size",
        "hydra.sweeper.n_trials",
        "hydra.sweeper.confirm_seeds",
        "hydra.sweeper.storage",
        "hydra.launcher.jobs",
        "hydra.launcher.threads",
    } <= keys
    assert {"dataset.label_mode", "dataset.image_size", "dataset.path"} <= keys  # each dataset's own keys too
    recipe = {"trainer.optimizer", "trainer.milestones", "trainer.warmup_epochs", "trainer.input_aug"}
    assert {"model.depth", "model.blocks", "model.widths", "model.architecture", *recipe} <= keys  # issue 38
    assert {"dataset.label_noise", "model.kernel_size", "tracking.heartbeat_timeout_s", "seed", "backend"} <= keys
