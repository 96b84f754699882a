"""The report's documents: summary.csv and runs.csv, report.md, and report.html (a Jinja2 template, autoescaped)
with links into the MLflow UI; `write_report` writes them all, with the figures, for one set of runs."""

from __future__ import annotations

import base64
import json
import re
import time
from pathlib import Path
from typing import Any

import jinja2
import pandas as pd
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_RUN_NOTE

from mixup_sweeps.config import SEED
from mixup_sweeps.report import search as search_report
from mixup_sweeps.report import winner as registered_winner
from mixup_sweeps.report.figures import (
    MEMORIZATION_PLOT,
    PLOTS,
    plot_accuracy_vs_alpha,
    plot_learning_curves,
    plot_memorization,
)
from mixup_sweeps.report.race import add_race_columns, race_answer
from mixup_sweeps.report.store import RunSet, metric_histories
from mixup_sweeps.report.summary import (
    SEEDS_FOR,
    TABLE_KEYS,
    best_observed_baseline,
    group_keys,
    matches,
    summarize,
    tables,
)
from mixup_sweeps.store import tags
from mixup_sweeps.store.tracking import UI_URL, ui_runs_link
from mixup_sweeps.sweeps.baseline import DEFAULT_BASELINE, Baseline, missing
from mixup_sweeps.train.probes import BEST_EPOCH, EPOCH_TEST_ACCURACY, MEMORIZED, TEST_ACCURACY_BEST

NO_INTERVAL = "1 seed: no interval"
PROBE_CURVES = (EPOCH_TEST_ACCURACY, MEMORIZED)  # the memorization figure's rows
RUN_METRICS = ("test_accuracy", "test_loss", "test_ece", "test_nll", "val_accuracy", "train_images_per_second")
_TEMPLATES = jinja2.Environment(
    loader=jinja2.PackageLoader("mixup_sweeps.report", "templates"),
    autoescape=True,  # every value is text: a label or a run name cannot inject markup
    keep_trailing_newline=True,
)


def _fmt(value: Any, digits: int = 4) -> str:
    if missing(value):
        return "n/a"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def display_table(summary: pd.DataFrame) -> pd.DataFrame:
    """The summary as people read it: mean ± std, [CI], delta vs baseline and whether its CI excludes 0."""
    out = pd.DataFrame({"group": summary["label"], "n": summary["n"]})
    one = summary["n"] < 2

    def spread(metric: str) -> list[str]:
        return [
            _fmt(m) if single or missing(m) else f"{_fmt(m)} ± {_fmt(s)}"
            for m, s, single in zip(summary[f"{metric}_mean"], summary[f"{metric}_std"], one)
        ]

    out["test acc"] = spread("test_accuracy")
    out["95% CI"] = [
        NO_INTERVAL if single else ("n/a" if missing(lo) else f"[{lo:.4f}, {hi:.4f}]")
        for lo, hi, single in zip(summary["test_accuracy_ci_low"], summary["test_accuracy_ci_high"], one)
    ]
    out["test ECE"] = spread("test_ece")
    out["test NLL"] = [_fmt(v) for v in summary["test_nll_mean"]]
    out["best val acc (epoch)"] = [
        f"{_fmt(v)} ({e})" for v, e in zip(summary["best_val_accuracy"], summary["best_val_epoch"])
    ]
    out["s/epoch"] = [_fmt(v, 2) for v in summary["mean_epoch_seconds"]]
    out["Δ acc vs baseline (pairs)"] = [
        "" if missing(d) else f"{d:+.4f} ({n})" for d, n in zip(summary["delta_vs_baseline"], summary["delta_pairs"])
    ]
    out["Δ 95% CI"] = [
        "" if missing(d) else (NO_INTERVAL if n < 2 else f"[{lo:+.4f}, {hi:+.4f}]")
        for d, lo, hi, n in zip(
            summary["delta_vs_baseline"], summary["delta_ci_low"], summary["delta_ci_high"], summary["delta_pairs"]
        )
    ]
    out["CI excludes 0"] = ["" if s is None else ("yes" if s else "no") for s in summary["significant"]]
    out["after Holm"] = ["" if s is None else ("yes" if s else "no") for s in summary["significant_holm"]]
    out["Δ ECE [95% CI]"] = _deltas(summary, "ece_delta")
    if summary[f"{TEST_ACCURACY_BEST}_mean"].notna().any():  # runs that evaluated the test set every epoch
        out["test acc at best val epoch"] = [
            f"{acc} (epoch {_fmt(e, 1)})" for acc, e in zip(spread(TEST_ACCURACY_BEST), summary[f"{BEST_EPOCH}_mean"])
        ]
        out["Δ at best [95% CI]"] = _deltas(summary, "best_delta")
    if summary[f"{MEMORIZED}_mean"].notna().any():
        out["memorized (last epoch)"] = spread(MEMORIZED)
    out["seeds for ±0.005 / ±0.01"] = [
        "" if missing(a) else f"{a:.0f} / {b:.0f}"
        for a, b in zip(summary[f"seeds_for_{SEEDS_FOR[0]}"], summary[f"seeds_for_{SEEDS_FOR[1]}"])
    ]
    return out


def _deltas(summary: pd.DataFrame, prefix: str) -> list[str]:
    """A paired Δ column (`<prefix>_vs_baseline`, `_ci_low`, `_ci_high`) as "+0.0123 [+0.0045, +0.0201]"."""
    columns = zip(*(summary[f"{prefix}_{column}"] for column in ("vs_baseline", "ci_low", "ci_high")))
    return [
        "" if missing(d) else f"{d:+.4f}" + ("" if missing(lo) else f" [{lo:+.4f}, {hi:+.4f}]") for d, lo, hi in columns
    ]


def verdicts(summary: pd.DataFrame, baseline: Baseline) -> list[str]:
    """The answer, one line per compared group: better / worse / no detectable difference (Δ, interval, seeds).

    The word is the decision after Holm's correction over the group's table (`significant_holm`); the interval
    shown is the group's own. Where the correction turns a difference its interval shows into no detectable
    one, the line says so."""
    against = baseline.name
    lines = []
    for _, row in summary.iterrows():
        d, n = row["delta_vs_baseline"], int(row["delta_pairs"])
        if missing(d):
            continue
        if n < 2:
            lines.append(f"{row['label']}: {NO_INTERVAL} vs {against} (Δ test accuracy {d:+.4f}, 1 seed)")
            continue
        lo, hi = row["delta_ci_low"], row["delta_ci_high"]
        detected = row["significant_holm"] if row["significant_holm"] is not None else bool(lo > 0 or hi < 0)
        word = ("better than" if d > 0 else "worse than") if detected else "no detectable difference vs"
        note = ""
        if not detected and (lo > 0 or hi < 0):
            note = f"; not after Holm's correction for {int(row['comparisons'])} comparisons (p = {row['p_holm']:.3f})"
        best = ""
        if not missing(row["best_delta_ci_low"]):
            best = (f"; at the best-validation epoch Δ {row['best_delta_vs_baseline']:+.4f} "
                    f"[{row['best_delta_ci_low']:+.4f}, {row['best_delta_ci_high']:+.4f}]")  # fmt: skip
        lines.append(f"{row['label']}: {word} {against} (Δ test accuracy {d:+.4f}, 95% CI [{lo:+.4f}, {hi:+.4f}], "
                     f"{n} seeds{note}{best})")  # fmt: skip
    return lines


def no_baseline_lines(summary: pd.DataFrame, asked: Baseline, best: Baseline | None) -> list[str]:
    """What the answer compares with when the sweep has no `asked` group: the best observed group, and why that
    is optimistic, and what would answer the questions it cannot."""
    if best is None:
        return []
    return [
        f"no {asked.override} in these runs: each group against the best observed one, {best.override}, paired by "
        f"seed, Holm over the {max(0, len(summary) - 1)} comparisons; optimistic (the best of {len(summary)} "
        "groups on these seeds is partly luck: the winner's curse). For a guarantee, race them: add "
        f"hydra.sweeper.race.epsilon=0.002; for 'does it help at all?', add {asked.override} to the sweep"
    ]


def seed_lines(summary: pd.DataFrame, run_set: RunSet) -> list[str]:
    """With one seed per group: say so, and the command that would answer (the same sweep on three seeds)."""
    if len(summary) < 2 or (summary["n"] > 1).any():
        return []
    typed = [o for o in (run_set.overrides or "").split() if not o.startswith(f"{SEED}=")]
    command = " ".join(["python -m mixup_sweeps.run -m", *typed, f"{SEED}=0,1,2"])
    return [f"one seed per group: no interval and no paired test; the same sweep on three seeds answers: {command}"]


def correction_line(summary: pd.DataFrame) -> str:
    """The one line that says which correction the verdicts carry, over how many comparisons."""
    counts = sorted({int(c) for c in summary["comparisons"] if c > 1})
    if not counts:
        if not (summary["comparisons"] > 0).any():
            return "Verdicts: no paired test (a comparison needs 2 seeds), so no correction for multiple comparisons."
        return "Verdicts: one comparison per table, no correction for multiple comparisons needed."
    many = " and ".join(str(c) for c in counts)
    return (
        f"Verdicts: Holm's step-down correction over the {many} paired comparisons of each table (family-wise "
        "error ≤ 5 %: all verdicts of a table hold together); intervals and 'CI excludes 0' are each "
        "comparison's own, 'after Holm' the corrected decision, p-values in summary.csv (p_value, p_holm)."
    )


def best_epoch_line(runs: pd.DataFrame) -> str | None:
    """How the best epoch was chosen, and whether the labels it was chosen by carry the training noise."""
    if TEST_ACCURACY_BEST not in runs or not runs[TEST_ACCURACY_BEST].notna().any():
        return None
    measured = runs[runs[TEST_ACCURACY_BEST].notna()]
    noisy = measured.get("dataset.noisy_validation", pd.Series(False, index=measured.index)).astype(str) == "True"
    noise = measured.get("dataset.label_noise", pd.Series(0.0, index=measured.index)).astype(float) > 0
    if not (noisy & noise).any():
        labels = "whose labels are clean (no practitioner with noisy labels has such a set: an optimistic choice)"
    elif (noisy | ~noise).all():
        labels = "whose labels carry the training noise (dataset.noisy_validation: as a practitioner would choose)"
    else:
        labels = "clean for some runs, noisy for others (dataset.noisy_validation)"
    return (
        "Best epoch: the epoch with the highest val_accuracy (the first of ties) on the validation images, "
        f"{labels}; the test set was evaluated after every epoch (trainer.test_every_epoch), so 'at best' is the "
        "test accuracy of that epoch's weights, its Δ intervals each comparison's own (not Holm-corrected); "
        "'memorized' is the share of probed corrupted training examples predicted as their corrupted label."
    )


def _run_links(ui_url: str, experiment_id: str, runs: pd.DataFrame) -> dict[str, Any]:
    """A group's runs in the MLflow UI: the compare page of all of them, and each run by its seed."""
    base = ui_url.rstrip("/")
    if SEED in runs:
        runs = runs.sort_values(SEED)
    ids = list(runs["run_id"])
    compare = f"{base}/#/compare-runs?runs={json.dumps(ids)}&experiments={json.dumps([experiment_id])}"
    texts = [f"seed {s}" for s in runs[SEED]] if SEED in runs else ["run"] * len(ids)
    links = [{"href": f"{base}/#/experiments/{experiment_id}/runs/{r}", "text": t} for r, t in zip(ids, texts)]
    return {"compare": compare, "runs": links}


def write_report(
    run_set: RunSet,
    tracking_uri: str,
    experiment: str,
    out: Path,
    baseline: Baseline = DEFAULT_BASELINE,
    ui_url: str = UI_URL,
    publish: bool = False,
) -> dict[str, Path]:
    """Statistics, tables, figures and documents of `run_set`, written under `out`; returns the files by name.

    With `publish` (the CLI), a sweep's parent run gets the answer where people look in the MLflow UI: per
    group its mean test accuracy and interval and its paired Δ with bounds as metrics, the answer as a tag,
    the files as artifacts under `report/`."""
    baseline = Baseline(*baseline)
    runs = run_set.runs
    keys = group_keys(runs, run_set.params)
    asked, best = baseline, best_observed_baseline(runs, keys, baseline)
    baseline = best or baseline
    curves = metric_histories(tracking_uri, list(runs["run_id"]), "val_accuracy")
    seconds = metric_histories(tracking_uri, list(runs["run_id"]), "epoch_seconds")
    summary = summarize(runs, keys, curves, seconds, baseline, run_set.until)
    if run_set.race:
        summary = add_race_columns(summary, run_set.race, runs)
    out.mkdir(parents=True, exist_ok=True)
    files = {name: out / name for name in ("summary.csv", "runs.csv", "report.md", "report.html", *PLOTS)}
    summary.to_csv(files["summary.csv"], index=False)
    seed_column = [SEED] if SEED in runs else []
    table = runs[["run_id", "run_name", *keys, *seed_column, *(c for c in RUN_METRICS if c in runs)]].copy()
    table["link"] = [f"#/experiments/{run_set.experiment_id}/runs/{r}" for r in runs["run_id"]]
    table.sort_values([*keys, *seed_column]).to_csv(files["runs.csv"], index=False)
    labelled = runs.merge(summary[[*keys, "label"]], on=keys, how="left") if keys else runs.assign(label="all runs")
    plot_accuracy_vs_alpha(summary, keys, files["accuracy_vs_alpha.png"], baseline)
    plot_learning_curves(labelled, curves, files["learning_curves.png"])
    plots = list(PLOTS)
    histories = {metric: metric_histories(tracking_uri, list(runs["run_id"]), metric) for metric in PROBE_CURVES}
    if plot_memorization(labelled, histories, out / MEMORIZATION_PLOT, baseline) is not None:
        files[MEMORIZATION_PLOT] = out / MEMORIZATION_PLOT
        plots.append(MEMORIZATION_PLOT)

    answer = [*no_baseline_lines(summary, asked, best), *verdicts(summary, baseline), *seed_lines(summary, run_set)]
    if run_set.search:  # the search's answer first: the confirmed comparison beside the search's own best score
        answer = [*run_set.search.get("lines", []), *answer]
        plots += search_report.write_figures(run_set.search, out)
        files.update({name: out / name for name in plots})
    if run_set.race:
        answer = [f"race: {line.strip()}" for line in race_answer(summary, run_set.race, runs)] + answer
    link = ui_runs_link(run_set.experiment_id, ui_url)
    left = ", ".join(f"{n} {s}" for s, n in sorted(run_set.left_out.items())) or "none"
    until = run_set.until
    stein = f" (Stein's two-stage interval for Δ: first {until['min_seeds']} seeds' spread)" if until else ""
    details = [
        f"Experiment {experiment}, sweep {run_set.label}, store {tracking_uri}.",
        f"{len(runs)} FINISHED runs; left out (not FINISHED): {left}. "
        f"Grouped by: {', '.join(keys) or 'nothing varies'}; replicates: {SEED}.",
        "CI: Student t, 95 %" + stein
        + f"; Δ: paired over the seeds present in both, against the baseline {baseline.key}={baseline.value}. "
        "Seeds for ±h: n = ceil((t(pairs − 1) · s / h)²) from the observed paired spread s.",
        correction_line(summary),
        *([line] if (line := best_epoch_line(runs)) else []),
    ]  # fmt: skip
    md = [f"# Report: {run_set.label}", "", "## Answer", "", *(f"- {line}" for line in answer or ["no comparison"])]
    md += ["", *details, f"Runs in the MLflow UI: {link}", ""]
    if run_set.search:
        md += search_report.section(run_set.search)
    html_tables = []
    for table_key, rows in tables(summary):
        title = " / ".join(f"{k}={v}" for k, v in zip(TABLE_KEYS, table_key)) or "all runs"
        shown = display_table(rows)
        md += [f"## {title}", "", shown.to_markdown(index=False, disable_numparse=True), ""]
        html_rows = [
            {
                "cells": [str(v) for v in cells],
                **_run_links(ui_url, run_set.experiment_id, runs[matches(runs, row, keys)]),
            }
            for cells, (_, row) in zip(shown.itertuples(index=False), rows.iterrows())
        ]
        html_tables.append({"title": title, "columns": list(shown.columns), "rows": html_rows})
    images = [{"name": name, "data": base64.b64encode(files[name].read_bytes()).decode()} for name in plots]
    md += [line for name in plots for line in (f"![{name}]({name})", "")]
    files["report.md"].write_text("\n".join(md))
    page = _TEMPLATES.get_template("report.html.j2").render(
        label=run_set.label, answer=answer, details=details, ui_link=link, tables=html_tables, images=images
    )
    files["report.html"].write_text(page)
    if publish and run_set.parent_run_id:
        client = MlflowClient(tracking_uri=tracking_uri)
        opening = "\n".join(md[: md.index(f"Runs in the MLflow UI: {link}") + 1])  # the answer and how it was made
        publish_answer(client, run_set.parent_run_id, summary, answer, out, opening)
        registered_winner.register(client, run_set, summary, keys, baseline, opening)
    return files


def answer_metrics(summary: pd.DataFrame) -> dict[str, float]:
    """`acc <group>` (mean test accuracy), `acc <group> ci_low/ci_high`, `Δacc <group>` and its bounds (and
    `acc_best` / `Δacc_best` at the best-validation epoch where measured): names that sort by kind, then group,
    in the MLflow UI's columns (characters MLflow does not allow become _)."""
    metrics: dict[str, float] = {}
    columns = {"acc": ("test_accuracy_mean", "test_accuracy_ci_low", "test_accuracy_ci_high"),
               "Δacc": ("delta_vs_baseline", "delta_ci_low", "delta_ci_high"),
               "acc_best": tuple(f"{TEST_ACCURACY_BEST}_{s}" for s in ("mean", "ci_low", "ci_high")),
               "Δacc_best": ("best_delta_vs_baseline", "best_delta_ci_low", "best_delta_ci_high")}  # fmt: skip
    for _, row in summary.iterrows():
        group = re.sub(r"[^\w.\- /:]", "_", str(row["label"]))
        for kind, (mean, low, high) in columns.items():
            for name, column in ((f"{kind} {group}", mean), (f"{kind} {group} ci_low", low),
                                 (f"{kind} {group} ci_high", high)):  # fmt: skip
                if not missing(row[column]):
                    metrics[name] = float(row[column])
    return metrics


def publish_answer(
    client: MlflowClient, run_id: str, summary: pd.DataFrame, answer: list[str], out: Path, opening: str = ""
) -> None:
    """The answer on the sweep's parent run (metrics, the `answer` tag, `opening` (report.md's first lines) as
    the run's description in the UI) and the report's files as artifacts."""
    now = int(time.time() * 1000)
    metrics = [Metric(name, value, now, 0) for name, value in answer_metrics(summary).items()]
    for i in range(0, len(metrics), 1000):  # MLflow's limit of metrics per log_batch call
        client.log_batch(run_id, metrics=metrics[i : i + 1000])
    client.set_tag(run_id, tags.ANSWER, (" | ".join(answer) or "no comparison: no baseline in these runs")[:5000])
    if opening:
        client.set_tag(run_id, MLFLOW_RUN_NOTE, opening[:5000])
    client.log_artifacts(run_id, str(out), "report")
