"""How long the report takes over a big sweep: a store of N synthetic runs, logged with the real MLflow client.

The runs look like real ones (the harness's 25 params, 10 epochs of 5 per-epoch metrics, test metrics, tags,
all children of one sweep parent); building the store takes minutes and is kept for the next call. Then the
report CLI runs on it as a user would, and the time is printed next to the 10 s target.

    .venv/bin/python benchmarks/report_speed.py --runs 10000 --store /tmp/report-bench
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient

from mixup_sweeps.config import flatten
from mixup_sweeps.job.compose import load_config

TARGET_SECONDS = 10.0
EXPERIMENT = load_config("outputs").tracking.experiment
VARIANTS = [("none", None), ("mixup", 0.1), ("mixup", 0.2), ("mixup", 0.4), ("mixup", 1.0)]


def build_store(store: Path, runs: int) -> str:
    uri = f"sqlite:///{store}/mlflow.db"
    client = MlflowClient(uri)
    if client.get_experiment_by_name(EXPERIMENT) is not None:
        return uri
    store.mkdir(parents=True, exist_ok=True)
    exp = client.create_experiment(EXPERIMENT, artifact_location=(store / "mlartifacts").as_uri())
    tags = {"sweep_parent": "true", "sweep_id": "bench", "sweep_dir": str(store)}
    parent = client.create_run(exp, run_name="sweep bench", tags=tags).info.run_id
    variant_overrides = [[f"aug={name}"] + ([f"aug.alpha={alpha}"] if alpha else []) for name, alpha in VARIANTS]
    templates = [flatten(load_config(store, overrides)) for overrides in variant_overrides]  # real params
    rng = np.random.default_rng(0)
    started = time.perf_counter()
    for i in range(runs):
        alpha = VARIANTS[i % len(VARIANTS)][1]
        seed = i // len(VARIANTS)
        overrides = [*variant_overrides[i % len(VARIANTS)], f"seed={seed}"]
        params = {**templates[i % len(VARIANTS)], "seed": seed}
        run_id = client.create_run(exp, run_name=",".join(overrides), tags={"mlflow.parentRunId": parent}).info.run_id
        accuracy = 0.85 + (0.005 if alpha else 0.0) + rng.normal(0, 0.004)
        metrics = [Metric("test_accuracy", accuracy, 0, 10), Metric("test_loss", 0.4, 0, 10),
                   Metric("train_images_per_second", 11000.0, 0, 10)]  # fmt: skip
        for epoch in range(1, 11):
            val = accuracy - 0.1 / epoch
            metrics += [Metric("loss", 1 / epoch, 0, epoch), Metric("accuracy", val, 0, epoch),
                        Metric("val_loss", 1 / epoch, 0, epoch), Metric("val_accuracy", val, 0, epoch),
                        Metric("epoch_seconds", 5.0, 0, epoch)]  # fmt: skip
        client.log_batch(
            run_id,
            metrics=metrics,
            params=[Param(k, str(v)) for k, v in params.items()],
            tags=[RunTag("sweep_id", "bench"), RunTag("init_weights_sha256", "x" * 64)],
        )
        client.set_terminated(run_id, "FINISHED")
        if (i + 1) % 1000 == 0:
            print(f"  logged {i + 1} runs in {time.perf_counter() - started:.0f} s", flush=True)
    client.set_terminated(parent, "FINISHED")
    return uri


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--store", type=Path, default=Path("/tmp/mixup-sweeps-report-bench"))
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    store = args.store / str(args.runs)
    uri = build_store(store, args.runs)
    command = [sys.executable, "-m", "mixup_sweeps.report", "--tracking-uri", uri, "--sweep", "bench",
               "--out", str(store / "report")]  # fmt: skip
    print(f"report over {args.runs} runs: {' '.join(command[1:])}")
    times = []
    for _ in range(args.repeat):
        started = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - started)
    print(f"wall seconds (whole CLI, {args.repeat} runs): min {min(times):.2f}, max {max(times):.2f}  "
          f"| target <= {TARGET_SECONDS:.0f} s: {'met' if max(times) <= TARGET_SECONDS else 'NOT met'}")  # fmt: skip

    # Reference: reading the same runs the plain way, with mlflow.search_runs, vs the report's reader.
    import mlflow

    from mixup_sweeps.report import store

    mlflow.set_tracking_uri(uri)
    experiment_id = MlflowClient(uri).get_experiment_by_name(EXPERIMENT).experiment_id
    started = time.perf_counter()
    reference = mlflow.search_runs([experiment_id], max_results=1_000_000)
    search_seconds = time.perf_counter() - started
    started = time.perf_counter()
    ours = store.runs_frame(MlflowClient(uri), experiment_id)
    ours_seconds = time.perf_counter() - started
    print(f"reading {len(reference)} runs: mlflow.search_runs {search_seconds:.2f} s | report.store.runs_frame "
          f"{ours_seconds:.2f} s ({len(ours)} runs)")  # fmt: skip


if __name__ == "__main__":
    main()
