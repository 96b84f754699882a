"""Start-up, per-run overhead, and the wall time of one 4-job sweep under each launcher, in one run.

1. start-up: `python -m mixup_sweeps.run --help` and `--cfg job` (target <= 2 s; TensorFlow is imported only
   when a job trains);
2. per-run overhead: one real single run on the real data; the process's wall time minus the time its
   epochs took (`epoch_seconds`), i.e. interpreter + imports + compose + data load + MLflow + artifacts +
   test evaluation (target <= 5 s);
3. a 4-job sweep (aug.alpha=0.1,0.2,0.4,1.0 on --train-size images, --epochs epochs) with the basic launcher
   (one job at a time), joblib with 2 jobs (TensorFlow's default threads, and one intra-op thread per job),
   and Hydra's Ray launcher with a local Ray instance of 1 and of 2 CPUs (one job per CPU).

  .venv/bin/python benchmarks/sweep_overhead.py --train-size 16000 --epochs 2
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

ROOT = Path(__file__).resolve().parents[1]
SWEEP = ["aug.alpha=0.1,0.2,0.4,1.0"]
LAUNCHERS = {  # name -> (extra overrides, extra environment)
    "basic (1 job at a time)": ([], {}),
    "joblib n_jobs=2": (["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"], {}),
    "joblib n_jobs=2, 1 TF thread each": (
        ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"],
        {"TF_NUM_INTRAOP_THREADS": "1"},
    ),
    "ray, 1 worker (num_cpus=1)": (["hydra/launcher=ray_cluster", "+hydra.launcher.ray.init.num_cpus=1"], {}),
    "ray, 2 workers (num_cpus=2)": (["hydra/launcher=ray_cluster", "+hydra.launcher.ray.init.num_cpus=2"], {}),
}


def cli(*args: str, env: dict | None = None) -> float:
    base_env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}  # Ray: a local instance
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "mixup_sweeps.run", *args], cwd=ROOT, check=True, capture_output=True,
                   env={**base_env, **(env or {})})  # fmt: skip
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train-size", type=int, default=16000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--launchers", nargs="+", default=list(LAUNCHERS), choices=list(LAUNCHERS))
    args = parser.parse_args()
    from mlflow.tracking import MlflowClient

    from mixup_sweeps.job.compose import load_config

    print(f"{os.cpu_count()} CPUs")
    for flag in ("--help", "--cfg job"):
        times = [cli(*flag.split()) for _ in range(3)]
        print(
            f"start-up `run {flag}`: min {min(times):.2f} s, median {statistics.median(times):.2f} s  (target <= 2 s)"
        )

    with tempfile.TemporaryDirectory() as tmp:
        quick = [f"dataset.train_size={args.train_size}", f"trainer.epochs={args.epochs}"]
        wall = cli(*quick, f"paths.output_dir={tmp}/single")
        client = MlflowClient(f"sqlite:///{tmp}/single/mlflow.db")
        experiment = load_config(f"{tmp}/single").tracking.experiment
        (run,) = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
        epochs = sum(m.value for m in client.get_metric_history(run.info.run_id, "epoch_seconds"))
        in_job = (run.info.end_time - run.info.start_time) / 1000 - epochs
        print(f"single run ({args.train_size} images, {args.epochs} epochs): process {wall:.1f} s, "
              f"epochs {epochs:.1f} s; overhead {wall - epochs:.1f} s in all, "
              f"of which {in_job:.1f} s inside the MLflow run (initial weights, preview, artifacts, "
              "test evaluation)  (target <= 5 s)")  # fmt: skip

        print(f"\n4-job sweep ({args.train_size} images, {args.epochs} epochs each), wall seconds:")
        results = {}
        for name in args.launchers:
            overrides, env = LAUNCHERS[name]
            out = f"{tmp}/{len(results)}"
            results[name] = cli("-m", *SWEEP, *quick, *overrides, f"paths.output_dir={out}", env=env)
            base = results[args.launchers[0]]
            print(
                f"  {name:36s} {results[name]:7.1f}   {base / results[name]:5.2f}x vs {args.launchers[0]}", flush=True
            )


if __name__ == "__main__":
    main()
