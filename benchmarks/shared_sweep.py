"""One grid split across two processes that run the same command (issue 41) against the same grid under the
default launcher, in one run: wall time side by side, how many jobs each process trained, and whether every job
has exactly one run.

The point is machines, not cores: two processes of one thread each on this 2-core machine stand in for two
machines, and should take about the default launcher's time (it fills both cores with one command). Each arm
gets a fresh output directory (its own SQLite store).
- `default launcher`: `python -m mixup_sweeps.run -m GRID` (`hydra/launcher=local`: 2 jobs at once here);
- `same command twice`: `... -m GRID hydra/launcher=basic trainer.threads=1`, started twice, 1 s apart.

  .venv/bin/python benchmarks/shared_sweep.py --train-size 8192 --epochs 3
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from mlflow.tracking import MlflowClient

ROOT = Path(__file__).resolve().parents[1]
GRID = ["aug.alpha=0.1,0.2,0.4,1.0", "seed=0,1"]  # 8 jobs


def start(output_dir: Path, train_size: int, epochs: int, *extra: str) -> subprocess.Popen:
    args = [
        "-m",
        *GRID,
        f"dataset.train_size={train_size}",
        f"trainer.epochs={epochs}",
        f"paths.output_dir={output_dir}",
    ]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    return subprocess.Popen([sys.executable, "-m", "mixup_sweeps.run", *args, *extra], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip


def finish(*processes: subprocess.Popen) -> list[str]:
    outputs = [p.communicate()[0] for p in processes]
    for p, output in zip(processes, outputs):
        if p.returncode != 0:
            sys.exit(f"a sweep failed:\n{output[-3000:]}")
    return outputs


def runs_per_job(output_dir: Path) -> Counter:
    client = MlflowClient(tracking_uri=f"sqlite:///{output_dir}/mlflow.db")
    (experiment,) = [e for e in client.search_experiments() if e.name != "Default"]
    runs = client.search_runs([experiment.experiment_id])
    return Counter(r.data.tags["config_fingerprint"] for r in runs if r.data.tags.get("sweep_parent") != "true")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train-size", type=int, default=8192)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "default"
        started = time.perf_counter()
        finish(start(out, args.train_size, args.epochs))
        rows.append(("default launcher (local)", time.perf_counter() - started, "8", runs_per_job(out)))
        out = Path(folder) / "shared"
        started = time.perf_counter()
        first = start(out, args.train_size, args.epochs, "hydra/launcher=basic", "trainer.threads=1")
        time.sleep(1)
        second = start(out, args.train_size, args.epochs, "hydra/launcher=basic", "trainer.threads=1")
        outputs = finish(first, second)
        trained = " + ".join(str(len(re.findall(r"\] - start ", output))) for output in outputs)
        rows.append(("same command twice (basic, 1 thread)", time.perf_counter() - started, trained, runs_per_job(out)))
    print(f"grid: {' '.join(GRID)} (8 jobs) x {args.epochs} epochs on {args.train_size} images, {os.cpu_count()} cores")
    print(f"{'arm':38s} {'wall s':>7s} {'vs default':>10s}  {'jobs trained':>12s}  runs per job")
    for name, wall, trained, counts in rows:
        print(f"{name:38s} {wall:7.1f} {rows[0][1] / wall:9.2f}x  {trained:>12s}  {sorted(set(counts.values()))}")


if __name__ == "__main__":
    main()
