"""What both training engines share: a job as a `Member`, seeding, interrupts, the compile recipe, divergence,
the checkpoint layout and its reader, and results from test probabilities.

Two engines train members: `fit` (Keras's `fit`, the TensorFlow backend) and `packed` (JAX: Keras's
`train_step` over a pack of members, a lone job a pack of one). Each keeps only what makes it different; the
rules here are the same for both, so a run means the same thing whichever engine trained it. Keras is
imported inside the functions that need it: this module holds no Keras object and survives a backend switch.
"""

from __future__ import annotations

import json
import math
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from omegaconf import DictConfig

from mixup_sweeps import calibration, files
from mixup_sweeps.data.datasets import Dataset
from mixup_sweeps.train import backends

if TYPE_CHECKING:
    import keras

EpochHook = Callable[[int, dict[str, float]], None]  # (epoch from 1, its metrics): record it (MLflow)


# --- a job as an engine sees it -------------------------------------------------------------------------
@dataclass
class TrainResult:
    trained_network: Callable[[], keras.Model]  # the network holding this run's trained weights
    history: list[dict[str, float]]
    test_loss: float  # categorical cross-entropy on the test set, i.e. the negative log-likelihood
    test_accuracy: float
    test_reliability: calibration.Reliability  # its .ece is test_ece
    train_images_per_second: float

    @property
    def test_nll(self) -> float:
        """The calibration literature's name for the test loss: mean -log p(true class)."""
        return self.test_loss


@dataclass
class Member:
    """One job for an engine: what it trains on, where it checkpoints and reports; `result` when done.

    An engine fills `history` epoch by epoch and, at the end, `result`; a member whose training fails on its
    own (its loss diverged) is told `fail(exc)` and the engine goes on with the others.
    """

    cfg: DictConfig
    dataset: Dataset
    initial_weights: Path
    on_epoch: EpochHook
    backup_dir: Path  # this computation's checkpoint (`JOURNAL`, `METADATA` and the engine's own files)
    report_failure: Callable[[BaseException], None]  # ends its run (FAILED) at once
    result: TrainResult | None = None
    failed: bool = False
    history: list[dict[str, float]] = field(default_factory=list)

    def fail(self, exc: BaseException) -> None:
        self.failed = True
        self.report_failure(exc)


# --- interrupts -----------------------------------------------------------------------------------------
class Terminated(KeyboardInterrupt):
    """SIGINT or SIGTERM: raised like Ctrl-C, so the run ends KILLED (and can be resumed) instead of vanishing."""


class Interrupts:
    """Turns SIGINT/SIGTERM into `Terminated`, raised at once and, should that be lost, again at the next step.

    Python raises a signal's exception in whatever frame runs; inside a finalizer (TensorFlow objects are
    collected during training) it is printed as "Exception ignored" and lost, and training would go on.
    Each engine calls `raise_pending` from a plain frame after every step.
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


# --- seeding --------------------------------------------------------------------------------------------
def seed_everything(seed: int, deterministic: bool) -> None:
    """Seed Python, NumPy and the backend; with `deterministic`, deterministic ops (`backends.op_determinism`)."""
    backends.set_random_seed(seed)
    backends.op_determinism(deterministic)


SEED_STATE = "seed_generator_state"  # the variable of a keras.random.SeedGenerator: [seed, draws so far]
DROPOUT_STRIDE = 2**20  # draws one epoch may make (one per step) before reaching the next epoch's


def epoch_seed_state(seed: int, epoch: int) -> list[int]:
    """Where a layer's random draws (dropout masks) start in `epoch`: fixed by the epoch number, so a run
    resumed after epoch k draws epoch k + 1's masks, not epoch 1's (checkpoints hold no random state)."""
    return [seed, epoch * DROPOUT_STRIDE]


# --- the recipe -----------------------------------------------------------------------------------------
def compile_for_training(model: keras.Model, trainer: DictConfig, steps_per_execution: int = 1) -> None:
    """The recipe's optimizer (`optimizers.make`: the seed's is Adam at trainer.learning_rate), categorical
    cross-entropy, accuracy."""
    from mixup_sweeps.train import optimizers  # Keras: after the job chose its backend

    model.compile(
        optimizer=optimizers.make(trainer),
        loss="categorical_crossentropy",
        metrics=["accuracy"],
        steps_per_execution=steps_per_execution,
    )


class MemberStopped(RuntimeError):
    """A member's training ends early on its own (it diverged, or a search pruned it): the engine goes on with
    the other members of its pack."""


class TrainingDiverged(MemberStopped):
    """The loss became NaN or infinite."""

    reason = "nan_loss"


class Pruned(MemberStopped):
    """A search's pruner stopped this job after `epoch` (`search.EpochReporter`): its run ends KILLED, tagged
    `pruned`, its checkpoint kept."""

    reason = "pruned"

    def __init__(self, message: str, epoch: int) -> None:
        super().__init__(message, epoch)  # both in args: the exception survives pickling (joblib, Ray)
        self.epoch = epoch

    def __str__(self) -> str:
        return str(self.args[0])


def diverged(epoch: int, trainer: DictConfig) -> TrainingDiverged:
    return TrainingDiverged(
        f"loss became NaN/inf in epoch {epoch} of {trainer.epochs} (trainer.learning_rate={trainer.learning_rate})"
    )


def first_diverged_epoch(history: list[dict[str, float]], epochs: int) -> int | None:
    """The first epoch (from 1) whose loss is not finite, or that never ended; None when all `epochs` did."""
    for epoch, metrics in enumerate(history, start=1):
        if not math.isfinite(metrics.get("loss", math.nan)):
            return epoch
    return None if len(history) >= epochs else len(history) + 1


# --- the checkpoint -------------------------------------------------------------------------------------
JOURNAL = "epochs.json"  # every finished epoch's metrics, written before the engine saves its state
METADATA = "training_metadata.json"  # {"epoch": k, ...}: the epochs the saved state holds (Keras's name)


def has_checkpoint(backup_dir: Path) -> bool:
    return (backup_dir / METADATA).exists()


def checkpoint_epoch(backup_dir: Path) -> tuple[int, dict]:
    """(epochs the checkpoint holds, its metadata); (0, {}) without a readable one."""
    try:
        metadata = json.loads((backup_dir / METADATA).read_text())
        return int(metadata["epoch"]), metadata
    except (OSError, ValueError, KeyError, TypeError):
        return 0, {}


def completed_epochs(backup_dir: Path) -> list[dict[str, float]]:
    """Metrics of the epochs a checkpoint holds (the journal cut to the checkpoint's epoch); [] without one."""
    epoch, _ = checkpoint_epoch(backup_dir)
    try:
        return json.loads((backup_dir / JOURNAL).read_text())[:epoch] if epoch else []
    except (OSError, ValueError):
        return []


def end_epoch(member: Member, epoch: int, save_state: Callable[[], None]) -> None:
    """After `epoch` (from 1), in this order: the journal, the engine's state (`save_state`), then the report.

    A job killed anywhere in between finds a journal at least as long as its state, so on resume it re-logs
    exactly the epochs its checkpoint holds and never logs an epoch that it will train again.
    """
    member.backup_dir.mkdir(parents=True, exist_ok=True)
    files.write_atomic(member.backup_dir / JOURNAL, json.dumps(member.history))
    save_state()
    member.on_epoch(epoch, member.history[epoch - 1])


# --- the result -----------------------------------------------------------------------------------------
def result_from_probabilities(
    probabilities: np.ndarray,
    dataset: Dataset,
    history: list[dict[str, float]],
    train_images_per_second: float,
    trained_network: Callable[[], keras.Model],
) -> TrainResult:
    """One pass over the test set: loss, accuracy and calibration all come from the predicted probabilities."""
    labels = dataset.test.labels.astype(int)
    return TrainResult(
        trained_network=trained_network,
        history=history,
        test_loss=calibration.negative_log_likelihood(probabilities, labels),
        test_accuracy=float(np.mean(probabilities.argmax(axis=1) == labels)),
        test_reliability=calibration.reliability(probabilities, labels),
        train_images_per_second=train_images_per_second,
    )
