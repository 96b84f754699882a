"""Where one training step of the seed CNN goes on a CPU, layer by layer, beside the machine's GEMM rate.

Each layer of the seed CNN (batch 64, Fashion-MNIST's 28x28x1 images, TensorFlow) is timed alone in a fresh
process whose TensorFlow pools have --threads threads: its forward pass, and its forward and backward pass
(gradients of its weights, and of its input for every layer but the first: the input gradient of the first
layer is never needed), each a `tf.function` called --calls times on fixed tensors, minus the cost of calling an
empty `tf.function` (the call itself). Beside them: the mixing step (uint8 -> [0, 1], x*lam + y*(1-lam)), the
loss, Adam's update of all 18,570 weights, and the whole Keras train step as `fit` runs it (32 steps per call,
one repeated batch: no input work). `rest` is the whole step minus the parts: framework work between them.
The GEMM line is NumPy's float32 matmul (OpenBLAS) at the same threads; a convolution's `% of GEMM` is its
arithmetic (2 x multiply-adds) per second against that rate.

  .venv/bin/python benchmarks/op_profile.py --threads 1
  .venv/bin/python benchmarks/op_profile.py --threads 2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STEPS_PER_EPOCH = 907  # 58,000 images at batch 64
BATCH = 64


def sgemm_rate(threads: int, size: int = 2048, repeats: int = 5) -> float:
    """GFLOP/s of NumPy's float32 matmul at `threads` threads (set before NumPy loads OpenBLAS)."""
    import numpy as np

    a = np.random.default_rng(0).standard_normal((size, size), dtype=np.float32)
    a @ a  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ a
        times.append(time.perf_counter() - start)
    return 2 * size**3 / min(times) / 1e9


def timed(fn, calls: int) -> float:
    """Median seconds of one call of `fn` over 5 rounds of `calls` calls, after a warm-up."""
    fn()
    rounds = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(calls):
            out = fn()
        _ = [t.numpy() for t in (out if isinstance(out, (list, tuple)) else [out])]  # the work has finished
        rounds.append((time.perf_counter() - start) / calls)
    return statistics.median(rounds)


def child(threads: int, calls: int) -> dict:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    import keras
    import numpy as np
    from keras import layers

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    rows: list[tuple[str, float, float]] = []  # name, seconds per step, FLOP per step (0: not counted)

    empty = tf.function(lambda: tf.constant(0.0))
    call_cost = timed(empty, calls)

    def layer_rows(name: str, layer, x, flop: float, input_grad: bool = True) -> object:
        x = tf.constant(x)
        y = layer(x, training=True)  # builds it
        weights = list(layer.trainable_weights)
        upstream = tf.ones_like(y)

        @tf.function
        def forward():
            return layer(x, training=True)

        @tf.function
        def both():
            with tf.GradientTape() as tape:
                tape.watch(x)
                out = layer(x, training=True)
            return tape.gradient(out, weights + ([x] if input_grad else []), output_gradients=upstream)

        f = timed(forward, calls) - call_cost
        fb = timed(both, calls) - call_cost
        rows.append((f"{name} forward", f, flop))
        rows.append((f"{name} backward", max(fb - f, 0.0), flop * (2 if input_grad else 1) if flop else 0.0))
        return y.numpy()

    images = rng.integers(0, 256, (BATCH, 28, 28, 1), dtype=np.uint8)
    lam = rng.random(BATCH).astype(np.float32)

    @tf.function
    def mix():
        x = tf.cast(tf.constant(images), tf.float32) / 255.0
        y = tf.cast(tf.constant(images[::-1]), tf.float32) / 255.0
        k = tf.reshape(tf.constant(lam), (-1, 1, 1, 1))
        return x * k + y * (1.0 - k)

    rows.append(("mixing step", timed(mix, calls) - call_cost, 0.0))
    x = mix().numpy()
    x = layer_rows("conv 16 5x5 + relu", layers.Conv2D(16, 5, activation="relu"), x, 2 * BATCH * 24 * 24 * 16 * 25,
                   input_grad=False)  # fmt: skip
    x = layer_rows("max pool 1", layers.MaxPooling2D(), x, 0.0)
    x = layer_rows("conv 32 5x5 + relu", layers.Conv2D(32, 5, activation="relu"), x, 2 * BATCH * 8 * 8 * 32 * 400)
    x = layer_rows("max pool 2", layers.MaxPooling2D(), x, 0.0)
    x = layer_rows("dropout 0.2", layers.Dropout(0.2), x, 0.0)
    x = layer_rows("global average pool", layers.GlobalAveragePooling2D(), x, 0.0)
    x = layer_rows("dense 128 + relu", layers.Dense(128, activation="relu"), x, 2 * BATCH * 32 * 128)
    probabilities = layer_rows("dense 10 + softmax", layers.Dense(10, activation="softmax"), x, 2 * BATCH * 128 * 10)
    labels = tf.constant(np.eye(10, dtype=np.float32)[rng.integers(0, 10, BATCH)])
    probabilities = tf.constant(probabilities)
    loss = keras.losses.CategoricalCrossentropy()

    @tf.function
    def loss_both():
        with tf.GradientTape() as tape:
            tape.watch(probabilities)
            value = loss(labels, probabilities)
        return tape.gradient(value, probabilities)

    rows.append(("loss (+ its gradient)", timed(loss_both, calls) - call_cost, 0.0))

    from omegaconf import OmegaConf

    from mixup_sweeps.train import models

    network = models.build_model(OmegaConf.load(ROOT / "conf" / "model" / "seed_cnn.yaml"), (28, 28, 1), 10)
    optimizer = keras.optimizers.Adam(0.001)
    optimizer.build(network.trainable_variables)
    gradients = [tf.constant(np.full(v.shape, 1e-3, np.float32)) for v in network.trainable_variables]

    @tf.function
    def adam():
        optimizer.apply(gradients, network.trainable_variables)
        return tf.constant(0.0)

    rows.append(("Adam update (all weights)", timed(adam, calls) - call_cost, 0.0))

    network.compile(optimizer=keras.optimizers.Adam(0.001), loss="categorical_crossentropy", metrics=["accuracy"],
                    steps_per_execution=32)  # fmt: skip
    batch = tf.data.Dataset.from_tensors((mix(), labels)).repeat(STEPS_PER_EPOCH)
    network.fit(batch, epochs=1, verbose=0)  # traces
    epochs = []
    for _ in range(3):
        start = time.perf_counter()
        network.fit(batch, epochs=1, verbose=0)
        epochs.append(time.perf_counter() - start)
    whole = statistics.median(epochs) / STEPS_PER_EPOCH
    return {"rows": rows, "whole": whole, "call_cost": call_cost}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.threads, args.calls)))
        return
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "OPENBLAS_NUM_THREADS": str(args.threads)}
    probe = f"import json, sys; sys.path.insert(0, {str(ROOT / 'benchmarks')!r}); from op_profile import sgemm_rate; "
    probe += f"print(json.dumps(sgemm_rate({args.threads})))"
    rate = json.loads(subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env,
                                     check=True).stdout)  # fmt: skip
    out = subprocess.run([sys.executable, __file__, "--child", "--threads", str(args.threads), "--calls",
                          str(args.calls)], capture_output=True, text=True, env=env, check=True)  # fmt: skip
    result = json.loads(out.stdout.strip().splitlines()[-1])
    whole = result["whole"]
    print(f"seed CNN, batch {BATCH}, TensorFlow, {args.threads} thread(s); float32 GEMM (NumPy) {rate:.0f} GFLOP/s")
    print(f"{'part of a training step':<30} {'ms/step':>8} {'s/epoch':>8} {'share':>6} {'GFLOP/s':>8} {'% of GEMM':>9}")
    parts = 0.0
    for name, seconds, flop in result["rows"]:
        parts += seconds
        speed = f"{flop / seconds / 1e9:8.1f} {flop / seconds / 1e9 / rate:9.0%}" if flop and seconds > 0 else ""
        print(f"{name:<30} {1000 * seconds:8.3f} {seconds * STEPS_PER_EPOCH:8.2f} {seconds / whole:6.0%} {speed}")
    rest = whole - parts
    print(
        f"{'rest (framework between parts)':<30} {1000 * rest:8.3f} {rest * STEPS_PER_EPOCH:8.2f} {rest / whole:6.0%}"
    )
    flop = 3 * 2 * BATCH * (24 * 24 * 16 * 25 + 8 * 8 * 32 * 400 + 32 * 128 + 128 * 10) - 2 * BATCH * 24 * 24 * 16 * 25
    print(f"{'whole Keras step (fit, 32/call)':<30} {1000 * whole:8.3f} {whole * STEPS_PER_EPOCH:8.2f} {1:6.0%} "
          f"{flop / whole / 1e9:8.1f} {flop / whole / 1e9 / rate:9.0%}")  # fmt: skip
    print(f"(an empty tf.function call, subtracted from each part: {1e6 * result['call_cost']:.0f} µs)")


if __name__ == "__main__":
    main()
