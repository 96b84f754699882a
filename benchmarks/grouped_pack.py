"""Would a pack of jobs as one TensorFlow program with grouped convolutions (members as groups) make a CPU's
model-step cheaper? (Issue 40: "a pack of jobs as one program on a CPU with grouped convolutions".)

The seed CNN of N members as one Keras model: member n's images in input channel n, both convolutions with
`groups=N` (each member's filters see only its own channels), its dense layers as `EinsumDense` with a kernel per
member, the loss summed over members (so Adam, elementwise, updates each member as it would alone). One training
step (forward, backward, Adam) of the whole pack is timed on fixed tensors as one `tf.function`, at 1 and at 2
threads, each thread count in a fresh process; the figure is milliseconds per model-step (a pack's step / N), next
to N = 1 (the plain CNN, as a job trains today) in the same process.

    .venv/bin/python benchmarks/grouped_pack.py [--members 1 2 4] [--steps 40] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

BATCH = 64


def _training_step(n: int):  # returns a tf.function
    """One training step (forward, backward, Adam) of an n-member pack on fixed tensors, as a tf.function."""
    import keras
    import tensorflow as tf
    from keras import layers

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((28, 28, n)),
            layers.Conv2D(16 * n, 5, groups=n, activation="relu"),
            layers.MaxPooling2D(2),
            layers.Conv2D(32 * n, 5, groups=n, activation="relu"),
            layers.MaxPooling2D(2),
            layers.Dropout(0.2),
            layers.GlobalAveragePooling2D(),
            layers.Reshape((n, 32)),  # a grouped convolution's channels are its groups' in order
            layers.EinsumDense("bnc,nch->bnh", output_shape=(n, 128), bias_axes="nh", activation="relu"),
            layers.EinsumDense("bnh,nhk->bnk", output_shape=(n, 10), bias_axes="nk"),
        ]
    )
    optimizer = keras.optimizers.Adam(1e-3)
    images = tf.random.uniform((BATCH, 28, 28, n))
    labels = tf.nn.softmax(tf.random.normal((BATCH, n, 10)))  # soft labels, as mixup's

    @tf.function
    def step() -> tf.Tensor:
        with tf.GradientTape() as tape:
            logits = model(images, training=True)
            per_member = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(labels, logits), axis=0)
            loss = tf.reduce_sum(per_member)
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply(grads, model.trainable_variables)
        return loss

    return step


def measure(members: list[int], threads: int, steps: int, repeats: int) -> dict[int, float]:
    """ms per model-step of each pack size, in this process at `threads` threads (best of `repeats`)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    results = {}
    for n in members:
        step = _training_step(n)
        for _ in range(5):
            step()
        best = float("inf")
        for _ in range(repeats):
            started = time.perf_counter()
            for _ in range(steps):
                step()
            float(step())  # the last one finished
            best = min(best, (time.perf_counter() - started) / (steps + 1))
        results[n] = 1000 * best / n
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.members, args.threads[0], args.steps, args.repeats)))
        return
    print(f"{os.cpu_count()} cores; seed CNN, batch {BATCH}, TensorFlow; ms per model-step (a pack's step / members)")
    print(f"{'threads':>7}  {'members':>7}  {'ms/model-step':>13}  {'vs 1 member':>11}")
    for threads in args.threads:
        command = [sys.executable, __file__, "--child", "--threads", str(threads), "--steps", str(args.steps),
                   "--repeats", str(args.repeats), "--members", *map(str, args.members)]  # fmt: skip
        out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
        results = {int(k): v for k, v in json.loads(out.strip().splitlines()[-1]).items()}
        alone = results.get(1)
        for n, ms in results.items():
            ratio = f"{alone / ms:.2f}x" if alone else ""
            print(f"{threads:>7}  {n:>7}  {ms:>13.2f}  {ratio:>11}")


if __name__ == "__main__":
    main()
