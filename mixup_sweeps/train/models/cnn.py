"""The small CNNs the harness started with (`model=seed_cnn`, `wide_cnn`, `flat_cnn`): one schema, three YAMLs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from omegaconf import MISSING

from mixup_sweeps.errors import require
from mixup_sweeps.train.models._base import Model, register

if TYPE_CHECKING:
    import keras

POOLINGS = ("global_average", "flatten")


@register
@dataclass
class CNN(Model):
    """conv blocks -> dropout -> global average pooling (or flatten) -> dense -> softmax (seed_cnn is the seed's).

    `pooling: flatten` gives the dense layer a weight per position and channel instead of per channel (flat_cnn:
    ~270k weights instead of ~20k), the capacity to memorize corrupted labels."""

    key: ClassVar[str] = "cnn"
    conv_filters: list[int] = MISSING
    kernel_size: int = MISSING
    dense_units: int = MISSING
    dropout: float = MISSING
    batch_norm: bool = MISSING
    pooling: str = MISSING  # global_average (the seed's) | flatten (every position its own weights: memorizes)

    def check(self) -> None:
        require(
            len(self.conv_filters) >= 1 and all(f >= 1 for f in self.conv_filters),
            "model.conv_filters",
            list(self.conv_filters),
            "must be a non-empty list of integers >= 1",
        )
        require(self.kernel_size >= 1, "model.kernel_size", self.kernel_size, "must be an integer >= 1")
        require(self.pooling in POOLINGS, "model.pooling", self.pooling, f"one of {list(POOLINGS)}")
        require(self.dense_units >= 1, "model.dense_units", self.dense_units, "must be an integer >= 1")
        require(0 <= self.dropout < 1, "model.dropout", self.dropout, "must be in [0, 1)")

    def check_fits(self, image_shape: Sequence[int]) -> None:
        """The conv blocks leave at least one pixel of an image of this shape."""
        smallest = min(image_shape[:2])
        for block in range(len(self.conv_filters)):  # each block: a valid k x k convolution, then 2 x 2 max pooling
            smallest = (smallest - self.kernel_size + 1) // 2
            require(
                smallest >= 1,
                "model.kernel_size",
                self.kernel_size,
                f"with {len(self.conv_filters)} conv blocks (model.conv_filters) on {list(image_shape[:2])} "
                f"images, block {block + 1} has no pixels left; use a smaller kernel or fewer conv blocks",
            )

    def build(self, input_shape: tuple[int, ...], num_classes: int, precision: str) -> keras.Model:
        import keras
        from keras import layers

        hidden = {"dtype": precision}
        inputs = keras.Input(shape=input_shape)
        x = inputs
        k = self.kernel_size
        for filters in self.conv_filters:
            if self.batch_norm:
                x = layers.Conv2D(filters, (k, k), use_bias=False, **hidden)(x)
                x = layers.BatchNormalization(**hidden)(x)
                x = layers.Activation("relu", **hidden)(x)
            else:
                x = layers.Conv2D(filters, (k, k), activation="relu", **hidden)(x)
            x = layers.MaxPooling2D(pool_size=(2, 2), **hidden)(x)
        x = layers.Dropout(self.dropout, **hidden)(x)
        x = layers.Flatten(**hidden)(x) if self.pooling == "flatten" else layers.GlobalAveragePooling2D(**hidden)(x)
        x = layers.Dense(self.dense_units, activation="relu", **hidden)(x)
        outputs = layers.Dense(num_classes, activation="softmax", dtype="float32")(x)
        return keras.Model(inputs, outputs, name=self.name)
