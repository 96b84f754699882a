"""The CNNs of the `model` group, and the shared initial weights every comparable run starts from.

Runs that differ only in augmentation must start from the same weights, or the comparison mixes the effect
of mixup with the luck of the initialisation. The weights are created once per (model config, input shape,
classes, seed), under a file lock, and written atomically; every later run loads the same bytes.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import keras
from keras import layers
from omegaconf import DictConfig, OmegaConf

from mixup_sweeps import files


def build_model(
    model_cfg: DictConfig, input_shape: tuple[int, ...], num_classes: int, precision: str = "float32"
) -> keras.Model:
    """conv blocks -> dropout -> global average pooling (or flatten) -> dense -> softmax (seed_cnn is the seed's).

    `model.pooling: flatten` gives the dense layer a weight per position and channel instead of per channel
    (flat_cnn: ~270k weights instead of ~20k), the capacity to memorize corrupted labels.

    `precision` is a Keras dtype policy (`trainer.precision`): with `mixed_bfloat16` / `mixed_float16` the
    hidden layers compute in 16 bits and keep float32 variables, while the softmax layer stays float32 (so
    do the probabilities and the loss). The policy is given per layer, not globally, so the initial weights
    (float32 variables either way) and the next job of the same process are unaffected.
    """
    hidden = {"dtype": precision}
    inputs = keras.Input(shape=input_shape)
    x = inputs
    for filters in model_cfg.conv_filters:
        k = model_cfg.kernel_size
        if model_cfg.batch_norm:
            x = layers.Conv2D(filters, (k, k), use_bias=False, **hidden)(x)
            x = layers.BatchNormalization(**hidden)(x)
            x = layers.Activation("relu", **hidden)(x)
        else:
            x = layers.Conv2D(filters, (k, k), activation="relu", **hidden)(x)
        x = layers.MaxPooling2D(pool_size=(2, 2), **hidden)(x)
    x = layers.Dropout(model_cfg.dropout, **hidden)(x)
    if model_cfg.pooling == "flatten":
        x = layers.Flatten(**hidden)(x)
    else:
        x = layers.GlobalAveragePooling2D(**hidden)(x)
    x = layers.Dense(model_cfg.dense_units, activation="relu", **hidden)(x)
    outputs = layers.Dense(num_classes, activation="softmax", dtype="float32")(x)
    return keras.Model(inputs, outputs, name=model_cfg.name)


def sha256_file(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def initial_weights_path(
    cache_dir: Path, model_cfg: DictConfig, input_shape: tuple[int, ...], num_classes: int, seed: int
) -> Path:
    """One file per (model config, input shape, classes, seed); the name says which."""
    key = json.dumps(
        {"model": OmegaConf.to_container(model_cfg, resolve=True), "shape": list(input_shape), "classes": num_classes},
        sort_keys=True,
    )
    digest = hashlib.sha256(key.encode()).hexdigest()[:10]
    shape = "x".join(str(d) for d in input_shape)
    return Path(cache_dir) / f"{model_cfg.name}-{shape}-c{num_classes}-seed{seed}-{digest}.weights.h5"


INITIAL_WEIGHTS_LOCK_TIMEOUT_S = 300  # building and saving a model takes seconds; longer means a hung holder


def create_initial_weights(
    cache_dir: Path, model_cfg: DictConfig, input_shape: tuple[int, ...], num_classes: int, seed: int
) -> Path:
    """The initial-weights file in `cache_dir`, created first if no job on this machine has (safe across processes)."""
    path = initial_weights_path(cache_dir, model_cfg, input_shape, num_classes, seed)
    if path.exists():
        return path
    # a second job waits here, then finds the file
    with files.file_lock(path.with_suffix(".lock"), INITIAL_WEIGHTS_LOCK_TIMEOUT_S, f"creating {path.name}"):
        if not path.exists():
            keras.utils.set_random_seed(seed)
            model = build_model(model_cfg, input_shape, num_classes)
            with files.atomic_path(path) as tmp:
                model.save_weights(tmp)
    return path
