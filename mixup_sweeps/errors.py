"""The errors a user sees as one line: bad input (naming the key or file and what is allowed, exit 2), and a
full disk (`DiskFull`, exit 1: nothing the user typed is wrong).

Kept apart from `config` so that every module that checks input (the augmentation registry, the data loader,
the plugins) can raise it without importing the schemas.
"""

from __future__ import annotations

import errno
import logging
from typing import Any

from hydra.errors import CompactHydraException


class ConfigError(CompactHydraException):
    """Bad config value: Hydra prints a compact one-line message and exits non-zero."""


def require(ok: bool, key: str, value: Any, allowed: str) -> None:
    """Raise `ConfigError` ("Invalid value key=value: allowed") unless `ok`."""
    if not ok:
        raise ConfigError(f"Invalid value {key}={value!r}: {allowed}")


class DiskFull(CompactHydraException):
    """The disk (or the SQLite store on it) filled up: one line, exit 1; what finished is in the store."""

    def __init__(self, where: str) -> None:
        super().__init__(
            f"disk full writing {where}: free space and run the same command again (nothing finished is lost)"
        )
        self.where = where


NO_SPACE_ERRNOS = {errno.ENOSPC, errno.EDQUOT}  # no space left on the device; the user's disk quota used up
NO_SPACE_TEXTS = ("database or disk is full", "No space left on device", "Disk quota exceeded")


def disk_full(
    exc: BaseException | None, files: str = "the output directory", store: str = "the MLflow store"
) -> DiskFull | None:
    """`DiskFull` when `exc`, or an exception it was raised from or while handling, says the disk is full: an
    OSError with ENOSPC/EDQUOT (naming its file, else `files`), SQLite's "database or disk is full" (`store`,
    however MLflow or SQLAlchemy wrapped it); None otherwise."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, DiskFull):
            return exc
        if isinstance(exc, OSError) and exc.errno in NO_SPACE_ERRNOS:
            return DiskFull(str(exc.filename) if exc.filename else files)
        if any(text in str(exc) for text in NO_SPACE_TEXTS):
            return DiskFull(store if "database" in str(exc) else files)
        exc = exc.__cause__ or exc.__context__
    return None


def quiet_from_now() -> None:
    """After a full disk: later writes fail too, and each would print a traceback (a log record that cannot be
    written, MLflow's store logging its failed update); the one line `DiskFull` says is what the user needs."""
    logging.raiseExceptions = False
    logging.getLogger("mlflow").setLevel(logging.CRITICAL)
