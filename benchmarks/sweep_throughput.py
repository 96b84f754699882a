"""The default sweep's jobs job after job and filling the machine, both backends, in one run: wall time and
model-epochs per second side by side, and whether every run's result is the same.

`experiment=default_sweep` (aug=none and mixup α=0.2, seeds 0-2: six jobs) on --train-size images for --epochs
epochs, each arm in a fresh output directory:
- job after job: `hydra/launcher=basic` (one job on every core, as every multirun ran before `local`);
- filling the machine: `hydra/launcher=local` (the default now: cores // threads jobs at once, `threads` each).
The answer check: each job's test accuracy in the machine-filling arm against the same job's job-after-job
result (threads change the order of float sums, not the computation).
The steady columns: the median seconds of an epoch after the first (no start-up, tracing or test pass), and
the model-epochs per second while every job of the arm trains (jobs at once / that median), against job after
job's. The last line: one job alone pinned to one core (`trainer.threads=1`), why the local launcher does not
pin its workers (a one-thread TensorFlow job keeps more than one thread busy; on one core they take turns).

  .venv/bin/python benchmarks/sweep_throughput.py --train-size 16384 --epochs 4
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from mlflow.tracking import MlflowClient

ROOT = Path(__file__).resolve().parents[1]
ARMS = {  # name -> (overrides, jobs at once: None for one per core)
    "job after job (basic)": (["hydra/launcher=basic"], 1),
    "filling the machine (local)": (["hydra/launcher=local"], None),
}


def harness(output_dir: Path, backend: str, train_size: int, epochs: int, *args: str, **popen: Any) -> float:
    """`python -m mixup_sweeps.run ARGS` on this backend and size into `output_dir`: its wall seconds."""
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "mixup_sweeps.run", *args, f"backend={backend}", f"dataset.train_size={train_size}",
         f"trainer.epochs={epochs}", f"paths.output_dir={output_dir}"],
        cwd=ROOT, check=True, capture_output=True, env={k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"},
        **popen,
    )  # fmt: skip
    return time.perf_counter() - started


def one_core_job(output_dir: Path, backend: str, train_size: int, epochs: int) -> None:
    """One mixup job alone, pinned to the first core this process may use, with one-thread pools."""
    core = min(os.sched_getaffinity(0))

    def pin() -> None:
        os.sched_setaffinity(0, {core})

    harness(output_dir, backend, train_size, epochs, "aug=mixup", "trainer.threads=1", preexec_fn=pin)


def finished_runs(output_dir: Path) -> tuple[MlflowClient, list]:
    client = MlflowClient(tracking_uri=f"sqlite:///{output_dir}/mlflow.db")
    experiment = client.get_experiment_by_name("mixup-fashion-mnist")
    return client, client.search_runs([experiment.experiment_id], filter_string="attributes.status = 'FINISHED'")


def steady_epoch_seconds(client: MlflowClient, runs: list) -> float:
    """The median seconds of the epochs after the first, over the runs."""
    seconds = [m.value for r in runs for m in client.get_metric_history(r.info.run_id, "epoch_seconds") if m.step > 1]
    return statistics.median(seconds)


def test_accuracies(runs: list) -> dict[str, float]:
    return {r.info.run_name: r.data.metrics["test_accuracy"] for r in runs if "test_accuracy" in r.data.metrics}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train-size", type=int, default=16384)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--backends", default="tensorflow,jax")
    args = parser.parse_args()
    jobs, cores = 6, len(os.sched_getaffinity(0))
    print(f"default sweep: {jobs} jobs x {args.epochs} epochs on {args.train_size} images, {cores} cores")
    header = f"{'backend':<11} {'arm':<29} {'wall s':>7} {'model-epochs/s':>15} {'vs job after job':>17}"
    print(f"{header} {'max |Δ acc|':>12} {'steady s/epoch':>15} {'steady vs job after job':>24}")
    for backend in args.backends.split(","):
        reference: tuple[float, dict[str, float]] | None = None
        steady_reference = 0.0
        for name, (overrides, at_once) in ARMS.items():
            with tempfile.TemporaryDirectory() as tmp:
                wall = harness(Path(tmp), backend, args.train_size, args.epochs, "-m", "experiment=default_sweep",
                               *overrides)  # fmt: skip
                client, runs = finished_runs(Path(tmp))
                accuracies, steady = test_accuracies(runs), steady_epoch_seconds(client, runs)
            assert len(accuracies) == jobs, accuracies
            rate = jobs * args.epochs / wall
            if reference is None:
                reference, steady_reference = (rate, accuracies), steady
                ratio, delta = "1.00x", "-"
            else:
                ratio = f"{rate / reference[0]:.2f}x"
                delta = f"{max(abs(accuracies[k] - reference[1][k]) for k in accuracies):.4f}"
            steady_ratio = f"{min(jobs, at_once or cores) * steady_reference / steady:.2f}x"
            row = f"{backend:<11} {name:<29} {wall:>7.1f} {rate:>15.3f} {ratio:>17} {delta:>12} {steady:>15.2f}"
            print(f"{row} {steady_ratio:>24}", flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            one_core_job(Path(tmp), backend, args.train_size, args.epochs)
            one_core = steady_epoch_seconds(*finished_runs(Path(tmp)))
        print(f"{backend:<11} one job alone pinned to one core: {one_core:.2f} s/epoch", flush=True)


if __name__ == "__main__":
    main()
