"""How the harness words things for a person: a library's multi-line error as one line, a duration.

Hydra's and OmegaConf's errors span several lines (a headline, the key, the options); a user's mistake is shown
as one line (`errors.ConfigError`), so both the command-line check and the search space read them through here.
"""

from __future__ import annotations


def one_line(exc: BaseException) -> str:
    """Hydra's and OmegaConf's multi-line messages as one line: the headline and the reason (or the options)."""
    lines = [line for line in str(exc).splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    head = lines[0].strip().rstrip(".:")
    if any("Available options" in line for line in lines):
        start = next(i for i, line in enumerate(lines) if "Available options" in line) + 1
        options = []
        while start < len(lines) and lines[start][:1] in (" ", "\t"):
            options.append(lines[start].strip())
            start += 1
        return f"{head} (available: {', '.join(options)})"
    if len(lines) > 1 and lines[1][:1] not in (" ", "\t"):
        return f"{head}: {lines[1].strip()}"
    cause = exc.__cause__ or exc.__context__
    if cause is not None and str(cause).strip():
        return f"{head}: {str(cause).strip().splitlines()[0]}"
    return head


def format_duration(seconds: float) -> str:
    """`42 s` below a minute and a half, else `7 min`: an ETA or an epoch's time in a log line."""
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"
