"""Seconds per epoch of the recipes' networks (issue 38) on this machine, beside the seed CNN in the same run,
and what a GPU run of `experiment=paper_cifar10` takes, from the networks' counted FLOPs.

Each arm trains the network of `model=<name>` exactly as a job does (`training_stream.training_model`: uint8 images,
crops and flips and mixup in the compiled step; `optimizers.make`: the recipe's SGD with coupled decay; batch 128;
TensorFlow, Keras's `train_on_batch`) on random images of the data set's shape, for `--steps` timed steps after
two untimed ones (tracing, compiling). Seconds per epoch are those steps scaled to the data set's training images
(Fashion-MNIST 28x28x1: 58,000; CIFAR 32x32x3: 48,000). `--processes 2` starts that many copies together with
one thread each (the machine filled, as the local launcher runs a sweep) and reports their combined rate.

FLOPs are counted from the built network's layers (2 x multiply-adds of every convolution and dense layer; batch
norm, ReLU, pooling and the mixing step left out, a few per cent); one training step is taken as 3 x a forward
pass (forward, and the backward pass's two products per layer), the usual estimate.

    .venv/bin/python benchmarks/recipe_networks.py --models seed_cnn resnet20 preact_resnet18 --steps 10
    .venv/bin/python benchmarks/recipe_networks.py --models resnet20 --processes 2 --steps 10
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHAPES = {"fashion_mnist": ((28, 28, 1), 58000), "cifar10": ((32, 32, 3), 48000)}
BATCH = 128


def forward_flops(model) -> int:  # noqa: ANN001 - a Keras model
    """2 x the multiply-adds of every Conv2D and Dense layer, for one image."""
    import keras

    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            _, h, w, c_out = layer.output.shape
            kh, kw = layer.kernel_size
            total += 2 * h * w * c_out * kh * kw * layer.input.shape[-1]
        elif isinstance(layer, keras.layers.Dense):
            total += 2 * layer.input.shape[-1] * layer.units
    return int(total)


def arm(name: str, data: str, steps: int, threads: int) -> dict:
    """One network's training rate in this process (TensorFlow, `threads` threads)."""
    os.environ["KERAS_BACKEND"] = "tensorflow"
    import numpy as np
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    import keras

    from mixup_sweeps.data import training_stream
    from mixup_sweeps.job.compose import load_config
    from mixup_sweeps.train import models, optimizers

    shape, images = SHAPES[data]
    cfg = load_config("/tmp/recipe-networks", [f"model={name}", "experiment=recipe_fashion_mnist"])
    network = models.build_model(cfg.model, shape, 10)
    form = ("lam", training_stream.CROP)  # mixup and crops, as a job of the recipe trains
    model = training_stream.training_model(network, form, name="bench")
    model.compile(optimizer=optimizers.make(cfg.trainer), loss="categorical_crossentropy", jit_compile=True)
    rng = np.random.default_rng(0)
    batch = (
        rng.integers(0, 256, (BATCH, *shape), dtype=np.uint8),
        rng.integers(0, 256, (BATCH, *shape), dtype=np.uint8),
        rng.random(BATCH).astype(np.float32),
        np.zeros((BATCH, 6), np.int32),
    )
    labels = keras.utils.to_categorical(rng.integers(0, 10, BATCH), 10)
    for _ in range(2):
        model.train_on_batch(batch, labels)
    started = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(batch, labels)
    seconds = (time.perf_counter() - started) / steps
    flops = forward_flops(network)
    weights = sum(int(np.prod(w.shape)) for w in network.trainable_weights)
    rate = BATCH / seconds
    return {"model": name, "data": data, "threads": threads, "images_per_second": rate,
            "seconds_per_epoch": images / rate, "forward_mflops": flops / 1e6, "weights": weights}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["seed_cnn", "resnet20", "preact_resnet18"])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--arm", nargs=3, help=argparse.SUPPRESS)  # model data threads: one arm, JSON out
    args = parser.parse_args()
    if args.arm:
        print(json.dumps(arm(args.arm[0], args.arm[1], args.steps, int(args.arm[2]))))
        return
    threads = max(1, (os.cpu_count() or 1) // args.processes)
    print(f"{'model':16} {'data':14} {'weights':>10} {'fwd MFLOP':>10} {'procs x thr':>11} {'img/s':>8} {'s/epoch':>8}")
    for name in args.models:
        for data in ["fashion_mnist", "cifar10"] if name != "preact_resnet18" else ["cifar10"]:
            command = [sys.executable, __file__, "--steps", str(args.steps), "--arm", name, data, str(threads)]
            jobs = [subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
                    for _ in range(args.processes)]  # fmt: skip
            results = [json.loads(job.communicate()[0].strip().splitlines()[-1]) for job in jobs]
            rate = sum(r["images_per_second"] for r in results)
            first = results[0]
            print(f"{name:16} {data:14} {first['weights']:>10,} {first['forward_mflops']:>10.1f} "
                  f"{args.processes:>5} x {threads:<3} {rate:>8.0f} {SHAPES[data][1] / rate:>8.1f}")  # fmt: skip


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
