"""Job after job (`hydra/launcher=basic`) against the default launcher (`hydra/launcher=local`) on a small sweep
and on `make run`'s sweep, in one run: wall time side by side, and whether every run's result is the same.

The sweeps (TensorFlow, `experiment=default_sweep`: aug=none and mixup α=0.2, per seed):
- tiny: seeds 0-1 (4 jobs) on 8,192 images for 3 epochs, what a user trying things out runs;
- full: `make run`'s sweep, seeds 0-2 (6 jobs) on all 58,000 images for 10 epochs.
Each arm runs the command in a fresh output directory; the arms alternate (basic, local, basic, ...) for
--repeats rounds, so the machine's drift hits both. `vs basic` is basic's wall time over local's in the same
round (above 1: the default launcher wins); `max |Δ acc|` the largest difference of a job's test accuracy from
basic's (threads reorder float sums; see docs/benchmarks.md). The CPU line names the flags that matter.

  .venv/bin/python benchmarks/sweep_throughput.py                       # both sweeps, tiny three times
  .venv/bin/python benchmarks/sweep_throughput.py --sweeps tiny --repeats 5
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
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]
ARMS = {"basic": ["hydra/launcher=basic"], "local": ["hydra/launcher=local"]}  # job after job; the default
SWEEPS = {  # name -> (overrides, train size, epochs, jobs)
    "tiny": (["seed=0,1"], 8192, 3, 4),
    "full": ([], 58000, 10, 6),
}


def harness(
    output_dir: Path, backend: str, train_size: int, epochs: int, *args: str, code: Path = ROOT, **popen: Any
) -> float:
    """`python -m mixup_sweeps.run ARGS` of the code in `code` (this tree, or a worktree of an earlier commit) on
    this backend and size into `output_dir`: its wall seconds."""
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "mixup_sweeps.run", *args, f"backend={backend}", f"dataset.train_size={train_size}",
         f"trainer.epochs={epochs}", f"paths.output_dir={output_dir}"],
        cwd=code, check=True, capture_output=True, env={k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"},
        **popen,
    )  # fmt: skip
    return time.perf_counter() - started


def finished_runs(output_dir: Path) -> tuple[MlflowClient, list]:
    client = MlflowClient(tracking_uri=f"sqlite:///{output_dir}/mlflow.db")
    experiment = client.get_experiment_by_name("mixup-fashion-mnist")
    return client, client.search_runs([experiment.experiment_id], filter_string="attributes.status = 'FINISHED'")


def test_accuracies(runs: list) -> dict[str, float]:
    return {r.info.run_name: r.data.metrics["test_accuracy"] for r in runs if "test_accuracy" in r.data.metrics}


def main() -> None:
    from train_throughput import cpu_flags

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sweeps", nargs="+", default=list(SWEEPS), choices=list(SWEEPS))
    parser.add_argument("--repeats", type=int, nargs="+", default=[3, 1], help="rounds per sweep, in --sweeps order")
    parser.add_argument("--backend", default="tensorflow", choices=["tensorflow", "jax"])
    args = parser.parse_args()
    print(f"{len(os.sched_getaffinity(0))} cores; {cpu_flags()}; backend {args.backend}")
    print(f"{'sweep':<6} {'round':>5} {'basic s':>8} {'local s':>8} {'vs basic':>9} {'max |Δ acc|':>12}")
    for sweep, repeats in zip(args.sweeps, args.repeats + [args.repeats[-1]] * len(args.sweeps)):
        overrides, train_size, epochs, jobs = SWEEPS[sweep]
        ratios = []
        for round_ in range(1, repeats + 1):
            walls, accuracies = {}, {}
            for arm, launcher in ARMS.items():
                with tempfile.TemporaryDirectory() as tmp:
                    walls[arm] = harness(Path(tmp), args.backend, train_size, epochs, "-m", "experiment=default_sweep",
                                         *overrides, *launcher)  # fmt: skip
                    accuracies[arm] = test_accuracies(finished_runs(Path(tmp))[1])
                assert len(accuracies[arm]) == jobs, accuracies[arm]
            ratios.append(walls["basic"] / walls["local"])
            delta = max(abs(accuracies["local"][k] - accuracies["basic"][k]) for k in accuracies["basic"])
            print(f"{sweep:<6} {round_:>5} {walls['basic']:>8.1f} {walls['local']:>8.1f} {ratios[-1]:>8.2f}x "
                  f"{delta:>12.4f}", flush=True)  # fmt: skip
        print(f"{sweep:<6} median of {repeats}: {statistics.median(ratios):.2f}x "
              f"({jobs} jobs x {epochs} epochs on {train_size} images)", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
