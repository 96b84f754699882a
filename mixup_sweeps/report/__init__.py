"""`python -m mixup_sweeps.report`: a sweep's MLflow runs as comparison tables and plots.

Groups are the config keys that vary across the runs; `seed` is the replicate axis, never a group key. Each
group gets mean, std and a Student-t 95 % interval over its runs, and each other group the *paired*
difference (test accuracy and ECE) to its baseline over the seeds both have: by default `aug=none` with the
same other keys; `--baseline trainer.precision=float32` compares each precision with float32 instead. Runs of
different datasets or models land in separate tables and are never averaged together.

The sections, in the order a report is made: `store` (runs out of MLflow), `summary` (the numbers),
`figures`, `documents` (CSV, Markdown, HTML), `cli`.
"""

from mixup_sweeps.report.cli import main
from mixup_sweeps.report.documents import write_report
from mixup_sweeps.report.store import ReportError, RunSet, fetch_runs, metric_histories, parse_where, select_runs

__all__ = [
    "ReportError",
    "RunSet",
    "fetch_runs",
    "main",
    "metric_histories",
    "parse_where",
    "select_runs",
    "write_report",
]
