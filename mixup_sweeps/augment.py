"""The training stream: plain (aug=none), mixup, or CutMix, the same for every Keras backend and restart.

Zhang et al. 2018 / the Keras mixup example (the defaults): lambda ~ Beta(alpha, alpha) per sample, from two
Gamma draws, x = lambda*x1 + (1-lambda)*x2 of two independently shuffled streams, the same lambda on the one-hot
labels. The variants: `aug.lam=per_batch` draws one lambda per batch and `aug.pairing=permute` mixes a batch
with a permutation of itself (both as in the paper's own code); `aug=cutmix` pastes a box of a partner from
the same batch, labels weighted by the pasted area (Yun et al. 2019, as `keras.layers.CutMix` draws it).

The work is split in two:
- the host decides *what* is mixed: per epoch, an `EpochPlan` (image order, partners, lambdas or boxes, soft
  labels) drawn with NumPy from (seed, epoch) alone, and `TrainingStream` (a `keras.utils.PyDataset`) hands
  out slices of it as uint8 batches. So the batches of epoch e are the same whichever backend, thread or
  restart produced them: a run resumed after epoch k sees exactly the batches the uninterrupted run saw.
- the compiled train step does the arithmetic (`MixImages`, keras.ops): scale to [0, 1] and mix, on the
  device that trains. Labels are mixed on the host (a batch of them is 64 x 10 numbers).
`keras.layers.MixUp`/`CutMix` are not used: they draw from layer state inside the step, which is neither a
function of the epoch nor restored by BackupAndRestore. Each epoch is a full permutation of the training
set (the seed used tf.data's 6,400-image shuffle buffer; see DEVELOPERS.md).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
from keras import ops
from omegaconf import DictConfig

from mixup_sweeps.data import Split

_TINY = float(np.finfo(np.float64).tiny)


def sample_beta(rng: np.random.Generator, size: int, alpha: float) -> np.ndarray:
    """Beta(alpha, alpha) as G1 / (G1 + G2) with Gi ~ Gamma(alpha), computed in log space (float32 result).

    log G(alpha) = log G(alpha + 1) + log(U) / alpha has the same distribution and does not underflow,
    so a tiny alpha gives lambdas near 0 or 1 instead of the 0/0 = NaN the direct ratio produces.
    """
    log_gammas = [
        np.log(rng.standard_gamma(alpha + 1.0, size)) + np.log(1.0 - rng.random(size) + _TINY) / alpha for _ in range(2)
    ]
    return (0.5 * (1.0 + np.tanh(0.5 * (log_gammas[0] - log_gammas[1])))).astype(np.float32)  # sigmoid


def sample_lambdas(rng: np.random.Generator, n: int, batch_size: int, alpha: float, lam: str) -> np.ndarray:
    """`n` lambdas (`aug.lam`): independent ("per_sample"), or one draw for each batch of `batch_size`."""
    if lam == "per_batch":
        return np.repeat(sample_beta(rng, -(-n // batch_size), alpha), batch_size)[:n]
    return sample_beta(rng, n, alpha)


def permute_within_batches(rng: np.random.Generator, n: int, batch_size: int) -> np.ndarray:
    """Positions 0..n-1, each batch of `batch_size` shuffled within itself (a batch's partners come from it)."""
    return np.argsort(np.arange(n) // batch_size + rng.random(n), kind="stable")


def cut_boxes(rng: np.random.Generator, lam: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """CutMix boxes as keras.layers.CutMix draws them: sides sqrt(1 - lambda) of the image's, placed uniformly
    inside it. Returns the boxes (n, 4: y0, y1, x0, x1, float32; a pixel (i, j) is pasted when y0 <= i < y1 and
    x0 <= j < x1) and the share of each image that stays its own (the label weight; exact pixel count)."""
    ratio = np.sqrt(1.0 - lam.astype(np.float64))
    bounds = []
    for length in (height, width):
        crop = ratio * length
        start = rng.random(len(lam)) * (length - crop)
        bounds += [start, start + crop]
    boxes = np.stack(bounds, axis=1).astype(np.float32)
    pixels = np.ceil(boxes)  # the integer coordinates inside [start, end)
    pasted = np.clip(pixels[:, 1] - pixels[:, 0], 0, None) * np.clip(pixels[:, 3] - pixels[:, 2], 0, None)
    return boxes, (1.0 - pasted / (height * width)).astype(np.float32)


@dataclass(frozen=True)
class EpochPlan:
    """Everything epoch e of the stream consists of, as arrays over its n positions."""

    order: np.ndarray  # index of the image at each position
    partner: np.ndarray | None  # index of the image it is mixed with (None: aug=none)
    mix: np.ndarray | None  # per position: lambda (mixup) or a box y0, y1, x0, x1 (cutmix), float32
    labels: np.ndarray  # soft labels, float32 (n, classes)


def epoch_plan(split: Split, aug: DictConfig, batch_size: int, num_classes: int, seed: int, epoch: int) -> EpochPlan:
    """The plan of one epoch: a pure function of its arguments (NumPy's generator seeded by [seed, epoch]).

    The shuffle, the pairing and the weights draw from separate child streams, so every aug variant of one
    (seed, epoch) sees its images in the same order.
    """
    n = len(split)
    order_rng, partner_rng, weight_rng = (
        np.random.default_rng(s) for s in np.random.SeedSequence([seed, epoch]).spawn(3)
    )
    order = order_rng.permutation(n)
    onehot = np.eye(num_classes, dtype=np.float32)[split.labels]
    if aug.name == "none":
        return EpochPlan(order, None, None, onehot[order])
    if aug.name == "mixup" and aug.pairing == "two_streams":
        partner = partner_rng.permutation(n)
    else:  # mixup with pairing=permute, cutmix: a partner from the same batch
        partner = order[permute_within_batches(partner_rng, n, batch_size)]
    if aug.name == "mixup":
        mix = own_share = sample_lambdas(weight_rng, n, batch_size, float(aug.alpha), str(aug.lam))
    elif aug.name == "cutmix":
        # CutMix's `factor` range (a, a) means Beta(a, a), as in the CutMix paper (alpha 1.0: uniform area).
        height, width = split.images.shape[1:3]
        mix, own_share = cut_boxes(weight_rng, sample_beta(weight_rng, n, float(aug.alpha)), height, width)
    else:
        raise ValueError(f"unknown augmentation {dict(aug)!r}")
    own = own_share[:, None]
    return EpochPlan(order, partner, mix, own * onehot[order] + (1.0 - own) * onehot[partner])


class TrainingStream(keras.utils.PyDataset):
    """Batches of epoch `epoch`: ((uint8 images[, partner images, mixing weights]), soft labels).

    `epoch` is set by `EpochCallback` when Keras starts an epoch (the real epoch number, also after
    BackupAndRestore skipped the saved ones); a batch depends on (epoch, index) only, never on call order.
    """

    def __init__(
        self, split: Split, aug: DictConfig, batch_size: int, num_classes: int, seed: int, **kwargs: object
    ) -> None:
        super().__init__(**kwargs)
        self.split, self.aug, self.batch_size, self.num_classes, self.seed = split, aug, batch_size, num_classes, seed
        self.epoch = 0
        self._plans: dict[int, EpochPlan] = {}
        self._lock = threading.Lock()

    @property
    def num_batches(self) -> int:
        return -(-len(self.split) // self.batch_size)

    def plan(self, epoch: int) -> EpochPlan:
        with self._lock:  # worker threads share one plan per epoch; keep the current and the next
            if epoch not in self._plans:
                for old in [e for e in self._plans if e < epoch - 1]:
                    del self._plans[old]
                self._plans[epoch] = epoch_plan(
                    self.split, self.aug, self.batch_size, self.num_classes, self.seed, epoch
                )
            return self._plans[epoch]

    def batch(self, epoch: int, index: int) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
        plan = self.plan(epoch)
        rows = slice(index * self.batch_size, (index + 1) * self.batch_size)
        images = self.split.images[plan.order[rows]]
        if plan.partner is None or plan.mix is None:
            return (images,), plan.labels[rows]
        return (images, self.split.images[plan.partner[rows]], plan.mix[rows]), plan.labels[rows]

    def __getitem__(self, index: int) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
        return self.batch(self.epoch, index)

    def epoch_callback(self) -> keras.callbacks.Callback:
        return EpochCallback(self)


class EpochCallback(keras.callbacks.Callback):
    """Tells the stream which epoch Keras is starting (called before the epoch's first batch is fetched)."""

    def __init__(self, stream: TrainingStream) -> None:
        super().__init__()
        self.stream = stream

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.stream.epoch = epoch


PACKED = "packed"  # MixImages for any aug: (images, partners, lambda, box), so members of a pack share a program


def packed_arrays(plan: EpochPlan) -> tuple[np.ndarray, ...]:
    """An epoch plan in the one input form every aug shares (`PACKED`): order, partner, lambda, box, labels.

    none: its own image as partner with lambda 1 and no box; mixup: lambda, no box; cutmix: lambda 1 and its
    box. With lambda 1 and an empty box, `MixImages(PACKED)` gives back the image exactly (x·1 + y·0 = x).
    """
    n = len(plan.order)
    lam, box = np.ones(n, np.float32), np.zeros((n, 4), np.float32)
    partner = plan.order if plan.partner is None else plan.partner
    if plan.mix is not None and plan.mix.ndim == 2:
        box = plan.mix
    elif plan.mix is not None:
        lam = plan.mix
    return plan.order, partner, lam, box, plan.labels


class MixImages(keras.layers.Layer):
    """In the train step: uint8 images -> [0, 1] floats, mixed with their partners by lambda or CutMix box."""

    def __init__(self, aug_name: str, **kwargs: object) -> None:
        super().__init__(dtype="float32", **kwargs)
        self.aug_name = aug_name

    def call(self, inputs: list) -> object:
        if self.aug_name == "none":
            return ops.cast(inputs[0], "float32") / 255.0
        if self.aug_name == PACKED:
            images, partners, lam, box = (ops.cast(x, "float32") for x in inputs)
            images, partners, lam = images / 255.0, partners / 255.0, ops.reshape(lam, (-1, 1, 1, 1))
            return ops.where(self._pasted(images, box), partners, images * lam + partners * (1.0 - lam))
        images, partners, mix = (ops.cast(x, "float32") for x in inputs)
        images, partners = images / 255.0, partners / 255.0
        if self.aug_name == "mixup":
            lam = ops.reshape(mix, (-1, 1, 1, 1))
            return images * lam + partners * (1.0 - lam)
        return ops.where(self._pasted(images, mix), partners, images)

    @staticmethod
    def _pasted(images: Any, box: Any) -> Any:
        """Where each image takes its partner's pixel: inside its box (y0 <= row < y1, x0 <= col < x1)."""
        rows = ops.reshape(ops.arange(ops.shape(images)[1], dtype="float32"), (1, -1, 1, 1))
        cols = ops.reshape(ops.arange(ops.shape(images)[2], dtype="float32"), (1, 1, -1, 1))
        y0, y1, x0, x1 = (ops.reshape(box[:, i], (-1, 1, 1, 1)) for i in range(4))
        return (rows >= y0) & (rows < y1) & (cols >= x0) & (cols < x1)

    def get_config(self) -> dict:
        return {**super().get_config(), "aug_name": self.aug_name}


def training_model(network: keras.Model, aug_name: str) -> keras.Model:
    """`network` behind the mixing step: what `fit` trains (it shares the network's weights). `aug_name` is
    cfg.aug.name, or `PACKED` for the input form every aug shares (`packed_arrays`)."""
    image_shape = tuple(network.input_shape[1:])
    inputs = [keras.Input(image_shape, dtype="uint8", name="images")]
    if aug_name == PACKED:
        inputs.append(keras.Input(image_shape, dtype="uint8", name="partners"))
        inputs.append(keras.Input((), dtype="float32", name="lam"))
        inputs.append(keras.Input((4,), dtype="float32", name="box"))
    elif aug_name != "none":
        inputs.append(keras.Input(image_shape, dtype="uint8", name="partners"))
        inputs.append(keras.Input((4,) if aug_name == "cutmix" else (), dtype="float32", name="mix"))
    return keras.Model(inputs, network(MixImages(aug_name)(inputs)), name=f"{network.name}_{aug_name}")


def unmixed_inputs(split: Split, aug: DictConfig, num_classes: int) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
    """A validation split in the training model's input form, mixed with nothing (lambda 1, empty box)."""
    labels = np.eye(num_classes, dtype=np.float32)[split.labels]
    if aug.name == "none":
        return (split.images,), labels
    n = len(split)
    mix = np.zeros((n, 4), np.float32) if aug.name == "cutmix" else np.ones(n, np.float32)
    return (split.images, split.images, mix), labels


def scaled(split: Split) -> np.ndarray:
    """A split's images as the network takes them: float32 in [0, 1]."""
    return split.images.astype(np.float32) / 255.0


def preview(
    split: Split, aug: DictConfig, batch_size: int, num_classes: int, seed: int, count: int = 9
) -> tuple[np.ndarray, np.ndarray]:
    """The first `count` training examples of epoch 0 as the model sees them (samples.png), mixed by `MixImages`."""
    inputs, labels = TrainingStream(split, aug, batch_size, num_classes, seed).batch(0, 0)
    first = [x[:count] for x in inputs]
    return ops.convert_to_numpy(MixImages(aug.name)(first)), labels[:count]
