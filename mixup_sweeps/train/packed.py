"""Packed training: jobs that share a program shape trained as one vmapped Keras-JAX program.

Jobs of a sweep that differ only in data (seed, aug, label noise, learning rate) run the same network on the
same images, so one compiled program can train all of them: Keras's own stateless `model.train_step`
(`stateless_call`, the loss, the optimizer's `stateless_apply`, the metrics) under `jax.vmap` over the members
and `jax.lax.scan` over the `trainer.steps_per_execution` steps of one compiled call. The training images are
on the device once; per call the host sends each member's image indices, partners, λs / CutMix boxes and soft
labels from its own `training_stream.EpochPlan` (a pure function of (seed, epoch)), and the device gathers and mixes.
Dropout draws per member from (seed, epoch, step). Validation and the test pass are vmapped too.

Which jobs may share a pack is `config.program_shape_key`; the pack's step takes the mask inputs its members'
augmentations need (`augmentations.input_form`), a member whose augmentation needs fewer sends 'nothing taken'
for the rest. Every JAX job trains here, a single job as a pack of one (`hydra/launcher=packed` packs many):
one training step for both. Each member is checkpointed on its own every epoch (`training.end_epoch`: the
journal, its slice of the stacked weights and optimizer state, the metadata), so a killed pack resumes member
by member, and a member whose loss turns NaN (or that a search prunes) fails alone while the others go on.
What this engine shares with `fit` is in `training`.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import jax
import keras
import numpy as np

from mixup_sweeps import files
from mixup_sweeps.data import augmentations, input_aug, training_stream
from mixup_sweeps.text import format_duration
from mixup_sweeps.train import models, probes, recipe, training
from mixup_sweeps.train.training import INTERRUPTS, Member

log = logging.getLogger(__name__)
STATE_FILE = "packed_state-{epoch}.npz"  # one member's state after `epoch` epochs (`training.METADATA` names it)


def train(members: Sequence[Member]) -> None:
    """Train every member for cfg.trainer.epochs; each ends with `.result`, or `failed` (its loss diverged).

    Members resumed from different epochs train as separate packs (a pack steps all its members at once).
    Interrupts and errors of the program itself propagate: the caller ends every open run.
    """
    starts: dict[int, list[Member]] = {}
    for member in members:
        starts.setdefault(_restore_point(member)[0], []).append(member)
    for _, group in sorted(starts.items()):
        PackedProgram(group).run()


def _restore_point(member: Member) -> tuple[int, Path | None]:
    """(epochs done, state file) of a member's checkpoint; (0, None) without one."""
    epoch, metadata = training.checkpoint_epoch(member.backup_dir)
    state = member.backup_dir / str(metadata.get("state", ""))
    return (epoch, state) if epoch and state.is_file() else (0, None)


class PackedProgram:
    """The compiled train, validation and test calls of one pack, and its members' stacked state."""

    def __init__(self, members: Sequence[Member]) -> None:
        self.members = list(members)
        first = self.members[0].cfg
        self.trainer, self.batch, self.classes = first.trainer, first.trainer.batch_size, first.dataset.num_classes
        keras.backend.clear_session(free_memory=False)  # no gc.collect(): ~0.5 s a job
        self.network = models.build_model(
            first.model, tuple(first.dataset.image_shape), self.classes, precision=first.trainer.precision
        )
        self.crop_padding = input_aug.padding_of(first.trainer)  # the program's input form: one for the pack
        augs = [augmentations.of(member.cfg.aug) for member in self.members]
        self.form = training_stream.input_form(augs, self.crop_padding)
        self.model = training_stream.training_model(self.network, self.form, name="packed")
        training.compile_for_training(self.model, first.trainer)
        val = self.members[0].dataset.val  # one evaluation builds the loss and metric variables
        self.model.evaluate(self._unmixed(val.images[:1]), _onehot(val.labels[:1], self.classes), verbose=0)
        self.model.optimizer.build(self.model.trainable_variables)
        self.seed_slots = [i for i, v in enumerate(self.model.non_trainable_variables) if v.name == training.SEED_STATE]
        optimizer_names = [v.name for v in self.model.optimizer.variables]
        self.rate_slot = optimizer_names.index("learning_rate")  # set per member before each epoch (its schedule)
        # sgd and adamw: the decay is a value per member, set once (adam has none)
        self.decay_slot = optimizer_names.index("weight_decay") if "weight_decay" in optimizer_names else None
        self.state = self._initial_state()
        self.train_images = jax.device_put(self.members[0].dataset.train.images)  # the same images for all
        self.batched = batched_members() if BATCHED is None else BATCHED
        self._train_call = jax.jit(self._train_steps, donate_argnums=0)  # batched: steps x members per call
        self._member_step = jax.jit(self._indexed_step, donate_argnums=0)  # one by one: one member, one step
        self._test_call = over_members(self._test, (1,), self.batched)
        self._predict_call = over_members(self._predict, (2,), self.batched)
        self.probes = [probes.EpochProbes.of(member.cfg, member.dataset) for member in self.members]
        probed = [p.memorization.indices for p in self.probes if p.memorization is not None]
        self.probed_union = np.unique(np.concatenate(probed)) if probed else np.zeros(0, np.int64)  # every epoch's

    # --- state --------------------------------------------------------------------------------------------
    def _initial_state(self) -> tuple[list[np.ndarray], ...]:
        """Stacked (trainable, non-trainable, optimizer) state: each member from its initial weights or backup."""
        optimizer_template = [np.asarray(v.value) for v in self.model.optimizer.variables]
        decay = self.decay_slot
        per_member, starts = [], set()
        for member in self.members:
            epoch, state_file = _restore_point(member)
            starts.add(epoch)
            if state_file is not None:
                with np.load(state_file) as saved:
                    parts = tuple([saved[f"{part}{i}"] for i in range(count)] for part, count in self._layout())
                member.history = training.completed_epochs(member.backup_dir)[:epoch]
            else:
                self.network.load_weights(member.initial_weights)
                optimizer = [a.copy() for a in optimizer_template]
                if decay is not None:
                    optimizer[decay] = np.asarray(member.cfg.trainer.weight_decay, optimizer[decay].dtype)
                parts = (
                    [np.asarray(v.value) for v in self.model.trainable_variables],
                    [np.asarray(v.value) for v in self.model.non_trainable_variables],
                    optimizer,
                )
            per_member.append(parts)
        (self.start_epoch,) = starts  # `train_pack` groups members by the epoch they resume from
        return tuple(
            [jax.device_put(np.stack(arrays)) for arrays in zip(*(p[k] for p in per_member))] for k in range(3)
        )

    def _layout(self) -> list[tuple[str, int]]:
        model = self.model
        return [
            ("t", len(model.trainable_variables)),
            ("n", len(model.non_trainable_variables)),
            ("o", len(model.optimizer.variables)),
        ]

    def _save_state(self, index: int, member: Member, epoch: int) -> None:
        """A member's state after `epoch` epochs: the state file, then the metadata that points to it."""
        arrays = {
            f"{part}{i}": np.asarray(values[i][index])
            for (part, count), values in zip(self._layout(), self.state)
            for i in range(count)
        }
        name = STATE_FILE.format(epoch=epoch)
        with files.atomic_path(member.backup_dir / name) as tmp, open(tmp, "wb") as file:
            np.savez(file, allow_pickle=False, **arrays)
        files.write_atomic(member.backup_dir / training.METADATA, json.dumps({"epoch": epoch, "state": name}))
        old = member.backup_dir / STATE_FILE.format(epoch=epoch - 1)
        old.unlink(missing_ok=True)

    # --- the compiled calls -------------------------------------------------------------------------------
    def _one_step(self, state: tuple, images: jax.Array, *batch: Any) -> tuple[dict, tuple]:
        """One training step of one member: its batch gathered from the images on the device, mixed, trained
        by Keras's `train_step` (stateless_call, loss, the optimizer's stateless_apply, metrics). `batch`:
        `EpochPlan.arrays` in the pack's form, (order[, partner, mask inputs], labels)."""
        order, *mixing, labels = batch
        inputs = (images[order], images[mixing[0]], *mixing[1:]) if mixing else (images[order],)
        return self.model.train_step(state, (inputs, labels))

    def _indexed_step(self, state: tuple, images: jax.Array, plan: tuple, step: jax.Array) -> tuple[dict, tuple]:
        """`_one_step` on batch `step` of a member's epoch plan held on the device ((steps, batch, ...) arrays)."""
        return self._one_step(state, images, *(jax.lax.dynamic_index_in_dim(a, step, keepdims=False) for a in plan))

    def _train_steps(self, state: tuple, images: jax.Array, plan: tuple) -> tuple[tuple, dict]:
        """`len(plan[0])` steps of every member: scan over the steps, vmap over the members."""

        def step(carry: tuple, batch: tuple) -> tuple[tuple, dict]:
            logs, carry = jax.vmap(self._one_step, in_axes=(0, None, *(0,) * len(batch)))(carry, images, *batch)
            return carry, logs

        state, logs = jax.lax.scan(step, state, plan)
        return state, jax.tree.map(lambda values: values[-1], logs)

    def _predict(self, trainable: list, non_trainable: list, inputs: tuple) -> Any:
        return self.model.stateless_call(trainable, non_trainable, inputs, training=False)[0]

    def _zero_metrics(self) -> list[np.ndarray]:
        """The loss tracker's and accuracy's totals and counts at the start of an epoch (or evaluation)."""
        return [np.zeros((len(self.members), *np.shape(v.value)), v.dtype) for v in self.model.metrics_variables]

    # --- one epoch ----------------------------------------------------------------------------------------
    def _epoch_plans(self, epoch: int) -> list[np.ndarray]:
        """Every member's plan of `epoch` in the shared input form, stacked: (members, n, ...) arrays; drawn
        while the epoch before trains (`training_stream.PlansAhead`)."""
        plans = []
        for member in self.members:
            plan = training_stream.epoch_plan(
                member.dataset.train,
                member.cfg.aug,
                self.batch,
                self.classes,
                member.cfg.seed,
                epoch,
                self.crop_padding,
            )
            plans.append(plan.arrays(self.form))
        return [np.stack(arrays) for arrays in zip(*plans)]

    def _train_epoch(self, epoch: int) -> dict[str, np.ndarray]:
        trainable, non_trainable, optimizer = self.state
        for slot in self.seed_slots:  # dropout's draws start at (seed, epoch) for each member
            seeds = [training.epoch_seed_state(m.cfg.seed, epoch) for m in self.members]
            non_trainable[slot] = np.asarray(seeds, dtype=np.asarray(non_trainable[slot]).dtype)
        rates = [recipe.learning_rate(m.cfg.trainer, epoch) for m in self.members]  # each member's schedule
        optimizer[self.rate_slot] = np.asarray(rates, dtype=np.asarray(optimizer[self.rate_slot]).dtype)
        state = jax.device_put((trainable, non_trainable, optimizer, self._zero_metrics()))
        plans = self.plans_ahead.get(epoch)
        n = plans[0].shape[1]
        full, rest = divmod(n, self.batch)
        if not self.batched:
            return self._train_epoch_one_by_one(state, plans, full, rest)
        logs: dict = {}
        calls = [(start, min(self.trainer.steps_per_execution, full - start), self.batch)
                 for start in range(0, full, self.trainer.steps_per_execution)]  # fmt: skip
        if rest:
            calls.append((full, 1, rest))  # the last, smaller batch: a call of its own shape
        for start, steps, size in calls:
            first = start * self.batch
            chunk = [a[:, first : first + steps * size] for a in plans]
            chunk = [np.swapaxes(a.reshape(a.shape[0], steps, size, *a.shape[2:]), 0, 1) for a in chunk]
            state, logs = self._train_call(state, self.train_images, tuple(chunk))
            INTERRUPTS.raise_pending()
        self.state = state[:3]
        return {key: np.asarray(value) for key, value in logs.items()}

    def _train_epoch_one_by_one(self, state: tuple, plans: list[np.ndarray], full: int, rest: int) -> dict:
        """A CPU's epoch: the one-member step called for each step and member (see `batched_members`)."""
        members = [jax.tree.map(lambda a, m=m: a[m], state) for m in range(len(self.members))]
        member_logs: list[dict] = [{} for _ in members]
        cut = full * self.batch  # full batches as (steps, batch, ...) on the device; the last, smaller one apart
        epoch = [
            [jax.device_put(a[m, :cut].reshape(full, self.batch, *a.shape[2:])) for a in plans]
            for m in range(len(members))
        ]
        last = [[jax.device_put(a[m, cut:][None]) for a in plans] for m in range(len(members))] if rest else []
        for index in range(full + (1 if rest else 0)):
            for m in range(len(members)):
                plan, step = (epoch[m], index) if index < full else (last[m], 0)
                member_logs[m], members[m] = self._member_step(members[m], self.train_images, plan, step)
            INTERRUPTS.raise_pending()
        self.state = jax.tree.map(lambda *a: jax.numpy.stack(a), *members)[:3]
        return {key: np.stack([np.asarray(logs[key]) for logs in member_logs]) for key in member_logs[0]}

    def _test(self, state: tuple, inputs: tuple, labels: jax.Array) -> tuple[dict, tuple]:
        return self.model.test_step(state, (inputs, labels))

    def _evaluate(self, split_images: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
        """Loss and accuracy of every member on the same images, each against its own labels ((members, n):
        validation labels carry each member's noise with dataset.noisy_validation); Keras's test_step, in chunks."""
        trainable, non_trainable, _ = self.state
        state, logs = (trainable, non_trainable, self._zero_metrics()), {}
        for first in range(0, labels.shape[1], probes.PREDICT_BATCH):
            chunk = slice(first, first + probes.PREDICT_BATCH)
            inputs = self._unmixed(split_images[chunk])
            logs, state = self._test_call(state, inputs, _onehot(labels[:, chunk], self.classes))
        return {key: np.asarray(value) for key, value in logs.items()}

    def _probabilities(self, images: np.ndarray) -> np.ndarray:
        """Every member's predicted probabilities on the same images: (members, images, classes)."""
        trainable, non_trainable, _ = self.state
        size = probes.PREDICT_BATCH
        chunks = [
            np.asarray(self._predict_call(trainable, non_trainable, self._unmixed(images[first : first + size])))
            for first in range(0, len(images), size)
        ]
        return np.concatenate(chunks, axis=1)

    def _probe_metrics(self) -> list[dict[str, float]]:
        """Each member's probe metrics after this epoch (`probes.EpochProbes`): one prediction pass over the
        test set and one over the union of the members' probed training examples, shared by all members."""
        if not any(self.probes):
            return [{} for _ in self.members]
        data = self.members[0].dataset
        test = None
        if any(p.test_labels is not None for p in self.probes):
            test = self._probabilities(data.test.images).argmax(axis=-1)
        union = self.probed_union
        predicted = self._probabilities(data.train.images[union]).argmax(axis=-1) if len(union) else None
        metrics = []
        for i, p in enumerate(self.probes):
            own = None
            if p.memorization is not None and predicted is not None:
                own = predicted[i, np.searchsorted(union, p.memorization.indices)]
            metrics.append(p.metrics(test[i] if test is not None else None, own))
        return metrics

    # --- the run ------------------------------------------------------------------------------------------
    def run(self) -> None:
        epochs = self.trainer.epochs
        self.plans_ahead = training_stream.PlansAhead(self._epoch_plans, last=epochs - 1)
        try:
            self._run(epochs)
        finally:
            self.plans_ahead.close()

    def _run(self, epochs: int) -> None:
        train_seconds = 0.0
        val_labels = np.stack([member.dataset.val.labels for member in self.members])
        for epoch in range(self.start_epoch, epochs):
            started = time.perf_counter()
            logs = self._train_epoch(epoch)
            train_seconds += time.perf_counter() - started
            val = self._evaluate(self.members[0].dataset.val.images, val_labels)
            probed = self._probe_metrics()
            seconds = time.perf_counter() - started
            for i, member in enumerate(self.members):
                if member.failed:
                    continue
                metrics = {"loss": float(logs["loss"][i]), "accuracy": float(logs["accuracy"][i]),
                           "val_loss": float(val["loss"][i]), "val_accuracy": float(val["accuracy"][i]),
                           "learning_rate": recipe.learning_rate(member.cfg.trainer, epoch),
                           **probed[i], "epoch_seconds": seconds}  # fmt: skip
                if not math.isfinite(metrics["loss"]):  # as the fit engine would say; the rest go on
                    member.fail(training.diverged(epoch + 1, member.cfg.trainer))
                    continue
                member.history.append(metrics)
                try:
                    training.end_epoch(member, epoch + 1, partial(self._save_state, i, member, epoch + 1))
                except training.MemberStopped as exc:  # pruned by a search: alone, the pack goes on
                    member.fail(exc)
            INTERRUPTS.raise_pending()
            self._progress(epoch + 1, seconds, [m.history[-1]["val_accuracy"] for m in self.members if not m.failed])
            if all(member.failed for member in self.members):
                return
        probabilities = self._probabilities(self.members[0].dataset.test.images)
        images_per_second = len(self.members[0].dataset.train) * (epochs - self.start_epoch) / max(train_seconds, 1e-9)
        for i, member in enumerate(self.members):
            if member.failed:
                continue
            trained = tuple([np.asarray(values[i]) for values in part] for part in self.state[:2])
            member.result = training.result_from_probabilities(
                probabilities[i], member.dataset, member.history, images_per_second, self._network_with(*trained)
            )

    def _progress(self, epoch: int, seconds: float, val_accuracy: list[float]) -> None:
        """One line per epoch for the whole pack: members still training, their mean validation accuracy, ETA."""
        if len(self.members) < 2:
            return  # a lone job: its own lines say it
        left = (self.trainer.epochs - epoch) * seconds
        mean = f"{np.mean(val_accuracy):.4f}" if val_accuracy else "n/a"
        log.info("pack of %d: epoch %d/%d, %d training, mean val_accuracy %s, ETA %s", len(self.members), epoch,
                 self.trainer.epochs, len(val_accuracy), mean, format_duration(left))  # fmt: skip

    def _network_with(self, trainable: list[np.ndarray], non_trainable: list[np.ndarray]) -> Callable[[], keras.Model]:
        """A member's trained network: the pack's one network, given this member's weights when asked for."""

        def network() -> keras.Model:
            for variable, value in zip(self.model.trainable_variables, trainable):
                variable.assign(value)
            for variable, value in zip(self.model.non_trainable_variables, non_trainable):
                variable.assign(value)
            return self.network

        return network

    def _unmixed(self, images: np.ndarray) -> tuple[np.ndarray, ...]:
        return training_stream.unmixed_inputs(images, self.form)


# None: by platform (`batched_members`); True or False forces one strategy (tests run the GPU's on a CPU).
BATCHED: bool | None = None


def batched_members() -> bool:
    """Whether a pack runs as one batched program (`jax.vmap` over members, `jax.lax.scan` over the steps of a
    call): on a GPU or TPU, the point of packing. On a CPU, XLA's loops ran a step 13x slower than a call per
    step and its convolutions batched over members 2x slower than member by member (measured here, see
    docs/benchmarks.md), so there each member's step is its own call of one compiled function, as Keras's fit
    does on JAX: the same step, the same results, and the pack no slower per model-epoch than jobs alone."""
    return jax.default_backend() != "cpu"


def over_members(function: Callable[..., Any], shared: tuple[int, ...], batched: bool) -> Callable[..., Any]:
    """`function` of one member, compiled, applied to every member: to the leading axis of each argument but
    the `shared` ones; results stacked. Batched: `jax.vmap`; else one call per member."""
    if batched:
        return jax.jit(jax.vmap(function, in_axes=tuple(None if i in shared else 0 for i in range(_arity(function)))))
    single = jax.jit(function)

    def one_by_one(*args: Any) -> Any:
        count = len(jax.tree.leaves(args[next(i for i in range(len(args)) if i not in shared)])[0])
        outputs = [
            single(*(a if i in shared else jax.tree.map(lambda x, m=m: x[m], a) for i, a in enumerate(args)))
            for m in range(count)
        ]
        return jax.tree.map(lambda *values: jax.numpy.stack(values), *outputs)

    return one_by_one


def _arity(function: Callable[..., Any]) -> int:
    import inspect

    return len(inspect.signature(function).parameters)


def _onehot(labels: np.ndarray, classes: int) -> np.ndarray:
    return np.eye(classes, dtype=np.float32)[labels]
