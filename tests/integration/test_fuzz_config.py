"""The integration part (real Hydra, MLflow, Keras in this process or one subprocess) of these tests; beside them:
tests/unit/test_fuzz_config.py.

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
failed only because the schemas moved in the ConfigStore while it ran. `make test` runs 80 cases (~40 s), `make
test-fast` 25.
Second campaign (2026-12-01, with `hydra/sweeper=search`'s keys and search ranges, `FUZZ_EXAMPLES=300`): it found
a sweeper setting set to an unset `${oc.env:...}` in a multirun (`hydra.sweeper.race.epsilon`) ending in a
traceback; sweeper and launcher settings are now resolved first, one line naming the node (`preflight._resolved`)."""

from __future__ import annotations

import functools
import math
import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from omegaconf import DictConfig, OmegaConf

from mixup_sweeps.errors import ConfigError
from mixup_sweeps.multirun import preflight
from tests.helpers import compose_config
from tests.unit.test_fuzz_config import fuzzed_keys

CASES = {"run": 0, "accepted": 0, "one_line_errors": 0}


def render(value) -> str:
    """A value as a user would type it on the command line."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, list):
        return "[" + ",".join(render(v) for v in value) + "]"
    if isinstance(value, str) and not value.startswith("raw:"):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return str(value).removeprefix("raw:")


VALUES = st.one_of(
    st.integers(min_value=-(10**15), max_value=10**15),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),  # unicode, empty
    st.booleans(),
    st.lists(st.integers(min_value=-5, max_value=100), max_size=4),
    st.sampled_from(
        [
            "raw:null",
            "raw:",
            "raw:1e309",
            "raw:[",
            "raw:{a:1}",
            "raw:${oc.env:NO_SUCH_VARIABLE}",
            "raw:abc",
            "raw:0x10",
            "raw:1_000",
            "raw:-0",
        ]
    ),  # fmt: skip
)


def assert_one_line_or_accepted(argv: list[str]) -> None:
    CASES["run"] += 1
    try:
        preflight.check(argv)
    except ConfigError as exc:
        message = str(exc)
        assert message and "\n" not in message, f"{argv}: a multi-line error: {message!r}"
        assert "Traceback" not in message
        CASES["one_line_errors"] += 1
        return
    CASES["accepted"] += 1


@functools.cache
def job_config(selectors: tuple[str, ...]) -> DictConfig:
    """The config a job gets under these group selectors, composed once per selectors (a few dozen in
    `fuzzed_keys()`): the fuzzer's time goes to the boundary it checks, not to finding a good value for the
    sweep's first job."""
    return compose_config(list(selectors))


EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "80"))  # the suite's budget (~40 s); a longer campaign: more


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow],
          derandomize=os.environ.get("CI") == "true")  # fmt: skip  # CI: the same cases every time
@given(st.deferred(lambda: st.sampled_from(fuzzed_keys())), VALUES, st.booleans())
def test_every_key_with_any_value_runs_or_is_one_line(selected, value, multirun):
    selectors, key = selected
    typed = f"{key}={render(value)}"
    if not multirun:
        argv = [*selectors, typed]
    elif key.startswith("hydra."):
        argv = ["-m", *selectors, "aug=none,mixup", typed]  # a sweep's settings, on a two-job sweep
    else:
        single = tuple(s for s in selectors if "," not in s)  # the config a job gets: no sweep among the selectors
        job = job_config(single)  # a two-job sweep: a good value, then this one
        good = OmegaConf.select(job, key) if job.get(key.split(".")[0]) is not None else None
        argv = ["-m", *selectors, f"{key}={render(good) if good is not None else 'null'},{render(value)}"]
    assert_one_line_or_accepted(argv)
    if CASES["run"] % 100 == 0:
        print(f"fuzzed {CASES}")


SEARCHABLE = ["aug.alpha", "trainer.learning_rate", "trainer.epochs", "dataset.label_noise", "seed", "nokey"]


BOUNDS = st.one_of(st.integers(-5, 20), st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(["x", "'1'"]))


@settings(max_examples=max(10, EXAMPLES // 4), deadline=None, suppress_health_check=[HealthCheck.too_slow],
          derandomize=os.environ.get("CI") == "true")  # fmt: skip
@given(st.sampled_from(SEARCHABLE), BOUNDS, BOUNDS, st.sampled_from(["{}", "tag(log, {})", "int({})"]))
def test_any_search_range_runs_or_is_one_line(key, low, high, form):
    """hydra/sweeper=search with a range on a key (or a non-key), any bounds, log or int: accepted or one line."""
    interval = form.format(f"interval({render(low)}, {render(high)})")
    assert_one_line_or_accepted(["-m", "hydra/sweeper=search", f"{key}={interval}"])
