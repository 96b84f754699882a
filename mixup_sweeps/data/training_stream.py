"""The training stream: an epoch's plan drawn on the host, its batches, and the one mixing step on the device.

What each augmentation draws is its own (`augmentations`: none, mixup, CutMix, FMix, ...); what happens with
it is the same for all of them and for both training engines:
- the host decides *what* is mixed: per epoch, an `EpochPlan` (image order, partners, the mask inputs, soft
  labels) drawn with NumPy from (seed, epoch) alone; `TrainingStream` (a `keras.utils.PyDataset`; Keras's
  `fit` on TensorFlow takes its `tf_dataset`) hands out slices of it as uint8 batches, and the packed engine
  sends the same arrays as indices. So the batches of epoch e are the same whichever backend, thread or
  restart produced them.
- the compiled train step does the arithmetic (`MixImages`, keras.ops): scale to [0, 1], build each image's
  keep mask k from what was sent, and mix `x·k + y·(1 - k)`, on the device that trains. Labels are mixed on
  the host (a batch of them is 64 x 10 numbers).
`keras.layers.MixUp`/`CutMix` are not used: they draw from layer state inside the step, which is neither a
function of the epoch nor restored by BackupAndRestore. Each epoch is a full permutation of the training
set (the seed used tf.data's 6,400-image shuffle buffer; see DEVELOPERS.md).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
from keras import ops

from mixup_sweeps.data import augmentations, input_aug
from mixup_sweeps.data.datasets import Split

CROP = "crop"  # the input after the mask inputs when the recipe crops and flips (`input_aug`): (n, 6) int32


@dataclass(frozen=True)
class EpochPlan:
    """Everything epoch e of the stream consists of, as arrays over its n positions."""

    order: np.ndarray  # index of the image at each position
    partner: np.ndarray | None  # index of the image it is mixed with (None: no mixing)
    masks: dict[str, np.ndarray]  # what builds each keep mask (`augmentations.MASK_INPUTS`)
    labels: np.ndarray  # soft labels, float32 (n, classes)
    image_size: tuple[int, int]  # (height, width) of the images
    crops: np.ndarray | None = None  # (n, 6) int32: each image's and its partner's shift (y, x) and flip

    def arrays(self, form: Sequence[str]) -> tuple[np.ndarray, ...]:
        """The plan as a step of input form `form` takes it: order[, partner, mask inputs, crop], labels. A mask
        input this plan does not draw is sent as 'nothing taken' (lam 1, an empty box, no pasted pixel)."""
        if not form:
            return self.order, self.labels
        partner = self.order if self.partner is None else self.partner
        missing = [name for name in form if name not in self.masks]
        masks = {**self.masks, **dict(zip(missing, no_mixing(len(self.order), missing, self.image_size)))}
        if self.crops is not None:
            masks[CROP] = self.crops
        return (self.order, partner, *(masks[name] for name in form), self.labels)


def no_mixing(n: int, form: Sequence[str], image_size: tuple[int, int]) -> list[np.ndarray]:
    """Mask inputs that take nothing from the partner: lam 1, an empty box, no pasted pixel (x·1 + y·0 = x)."""
    shapes = {"lam": ((n,), np.float32, 1), "box": ((n, 4), np.float32, 0), "pasted": ((n, *image_size), np.uint8, 0),
              CROP: ((n, 6), np.int32, 0)}  # fmt: skip
    return [np.full(shapes[name][0], shapes[name][2], dtype=shapes[name][1]) for name in form]


def epoch_plan(
    split: Split, aug: Any, batch_size: int, num_classes: int, seed: int, epoch: int, crop_padding: int | None = None
) -> EpochPlan:
    """The plan of one epoch: a pure function of its arguments (NumPy's generator seeded by [seed, epoch]).

    The shuffle, the pairing, the weights and the crops draw from separate child streams (a child depends on
    its index only: adding the fourth left the first three as they were), so every augmentation of one
    (seed, epoch) sees its images in the same order, cropped and flipped the same way (`input_aug`).
    """
    order_rng, partner_rng, weight_rng, crop_rng = (
        np.random.default_rng(s) for s in np.random.SeedSequence([seed, epoch]).spawn(4)
    )
    order = order_rng.permutation(len(split))
    onehot = np.eye(num_classes, dtype=np.float32)[split.labels]
    image_size = (int(split.images.shape[1]), int(split.images.shape[2]))
    crops = None
    if crop_padding is not None:  # the images' own first, then their partners'
        own, partners = (input_aug.draw_crops(crop_rng, len(order), crop_padding) for _ in range(2))
        crops = np.concatenate([own, partners], axis=1)
    mixing = augmentations.of(aug).draw(partner_rng, weight_rng, order, batch_size, image_size)
    if mixing is None:
        return EpochPlan(order, None, {}, onehot[order], image_size, crops)
    own_share = mixing.own_share[:, None]
    labels = own_share * onehot[order] + (1.0 - own_share) * onehot[mixing.partner]
    return EpochPlan(order, mixing.partner, mixing.masks, labels, image_size, crops)


class PlansAhead:
    """`draw(epoch)` for epoch after epoch, each drawn while the one before trains.

    An epoch's plan is a pure function of (seed, epoch), so drawing it early changes nothing in it; only the
    wait goes: FMix's masks are ~2 CPU-s an epoch at 58,000 images, which the first batch of each epoch waited for.
    NumPy's random draws, FFT and sort release the GIL, so the draw runs beside the training step. Epoch `last`
    (when given) is the last one drawn ahead. Keeps the plan asked for and the next one."""

    def __init__(self, draw: Callable[[int], Any], last: int | None = None) -> None:
        self.draw, self.last = draw, last
        self._futures: dict[int, Future] = {}
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="plans-ahead")

    def get(self, epoch: int) -> Any:
        with self._lock:
            future = self._futures.get(epoch)
            if future is None:
                future = self._futures[epoch] = self._pool.submit(self.draw, epoch)
            if epoch + 1 not in self._futures and (self.last is None or epoch + 1 <= self.last):
                self._futures[epoch + 1] = self._pool.submit(self.draw, epoch + 1)
            for old in [e for e in self._futures if e < epoch]:
                del self._futures[old]
        return future.result()

    def close(self) -> None:
        """Drop what was drawn ahead; a draw under way finishes in the background."""
        with self._lock:
            self._futures.clear()
        self._pool.shutdown(wait=False, cancel_futures=True)


def input_form(augs: Any, crop_padding: int | None) -> tuple[str, ...]:
    """What a step takes after (images, partners): the mask inputs `augs` need, then `CROP` when cropping."""
    return (*augmentations.input_form(augs), *((CROP,) if crop_padding is not None else ()))


class TrainingStream(keras.utils.PyDataset):
    """Batches of epoch `epoch` for Keras's fit: ((uint8 images[, partner images, mask inputs]), soft labels).

    `epoch` is set by `EpochCallback` when Keras starts an epoch (the real epoch number, also after
    BackupAndRestore skipped the saved ones); a batch depends on (epoch, index) only, never on call order.
    """

    def __init__(
        self, split: Split, aug: Any, batch_size: int, num_classes: int, seed: int, crop_padding: int | None = None,
        last_epoch: int | None = None, **kwargs: object,
    ) -> None:  # fmt: skip
        super().__init__(**kwargs)
        self.split, self.aug, self.batch_size, self.num_classes, self.seed = split, aug, batch_size, num_classes, seed
        self.crop_padding = crop_padding
        self.form = input_form([augmentations.of(aug)], crop_padding)
        self.epoch = 0
        self._plans = PlansAhead(self._draw, last_epoch)

    def _draw(self, epoch: int) -> EpochPlan:
        return epoch_plan(self.split, self.aug, self.batch_size, self.num_classes, self.seed, epoch, self.crop_padding)

    @property
    def num_batches(self) -> int:
        return -(-len(self.split) // self.batch_size)

    def plan(self, epoch: int) -> EpochPlan:
        """Epoch `epoch`'s plan (Keras's batch threads share it); the next epoch's is drawn meanwhile."""
        return self._plans.get(epoch)

    def close(self) -> None:
        self._plans.close()

    def batch(self, epoch: int, index: int) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
        rows = slice(index * self.batch_size, (index + 1) * self.batch_size)
        arrays = [a[rows] for a in self.plan(epoch).arrays(self.form)]
        order, labels = arrays[0], arrays[-1]
        if not self.form:
            return (self.split.images[order],), labels
        return (self.split.images[order], self.split.images[arrays[1]], *arrays[2:-1]), labels

    def __getitem__(self, index: int) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
        return self.batch(self.epoch, index)

    def epoch_callback(self) -> keras.callbacks.Callback:
        return EpochCallback(self)

    def tf_dataset(self) -> Any:
        """The same batches as a `tf.data.Dataset` for the TensorFlow engine: one epoch per iteration, its plan
        handed over whole (one host call an epoch) and cut into batches, gathered from the images, in the
        pipeline. Through `PyDataset`, Keras calls back into Python for every batch (`from_generator`): ~0.7 ms
        a batch beside a ~7.7 ms one-thread step of the seed CNN on a CPU; 3.5 % less CPU measured
        (docs/benchmarks.md).

        Keras makes a new iterator for each epoch, after `EpochCallback` set the epoch it starts, or at the end
        of the epoch before (then it serves the next one): an iteration serves `epoch`, or the epoch after the
        last one served if that is later, and nothing past `last_epoch`. The batches are the arrays `batch`
        slices, so training on either gives the same run."""
        import tensorflow as tf  # the TensorFlow engine's own: the stream itself needs no TensorFlow

        sample = self.plan(self.epoch).arrays(self.form)
        specs = tuple(tf.TensorSpec((None, *a.shape[1:]), tf.as_dtype(a.dtype)) for a in sample)
        images = tf.constant(self.split.images)
        served: list[int] = []

        def next_epoch() -> Any:
            epoch = max(self.epoch, served[-1] + 1) if served else self.epoch
            if self._plans.last is None or epoch <= self._plans.last:
                served.append(epoch)
                yield epoch

        def epoch_arrays(epoch: Any) -> list[np.ndarray]:
            return list(self.plan(int(epoch)).arrays(self.form))

        def one_epoch(epoch: Any) -> Any:
            arrays = tf.numpy_function(epoch_arrays, [epoch], [spec.dtype for spec in specs], stateful=True)
            for array, spec in zip(arrays, specs):
                array.set_shape(spec.shape)
            return tf.data.Dataset.from_tensor_slices(tuple(arrays)).batch(self.batch_size)

        def inputs(*arrays: Any) -> Any:
            order, labels = arrays[0], arrays[-1]
            if not self.form:
                return (tf.gather(images, order),), labels
            return (tf.gather(images, order), tf.gather(images, arrays[1]), *arrays[2:-1]), labels

        epochs = tf.data.Dataset.from_generator(next_epoch, output_signature=tf.TensorSpec((), tf.int64))
        batches = epochs.flat_map(one_epoch).map(inputs).prefetch(2)
        return without_autotuning(batches.apply(tf.data.experimental.assert_cardinality(self.num_batches)))


def tf_batches(arrays: tuple[Any, ...], batch_size: int) -> Any:
    """`arrays` (arrays, or tuples of them) cut into batches in order, as a `tf.data.Dataset` without autotuning
    (validation data: Keras would make its own autotuned pipeline of the NumPy arrays, a new iterator each epoch)."""
    import tensorflow as tf

    return without_autotuning(tf.data.Dataset.from_tensor_slices(arrays).batch(batch_size))


def without_autotuning(dataset: Any) -> Any:
    """`dataset` with tf.data's autotuning off: its pipelines have nothing to tune (a fixed prefetch, one map
    in order), and Keras makes a new iterator of them every epoch. With autotuning on, the iterator Keras dropped
    at an epoch's end kept its threads for seconds, and the next epoch's first step waited for them, idle: two
    one-thread jobs side by side on 2 cores (the default launcher's sweep) had 3 of 18 epochs at ~10 s instead
    of ~5 s, none with autotuning off (`benchmarks/train_throughput.py --model-epoch --with-autotuning`; in
    `make run`'s sweep `benchmarks/epoch_waits.py`; docs/benchmarks.md, issue 40). The batches are the same."""
    import tensorflow as tf

    options = tf.data.Options()
    options.autotune.enabled = False
    return dataset.with_options(options)


class EpochCallback(keras.callbacks.Callback):
    """Tells the stream which epoch Keras is starting (called before the epoch's first batch is fetched)."""

    def __init__(self, stream: TrainingStream) -> None:
        super().__init__()
        self.stream = stream

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.stream.epoch = epoch


class MixImages(keras.layers.Layer):
    """In the train step: uint8 images -> [0, 1] floats, each mixed with its partner by its keep mask k:
    `x·k + y·(1 - k)`, k = 0 where the partner's pixel is taken (a box, pasted pixels), else lam (or 1).

    `form` names the mask inputs after (images, partners) (`augmentations.MASK_INPUTS`); an empty form takes
    the images alone. With k exactly 0 or 1 a pixel is exactly the partner's or the image's own.
    """

    def __init__(self, form: Sequence[str] = (), **kwargs: object) -> None:
        super().__init__(dtype="float32", **kwargs)
        self.form = tuple(form)

    def call(self, inputs: list) -> object:
        images = ops.cast(inputs[0], "float32") / 255.0
        if not self.form:
            return images
        parts = dict(zip(self.form, inputs[2:]))
        if CROP in parts:
            images = shift_and_flip(images, parts[CROP][:, :3])
        if not set(parts) - {CROP}:  # crops alone: nothing is mixed in
            return images
        partners = ops.cast(inputs[1], "float32") / 255.0
        if CROP in parts:
            partners = shift_and_flip(partners, parts[CROP][:, 3:])
        keep = self.keep_mask(images, parts)
        return images * keep + partners * (1.0 - keep)

    @staticmethod
    def keep_mask(images: Any, parts: dict[str, Any]) -> Any:
        """Each image's share of itself, broadcastable to the images."""
        keep = ops.reshape(ops.cast(parts["lam"], "float32"), (-1, 1, 1, 1)) if "lam" in parts else 1.0
        taken = None
        if "box" in parts:  # y0 <= row < y1 and x0 <= col < x1
            box = ops.cast(parts["box"], "float32")
            rows = ops.reshape(ops.arange(ops.shape(images)[1], dtype="float32"), (1, -1, 1, 1))
            cols = ops.reshape(ops.arange(ops.shape(images)[2], dtype="float32"), (1, 1, -1, 1))
            y0, y1, x0, x1 = (ops.reshape(box[:, i], (-1, 1, 1, 1)) for i in range(4))
            taken = (rows >= y0) & (rows < y1) & (cols >= x0) & (cols < x1)
        if "pasted" in parts:
            pasted = ops.expand_dims(ops.cast(parts["pasted"], "bool"), -1)
            taken = pasted if taken is None else taken | pasted
        return keep if taken is None else ops.where(taken, 0.0, keep)

    def get_config(self) -> dict:
        return {**super().get_config(), "form": list(self.form)}


def shift_and_flip(images: Any, crop: Any) -> Any:
    """Each image's crop (`input_aug`): the window of its own size at offset (dy, dx) from the centre of the
    zero-padded image, i.e. pixel (r, c) of the window is (r + dy, c + dx) of the image, 0 outside it; then
    mirrored left-right where flip is 1. A (0, 0, 0) crop gives the image back exactly."""
    height, width = ops.shape(images)[1], ops.shape(images)[2]
    crop = ops.cast(crop, "int32")
    rows = ops.arange(height, dtype="int32")[None, :] + crop[:, 0:1]  # (n, H)
    cols = ops.arange(width, dtype="int32")[None, :]
    cols = ops.where(crop[:, 2:3] > 0, width - 1 - cols, cols) + crop[:, 1:2]  # (n, W): flipped, then shifted
    inside = ((rows >= 0) & (rows < height))[:, :, None, None] & ((cols >= 0) & (cols < width))[:, None, :, None]
    picked = ops.take_along_axis(images, ops.clip(rows, 0, height - 1)[:, :, None, None], axis=1)
    picked = ops.take_along_axis(picked, ops.clip(cols, 0, width - 1)[:, None, :, None], axis=2)
    return ops.where(inside, picked, 0.0)


def training_model(network: keras.Model, form: Sequence[str], name: str) -> keras.Model:
    """`network` behind the mixing step (it shares the network's weights): what both engines train. `form`:
    the mask inputs after images and partners (`augmentations.input_form`); none for a plain stream."""
    image_shape = tuple(network.input_shape[1:])
    inputs = [keras.Input(image_shape, dtype="uint8", name="images")]
    if form:
        inputs.append(keras.Input(image_shape, dtype="uint8", name="partners"))
    shapes = {"lam": ((), "float32"), "box": ((4,), "float32"), "pasted": (image_shape[:2], "uint8"),
              CROP: ((6,), "int32")}  # fmt: skip
    inputs += [keras.Input(shapes[part][0], dtype=shapes[part][1], name=part) for part in form]
    return keras.Model(inputs, network(MixImages(form)(inputs)), name=f"{network.name}_{name}")


def unmixed_inputs(images: np.ndarray, form: Sequence[str]) -> tuple[np.ndarray, ...]:
    """Images in input form `form`, mixed with nothing (validation, evaluation): exactly the images."""
    if not form:
        return (images,)
    return (images, images, *no_mixing(len(images), form, images.shape[1:3]))


def scaled(split: Split) -> np.ndarray:
    """A split's images as the network takes them: float32 in [0, 1]."""
    return split.images.astype(np.float32) / 255.0


def preview(
    split: Split, aug: Any, batch_size: int, num_classes: int, seed: int, count: int = 9,
    crop_padding: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """The first `count` training examples of epoch 0 as the model sees them (samples.png): cropped, flipped and
    mixed by `MixImages`."""
    stream = TrainingStream(split, aug, batch_size, num_classes, seed, crop_padding, last_epoch=0)
    inputs, labels = stream.batch(0, 0)
    stream.close()
    first = [x[:count] for x in inputs]
    return ops.convert_to_numpy(MixImages(stream.form)(first)), labels[:count]
