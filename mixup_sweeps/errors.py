"""The error a user's input causes: one line naming the key (or file) and what is allowed, exit 2.

Kept apart from `config` so that every module that checks input (the augmentation registry, the data loader,
the plugins) can raise it without importing the schemas.
"""

from __future__ import annotations

from typing import Any

from hydra.errors import CompactHydraException


class ConfigError(CompactHydraException):
    """Bad config value: Hydra prints a compact one-line message and exits non-zero."""


def require(ok: bool, key: str, value: Any, allowed: str) -> None:
    """Raise `ConfigError` ("Invalid value key=value: allowed") unless `ok`."""
    if not ok:
        raise ConfigError(f"Invalid value {key}={value!r}: {allowed}")
