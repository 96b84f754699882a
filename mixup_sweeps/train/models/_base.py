"""What every model shares: the registry, the schema base, and the shared initial weights.

A model is a dataclass (the schema Hydra checks `model` against; the values live in conf/model/<name>.yaml)
registered under its `architecture` with `@register`, like an augmentation or a dataset: adding one is one
class and one YAML. `check` and `check_fits` read the config only (the job's check imports this module without
Keras); `build` imports Keras, after the job chose its backend.

Runs that differ only in augmentation or recipe must start from the same weights, or the comparison mixes the
effect of mixup with the luck of the initialisation. The weights are created once per (model config, input
shape, classes, seed), under a file lock, and written atomically; every later run loads the same bytes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from omegaconf import MISSING, DictConfig, OmegaConf

from mixup_sweeps import files
from mixup_sweeps.errors import require
from mixup_sweeps.train import backends

if TYPE_CHECKING:
    import keras

# The architecture of every model recorded before the registry: a config without the key is a CNN, and the key
# at this value stays out of the run fingerprint and the initial-weights key (config.FINGERPRINT_DEFAULTS).
DEFAULT_ARCHITECTURE = "cnn"

MODELS: dict[str, type[Model]] = {}


def register(cls: type[Model]) -> type[Model]:
    """Class decorator: `cls` builds the models whose `model.architecture` is its `key`."""
    MODELS[cls.key] = cls
    return cls


def of(model: Any) -> Model:
    """The model a config's `model` node describes (a DictConfig or a mapping)."""
    architecture = model.get("architecture", DEFAULT_ARCHITECTURE)
    require(architecture in MODELS, "model.architecture", architecture, f"one of {sorted(MODELS)}")
    cls = MODELS[architecture]
    return cls(**{f.name: model.get(f.name) for f in fields(cls)})


@dataclass
class Model:
    """The base of every model's schema: its name (runs, plots, weights files) and its architecture."""

    key: ClassVar[str]
    name: str = MISSING
    architecture: str = MISSING

    def check(self) -> None:
        """Raise `ConfigError` for a value the schema's types cannot rule out."""

    def check_fits(self, image_shape: Sequence[int]) -> None:
        """Raise `ConfigError` when images of this shape are too small for the network."""

    def build(self, input_shape: tuple[int, ...], num_classes: int, precision: str) -> keras.Model:
        """The network, uint8-free: it takes float images in [0, 1] and returns class probabilities.

        `precision` is a Keras dtype policy (`trainer.precision`), given per layer, not globally, so the
        initial weights (float32 variables either way) and the next job of the same process are unaffected;
        the softmax layer stays float32 (so do the probabilities and the loss)."""
        raise NotImplementedError


def build_model(
    model_cfg: Any, input_shape: tuple[int, ...], num_classes: int, precision: str = "float32"
) -> keras.Model:
    """The network `model_cfg` describes, for images of `input_shape` and `num_classes` classes."""
    return of(model_cfg).build(tuple(input_shape), num_classes, precision)


def sha256_file(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _weights_key(model_cfg: Any) -> dict[str, Any]:
    container = OmegaConf.to_container(model_cfg, resolve=True) if isinstance(model_cfg, DictConfig) else model_cfg
    assert isinstance(container, dict)
    node: dict[str, Any] = {str(key): value for key, value in container.items()}
    if node.get("architecture") == DEFAULT_ARCHITECTURE:  # the files written before the key existed keep their name
        del node["architecture"]
    return node


def initial_weights_path(
    cache_dir: Path, model_cfg: Any, input_shape: tuple[int, ...], num_classes: int, seed: int
) -> Path:
    """One file per (model config, input shape, classes, seed); the name says which."""
    key = json.dumps({"model": _weights_key(model_cfg), "shape": list(input_shape), "classes": num_classes},
                     sort_keys=True)  # fmt: skip
    digest = hashlib.sha256(key.encode()).hexdigest()[:10]
    shape = "x".join(str(d) for d in input_shape)
    return Path(cache_dir) / f"{model_cfg.name}-{shape}-c{num_classes}-seed{seed}-{digest}.weights.h5"


INITIAL_WEIGHTS_LOCK_TIMEOUT_S = 300  # building and saving a model takes seconds; longer means a hung holder


def create_initial_weights(
    cache_dir: Path, model_cfg: Any, input_shape: tuple[int, ...], num_classes: int, seed: int
) -> Path:
    """The initial-weights file in `cache_dir`, created first if no job on this machine has (safe across processes)."""
    path = initial_weights_path(cache_dir, model_cfg, input_shape, num_classes, seed)
    if path.exists():
        return path
    # a second job waits here, then finds the file
    with files.file_lock(path.with_suffix(".lock"), INITIAL_WEIGHTS_LOCK_TIMEOUT_S, f"creating {path.name}"):
        if not path.exists():
            backends.set_random_seed(seed)
            model = build_model(model_cfg, input_shape, num_classes)
            with files.atomic_path(path) as tmp:
                model.save_weights(tmp)
    return path
