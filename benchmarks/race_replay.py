"""Replay a race over a finished grid, under today's rule and under the rule before issue 36, side by side.

    python benchmarks/race_replay.py --output-dir outputs --sweep SWEEP_ID [--epsilon 0.002] [--max-seeds 10]

The grid must have every arm on seeds 0..max_seeds−1 (run the exhaustive sweep first: a race's finished jobs are
skipped, the rest trained). The race is a pure function of the jobs' values (`racing.run_race`), so replaying it
over the recorded `val_accuracy` takes exactly the decisions a live race would have taken on those seeds. The
rule before: two-sided intervals at 1 − δ/(pairs · looks), no floor on the paired spread.
"""

from __future__ import annotations

import argparse

import mlflow
import numpy as np

from mixup_sweeps.config import SEED
from mixup_sweeps.sweeps import racing
from mixup_sweeps.sweeps.settings import RaceSettings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output-dir", default="outputs")
    parser.add_argument("--sweep", required=True, help="the sweep_id of the exhaustive grid")
    parser.add_argument("--experiment", default="mixup-fashion-mnist")
    parser.add_argument("--epsilon", type=float, default=0.002)
    parser.add_argument("--min-seeds", type=int, default=3)
    parser.add_argument("--max-seeds", type=int, default=10)
    parser.add_argument("--val-size", type=int, default=2000)
    args = parser.parse_args()

    mlflow.set_tracking_uri(f"sqlite:///{args.output_dir}/mlflow.db")
    runs = mlflow.search_runs(experiment_names=[args.experiment], filter_string="attributes.status = 'FINISHED'")
    reused = f"tags.reused_in_sweep.{args.sweep}"  # finished jobs of an earlier sweep (the race) this grid skipped to
    in_sweep = runs["tags.sweep_id"] == args.sweep
    if reused in runs:
        in_sweep |= runs[reused].notna()
    runs = runs[in_sweep & (runs.get("tags.sweep_parent") != "true")]
    arm_keys = ["params.aug.name", "params.aug.alpha"]
    values: dict[str, np.ndarray] = {}
    for arm, rows in runs.groupby([runs[k].fillna("-") for k in arm_keys]):
        by_seed = dict(zip(rows[f"params.{SEED}"].astype(int), rows["metrics.val_accuracy"]))
        name, alpha = arm
        values[name if alpha == "-" else f"{name} α={alpha}"] = np.array([by_seed[s] for s in range(args.max_seeds)])
    settings = RaceSettings(args.epsilon, 0.05, args.min_seeds, args.max_seeds)
    arms = sorted(values)

    def sample(plan):
        return {arm: values[arm][: plan[arm].stop] for arm in plan}

    pairs = len(arms) * (len(arms) - 1) // 2
    before = 1 - settings.delta / (pairs * settings.rounds)
    for name, result in (
        ("today (one-sided over the other arms, spread floored at 1/val_size)",
         racing.run_race(arms, settings, sample, resolution=1 / args.val_size)),
        (f"before issue 36 (two-sided over {pairs} pairs, each at {100 * before:.4f} %)",
         racing.run_race(arms, settings, sample, confidence=before)),
    ):  # fmt: skip
        print(f"## {name}")
        for line in racing.describe(result):
            print(line.split("; each one-sided bound")[0] if "before" in name else line)
        print()


if __name__ == "__main__":
    main()
