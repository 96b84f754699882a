"""The TensorFlow engine: each member trained by Keras's `fit` on the training stream, checkpointed by
`BackupAndRestore`, then evaluated on the test set. What it shares with the packed engine is in `training`.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence

import keras
import numpy as np

from mixup_sweeps.data import input_aug, training_stream
from mixup_sweeps.data.datasets import Dataset, Split
from mixup_sweeps.train import backends, models, probes, recipe, training
from mixup_sweeps.train.training import INTERRUPTS, Member


def train(members: Sequence[Member]) -> None:
    """Train each member in turn; each ends with `.result`, or is told `fail` (it diverged or was pruned)."""
    for member in members:
        try:
            member.result = _fit(member)
        except training.MemberStopped as exc:
            member.fail(exc)


def _fit(member: Member) -> training.TrainResult:
    """Fit cfg.model on the cfg.aug stream for cfg.trainer.epochs from the member's checkpoint (if any), then
    evaluate on the test split. The checkpoint directory stays: the job removes it once FINISHED is recorded."""
    cfg, dataset = member.cfg, member.dataset
    trainer, num_classes = cfg.trainer, cfg.dataset.num_classes
    network = models.build_model(cfg.model, tuple(cfg.dataset.image_shape), num_classes, precision=trainer.precision)
    network.load_weights(member.initial_weights)
    stream = training_stream.TrainingStream(
        dataset.train,
        cfg.aug,
        trainer.batch_size,
        num_classes,
        seed=cfg.seed,
        crop_padding=input_aug.padding_of(trainer),
        last_epoch=trainer.epochs - 1,
    )
    form = stream.form  # the mask inputs the augmentation sends
    model = training_stream.training_model(network, form, name=cfg.aug.name)  # uint8 batches -> mixing -> network
    training.compile_for_training(model, trainer, trainer.steps_per_execution)
    member.history = training.completed_epochs(member.backup_dir)
    epoch_metrics = EpochMetrics(member.history)
    callbacks: list[keras.callbacks.Callback] = [
        stream.epoch_callback(),  # the epoch's batches and its random draws depend on the epoch number only
        # the rate of each epoch, set before it (a resumed run's too) and logged as learning_rate
        keras.callbacks.LearningRateScheduler(lambda epoch, rate: recipe.learning_rate(trainer, epoch)),
        EpochSeeds(),
        RaisePendingInterrupt(),
        keras.callbacks.TerminateOnNaN(),
    ]
    epoch_probes = probes.EpochProbes.of(cfg, dataset)
    if epoch_probes:
        callbacks.append(ProbeEachEpoch(epoch_probes, network, dataset))
    callbacks += [epoch_metrics, BackupThenReport(member)]
    verbose = 0 if os.environ.get(backends.JOB_THREADS_ENV) else 1 if sys.stdout.isatty() else 2  # side by side: quiet
    try:
        model.fit(
            stream.tf_dataset(),  # the stream's batches without a call into Python for each
            validation_data=training_stream.tf_batches(
                (training_stream.unmixed_inputs(dataset.val.images, form), _onehot(dataset.val, num_classes)),
                trainer.batch_size,
            ),
            epochs=trainer.epochs,
            shuffle=False,  # the stream shuffles itself, by epoch (Keras would reorder its batches)
            callbacks=callbacks,
            verbose=verbose,
        )
    finally:
        stream.close()  # what was drawn ahead for epochs that will not run (stopped, diverged)
    INTERRUPTS.raise_pending()
    epoch = training.first_diverged_epoch(member.history, trainer.epochs)
    if epoch is not None:
        raise training.diverged(epoch, trainer)
    probabilities = network.predict(training_stream.scaled(dataset.test), batch_size=trainer.batch_size, verbose=0)
    images_per_second = len(dataset.train) * epoch_metrics.epochs_run / max(epoch_metrics.train_seconds, 1e-9)
    return training.result_from_probabilities(
        probabilities, dataset, member.history, images_per_second, lambda: network
    )


def _onehot(split: Split, classes: int) -> np.ndarray:
    return np.eye(classes, dtype=np.float32)[split.labels]


class RaisePendingInterrupt(keras.callbacks.Callback):
    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        INTERRUPTS.raise_pending()

    def on_test_batch_end(self, batch: int, logs: dict | None = None) -> None:
        INTERRUPTS.raise_pending()


class EpochSeeds(keras.callbacks.Callback):
    """Start each epoch's random draws inside the model (dropout masks) at `training.epoch_seed_state`."""

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.seeds = [
            (variable, np.asarray(keras.ops.convert_to_numpy(variable))[0])
            for variable in self.model.variables
            if variable.name == training.SEED_STATE
        ]

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        for variable, seed in self.seeds:
            variable.assign(np.array(training.epoch_seed_state(seed, epoch), dtype=variable.dtype))


class ProbeEachEpoch(keras.callbacks.Callback):
    """Adds the epoch's probe metrics (`probes.EpochProbes`: test accuracy, memorization) to the epoch's logs,
    for `EpochMetrics` (next in the list) to record. Predicts with the network alone, as the test pass does."""

    def __init__(self, epoch_probes: probes.EpochProbes, network: keras.Model, dataset: Dataset) -> None:
        super().__init__()
        self.probes, self.network = epoch_probes, network
        self.test_images = training_stream.scaled(dataset.test) if epoch_probes.test_labels is not None else None
        probe, train_split = epoch_probes.memorization, dataset.train
        self.probe_images = (
            training_stream.scaled(Split(train_split.images[probe.indices], train_split.labels[probe.indices]))
            if probe
            else None
        )

    def _classes(self, images: np.ndarray | None) -> np.ndarray | None:
        if images is None:
            return None
        return self.network.predict(images, batch_size=probes.PREDICT_BATCH, verbose=0).argmax(axis=1)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if logs is not None:
            logs.update(self.probes.metrics(self._classes(self.test_images), self._classes(self.probe_images)))


EPOCH_LOGS = (
    "loss",
    "accuracy",
    "val_loss",
    "val_accuracy",
    "learning_rate",
    *probes.EPOCH_METRICS,
)  # what an epoch records


class EpochMetrics(keras.callbacks.Callback):
    """Per-epoch loss/accuracy/val_* (and probes) plus wall time, appended to the member's history."""

    def __init__(self, history: list[dict[str, float]]) -> None:
        super().__init__()
        self.history = history  # epochs done before a restore come in already
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


class BackupThenReport(keras.callbacks.BackupAndRestore):
    """Keras's BackupAndRestore in the member's checkpoint directory, saving each epoch in the order
    `training.end_epoch` keeps for both engines: journal, then this backup, then the member's report."""

    def __init__(self, member: Member) -> None:
        # kept after training: removed by the job once its run is FINISHED (`job.execute`), so that a process
        # that resumes it (its owner died after training) never finds it half gone
        super().__init__(str(member.backup_dir), double_checkpoint=True, delete_checkpoint=False)
        self.member = member

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        backup = super().on_epoch_end
        training.end_epoch(self.member, epoch + 1, lambda: backup(epoch, logs))
