"""Where an epoch's time goes (input vs compute vs framework overhead), and which levers move it.

Part 1, the breakdown, in one process on the harness's tf.data path as it was when this profile was taken
(`benchmarks/tfdata_stream.py`; seed CNN, aug=mixup, batch 64, the full 58,000-image training set = 907
steps), each figure the median over --epochs passes:
  - fit:        model.fit on that stream (what a run did, without validation);
  - input only: iterate the same stream, no model;
  - compute:    model.fit on ONE prepared batch repeated 907 times (no input work at all);
  - forward:    model.evaluate on that repeated batch (forward pass + loss, no gradients);
  - framework:  model.fit of a trivial model (GlobalAveragePooling -> Dense) on it: Keras/TF per-step cost.
Part 2, the levers: each variant trains the same way in a fresh process (thread settings and oneDNN must be
set before TensorFlow starts), variants alternated over --rounds; it prints s/epoch and the ratio to the
harness's default.

    .venv/bin/python benchmarks/profile_epoch.py --epochs 3 --rounds 2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

VARIANTS: dict[str, dict] = {  # name -> {"env": {...}, "fit": {...}, "threads": (intra, inter) or None}
    "default": {},
    "oneDNN off": {"env": {"TF_ENABLE_ONEDNN_OPTS": "0"}},
    "intra-op 1 thread": {"threads": [1, 0]},
    "inter-op 1 thread": {"threads": [0, 1]},
    "intra 2 / inter 1": {"threads": [2, 1]},
    "steps_per_execution 8": {"fit": {"steps_per_execution": 8}},
    "steps_per_execution 32": {"fit": {"steps_per_execution": 32}},
    "steps_per_execution 128": {"fit": {"steps_per_execution": 128}},
    "tf.data on 1 private thread": {"data_threads": 1},
    "spe 32 + tf.data 1 thread": {"fit": {"steps_per_execution": 32}, "data_threads": 1},
    "jit_compile (XLA)": {"fit": {"jit_compile": True}},
}


def child(variant: str, epochs: int, breakdown: bool) -> dict:
    """Runs inside a fresh process: TensorFlow starts here with the variant's settings."""
    spec = VARIANTS[variant]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import tensorflow as tf
    from omegaconf import OmegaConf

    if spec.get("threads"):
        intra, inter = spec["threads"]
        if intra:
            tf.config.threading.set_intra_op_parallelism_threads(intra)
        if inter:
            tf.config.threading.set_inter_op_parallelism_threads(inter)

    import tfdata_stream
    from train_throughput import ROOT, EpochTimer  # the sibling benchmark: same epoch timer

    from mixup_sweeps.data import datasets
    from mixup_sweeps.job.compose import load_config
    from mixup_sweeps.train import models

    model_cfg = OmegaConf.load(ROOT / "conf" / "model" / "seed_cnn.yaml")
    ds = datasets.load(load_config(ROOT / "outputs").dataset)  # the default dataset config: all 58,000 images
    steps = -(-len(ds.train) // 64)
    stream = tfdata_stream.training_stream(ds.train, "mixup", 64, 10, seed=0)
    if spec.get("data_threads"):
        options = tf.data.Options()
        options.threading.private_threadpool_size = spec["data_threads"]
        stream = stream.with_options(options)

    def fit_seconds(model, dataset, **fit_kwargs) -> float:
        keras.utils.set_random_seed(0)
        model.compile(optimizer=keras.optimizers.Adam(0.001), loss="categorical_crossentropy", metrics=["accuracy"],
                      **fit_kwargs)  # fmt: skip
        timer = EpochTimer()
        model.fit(dataset, epochs=epochs + 1, callbacks=[timer], verbose=0)
        return statistics.median(timer.seconds[1:])  # the first epoch traces and warms up

    result = {"variant": variant, "fit": fit_seconds(models.build_model(model_cfg, (28, 28, 1), 10), stream,
                                                     **spec.get("fit", {}))}  # fmt: skip
    if breakdown:
        passes = []
        for _ in range(epochs + 1):
            start = time.perf_counter()
            for _batch in stream:
                pass
            passes.append(time.perf_counter() - start)
        result["input only"] = statistics.median(passes[1:])
        one_batch = stream.take(1).cache().repeat(steps)
        cnn = models.build_model(model_cfg, (28, 28, 1), 10)
        result["compute (no input)"] = fit_seconds(cnn, one_batch)
        forward = []
        for _ in range(epochs + 1):
            start = time.perf_counter()
            cnn.evaluate(one_batch, verbose=0)
            forward.append(time.perf_counter() - start)
        result["forward only"] = statistics.median(forward[1:])
        trivial = keras.Sequential(
            [keras.Input((28, 28, 1)), keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(10, "softmax")]
        )
        result["framework (trivial model)"] = fit_seconds(trivial, one_batch)
        result["steps"] = steps
    return result


def run_child(variant: str, epochs: int, breakdown: bool) -> dict:
    env = {**os.environ, **VARIANTS[variant].get("env", {})}
    command = [sys.executable, __file__, "--child", variant, "--epochs", str(epochs)] + (["--breakdown"] * breakdown)
    out = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs per measurement (after one warm-up)")
    parser.add_argument("--rounds", type=int, default=2, help="times each lever variant is run, alternated")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--child", choices=list(VARIANTS), help=argparse.SUPPRESS)
    parser.add_argument("--breakdown", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.epochs, args.breakdown)))
        return

    print(f"{os.cpu_count()} CPUs; seed CNN, aug=mixup, batch 64, median of {args.epochs} epochs after a warm-up")
    parts = run_child("default", args.epochs, breakdown=True)
    print(f"\nPart 1: one epoch ({parts['steps']} steps), seconds")
    for key in ("fit", "input only", "compute (no input)", "forward only", "framework (trivial model)"):
        share = parts[key] / parts["fit"]
        print(
            f"  {key:28s} {parts[key]:6.2f}   {share:5.0%} of fit   {1000 * parts[key] / parts['steps']:5.2f} ms/step"
        )

    print(f"\nPart 2: levers, {args.rounds} rounds alternated, s/epoch of fit (median over rounds)")
    seconds: dict[str, list[float]] = {v: [] for v in args.variants}
    for _ in range(args.rounds):
        for variant in args.variants:
            seconds[variant].append(run_child(variant, args.epochs, breakdown=False)["fit"])
            print(f"  {variant:26s} {seconds[variant][-1]:6.2f}", flush=True)
    base = statistics.median(seconds["default"]) if "default" in seconds else None
    print("\nvariant                     s/epoch (median)   speed-up vs default")
    for variant, values in seconds.items():
        median = statistics.median(values)
        print(f"  {variant:26s} {median:8.2f}          {base / median if base else float('nan'):5.2f}x")


if __name__ == "__main__":
    main()
