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

`--trace` instead looks inside the whole Keras step: TensorFlow's profiler over --steps steps (each op's time
per step, read from the profile's XPlane with the protobuf TensorFlow ships), oneDNN's own log of its kernels
(`ONEDNN_VERBOSE=1`: which implementation ran each convolution and pooling, ms per call, each kernel's first call
left out; a convolution's GFLOP/s from its shape), and the validation pass of 2,000 images at batch 64 through
Keras's pipeline of NumPy arrays against `training_stream.tf_batches` (medians of 10, alternated). Variables such
as `ONEDNN_DEFAULT_FPMATH_MODE=BF16` or `TF_ENABLE_ONEDNN_OPTS=0` set for the command reach the measured process.

  .venv/bin/python benchmarks/op_profile.py --threads 1
  .venv/bin/python benchmarks/op_profile.py --threads 2
  .venv/bin/python benchmarks/op_profile.py --trace
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

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


def seed_cnn_fit(threads: int) -> tuple[Any, tuple[Any, Any]]:
    """The seed CNN compiled as the harness's step (Adam, 32 steps a call) and one batch, in a process whose
    TensorFlow pools have `threads` threads (as a job's: `backends.set_threads`; a second call keeps them)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from mixup_sweeps.train import backends

    backends.prepare("tensorflow")
    backends.set_threads(threads, "tensorflow")
    import keras
    import numpy as np
    from omegaconf import OmegaConf

    from mixup_sweeps.train import models

    keras.utils.set_random_seed(0)
    network = models.build_model(OmegaConf.load(ROOT / "conf" / "model" / "seed_cnn.yaml"), (28, 28, 1), 10)
    network.compile(optimizer=keras.optimizers.Adam(0.001), loss="categorical_crossentropy", metrics=["accuracy"],
                    steps_per_execution=32)  # fmt: skip
    rng = np.random.default_rng(0)
    x = rng.random((BATCH, 28, 28, 1), dtype=np.float32)
    y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, BATCH)]
    return network, (x, y)


def trace_child(threads: int, steps: int) -> dict:
    """Each op's seconds per step inside `fit`, from TensorFlow's profiler; the step's wall time; the validation
    pass both ways."""
    import tensorflow as tf

    network, (x, y) = seed_cnn_fit(threads)
    batches = tf.data.Dataset.from_tensors((x, y)).repeat(steps)
    network.fit(batches, epochs=1, verbose=0)  # traces
    start = time.perf_counter()
    network.fit(batches, epochs=1, verbose=0)
    whole = (time.perf_counter() - start) / steps
    with tempfile.TemporaryDirectory() as logdir:
        tf.profiler.experimental.start(logdir)
        network.fit(batches, epochs=1, verbose=0)
        tf.profiler.experimental.stop()
        from tensorflow.tsl.profiler.protobuf import xplane_pb2

        space = xplane_pb2.XSpace()
        space.ParseFromString(next(Path(logdir).rglob("*.xplane.pb")).read_bytes())
    ops: dict[str, float] = {}
    for plane in space.planes:
        for line in plane.lines:
            if not line.name.startswith("tf_Compute"):
                continue
            for event in line.events:
                name = plane.event_metadata[event.metadata_id].name
                if "::" in name or ":" not in name:  # the executor's own spans, not ops
                    continue
                op = name.split("StatefulPartitionedCall/")[-1]  # the op inside the compiled step
                ops[op] = ops.get(op, 0.0) + event.duration_ps * 1e-12 / steps
    return {"ops": sorted(ops.items(), key=lambda kv: -kv[1]), "whole": whole, "validation": validation_pass()}


def validation_pass() -> dict[str, float]:
    """Seconds to evaluate 2,000 images at batch 64: Keras's pipeline of NumPy arrays, then `tf_batches`."""
    import keras
    import numpy as np

    from mixup_sweeps.data import training_stream

    network, _ = seed_cnn_fit(1)  # a second model (the pools keep their size)
    model = training_stream.training_model(network, (), name="none")
    model.compile(loss="categorical_crossentropy", metrics=["accuracy"], steps_per_execution=32)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (2000, 28, 28, 1), dtype=np.uint8)
    labels = np.eye(10, dtype=np.float32)[rng.integers(0, 10, 2000)]
    arms = {
        "Keras's pipeline of the NumPy arrays": lambda: model.evaluate((images,), labels, batch_size=BATCH, verbose=0),
        "training_stream.tf_batches": lambda: model.evaluate(
            training_stream.tf_batches(((images,), labels), BATCH), verbose=0
        ),
    }
    times: dict[str, list[float]] = {name: [] for name in arms}
    for _ in range(11):  # the first round (tracing) left out
        for name, evaluate in arms.items():
            start = time.perf_counter()
            evaluate()
            times[name].append(time.perf_counter() - start)
    keras.backend.clear_session()
    return {name: statistics.median(seconds[1:]) for name, seconds in times.items()}


def onednn_kernels(threads: int, steps: int) -> list[tuple[str, float, float]]:
    """oneDNN's kernels in `steps` steps of `fit` (a child with ONEDNN_VERBOSE=1): (what, ms per call, GFLOP/s
    of a convolution, else 0), each kernel's first call (its creation) left out."""
    env = {**os.environ, "ONEDNN_VERBOSE": "1", "OMP_NUM_THREADS": str(threads)}
    out = subprocess.run([sys.executable, __file__, "--kernels-child", "--threads", str(threads), "--steps",
                          str(steps)], capture_output=True, text=True, env=env, check=True).stdout  # fmt: skip
    calls: dict[tuple[str, ...], list[float]] = {}
    for line in out.splitlines():
        fields = line.split(",")
        if not line.startswith("onednn_verbose") or "exec" not in fields or fields[5] not in ("convolution", "pooling"):
            continue
        calls.setdefault((fields[5], fields[6], fields[7], fields[-2]), []).append(float(fields[-1]))
    rows = []
    for (primitive, implementation, kind, problem), ms in calls.items():
        shape = dict(re.findall(r"(mb|ic|oc|oh|ow|kh|kw)(\d+)", problem))
        flop = 2 * math.prod(int(shape.get(k, 0)) for k in ("mb", "ic", "oc", "oh", "ow", "kh", "kw"))
        per_call = statistics.mean(ms[1:] or ms)
        rows.append((f"{primitive} {kind} {problem} ({implementation})", per_call, flop / per_call / 1e6))
    return sorted(rows, key=lambda row: -row[1])


def kernels_child(threads: int, steps: int) -> None:
    import tensorflow as tf

    network, batch = seed_cnn_fit(threads)
    network.fit(tf.data.Dataset.from_tensors(batch).repeat(steps), epochs=1, verbose=0)


def trace(threads: int, steps: int) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "OPENBLAS_NUM_THREADS": str(threads)}
    out = subprocess.run([sys.executable, __file__, "--trace-child", "--threads", str(threads), "--steps",
                          str(steps)], capture_output=True, text=True, env=env, check=True)  # fmt: skip
    result = json.loads(out.stdout.strip().splitlines()[-1])
    whole = result["whole"]
    print(f"seed CNN, batch {BATCH}, TensorFlow, {threads} thread(s): the whole Keras step (fit, 32 steps a call,")
    print(f"one repeated batch) {1000 * whole:.3f} ms; its ops from TensorFlow's profiler over {steps} steps")
    print(f"{'op inside the step (name:type)':<100} {'ms/step':>8} {'share':>6}")
    shown = result["ops"][:20]
    for op, seconds in shown:
        print(f"{op[-100:]:<100} {1000 * seconds:8.3f} {seconds / whole:6.0%}")
    rest = sum(seconds for _, seconds in result["ops"][20:])
    others = f"the other {len(result['ops']) - len(shown)} ops"
    print(f"{others:<100} {1000 * rest:8.3f} {rest / whole:6.0%}")
    print("\noneDNN's kernels (ONEDNN_VERBOSE=1, 64 steps, each kernel's first call left out)")
    print(f"{'kernel (primitive, pass, shape, implementation)':<120} {'ms/call':>8} {'GFLOP/s':>8}")
    for what, ms, gflops in onednn_kernels(threads, 64):
        print(f"{what[:120]:<120} {ms:8.3f} {f'{gflops:8.1f}' if gflops else '':>8}")
    print("\nthe validation pass, 2,000 images at batch 64, 1 thread (medians of 10, alternated)")
    for name, seconds in result["validation"].items():
        print(f"{name:<40} {1000 * seconds:7.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--trace", action="store_true", help="the ops inside the whole step, oneDNN's kernels")
    parser.add_argument("--steps", type=int, default=256, help="--trace: steps profiled")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--trace-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--kernels-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.threads, args.calls)))
        return
    if args.trace_child:
        print(json.dumps(trace_child(args.threads, args.steps)))
        return
    if args.kernels_child:
        kernels_child(args.threads, args.steps)
        return
    if args.trace:
        trace(args.threads, args.steps)
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
