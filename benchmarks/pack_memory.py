"""Host memory of a 64-member pack against a single job, with this tree's code and with an earlier commit's (before
the members shared one copy of the images), in one run.

Each arm is a real sweep on the CPU with `backend=jax hydra/launcher=packed` (seeds 0..N-1 as the members, one
epoch on --train-size images), in a fresh output directory; the peak resident memory of the sweep's process tree
is sampled every 0.1 s (psutil). `--before COMMIT` runs the same sweep from a git worktree of COMMIT.

  .venv/bin/python benchmarks/pack_memory.py --members 64 --before 42555b7
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import psutil
from trees import worktree  # benchmarks/trees.py (this script's folder is on sys.path)

ROOT = Path(__file__).resolve().parents[1]


def peak_rss(command: list[str], cwd: Path) -> float:
    """The largest resident memory (MiB) the command's process tree held, sampled every 0.1 s."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    process = subprocess.Popen(command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    peak = 0
    root = psutil.Process(process.pid)
    while process.poll() is None:
        try:
            tree = [root, *root.children(recursive=True)]
            peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()))
        except psutil.Error:
            pass
        time.sleep(0.1)
    if process.returncode != 0:
        raise RuntimeError(process.stderr.read().decode()[-3000:] if process.stderr else "failed")
    return peak / 2**20


def sweep(code: Path, members: int, train_size: int) -> list[str]:
    seeds = ",".join(str(s) for s in range(members))
    return [sys.executable, "-m", "mixup_sweeps.run", "-m", "backend=jax", "hydra/launcher=packed",
            f"hydra.launcher.pack_size={members}", f"seed={seeds}", f"dataset.train_size={train_size}",
            "trainer.epochs=1"]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, default=64)
    parser.add_argument("--train-size", type=int, default=2048)
    parser.add_argument("--before", default=None, help="an earlier commit to compare with (a git worktree of it)")
    args = parser.parse_args()
    with ExitStack() as stack:
        trees = {"this tree": ROOT}
        if args.before:
            trees = {f"before ({args.before})": stack.enter_context(worktree(args.before)), **trees}
        print(f"peak host memory (MiB) of a sweep's process tree, JAX on the CPU, {args.train_size} images, 1 epoch")
        print(f"{'code':<24} {'1 job':>8} {f'{args.members}-member pack':>18} {'pack / job':>11}")
        for name, code in trees.items():
            with tempfile.TemporaryDirectory() as tmp:
                one = peak_rss([*sweep(code, 1, args.train_size), f"paths.output_dir={tmp}/one"], code)
                pack = peak_rss([*sweep(code, args.members, args.train_size), f"paths.output_dir={tmp}/pack"], code)
            print(f"{name:<24} {one:>8.0f} {pack:>18.0f} {pack / one:>10.2f}x", flush=True)


if __name__ == "__main__":
    main()
