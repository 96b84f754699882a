"""The baseline rule: which group each group is compared with, paired by seed.

One rule for the report, seeds-until-precise and the search's confirmation: a group is compared with the
baseline groups (`aug=none` unless told otherwise) that equal it on every key the baseline does not own.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from mixup_sweeps.errors import ConfigError
from mixup_sweeps.sweeps.overrides import config_key


def missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def same_value(a: Any, b: Any) -> bool:
    """Equal as typed on a command line or as read back from the params (`0.2` == 0.2; missing == missing)."""
    if missing(a) or missing(b):
        return missing(a) and missing(b)
    if str(a) == str(b):
        return True
    try:
        return float(a) == float(b)
    except (TypeError, ValueError):
        return False


class Baseline(NamedTuple):
    """The runs every other group is compared with: those whose config `key` holds `value`."""

    key: str
    value: str

    def owns(self, key: str) -> bool:
        """Keys that belong to the baseline's choice and need not match: for `aug.name` every `aug.*` key."""
        return key.startswith("aug.") if self.key == "aug.name" else key == self.key

    def includes(self, group: Mapping[str, Any]) -> bool:
        return self.key in group and not missing(group[self.key]) and same_value(group[self.key], self.value)

    @property
    def override(self) -> str:
        """How a command line selects it: `aug=none`, `trainer.precision=float32`."""
        return f"{'aug' if self.key == 'aug.name' else self.key}={self.value}"

    @property
    def name(self) -> str:
        """How an answer names it: `none` for the default, else `KEY=VALUE`."""
        return self.value if self == DEFAULT_BASELINE else f"{self.key}={self.value}"


DEFAULT_BASELINE = Baseline("aug.name", "none")


def parse_baseline(text: str) -> Baseline:
    """`KEY=VALUE` (`--baseline`, `hydra.sweeper.until.baseline`); `aug=none` means `aug.name=none`."""
    key, sep, value = text.partition("=")
    if not sep or not key or not value:
        raise ValueError(f"baseline {text!r}: expected KEY=VALUE, e.g. aug=none or trainer.precision=float32")
    return Baseline(config_key(key.strip()), value.strip())


def baseline_setting(text: str | None, key: str) -> Baseline:
    """A sweeper's `baseline` setting (`key`, e.g. `hydra.sweeper.until`): null is the report's default; a value
    that is not KEY=VALUE is a `ConfigError` naming `key`."""
    try:
        return parse_baseline(text or DEFAULT_BASELINE.override)
    except ValueError as exc:
        raise ConfigError(f"{key}.{exc}") from None


def baselines_of(
    group: Mapping[str, Any], groups: Sequence[Mapping[str, Any]], baseline: Baseline = DEFAULT_BASELINE
) -> list[int]:
    """Indices of the `groups` that `group` is compared with: baseline groups equal to it on every key the
    baseline does not own (a key missing in both counts as equal). [] for a baseline group itself."""
    if baseline.includes(group):
        return []
    keys = {k for g in (group, *groups) for k in g if not baseline.owns(k) and k != baseline.key}
    return [
        i
        for i, other in enumerate(groups)
        if baseline.includes(other) and all(same_value(group.get(k), other.get(k)) for k in keys)
    ]
