"""The job's whole config: its schemas registered with Hydra, composed from conf/, and its values checked.

Each part's schema is in `config` (the augmentations bring their own, `data.augmentations`); this module puts
them in Hydra's ConfigStore and checks the values a type cannot rule out, across parts (a kernel too large for
the image, an augmentation's own settings). A value that cannot work is one `ConfigError` line naming the key
and what is allowed, before anything is trained or recorded.
"""

from __future__ import annotations

import math
import os
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any, get_type_hints

from hydra.core.config_store import ConfigStore
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from mixup_sweeps.config import BACKENDS, CONF_DIR, PRECISIONS, SEED_RANGE, Config
from mixup_sweeps.data import augmentations, datasets, input_aug
from mixup_sweeps.errors import ConfigError, require
from mixup_sweeps.train import models, recipe


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
    for name, source in datasets.DATASETS.items():
        cs.store(group="hydra/schema/dataset", name=name, node=source)
    for name, model in models.MODELS.items():
        cs.store(group="hydra/schema/model", name=name, node=model)


def load_config(output_dir: str | Path, overrides: Sequence[str] = (), return_hydra_config: bool = False) -> DictConfig:
    """Compose conf/ outside a Hydra job (tests, the report): the same defaults a job gets."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        overrides = [f"paths.output_dir={Path(output_dir).resolve()}", *overrides]
        return compose("config", overrides=overrides, return_hydra_config=return_hydra_config)


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


def _reject_unknown_keys(cfg: DictConfig, own_schemas: dict[str, type]) -> None:
    """Hydra lets `+group.key=value` add keys even to a typed group; a key no code reads is a typo."""
    groups = {name: typ for name, typ in get_type_hints(Config).items() if is_dataclass(typ)}
    schemas = {"": Config, **own_schemas, **groups}
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
    data_name = cfg.dataset.get("name")
    require(data_name in datasets.DATASETS, "dataset.name", data_name, f"one of {sorted(datasets.DATASETS)}")
    model = models.of(cfg.model)  # its architecture known (one line if not), its schema for the key check
    schemas = {"aug": augmentations.AUGMENTATIONS[name], "dataset": datasets.DATASETS[data_name], "model": type(model)}
    _reject_unknown_keys(cfg, schemas)
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
    recipe.check(trainer)
    input_aug.check(trainer)
    datasets.of(cfg.dataset).check()
    require(cfg.backend in BACKENDS, "backend", cfg.backend, f"one of {list(BACKENDS)}")
    low, high = SEED_RANGE
    require(low <= cfg.seed <= high, "seed", cfg.seed, f"must be an integer in [{low}, {high}] (2**32 - 1)")
    model.check()
    if cfg.dataset.image_shape is not None:  # else once the files are read (`check_model_fits` in job.open)
        model.check_fits(cfg.dataset.image_shape)
    require(
        bool(cfg.tracking.uri), "tracking.uri", cfg.tracking.uri, "set it (tracking=server reads MLFLOW_TRACKING_URI)"
    )
    timeout = cfg.tracking.heartbeat_timeout_s
    require(timeout > 0, "tracking.heartbeat_timeout_s", timeout, "must be a number of seconds > 0")


def check_model_fits(model: Any, image_shape: Sequence[int]) -> None:
    """The model (a config's `model` node) takes images of this shape (one line naming the key)."""
    models.of(model).check_fits(image_shape)


def check_data(cfg: DictConfig) -> None:
    """The job's dataset found, read and checked (`DataError`, one line), and the model fits its images: before a
    multirun records its parent run. The pixels stay in this process's copy for the jobs it runs itself."""
    dataset = datasets.read_splits(datasets.of(cfg.dataset))
    check_model_fits(cfg.model, cfg.dataset.image_shape or dataset.image_shape)
