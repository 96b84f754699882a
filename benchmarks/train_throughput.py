"""Seconds per epoch: the Keras mixup example's input pipeline (reference) vs the harness's, side by side.

Both arms train the same seed CNN from the same initial weights on the same real data at batch 64; the
arms alternate (seed, harness, seed, harness, ...) so machine noise hits both alike. Prints per-epoch
seconds (min and median), images/s, their ratio, and test accuracy after --epochs for each seed.

    .venv/bin/python benchmarks/train_throughput.py --epochs 3 --seeds 0 --aug none mixup
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

from mixup_sweeps import augment, data, models  # noqa: E402
from mixup_sweeps.config import load_config  # noqa: E402

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


def run_arm(arm: str, aug: str, seed: int, ds: data.FashionMnist, weights: Path, epochs: int) -> dict:
    keras.backend.clear_session()
    keras.utils.set_random_seed(seed)
    model = models.build_model(SEED_CNN, (28, 28, 1), 10)
    model.load_weights(weights)
    # the harness arm compiles as train.train does: its default trainer config (steps_per_execution)
    harness = load_config(tempfile.gettempdir(), [f"aug={aug}"])
    steps_per_execution = 1 if arm == "seed" else harness.trainer.steps_per_execution
    model.compile(optimizer=keras.optimizers.Adam(0.001), loss="categorical_crossentropy", metrics=["accuracy"],
                  steps_per_execution=steps_per_execution)  # fmt: skip
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--aug", nargs="+", default=["none", "mixup"], choices=["none", "mixup"])
    args = parser.parse_args()

    ds = data.load()
    n = len(ds.train)
    print(f"TensorFlow {tf.__version__}, Keras {keras.__version__}, {os.cpu_count()} CPUs, {n} training images, "
          f"batch {BATCH_SIZE}, {args.epochs} epochs, seeds {args.seeds}")  # fmt: skip
    results: dict[tuple[str, str], list[dict]] = {}
    with tempfile.TemporaryDirectory() as cache:
        for seed in args.seeds:
            weights = models.shared_initial_weights(Path(cache), SEED_CNN, (28, 28, 1), 10, seed)
            for aug in args.aug:
                for arm in ("seed", "harness"):  # alternate the arms
                    result = run_arm(arm, aug, seed, ds, weights, args.epochs)
                    results.setdefault((aug, arm), []).append(result)
                    print(f"  seed={seed} aug={aug:5s} {arm:7s} epochs(s)="
                          f"{' '.join(f'{s:.2f}' for s in result['seconds'])} test_acc={result['accuracy']:.4f}",
                          flush=True)  # fmt: skip

    print("\naug    arm      min s/epoch  median s/epoch  images/s (median)  test acc (mean)   speed-up (median)")
    for aug in args.aug:
        medians = {}
        for arm in ("seed", "harness"):
            runs = results[(aug, arm)]
            # the first epoch includes tracing/warm-up: report steady-state epochs when there are several
            secs = [s for r in runs for s in (r["seconds"][1:] if len(r["seconds"]) > 1 else r["seconds"])]
            medians[arm] = statistics.median(secs)
            acc = statistics.mean(r["accuracy"] for r in runs)
            print(f"{aug:6s} {arm:8s} {min(secs):11.2f} {medians[arm]:15.2f} {n / medians[arm]:18.0f} "
                  f"{acc:16.4f}   {medians['seed'] / medians[arm]:.2f}x")  # fmt: skip


if __name__ == "__main__":
    main()
