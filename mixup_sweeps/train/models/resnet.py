"""The residual networks of the recipes where mixup matters: He et al.'s CIFAR ResNet (`model=resnet20`) and the
pre-activation ResNet of the mixup paper's code (`model=preact_resnet18`).

Both follow their references layer for layer: 3x3 convolutions without bias, padding 1 (a stride-2 convolution
pads explicitly, as PyTorch's `padding=1`, so a 7x7 map becomes 4x4 with the same pixels), batch norm, He-normal
kernels, global average pooling and one dense softmax layer. Parameter counts (trainable, 10 classes, what
PyTorch counts): resnet20 0.27M, preact_resnet18 11.17M (`tests/integration/test_models.py`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from omegaconf import MISSING

from mixup_sweeps.errors import require
from mixup_sweeps.train.models._base import Model, register

if TYPE_CHECKING:
    import keras


def _check_widths(widths: Sequence[int]) -> None:
    require(len(widths) >= 1 and all(w >= 1 for w in widths), "model.widths", list(widths),
            "must be a non-empty list of integers >= 1 (channels of each stage)")  # fmt: skip


def _check_stages_fit(widths: Sequence[int], image_shape: Sequence[int]) -> None:
    """Each stage after the first halves the feature map: the image must have a pixel to halve at each."""
    stages = len(widths)
    smallest, needed = min(image_shape[:2]), 2 ** (stages - 1)
    require(smallest >= needed, "model.widths", list(widths),
            f"{stages} stages are too deep for {list(image_shape[:2])} images: their {stages - 1} stride-2 stages need "
            f"images of at least {needed}x{needed}; use fewer stages or larger images")  # fmt: skip


def _conv(layers: Any, filters: int, kernel: int, stride: int, hidden: dict) -> list:
    """A bias-free convolution padded as PyTorch's `padding=kernel // 2` (explicitly when strided)."""
    if stride == 1:
        return [
            layers.Conv2D(filters, kernel, padding="same", use_bias=False, kernel_initializer="he_normal", **hidden)
        ]
    pad = [layers.ZeroPadding2D(kernel // 2, **hidden)] if kernel > 1 else []
    return [*pad, layers.Conv2D(filters, kernel, strides=stride, padding="valid", use_bias=False,
                                kernel_initializer="he_normal", **hidden)]  # fmt: skip


def _apply(x: Any, stack: list) -> Any:
    for layer in stack:
        x = layer(x)
    return x


def _head(x: Any, num_classes: int, hidden: dict) -> Any:
    """Global average pooling and the dense softmax layer (float32: the probabilities and the loss)."""
    from keras import layers

    x = layers.GlobalAveragePooling2D(**hidden)(x)
    return layers.Dense(num_classes, activation="softmax", dtype="float32")(x)


def _shortcut_a(x: Any, stride: int, extra_channels: int, hidden: dict) -> Any:
    """He et al.'s option A: the identity, subsampled by `stride` and zero-padded with `extra_channels`
    (half on each side): no parameters, as in the paper's CIFAR networks. Built from Keras's own layers (a
    1x1 pool with a stride subsamples; the channels padded as a 3-D volume), so a saved network loads in
    any Python without this package (`mlflow.keras.load_model`)."""
    from keras import layers

    x = layers.MaxPooling2D(pool_size=1, strides=stride, **hidden)(x)
    height, width, channels = x.shape[1:]
    before = extra_channels // 2
    x = layers.Reshape((height, width, channels, 1), **hidden)(x)
    x = layers.ZeroPadding3D(((0, 0), (0, 0), (before, extra_channels - before)), **hidden)(x)
    return layers.Reshape((height, width, channels + extra_channels), **hidden)(x)


@dataclass
class _Residual(Model):
    """What both residual networks share: the 3x3 stem with BN-ReLU, stages of `widths` channels (each after the
    first starting with stride 2), global average pooling and the dense softmax. A subclass says how many blocks
    each stage has and what a block is."""

    widths: list[int] = MISSING  # channels per stage

    def check_fits(self, image_shape: Sequence[int]) -> None:
        _check_stages_fit(self.widths, image_shape)

    def blocks_per_stage(self) -> list[int]:
        raise NotImplementedError

    def block(self, x: Any, channels: int, width: int, stride: int, hidden: dict) -> Any:
        """One block from `channels` to `width` channels."""
        raise NotImplementedError

    def build(self, input_shape: tuple[int, ...], num_classes: int, precision: str) -> keras.Model:
        import keras
        from keras import layers

        hidden = {"dtype": precision}
        inputs = keras.Input(shape=input_shape)
        x = _apply(inputs, _conv(layers, self.widths[0], 3, 1, hidden))
        x = layers.Activation("relu", **hidden)(layers.BatchNormalization(**hidden)(x))
        channels = self.widths[0]
        for stage, (width, count) in enumerate(zip(self.widths, self.blocks_per_stage())):
            for index in range(count):
                x = self.block(x, channels, width, 2 if stage > 0 and index == 0 else 1, hidden)
                channels = width
        return keras.Model(inputs, _head(x, num_classes, hidden), name=self.name)


@register
@dataclass
class ResNet(_Residual):
    """He et al. 2016's CIFAR ResNet: a 3x3 stem, stages of basic blocks (conv-BN-ReLU-conv-BN, + shortcut,
    ReLU); depth = 6n + 2 for n blocks per stage of 3 (`widths: [16, 32, 64]` in the paper)."""

    key: ClassVar[str] = "resnet"
    depth: int = MISSING  # 6n + 2: 20, 32, 44, 56, 110

    def check(self) -> None:
        _check_widths(self.widths)
        stages = len(self.widths)
        blocks, rest = divmod(self.depth - 2, 2 * stages)
        require(rest == 0 and blocks >= 1, "model.depth", self.depth,
                f"must be {2 * stages}n + 2, n >= 1 blocks per stage ({stages} stages): e.g. 20, 32, 56")  # fmt: skip

    def blocks_per_stage(self) -> list[int]:
        return [(self.depth - 2) // (2 * len(self.widths))] * len(self.widths)

    def block(self, x: Any, channels: int, width: int, stride: int, hidden: dict) -> Any:
        from keras import layers

        out = _apply(x, _conv(layers, width, 3, stride, hidden))
        out = layers.Activation("relu", **hidden)(layers.BatchNormalization(**hidden)(out))
        out = layers.BatchNormalization(**hidden)(_apply(out, _conv(layers, width, 3, 1, hidden)))
        shortcut = x if stride == 1 and channels == width else _shortcut_a(x, stride, width - channels, hidden)
        return layers.Activation("relu", **hidden)(layers.Add(**hidden)([out, shortcut]))


@register
@dataclass
class PreActResNet(_Residual):
    """The mixup paper's network (facebookresearch/mixup-cifar10, models/resnet.py `ResNet18`): a 3x3 stem with
    BN-ReLU, stages of pre-activation blocks (BN-ReLU-conv-BN-ReLU-conv + shortcut; a 1x1 convolution of the
    activated input where the shape changes), no final BN, average pooling and a dense layer
    (`blocks: [2, 2, 2, 2]`, `widths: [64, 128, 256, 512]` for ResNet-18)."""

    key: ClassVar[str] = "preact_resnet"
    blocks: list[int] = MISSING  # blocks per stage

    def check(self) -> None:
        _check_widths(self.widths)
        stages, blocks = len(self.widths), list(self.blocks)
        require(len(blocks) == stages and all(b >= 1 for b in blocks), "model.blocks", blocks,
                f"must be {stages} integers >= 1 (one per stage of model.widths)")  # fmt: skip

    def blocks_per_stage(self) -> list[int]:
        return list(self.blocks)

    def block(self, x: Any, channels: int, width: int, stride: int, hidden: dict) -> Any:
        from keras import layers

        out = layers.Activation("relu", **hidden)(layers.BatchNormalization(**hidden)(x))
        shortcut = x
        if stride != 1 or channels != width:
            shortcut = _apply(out, _conv(layers, width, 1, stride, hidden))
        out = _apply(out, _conv(layers, width, 3, stride, hidden))
        out = layers.Activation("relu", **hidden)(layers.BatchNormalization(**hidden)(out))
        out = _apply(out, _conv(layers, width, 3, 1, hidden))
        return layers.Add(**hidden)([out, shortcut])
