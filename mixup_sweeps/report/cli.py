"""`python -m mixup_sweeps.report`: the command line of the report (store -> numbers -> documents)."""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from mixup_sweeps.job.compose import load_config
from mixup_sweeps.report.documents import write_report
from mixup_sweeps.report.store import ReportError, RunSet, fetch_runs, parse_where, select_runs
from mixup_sweeps.store.tracking import UI_URL, StoreUnreachable, check_store, ui_url_for
from mixup_sweeps.sweeps.baseline import DEFAULT_BASELINE, Baseline, parse_baseline


def check_baseline(run_set: RunSet, baseline: Baseline) -> None:
    """A `--baseline` no run of the set can be: `ReportError` naming what would work."""
    runs = run_set.runs
    if baseline.key not in runs:
        known = ", ".join(sorted(k for k in run_set.params if k in runs))
        raise ReportError(f"--baseline {baseline.key}={baseline.value}: no run has {baseline.key} (keys: {known})")
    values = runs[baseline.key].dropna()
    if not any(baseline.includes({baseline.key: value}) for value in values):
        shown = ", ".join(sorted({str(v) for v in values}))
        raise ReportError(
            f"--baseline {baseline.key}={baseline.value}: no run has that value ({baseline.key}: {shown})"
        )


def check_writable(directory: Path, option: str) -> None:
    """The report's directory can be made and written to, or `ReportError` naming the option."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as exc:
        raise ReportError(f"{option}: cannot write the report to {directory} ({exc.strerror}); "
                          "pick a directory you can write to") from None  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mixup_sweeps.report",
        description="A sweep's MLflow runs as an answer, comparison tables and plots: each group's test accuracy "
        "with its interval over seeds, and its paired difference to the baseline (Holm-corrected verdicts).",
        epilog="examples:\n  python -m mixup_sweeps.run -m experiment=default_sweep   # run a sweep first\n"
        "  python -m mixup_sweeps.report                           # the latest sweep\n"
        "  python -m mixup_sweeps.report --sweep all --where backend=jax --baseline trainer.precision=float32\n"
        "  .venv/bin/mlflow ui --backend-store-uri sqlite:///outputs/mlflow.db   # the runs in a browser\n"
        "exit codes: 0 written, 2 an option or store that cannot work (one line says which).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--sweep", default="latest", help="a sweep_id, 'latest' (default) or 'all'")
    parser.add_argument("--output-dir", default="outputs", help="the harness's paths.output_dir (default: outputs)")
    parser.add_argument("--experiment", help="MLflow experiment (default: tracking.experiment of the config)")
    parser.add_argument("--tracking-uri", help="MLflow tracking URI (default: tracking.uri of the config)")
    parser.add_argument("--out", help="report directory (default: <output-dir>/reports/<sweep_id or all>)")
    parser.add_argument(
        "--baseline",
        help="KEY=VALUE of the runs each group is compared with, paired by seed (default: the seeds-until "
        f"sweeper's baseline for such a sweep, else {DEFAULT_BASELINE.key}={DEFAULT_BASELINE.value}; "
        "e.g. trainer.precision=float32)",
    )
    parser.add_argument(
        "--where",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="only runs with this config value or tag (repeatable), e.g. accelerator=cpu, backend=jax",
    )
    parser.add_argument("--ui-url", help=f"MLflow UI for the links (default: the tracking server, else {UI_URL})")
    args = parser.parse_args(argv)

    cfg = load_config(args.output_dir)
    tracking_uri = args.tracking_uri or cfg.tracking.uri
    experiment = args.experiment or cfg.tracking.experiment
    try:
        if args.baseline is not None:
            parse_baseline(args.baseline)  # a typo stops here, before the store is read
        check_store(tracking_uri)  # a server that does not answer, a file that is not a store: one line
        found = fetch_runs(tracking_uri, experiment, args.sweep, cfg.tracking.heartbeat_timeout_s)
        run_set = select_runs(found, parse_where(args.where))
        until_baseline = (run_set.until or {}).get("baseline")
        baseline = parse_baseline(args.baseline or until_baseline or DEFAULT_BASELINE.override)
        if args.baseline is not None:
            check_baseline(run_set, baseline)
        out = Path(args.out) if args.out else Path(cfg.paths.output_dir) / "reports" / run_set.label
        check_writable(out, "--out" if args.out else "--output-dir")
    except ValueError as exc:
        print(f"Error: --{exc}", file=sys.stderr)
        return 2
    except (ReportError, StoreUnreachable) as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 2
    ui_url = args.ui_url or ui_url_for(tracking_uri)
    files = write_report(run_set, tracking_uri, experiment, out, baseline, ui_url, publish=True)
    print(files["report.md"].read_text().split("\n![", 1)[0])
    print(f"Report of {run_set.label!r} written to {out}/ ({', '.join(sorted(p.name for p in files.values()))})")
    return 0
