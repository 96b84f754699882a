"""Typed config schemas and the derived views of a config: flat params, the run fingerprint, the program shape.

Hydra checks *types* and *keys* against these dataclasses at compose time; `job.compose.validate` checks the
*values* that a type cannot express (alpha > 0, epochs >= 1, ...) before anything is trained or recorded. The
views decide what a run *is*: two runs with the same fingerprint compute the same thing (skip, resume, reuse).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field, fields, make_dataclass
from pathlib import Path
from typing import Any, get_type_hints

from omegaconf import MISSING, DictConfig, OmegaConf


# The schemas hold types only: every default value is in the YAML under conf/ (one place each).
@dataclass
class PathsConfig:
    output_dir: str = MISSING


@dataclass
class TrainerConfig:
    epochs: int = MISSING
    batch_size: int = MISSING
    learning_rate: float = MISSING
    deterministic: bool = MISSING
    steps_per_execution: int = MISSING  # training steps per compiled call: fewer round-trips, same result
    precision: str = MISSING  # Keras dtype policy: float32 | mixed_bfloat16 | mixed_float16 (softmax stays float32)
    test_every_epoch: bool = MISSING  # test accuracy per epoch: the best-validation epoch's test accuracy
    memorization_probe: int = MISSING  # corrupted (and clean) training examples probed per epoch; 0 = off
    threads: int | None = MISSING  # CPU threads of the job's TensorFlow/XLA pools; None: what the launcher gave it
    # the recipe (train.recipe): optimizer, weight decay, learning-rate schedule, input augmentation
    optimizer: str = MISSING  # adam (the seed's) | sgd (PyTorch's: momentum, nesterov, coupled L2) | adamw
    momentum: float = MISSING  # sgd only
    nesterov: bool = MISSING  # sgd only
    weight_decay: float = MISSING  # sgd: coupled L2 on the gradient; adamw: decoupled; adam: must be 0
    schedule: str = MISSING  # constant | step (milestones, step_factor) | cosine; after warmup_epochs
    milestones: list[int] = MISSING  # step: the epochs (from 0) from which the rate is multiplied by step_factor
    step_factor: float = MISSING
    warmup_epochs: int = MISSING  # a linear ramp to learning_rate over the first epochs (any schedule)
    input_aug: str = MISSING  # none | crop_flip (random crop after zero padding, horizontal flip)
    crop_padding: int = MISSING


@dataclass
class TrackingConfig:
    uri: str | None = MISSING
    experiment: str = MISSING
    artifact_location: str | None = MISSING
    heartbeat_timeout_s: float = MISSING  # a job of another host silent this long (or 3 epochs) is dead
    system_metrics: bool = MISSING  # CPU, memory, disk, network (and NVIDIA GPUs) every 10 s while a job trains


@dataclass
class Config:
    dataset: Any = MISSING  # each dataset brings its own schema (`data.datasets`: cifar100 has label_mode)
    model: Any = MISSING  # each architecture brings its own schema (`train.models`: resnet has depth)
    aug: Any = MISSING  # each augmentation brings its own schema (`augmentations`; none has no alpha)
    trainer: TrainerConfig = MISSING
    tracking: TrackingConfig = MISSING
    paths: PathsConfig = field(default_factory=PathsConfig)
    seed: int = MISSING
    backend: str = MISSING  # the Keras backend: tensorflow | jax (set before Keras is imported)
    resume: bool = MISSING  # skip jobs already FINISHED, continue interrupted ones; false = always a fresh run


SEED = "seed"  # the replicate axis: never a group key, the key comparisons are paired on
SEED_RANGE = (0, 2**32 - 1)  # what NumPy, TensorFlow and Keras accept as a seed
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")
BACKENDS = ("tensorflow", "jax")  # the Keras backends a job can run on (mixup_sweeps.train.backends sets them up)

# Keys that say where things go or how to run, not what is computed: left out of the run fingerprint.
PLUMBING_PREFIXES = ("paths.", "tracking.", "resume", "trainer.steps_per_execution", "trainer.threads")

# Keys added after runs were recorded, left out of the fingerprint while they hold the value that means
# "what every earlier run did", so those runs are still found (skipped, resumed, reused) by new sweeps.
FINGERPRINT_DEFAULTS = {
    "trainer.precision": "float32",
    "trainer.test_every_epoch": False,
    "trainer.memorization_probe": 0,
    "dataset.noisy_validation": False,
    "model.pooling": "global_average",
    "model.architecture": "cnn",
    "trainer.optimizer": "adam",
    "trainer.momentum": 0.9,
    "trainer.nesterov": False,
    "trainer.weight_decay": 0.0,
    "trainer.schedule": "constant",
    "trainer.milestones": [],
    "trainer.step_factor": 0.1,
    "trainer.warmup_epochs": 0,
    "trainer.input_aug": "none",
    "trainer.crop_padding": 4,
    "dataset.test_size": None,
}


_ENV_INTERPOLATION = re.compile(r"\$\{\s*(oc\.env|env)\s*:")
CONF_DIR = Path(__file__).resolve().parents[1] / "conf"


def recordable(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config as plain containers, except that a value read from an environment variable
    (`${oc.env:...}`) stays that interpolation text: variables can hold secrets, and the store must not."""
    resolved = OmegaConf.to_container(cfg, resolve=True)
    raw = OmegaConf.to_container(cfg, resolve=False)

    def mask(node: Any, raw_node: Any) -> Any:
        if isinstance(node, dict):
            return {k: mask(v, raw_node.get(k) if isinstance(raw_node, dict) else None) for k, v in node.items()}
        if isinstance(raw_node, str) and _ENV_INTERPOLATION.search(raw_node):
            return raw_node
        return node

    assert isinstance(resolved, dict)
    return mask({k: v for k, v in resolved.items() if k != "hydra"}, raw)


def flatten(cfg: DictConfig) -> dict[str, Any]:
    """`recordable(cfg)` as `{"aug.alpha": 0.2, "seed": 0, ...}`: the MLflow params, and the fingerprint's input."""
    flat: dict[str, Any] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, f"{prefix}{key}.")
        else:
            flat[prefix[:-1]] = node

    walk(recordable(cfg), "")
    return flat


def config_fingerprint(cfg: DictConfig) -> str:
    """Hash of what a run computes (the resolved config without output paths and tracking settings)."""
    flat = {
        k: v
        for k, v in flatten(cfg).items()
        if not k.startswith(PLUMBING_PREFIXES) and not (k in FINGERPRINT_DEFAULTS and FINGERPRINT_DEFAULTS[k] == v)
    }
    return hashlib.sha256(json.dumps(flat, sort_keys=True).encode()).hexdigest()[:16]


# What jobs of one packed program may differ in: data, not program shape (hydra/launcher=packed). The learning
# rate of each epoch (its schedule) and the weight decay are values in each member's optimizer state.
PACK_MEMBER_KEYS = (
    "seed", "aug.", "dataset.label_noise", "trainer.learning_rate", "trainer.weight_decay",
    "trainer.schedule", "trainer.milestones", "trainer.step_factor", "trainer.warmup_epochs",
)  # fmt: skip


def program_shape_key(cfg: DictConfig) -> str:
    """Jobs with the same key compile to the same packed program (model, shapes, epochs, batch, precision,
    steps per call, data, backend) and may share a pack: they differ at most in `PACK_MEMBER_KEYS`."""
    task = OmegaConf.masked_copy(cfg, [str(key) for key in cfg if key != "hydra"]) if "hydra" in cfg else cfg
    program = ("trainer.steps_per_execution",)  # plumbing for the fingerprint, but the length of a compiled call
    shape = {
        key: value
        for key, value in flatten(task).items()
        if not key.startswith(PACK_MEMBER_KEYS) and (key in program or not key.startswith(PLUMBING_PREFIXES))
    }
    return hashlib.sha256(json.dumps(shape, sort_keys=True, default=str).encode()).hexdigest()[:16]


def schema_of(name: str, *settings: type, nullable: tuple[str, ...] = (), **extra: Any) -> type:
    """A Hydra structured-config schema named `name`: the fields of the `settings` dataclasses with their types,
    and the `extra` fields (name -> type: a plugin's `_target_`, `params`), each MISSING: the defaults are in
    conf/, the value checks in the code that reads the settings. A field in `nullable` also takes null (off).
    One list of fields per setting, not a copy per plugin."""
    own = []
    for cls in settings:
        hints = get_type_hints(cls)
        own += [(f.name, hints[f.name] | None if f.name in nullable else hints[f.name]) for f in fields(cls)]
    return make_dataclass(name, [(key, typ, field(default=MISSING)) for key, typ in [*extra.items(), *own]])
