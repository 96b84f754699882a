"""Train one model from the shared initial weights and evaluate it on the test set."""

from __future__ import annotations

import json
import math
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
from omegaconf import DictConfig

from mixup_sweeps import augment, backends, calibration, models, probes
from mixup_sweeps.data import Dataset, Split

EpochHook = Callable[[int, dict[str, float]], None]


class Terminated(KeyboardInterrupt):
    """SIGINT or SIGTERM: raised like Ctrl-C, so the run ends KILLED (and can be resumed) instead of vanishing."""


class Interrupts:
    """Turns SIGINT/SIGTERM into `Terminated`, raised at once and, should that be lost, again at the next batch.

    Python raises a signal's exception in whatever frame runs; inside a finalizer (TensorFlow objects are
    collected during training) it is printed as "Exception ignored" and lost, and training would go on.
    `RaisePendingInterrupt` re-raises it from a plain frame.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.pending: int | None = None

    def handler(self, signum: int, frame: object) -> None:
        self.pending = signum
        raise Terminated(f"received signal {signal.Signals(signum).name}")

    def install(self) -> Callable[[], None]:
        """Handle both signals until the returned function restores the previous handlers."""
        self.pending = None
        try:
            previous = {sig: signal.signal(sig, self.handler) for sig in self.SIGNALS}
        except ValueError:  # not the main thread (some launchers): leave the signals alone
            return lambda: None

        def restore() -> None:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

        return restore

    def raise_pending(self) -> None:
        if self.pending is not None:
            raise Terminated(f"received signal {signal.Signals(self.pending).name}")


INTERRUPTS = Interrupts()


class RaisePendingInterrupt(keras.callbacks.Callback):
    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        INTERRUPTS.raise_pending()

    def on_test_batch_end(self, batch: int, logs: dict | None = None) -> None:
        INTERRUPTS.raise_pending()


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; TerminateOnNaN stopped training."""

    reason = "nan_loss"


def seed_everything(seed: int, deterministic: bool) -> None:
    """Seed Python, NumPy and the backend; with `deterministic`, deterministic ops (`backends.op_determinism`)."""
    keras.utils.set_random_seed(seed)
    backends.op_determinism(deterministic)


class EpochSeeds(keras.callbacks.Callback):
    """Start each epoch's random draws inside the model (dropout masks) at a point fixed by the epoch number.

    BackupAndRestore saves the weights and the optimizer, not the layers' random state: without this, a run
    resumed after epoch k would replay epoch 1's dropout masks instead of drawing those of epoch k + 1.
    """

    STRIDE = 2**20  # draws one epoch may make (one per step) before reaching the next epoch's

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.seeds = [
            (variable, np.asarray(keras.ops.convert_to_numpy(variable))[0])
            for variable in self.model.variables
            if variable.name == "seed_generator_state"  # keras.random.SeedGenerator: [seed, draws so far]
        ]

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        for variable, seed in self.seeds:
            variable.assign(np.array([seed, epoch * self.STRIDE], dtype=variable.dtype))


class ProbeEachEpoch(keras.callbacks.Callback):
    """Adds the epoch's probe metrics (`probes.EpochProbes`: test accuracy, memorization) to the epoch's logs,
    for `EpochMetrics` (next in the list) to record. Predicts with the network alone, as the test pass does."""

    def __init__(self, epoch_probes: probes.EpochProbes, network: keras.Model, dataset: Dataset) -> None:
        super().__init__()
        self.probes, self.network = epoch_probes, network
        self.test_images = augment.scaled(dataset.test) if epoch_probes.test_labels is not None else None
        probe, training = epoch_probes.memorization, dataset.train
        self.probe_images = (
            augment.scaled(Split(training.images[probe.indices], training.labels[probe.indices])) if probe else None
        )

    def _classes(self, images: np.ndarray | None) -> np.ndarray | None:
        if images is None:
            return None
        return self.network.predict(images, batch_size=probes.PREDICT_BATCH, verbose=0).argmax(axis=1)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if logs is not None:
            logs.update(self.probes.metrics(self._classes(self.test_images), self._classes(self.probe_images)))


EPOCH_LOGS = ("loss", "accuracy", "val_loss", "val_accuracy", *probes.EPOCH_METRICS)  # what an epoch records


class EpochMetrics(keras.callbacks.Callback):
    """Per-epoch loss/accuracy/val_* (and probes) plus wall time; with a journal path, each epoch is also written.

    The journal is written *before* BackupAndRestore saves the epoch and the metrics reach MLflow *after*
    (see `train`), so a job killed anywhere in between can re-log exactly the epochs its backup holds.
    """

    def __init__(self, history: list[dict[str, float]], journal: Path | None) -> None:
        super().__init__()
        self.history = history  # epochs done before a restore come in already
        self.journal = journal
        self.train_seconds = 0.0
        self.epochs_run = 0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._epoch_start = time.perf_counter()
        self._train_end: float | None = None

    def on_test_begin(self, logs: dict | None = None) -> None:
        if self._train_end is None:  # validation starts: the training part of the epoch is over
            self._train_end = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        now = time.perf_counter()
        self.train_seconds += (self._train_end or now) - self._epoch_start
        self.epochs_run += 1
        metrics = {k: float(v) for k, v in (logs or {}).items() if k in EPOCH_LOGS}
        metrics["epoch_seconds"] = now - self._epoch_start
        del self.history[epoch:]  # an epoch re-run after a restore replaces its unsaved first attempt
        self.history.append(metrics)
        if self.journal is not None:
            tmp = self.journal.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.history))
            os.replace(tmp, self.journal)


class AfterBackup(keras.callbacks.Callback):
    """Hands each finished epoch to `hook(epoch, metrics)` (epochs from 1) once its backup is saved."""

    def __init__(self, epoch_metrics: EpochMetrics, hook: EpochHook) -> None:
        super().__init__()
        self.epoch_metrics = epoch_metrics
        self.hook = hook

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.hook(epoch + 1, self.epoch_metrics.history[epoch])


JOURNAL = "epochs.json"


def completed_epochs(backup_dir: Path) -> list[dict[str, float]]:
    """Metrics of the epochs a backup holds (the journal cut to the backup's epoch); [] when there is none."""
    try:
        epoch = json.loads((backup_dir / "training_metadata.json").read_text())["epoch"]
        return json.loads((backup_dir / JOURNAL).read_text())[:epoch]
    except (OSError, ValueError, KeyError):
        return []


@dataclass
class TrainResult:
    model: keras.Model  # the network (a pack's network is shared: `save_weights` writes this member's weights)
    save_weights: Callable[[Path], None]  # writes the trained network's weights (.weights.h5)
    history: list[dict[str, float]]
    test_loss: float  # categorical cross-entropy on the test set, i.e. the negative log-likelihood
    test_accuracy: float
    test_reliability: calibration.Reliability  # its .ece is test_ece
    train_images_per_second: float

    @property
    def test_nll(self) -> float:
        """The calibration literature's name for the test loss: mean -log p(true class)."""
        return self.test_loss


def make_optimizer(learning_rate: float, precision: str) -> keras.optimizers.Optimizer:
    """Adam, as the seed; under mixed_float16 wrapped in loss scaling (float16 gradients underflow without it)."""
    optimizer = keras.optimizers.Adam(learning_rate=learning_rate)
    if precision == "mixed_float16":
        return keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


def train(
    cfg: DictConfig, dataset: Dataset, initial_weights: Path, on_epoch: EpochHook, backup_dir: Path | None = None
) -> TrainResult:
    """Fit cfg.model on the cfg.aug stream for cfg.trainer.epochs, then evaluate on the test split.

    With `backup_dir`, Keras's BackupAndRestore saves every epoch there and a new call with the same
    directory continues after the last saved epoch (the directory is removed when training completes).
    """
    trainer, num_classes = cfg.trainer, cfg.dataset.num_classes
    input_shape = tuple(cfg.dataset.image_shape)
    network = models.build_model(cfg.model, input_shape, num_classes, precision=trainer.precision)
    network.load_weights(initial_weights)
    model = augment.training_model(network, cfg.aug.name)  # uint8 batches -> mixing -> network
    model.compile(
        optimizer=make_optimizer(trainer.learning_rate, trainer.precision),
        loss="categorical_crossentropy",
        metrics=["accuracy"],
        steps_per_execution=trainer.steps_per_execution,
    )
    stream = augment.TrainingStream(dataset.train, cfg.aug, trainer.batch_size, num_classes, seed=cfg.seed)
    history = completed_epochs(backup_dir) if backup_dir is not None else []
    epoch_metrics = EpochMetrics(history, backup_dir / JOURNAL if backup_dir is not None else None)
    callbacks: list[keras.callbacks.Callback] = [
        stream.epoch_callback(),  # the epoch's batches and its random draws depend on the epoch number only
        EpochSeeds(),
        RaisePendingInterrupt(),
        keras.callbacks.TerminateOnNaN(),
    ]
    epoch_probes = probes.EpochProbes.of(cfg, dataset)
    if epoch_probes:
        callbacks.append(ProbeEachEpoch(epoch_probes, network, dataset))
    callbacks.append(epoch_metrics)
    if backup_dir is not None:
        backup_dir.mkdir(parents=True, exist_ok=True)
        callbacks.append(keras.callbacks.BackupAndRestore(str(backup_dir), double_checkpoint=True))
    callbacks.append(AfterBackup(epoch_metrics, on_epoch))
    model.fit(
        stream,
        validation_data=augment.unmixed_inputs(dataset.val, cfg.aug, num_classes),
        validation_batch_size=trainer.batch_size,
        epochs=trainer.epochs,
        shuffle=False,  # the stream shuffles itself, by epoch (Keras would reorder its batches)
        callbacks=callbacks,
        verbose=1 if sys.stdout.isatty() else 2,
    )
    INTERRUPTS.raise_pending()
    finite = [math.isfinite(h.get("loss", math.nan)) for h in epoch_metrics.history]
    if len(finite) < trainer.epochs or not all(finite):
        epoch = finite.index(False) + 1 if False in finite else len(finite) + 1
        raise TrainingDiverged(
            f"loss became NaN/inf in epoch {epoch} of {trainer.epochs} (trainer.learning_rate={trainer.learning_rate})"
        )
    # one pass over the test set: loss, accuracy and calibration all come from the predicted probabilities
    probabilities = network.predict(augment.scaled(dataset.test), batch_size=trainer.batch_size, verbose=0)
    test_labels = dataset.test.labels.astype(int)
    images = len(dataset.train) * epoch_metrics.epochs_run
    return TrainResult(
        model=network,
        save_weights=network.save_weights,
        history=epoch_metrics.history,
        test_loss=calibration.negative_log_likelihood(probabilities, test_labels),
        test_accuracy=float(np.mean(probabilities.argmax(axis=1) == test_labels)),
        test_reliability=calibration.reliability(probabilities, test_labels),
        train_images_per_second=images / max(epoch_metrics.train_seconds, 1e-9),
    )
