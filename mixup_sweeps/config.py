"""Typed config schemas, value checks, and the two derived views of a config: flat params and fingerprint.

Hydra checks *types* and *keys* against these dataclasses at compose time; `validate` checks the *values*
that a type cannot express (alpha > 0, epochs >= 1, ...) before anything is trained or recorded.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, get_type_hints

from hydra.core.config_store import ConfigStore
from hydra.experimental.callback import Callback
from omegaconf import MISSING, DictConfig, OmegaConf

from mixup_sweeps import augmentations
from mixup_sweeps.errors import ConfigError, require


# The schemas hold types only: every default value is in the YAML under conf/ (one place each).
@dataclass
class PathsConfig:
    output_dir: str = MISSING


@dataclass
class DatasetConfig:
    name: str = MISSING
    path: str | None = MISSING
    val_size: int = MISSING
    train_size: int | None = MISSING
    image_shape: list[int] = MISSING
    num_classes: int = MISSING
    download: bool = MISSING
    label_noise: float = MISSING  # fraction of training labels replaced by a random other class (fixed by seed)
    noisy_validation: bool = MISSING  # corrupt the validation labels at the same rate (a practitioner's view)


@dataclass
class ModelConfig:
    name: str = MISSING
    conv_filters: list[int] = MISSING
    kernel_size: int = MISSING
    dense_units: int = MISSING
    dropout: float = MISSING
    batch_norm: bool = MISSING
    pooling: str = MISSING  # global_average (the seed's) | flatten (every position its own weights: memorizes)


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


@dataclass
class TrackingConfig:
    uri: str | None = MISSING
    experiment: str = MISSING
    artifact_location: str | None = MISSING
    heartbeat_timeout_s: float = MISSING  # a job of another host silent this long (or 3 epochs) is dead


@dataclass
class Config:
    dataset: DatasetConfig = MISSING
    model: ModelConfig = MISSING
    aug: Any = MISSING  # each augmentation brings its own schema (`augmentations`; none has no alpha)
    trainer: TrainerConfig = MISSING
    tracking: TrackingConfig = MISSING
    paths: PathsConfig = field(default_factory=PathsConfig)
    seed: int = MISSING
    backend: str = MISSING  # the Keras backend: tensorflow | jax (set before Keras is imported)
    resume: bool = MISSING  # skip jobs already FINISHED, continue interrupted ones; false = always a fresh run


SEED_RANGE = (0, 2**32 - 1)  # what NumPy, TensorFlow and Keras accept as a seed
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")
POOLINGS = ("global_average", "flatten")
BACKENDS = ("tensorflow", "jax")  # the Keras backends a job can run on (mixup_sweeps.backends sets them up)

# Keys that say where things go or how to run, not what is computed: left out of the run fingerprint.
PLUMBING_PREFIXES = ("paths.", "tracking.", "resume", "trainer.steps_per_execution", "trainer.threads")
# What the variants sweeper tells each job about its sweep (as hydra.job.env_set: not a task override, so
# neither in a run's name nor in its fingerprint): how many jobs the sweep has so far, when it started.
SWEEP_JOBS_ENV, SWEEP_STARTED_ENV = "MIXUP_SWEEP_JOBS", "MIXUP_SWEEP_STARTED"
SWEEP_PARALLEL_ENV = "MIXUP_SWEEP_PARALLEL"  # ... and how many jobs its launcher runs at once (for the ETA)

# Keys added after runs were recorded, left out of the fingerprint while they hold the value that means
# "what every earlier run did", so those runs are still found (skipped, resumed, reused) by new sweeps.
FINGERPRINT_DEFAULTS = {
    "trainer.precision": "float32",
    "trainer.test_every_epoch": False,
    "trainer.memorization_probe": 0,
    "dataset.noisy_validation": False,
    "model.pooling": "global_average",
}


_ENV_INTERPOLATION = re.compile(r"\$\{\s*(oc\.env|env)\s*:")


def register_configs() -> None:
    """Put the schemas in Hydra's ConfigStore; the YAML files under conf/ extend them."""
    # ${cwd:} = the directory the command was started in. Hydra's ${hydra:runtime.cwd} cannot be used for
    # paths.output_dir: the sweep directory is resolved before Hydra sets its runtime config in a multirun.
    OmegaConf.register_new_resolver("cwd", os.getcwd, replace=True)
    # ${process_id:} = the launching process (cached like Hydra's ${now:}, so launched jobs see the same value)
    OmegaConf.register_new_resolver("process_id", os.getpid, use_cache=True, replace=True)
    cs = ConfigStore.instance()
    cs.store(name="config_schema", node=Config)
    for name, schema in augmentations.AUGMENTATIONS.items():
        cs.store(group="hydra/schema/aug", name=name, node=schema)


CONF_DIR = Path(__file__).resolve().parents[1] / "conf"


def load_config(output_dir: str | Path, overrides: Sequence[str] = (), return_hydra_config: bool = False) -> DictConfig:
    """Compose conf/ outside a Hydra job (tests, the report): the same defaults a job gets."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        overrides = [f"paths.output_dir={Path(output_dir).resolve()}", *overrides]
        return compose("config", overrides=overrides, return_hydra_config=return_hydra_config)


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


# What jobs of one packed program may differ in: data, not program shape (hydra/launcher=packed).
PACK_MEMBER_KEYS = ("seed", "aug.", "dataset.label_noise", "trainer.learning_rate")


def program_key(cfg: DictConfig) -> str:
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


class OutputDirCheck(Callback):
    """Hydra callback: stop with one line, before Hydra creates its directories, if paths.output_dir is unusable.

    It exits itself because Hydra turns exceptions raised in callbacks into warnings.
    """

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config)

    @staticmethod
    def _check(config: DictConfig) -> None:
        output_dir = Path(str(config.paths.output_dir))
        try:
            output_dir.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=output_dir):
                pass
        except OSError as exc:
            print(f"Error: paths.output_dir={output_dir} is not a writable directory ({exc.strerror})", file=sys.stderr)
            sys.exit(2)


def _reject_unknown_keys(cfg: DictConfig, aug_schema: type) -> None:
    """Hydra lets `+group.key=value` add keys even to a typed group; a key no code reads is a typo."""
    groups = {name: typ for name, typ in get_type_hints(Config).items() if is_dataclass(typ)}
    schemas = {"": Config, "aug": aug_schema, **groups}
    for prefix, schema in schemas.items():
        node = cfg if prefix == "" else cfg.get(prefix)
        if not isinstance(node, DictConfig):
            continue
        allowed = {f.name for f in fields(schema)}
        for key in node.keys():
            if key not in allowed and key != "hydra":
                full = f"{prefix}.{key!s}" if prefix else str(key)
                raise ConfigError(f"Unknown key {full}: allowed {prefix or 'top-level'} keys are {sorted(allowed)}")


def validate(cfg: DictConfig) -> None:
    """Reject values a type cannot rule out, with one line naming the key and what is allowed."""
    try:
        OmegaConf.resolve(OmegaConf.create(OmegaConf.to_container(cfg, resolve=False)))
    except Exception as exc:  # an interpolation or env var that does not resolve
        raise ConfigError(f"Config does not resolve: {exc}".splitlines()[0]) from None
    name = cfg.aug.get("name")
    require(name in augmentations.AUGMENTATIONS, "aug.name", name, f"one of {sorted(augmentations.AUGMENTATIONS)}")
    _reject_unknown_keys(cfg, augmentations.AUGMENTATIONS[name])
    augmentations.of(cfg.aug).check()
    trainer = cfg.trainer
    require(trainer.epochs >= 1, "trainer.epochs", trainer.epochs, "must be an integer >= 1")
    require(trainer.batch_size >= 1, "trainer.batch_size", trainer.batch_size, "must be an integer >= 1")
    lr = trainer.learning_rate
    require(math.isfinite(lr) and lr > 0, "trainer.learning_rate", lr, "must be a finite number > 0")
    spe = trainer.steps_per_execution
    require(spe >= 1, "trainer.steps_per_execution", spe, "must be an integer >= 1")
    threads = trainer.get("threads")
    require(threads is None or threads >= 1, "trainer.threads", threads,
            "must be null (what the launcher gives the job) or an integer >= 1")  # fmt: skip
    require(trainer.precision in PRECISIONS, "trainer.precision", trainer.precision, f"one of {list(PRECISIONS)}")
    probe = trainer.memorization_probe
    require(probe >= 0, "trainer.memorization_probe", probe, "must be an integer >= 0 (examples per epoch; 0 = off)")
    dataset = cfg.dataset
    require(dataset.val_size >= 1, "dataset.val_size", dataset.val_size, "must be an integer >= 1")
    require(
        dataset.train_size is None or dataset.train_size >= 1,
        "dataset.train_size",
        dataset.train_size,
        "must be null (all) or an integer >= 1",
    )
    noise = dataset.label_noise
    require(0 <= noise <= 1, "dataset.label_noise", noise, "must be a fraction in [0, 1]")
    require(dataset.num_classes >= 2, "dataset.num_classes", dataset.num_classes, "must be an integer >= 2")
    require(
        len(dataset.image_shape) == 3 and all(d >= 1 for d in dataset.image_shape),
        "dataset.image_shape",
        list(dataset.image_shape),
        "must be [height, width, channels]",
    )
    require(cfg.backend in BACKENDS, "backend", cfg.backend, f"one of {list(BACKENDS)}")
    low, high = SEED_RANGE
    require(low <= cfg.seed <= high, "seed", cfg.seed, f"must be an integer in [{low}, {high}] (2**32 - 1)")
    model = cfg.model
    require(
        len(model.conv_filters) >= 1 and all(f >= 1 for f in model.conv_filters),
        "model.conv_filters",
        list(model.conv_filters),
        "must be a non-empty list of integers >= 1",
    )
    require(model.kernel_size >= 1, "model.kernel_size", model.kernel_size, "must be an integer >= 1")
    smallest = min(dataset.image_shape[:2])
    for block in range(len(model.conv_filters)):  # each block: a valid k x k convolution, then 2 x 2 max pooling
        smallest = (smallest - model.kernel_size + 1) // 2
        require(
            smallest >= 1,
            "model.kernel_size",
            model.kernel_size,
            f"with {len(model.conv_filters)} conv blocks (model.conv_filters) on {list(dataset.image_shape[:2])} "
            f"images, block {block + 1} has no pixels left; use a smaller kernel or fewer conv blocks",
        )
    require(model.pooling in POOLINGS, "model.pooling", model.pooling, f"one of {list(POOLINGS)}")
    require(model.dense_units >= 1, "model.dense_units", model.dense_units, "must be an integer >= 1")
    require(0 <= model.dropout < 1, "model.dropout", model.dropout, "must be in [0, 1)")
    require(
        bool(cfg.tracking.uri), "tracking.uri", cfg.tracking.uri, "set it (tracking=server reads MLFLOW_TRACKING_URI)"
    )
    timeout = cfg.tracking.heartbeat_timeout_s
    require(timeout > 0, "tracking.heartbeat_timeout_s", timeout, "must be a number of seconds > 0")
