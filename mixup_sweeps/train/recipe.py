"""The training recipe's rules: which optimizers and schedules there are, the learning rate of each epoch, and
the checks of the `trainer` keys that state them. NumPy-free and Keras-free: the job's config check imports it.

The learning rate is a function of the epoch number alone (set before each epoch, as the mixup paper's code and
PyTorch's `MultiStepLR` / `CosineAnnealingLR` step per epoch), so a run resumed after epoch k trains epoch k + 1
with the rate an uninterrupted run used, whichever engine trains it. The optimizers are in `optimizers`.
"""

from __future__ import annotations

import math
from typing import Any

from mixup_sweeps.errors import require

OPTIMIZERS = ("adam", "sgd", "adamw")
SCHEDULES = ("constant", "step", "cosine")


def learning_rate(trainer: Any, epoch: int) -> float:
    """The learning rate of `epoch` (from 0): a linear warmup over `warmup_epochs` ((e + 1) / W of the rate),
    then the schedule: `constant`; `step`, the rate times `step_factor` for each milestone <= epoch; `cosine`,
    half a cosine from the rate to 0 over the epochs after the warmup (epoch W has the full rate)."""
    base, warmup = float(trainer.learning_rate), int(trainer.get("warmup_epochs", 0) or 0)
    if epoch < warmup:
        return base * (epoch + 1) / warmup
    schedule = trainer.get("schedule", "constant")
    if schedule == "step":
        return base * float(trainer.step_factor) ** sum(1 for m in trainer.milestones if m <= epoch)
    if schedule == "cosine":
        return base * 0.5 * (1.0 + math.cos(math.pi * (epoch - warmup) / (int(trainer.epochs) - warmup)))
    return base


def check(trainer: Any) -> None:
    """One `ConfigError` line for a recipe value that cannot work (the keys and what each allows)."""
    optimizer = trainer.optimizer
    require(optimizer in OPTIMIZERS, "trainer.optimizer", optimizer, f"one of {list(OPTIMIZERS)}")
    decay = trainer.weight_decay
    require(math.isfinite(decay) and decay >= 0, "trainer.weight_decay", decay, "must be a finite number >= 0")
    require(optimizer != "adam" or decay == 0, "trainer.weight_decay", decay,
            "must be 0 with trainer.optimizer=adam (decay: adamw decoupled, or sgd coupled L2)")  # fmt: skip
    momentum = trainer.momentum
    require(0 <= momentum < 1, "trainer.momentum", momentum, "must be in [0, 1)")
    require(not trainer.nesterov or momentum > 0, "trainer.nesterov", trainer.nesterov,
            "needs trainer.momentum > 0")  # fmt: skip
    schedule, epochs = trainer.schedule, trainer.epochs
    require(schedule in SCHEDULES, "trainer.schedule", schedule, f"one of {list(SCHEDULES)}")
    milestones = list(trainer.milestones)
    require(all(b > a for a, b in zip(milestones, milestones[1:])), "trainer.milestones", milestones,
            "must be increasing epochs")  # fmt: skip
    require(all(1 <= m < epochs for m in milestones), "trainer.milestones", milestones,
            f"each must be an epoch in [1, trainer.epochs - 1 = {epochs - 1}]")  # fmt: skip
    require(schedule == "step" or not milestones, "trainer.milestones", milestones,
            f"only trainer.schedule=step has milestones (it is {schedule}); use [] ")  # fmt: skip
    factor = trainer.step_factor
    require(math.isfinite(factor) and 0 < factor <= 1, "trainer.step_factor", factor, "must be in (0, 1]")
    warmup = trainer.warmup_epochs
    require(0 <= warmup < epochs, "trainer.warmup_epochs", warmup,
            f"must be an integer in [0, trainer.epochs - 1 = {epochs - 1}] (shorter than training)")  # fmt: skip
    require(schedule != "step" or all(m >= warmup for m in milestones), "trainer.milestones", milestones,
            f"must not fall inside the warmup (trainer.warmup_epochs={warmup})")  # fmt: skip
