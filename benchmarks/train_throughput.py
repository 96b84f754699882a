"""Seconds per epoch: the Keras mixup example's input pipeline (reference) vs the harness's, side by side.

Both arms train the same seed CNN from the same initial weights on the same real data at batch 64; the
arms alternate (seed, harness, seed, harness, ...) so machine noise hits both alike. Prints per-epoch
seconds (min and median), images/s, their ratio, and test accuracy after --epochs for each seed.
`--precision float32 mixed_bfloat16` adds the precision axis (`trainer.precision`), alternated the same way,
and prints the CPU's 16-bit flags it ran on.

    .venv/bin/python benchmarks/train_throughput.py --epochs 3 --seeds 0 --aug none mixup
    .venv/bin/python benchmarks/train_throughput.py --arms harness --precision float32 mixed_bfloat16
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from mixup_sweeps import augment, data, models, train  # noqa: E402
from mixup_sweeps.config import PRECISIONS, load_config  # noqa: E402

BATCH_SIZE = 64
SEED_CNN = OmegaConf.load(Path(__file__).resolve().parents[1] / "conf" / "model" / "seed_cnn.yaml")
AUTO = tf.data.AUTOTUNE


# --- The reference: the Keras example's pipeline, as written there --------------------------------------
def sample_beta_distribution(size, concentration_0=0.2, concentration_1=0.2):
    gamma_1_sample = tf.random.gamma(shape=[size], alpha=concentration_1)
    gamma_2_sample = tf.random.gamma(shape=[size], alpha=concentration_0)
    return gamma_1_sample / (gamma_1_sample + gamma_2_sample)


def mix_up(ds_one, ds_two, alpha=0.2):
    images_one, labels_one = ds_one
    images_two, labels_two = ds_two
    batch_size = keras.ops.shape(images_one)[0]
    lam = sample_beta_distribution(batch_size, alpha, alpha)
    x_l = keras.ops.reshape(lam, (batch_size, 1, 1, 1))
    y_l = keras.ops.reshape(lam, (batch_size, 1))
    images = images_one * x_l + images_two * (1 - x_l)
    labels = labels_one * y_l + labels_two * (1 - y_l)
    return (images, labels)


def seed_recipe_stream(x_train: np.ndarray, y_train: np.ndarray, aug: str) -> tf.data.Dataset:
    train_ds_one = tf.data.Dataset.from_tensor_slices((x_train, y_train)).shuffle(BATCH_SIZE * 100).batch(BATCH_SIZE)
    if aug == "none":
        return train_ds_one
    train_ds_two = tf.data.Dataset.from_tensor_slices((x_train, y_train)).shuffle(BATCH_SIZE * 100).batch(BATCH_SIZE)
    train_ds = tf.data.Dataset.zip((train_ds_one, train_ds_two))
    return train_ds.map(lambda ds_one, ds_two: mix_up(ds_one, ds_two, alpha=0.2), num_parallel_calls=AUTO)


# ---------------------------------------------------------------------------------------------------------
class EpochTimer(keras.callbacks.Callback):
    def __init__(self) -> None:
        super().__init__()
        self.seconds: list[float] = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self._start)


def run_arm(
    arm: str, aug: str, seed: int, ds: data.FashionMnist, weights: Path, epochs: int, precision: str = "float32"
) -> dict:
    keras.backend.clear_session()
    keras.utils.set_random_seed(seed)
    model = models.build_model(SEED_CNN, (28, 28, 1), 10, precision=precision)
    model.load_weights(weights)
    # the harness arm compiles as train.train does: its default trainer config (steps_per_execution)
    harness = load_config(tempfile.gettempdir(), [f"aug={aug}"])
    steps_per_execution = 1 if arm == "seed" else harness.trainer.steps_per_execution
    model.compile(optimizer=train.make_optimizer(0.001, precision), loss="categorical_crossentropy",
                  metrics=["accuracy"], steps_per_execution=steps_per_execution)  # fmt: skip
    if arm == "seed":
        x = ds.train.images.astype("float32") / 255.0
        y = keras.utils.to_categorical(ds.train.labels, 10).astype("float32")
        stream = seed_recipe_stream(x, y, aug)
    else:  # the defaults: the seed's recipe, alpha 0.2
        stream = augment.training_stream(ds.train, harness.aug, BATCH_SIZE, BATCH_SIZE * 100, 10, seed=seed)
    timer = EpochTimer()
    model.fit(stream, epochs=epochs, callbacks=[timer], verbose=0)
    test = augment.evaluation_stream(ds.test, BATCH_SIZE, 10)
    _, accuracy = model.evaluate(test, verbose=0)
    return {"seconds": timer.seconds, "accuracy": float(accuracy)}


def cpu_flags() -> str:
    """The processor and the flags that decide whether 16-bit math is fast on it (Linux /proc/cpuinfo)."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown CPU"
    model = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "?")
    flags = next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), [])
    wanted = sorted(f for f in flags if "bf16" in f or "fp16" in f or f.startswith("amx") or f == "avx512f")
    return f"{model}; flags: {' '.join(wanted) or 'no avx512f/bf16/fp16/amx'}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--aug", nargs="+", default=["none", "mixup"], choices=["none", "mixup"])
    parser.add_argument("--arms", nargs="+", default=["seed", "harness"], choices=["seed", "harness"])
    parser.add_argument("--precision", nargs="+", default=["float32"], choices=list(PRECISIONS))
    args = parser.parse_args()

    ds = data.load()
    n = len(ds.train)
    print(f"TensorFlow {tf.__version__}, Keras {keras.__version__}, {os.cpu_count()} CPUs, {n} training images, "
          f"batch {BATCH_SIZE}, {args.epochs} epochs, seeds {args.seeds}")  # fmt: skip
    print(f"CPU: {cpu_flags()}")
    arms = [(arm, precision) for arm in args.arms for precision in args.precision]
    results: dict[tuple[str, str, str], list[dict]] = {}
    with tempfile.TemporaryDirectory() as cache:
        for seed in args.seeds:
            weights = models.shared_initial_weights(Path(cache), SEED_CNN, (28, 28, 1), 10, seed)
            for aug in args.aug:
                for arm, precision in arms:  # alternate the arms
                    result = run_arm(arm, aug, seed, ds, weights, args.epochs, precision)
                    results.setdefault((aug, arm, precision), []).append(result)
                    print(f"  seed={seed} aug={aug:5s} {arm:7s} {precision:14s} epochs(s)="
                          f"{' '.join(f'{s:.2f}' for s in result['seconds'])} test_acc={result['accuracy']:.4f}",
                          flush=True)  # fmt: skip

    print("\naug    arm      precision       min s/epoch  median s/epoch  images/s (median)  test acc (mean)   "
          "speed-up (min / median)")  # fmt: skip
    for aug in args.aug:
        reference = None
        for arm, precision in arms:
            runs = results[(aug, arm, precision)]
            # the first epoch includes tracing/warm-up: report steady-state epochs when there are several
            secs = [s for r in runs for s in (r["seconds"][1:] if len(r["seconds"]) > 1 else r["seconds"])]
            fastest, median = min(secs), statistics.median(secs)
            reference = reference or (fastest, median)  # the first arm is the reference
            acc = statistics.mean(r["accuracy"] for r in runs)
            print(f"{aug:6s} {arm:8s} {precision:15s} {fastest:11.2f} {median:15.2f} {n / median:18.0f} "
                  f"{acc:16.4f}   {reference[0] / fastest:.2f}x / {reference[1] / median:.2f}x")  # fmt: skip


if __name__ == "__main__":
    main()
