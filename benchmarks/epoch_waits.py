"""Epochs that waited: `make run`'s sweep with the default launcher (two one-thread jobs side by side on two
cores), this tree's code against an earlier commit's (a git worktree), alternated round by round, in one run.

Issue 40 found a TensorFlow job beside another waiting, idle, ~5 s at the start of some epochs while the iterator
Keras dropped at the epoch before kept its threads (tf.data's autotuning; `training_stream.without_autotuning`).
For each sweep: its wall seconds, and its jobs' epochs after the first (the runs' `epoch_seconds`): median, mean,
how many took at least 1.5x the sweep's fastest epoch (an epoch that waited) and the longest; then whether every
job's test accuracy was the same in all sweeps (the change must not change a result).

  .venv/bin/python benchmarks/epoch_waits.py --before 68878a0 --rounds 3
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from sweep_throughput import SWEEPS, finished_runs, harness, test_accuracies  # this script's folder is on sys.path
from train_throughput import cpu_flags
from trees import ROOT, worktree


def epochs_after_the_first(output_dir: Path) -> tuple[list[float], dict[str, float]]:
    client, runs = finished_runs(output_dir)
    seconds: list[float] = []
    for run in runs:
        history = sorted(client.get_metric_history(run.info.run_id, "epoch_seconds"), key=lambda m: m.step)
        seconds += [m.value for m in history[1:]]
    return seconds, test_accuracies(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", required=True, help="the earlier commit (a git worktree of it)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sweep", default="full", choices=list(SWEEPS))
    args = parser.parse_args()
    overrides, train_size, epochs, jobs = SWEEPS[args.sweep]
    print(f"2 jobs at a time (hydra/launcher=local); {cpu_flags()}; {jobs} jobs x {epochs} epochs on {train_size} "
          f"images; 'waited': epochs >= 1.5x the sweep's fastest")  # fmt: skip
    print(f"{'round':>5} {'code':<22} {'wall s':>7} {'median s':>9} {'mean s':>7} {'waited':>10} {'longest s':>10}")
    accuracies: list[dict[str, float]] = []
    with worktree(args.before) as before:
        arms = [(f"before ({args.before})", before), ("this tree", ROOT)]
        for round_ in range(1, args.rounds + 1):
            for name, code in arms if round_ % 2 else arms[::-1]:
                with tempfile.TemporaryDirectory() as tmp:
                    wall = harness(Path(tmp), "tensorflow", train_size, epochs, "-m", "experiment=default_sweep",
                                   *overrides, "hydra/launcher=local", code=code)  # fmt: skip
                    seconds, accuracy = epochs_after_the_first(Path(tmp))
                assert len(accuracy) == jobs, accuracy
                accuracies.append(accuracy)
                waited = sum(s >= 1.5 * min(seconds) for s in seconds)
                print(f"{round_:>5} {name:<22} {wall:>7.1f} {statistics.median(seconds):>9.2f} "
                      f"{statistics.mean(seconds):>7.2f} {waited:>4} of {len(seconds):<3} {max(seconds):>10.1f}",
                      flush=True)  # fmt: skip
    same = all(a == accuracies[0] for a in accuracies)
    print(f"every job's test accuracy the same in all {len(accuracies)} sweeps: {'yes' if same else 'NO'}")


if __name__ == "__main__":
    main()
