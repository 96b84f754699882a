"""Code of an earlier commit beside this tree's, for a benchmark's before-and-after in one run."""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@contextmanager
def worktree(commit: str) -> Iterator[Path]:
    """A git worktree of `commit` (detached) for the block's length; it runs with this tree's venv."""
    path = Path(tempfile.mkdtemp(prefix="benchmark-before-"))
    subprocess.run(["git", "worktree", "add", "--detach", str(path), commit], cwd=ROOT, check=True,
                   capture_output=True)  # fmt: skip
    try:
        yield path
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(path)], cwd=ROOT, capture_output=True)
