"""Files written whole or not at all, and file locks that say who holds them.

A reader (a resumed job, another process) sees the old file or the new one, never half of one: checkpoints,
journals, initial weights and fetched artifacts all go through `atomic_path`. The locks beside the SQLite store
and the initial weights wait a stated time, then name the holder instead of hanging behind it for ever."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import filelock
from hydra.errors import CompactHydraException


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary path beside `path` to write to; it replaces `path` when the block ends without an error.

    The name carries the process id, so two processes writing the same file never share a temporary one.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_atomic(path: Path, content: bytes | str) -> None:
    """`path` holds `content` (text as UTF-8), or what it held before."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(content.encode() if isinstance(content, str) else content)


def user_cache_dir(kind: str) -> Path:
    """The harness's cache of `kind` for this user (`XDG_CACHE_HOME`, else ~/.cache): decoded image folders, the
    empty MLflow store that new stores are copied from."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mixup-sweeps" / kind


class LockTimeout(CompactHydraException):
    """A file lock was held longer than its stated wait: one line naming the file and the holder."""


@contextmanager
def file_lock(path: Path, timeout_s: float, guards: str) -> Iterator[None]:
    """Hold the exclusive lock `path` (across processes) for the block; wait at most `timeout_s` seconds.

    The holder writes who it is beside the lock (`<path>.owner`, removed on release), so a waiter that gives
    up can say which process on which host holds it. A holder that dies releases the lock with it (flock).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = filelock.FileLock(str(path), timeout=timeout_s)
    owner = path.with_name(path.name + ".owner")
    try:
        lock.acquire()
    except filelock.Timeout:
        try:
            holder = owner.read_text().strip()
        except OSError:
            holder = "an unknown process"
        raise LockTimeout(
            f"{path}: waited {timeout_s:g} s for the lock on {guards}, held by {holder}; "
            "end that process if it hangs, then run the command again"
        ) from None
    try:
        owner.write_text(f"process {os.getpid()} on {socket.gethostname()}")
        yield
    finally:
        owner.unlink(missing_ok=True)  # before the release: the next holder writes its own
        lock.release()
