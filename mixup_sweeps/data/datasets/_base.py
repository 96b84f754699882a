"""What every dataset shares: its schema, finding its files, the checks, the validation split, the label noise.

A dataset is a dataclass registered under its `key` (what `dataset=<key>` and `dataset.name` say), as an
augmentation is: its fields are the schema Hydra checks `dataset` against, the values live in
conf/dataset/<key>.yaml. A member says only where its files are looked for (`places`, `present`), how they are
fetched (`fetch`) or else how to get them (`how_to_get`), and how they are read (`read`: four arrays, the file
digests, the class names). The rest is the same for every member and lives here: the counts, label range and
shape checks, the split (the first `val_size` training images validate, as in the Keras mixup example), the
one copy of the pixels per process, and the label noise.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from omegaconf import MISSING, OmegaConf

from mixup_sweeps.errors import ConfigError, require

log = logging.getLogger(__name__)


class DataError(ConfigError):
    """Missing, truncated or corrupt data: one line naming the file, exit 2, nothing trained or recorded."""


@dataclass
class Split:
    images: np.ndarray  # uint8, (n, height, width, channels)
    labels: np.ndarray  # integer class indices, (n,)

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class Dataset:
    """The three splits a job uses, and where they came from (recorded with every run)."""

    train: Split
    val: Split
    test: Split
    source_dir: Path  # the file or directory read
    sha256: dict[str, str]  # file name -> sha256 of the file as read
    label_noise: float = 0.0  # realised fraction of training labels that were replaced (see with_label_noise)
    clean_train_labels: np.ndarray | None = None  # the training labels before the noise (None: no noise)
    noisy_validation: bool = False  # whether the validation labels carry the same noise
    name: str = ""  # the registry key (`dataset.name`)
    class_names: tuple[str, ...] = ()  # one per class, for plots and the report
    origin: str = ""  # where the published files come from (a URL), or "" for the user's own

    @property
    def image_shape(self) -> tuple[int, int, int]:
        height, width, channels = self.train.images.shape[1:]
        return height, width, channels

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


@dataclass(frozen=True)
class Arrays:
    """What a member reads: uint8 images (n, height, width, channels) and integer labels (n,) of each part, the
    digests of the files read, the class names the files give (empty: numbered), and which file each part came
    from (for the error messages of the shared checks)."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    sha256: dict[str, str]
    class_names: tuple[str, ...] = ()
    files: tuple[str, str] = ("training images", "test images")


DATASETS: dict[str, type[DataSource]] = {}


def register(cls: type[DataSource]) -> type[DataSource]:
    """Class decorator: `cls` is the dataset named by its `key` (what `dataset=<key>` and `dataset.name` say)."""
    DATASETS[cls.key] = cls
    return cls


def of(node: Any) -> DataSource:
    """The dataset a config's `dataset` node describes (a DictConfig or a mapping with a `name`)."""
    name = node.get("name")
    require(name in DATASETS, "dataset.name", name, f"one of {sorted(DATASETS)}")
    cls = DATASETS[name]
    return cls(**{f.name: node.get(f.name) for f in fields(cls)})


def keras_home() -> Path:
    """Where Keras's downloader caches files (`KERAS_HOME`, else ~/.keras)."""
    return Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras")


@dataclass
class DataSource:
    """The base of every dataset: the keys all share. Members set `key`, `title`, `origin` and the methods."""

    key: ClassVar[str]
    title: ClassVar[str]  # how messages name it ("Fashion-MNIST")
    origin: ClassVar[str] = ""  # where the published files come from (recorded with each run)
    name: str = MISSING
    path: str | None = MISSING  # the only place looked when set
    val_size: int = MISSING  # the first val_size training images validate
    train_size: int | None = MISSING  # null: all the training images after those
    # null: every test image (the published test set); N: the first N, for quick checks whose test figures are
    # not the published set's (a 10,000-image test pass is most of a tiny run's time on a CPU)
    test_size: int | None = MISSING
    image_shape: list[int] | None = MISSING  # [height, width, channels]; null: what the files hold
    num_classes: int | None = MISSING  # null: what the files name, else the largest label + 1
    download: bool = MISSING  # fetch the published files when they are found nowhere (and the machine is online)
    label_noise: float = MISSING  # fraction of training labels replaced by a random other class (fixed by seed)
    noisy_validation: bool = MISSING  # corrupt the validation labels at the same rate (a practitioner's view)

    # --- what a member says ------------------------------------------------------------------------------
    def places(self) -> list[Path]:
        """Where the files are looked for, in order, when `path` is not set."""
        return []

    def present(self, where: Path) -> bool:
        """Whether `where` holds everything `read` needs."""
        raise NotImplementedError

    def missing(self, where: Path) -> str:
        """What `where` lacks, for the one line of an explicit `path` that does not hold the data."""
        return "not found"

    def fetch(self) -> Path | None:
        """Download the published files (`download: true`); returns where they are, or None if it cannot."""
        return None

    def how_to_get(self) -> str:
        """The end of the one line when the data is found nowhere: what to put where."""
        raise NotImplementedError

    def read(self, where: Path) -> Arrays:
        """The four arrays from `where`, checked for format; `DataError` naming the file otherwise."""
        raise NotImplementedError

    def check(self) -> None:
        """Raise `ConfigError` for a value the schema's types cannot rule out (no file is read here)."""
        require(self.val_size >= 1, "dataset.val_size", self.val_size, "must be an integer >= 1")
        require(self.train_size is None or self.train_size >= 1, "dataset.train_size", self.train_size,
                "must be null (all) or an integer >= 1")  # fmt: skip
        require(self.test_size is None or self.test_size >= 1, "dataset.test_size", self.test_size,
                "must be null (all) or an integer >= 1")  # fmt: skip
        noise = self.label_noise
        require(0 <= noise <= 1, "dataset.label_noise", noise, "must be a fraction in [0, 1]")
        require(self.num_classes is None or self.num_classes >= 2, "dataset.num_classes", self.num_classes,
                "must be null (what the files hold) or an integer >= 2")  # fmt: skip
        shape = self.image_shape
        require(shape is None or (len(shape) == 3 and all(d >= 1 for d in shape)), "dataset.image_shape",
                None if shape is None else list(shape),
                "must be null (what the files hold) or [height, width, channels]")  # fmt: skip

    # --- the same for every member -----------------------------------------------------------------------
    def locate(self) -> Path:
        """Where the data is: `path` alone when set, else the first of `places` that holds it, else fetched."""
        if self.path:
            where = Path(self.path).expanduser()
            if not self.present(where):
                shown = self.path if str(self.path).isprintable() else repr(self.path)  # one line, whatever was typed
                raise DataError(f"dataset.path={shown}: {self.missing(where)}; {self.how_to_get()}")
            return where
        candidates = self.places()
        for where in candidates:
            if self.present(where):
                return where
        if self.download:
            try:
                fetched = self.fetch()
            except Exception as exc:  # offline, a moved URL, a bad digest: said once, then the one line below
                log.warning("Downloading %s failed: %s", self.title, str(exc).splitlines()[0] if str(exc) else exc)
            else:
                if fetched is not None and self.present(fetched):
                    return fetched
        looked = ", ".join(str(c) for c in candidates) or "nowhere: set dataset.path"
        tried = " and tried to download it" if self.download and self.origin else ""
        raise DataError(f"{self.title} not found (looked in {looked}{tried}); {self.how_to_get()}")

    def stamp(self, where: Path) -> tuple:
        """What says the files changed (name, modification time, size), for the per-process copy."""
        files = sorted(where.rglob("*")) if where.is_dir() else [where]
        return tuple((str(f), f.stat().st_mtime_ns, f.stat().st_size) for f in files if f.is_file())


_READ: dict[tuple, Dataset] = {}  # the clean splits this process has read (one entry: the latest)


def read_splits(source: DataSource) -> Dataset:
    """The checked, split data of `source` (no label noise), read once per process and shared read-only.

    The members of a pack (and the jobs one after another in a process) hold one copy of the pixels, not one
    each; a file changed on disk is read again."""
    where = source.locate()
    settings = {f.name: getattr(source, f.name) for f in fields(source)}
    for name in ("label_noise", "noisy_validation", "download"):
        settings.pop(name)
    key = (repr(sorted(settings.items(), key=str)), str(where), source.stamp(where))
    if key not in _READ:
        _READ.clear()
        _READ[key] = split(source, where, source.read(where))
    return _READ[key]


def split(source: DataSource, where: Path, arrays: Arrays) -> Dataset:
    """The checks every dataset gets (counts, label range, image shape, the sizes asked for), then the split."""
    parts = {"train": (arrays.train_images, arrays.train_labels), "test": (arrays.test_images, arrays.test_labels)}
    for (part, (images, labels)), file in zip(parts.items(), arrays.files):
        if len(images) != len(labels):
            raise DataError(f"{file}: {len(images)} images but {len(labels)} labels in the {part} part")
        if len(images) == 0:
            raise DataError(f"{file}: no images in the {part} part")
        if images.ndim != 4 or images.dtype != np.uint8:
            raise DataError(f"{file}: images must be uint8 (n, height, width, channels), not {images.dtype} "
                            f"{images.shape}")  # fmt: skip
        if source.image_shape is not None and tuple(images.shape[1:]) != tuple(source.image_shape):
            raise DataError(f"{file}: images are {list(images.shape[1:])}, dataset.image_shape says "
                            f"{list(source.image_shape)}")  # fmt: skip
    if arrays.train_images.shape[1:] != arrays.test_images.shape[1:]:
        raise DataError(f"{arrays.files[1]}: test images are {list(arrays.test_images.shape[1:])}, training images "
                        f"{list(arrays.train_images.shape[1:])}")  # fmt: skip
    labels = np.concatenate([arrays.train_labels, arrays.test_labels])
    if not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0:
        raise DataError(f"{arrays.files[0]}: labels must be integers 0..K-1 (found {labels.dtype}, min {labels.min()})")
    classes = source.num_classes or len(arrays.class_names) or int(labels.max()) + 1
    for (_, part_labels), file in zip(parts.values(), arrays.files):
        if part_labels.max() >= classes:
            given = f"dataset.num_classes={classes}" if source.num_classes else f"the {classes} classes the files name"
            raise DataError(f"{file}: label {part_labels.max()} is not below {given}")
    if classes < 2:
        raise DataError(f"{arrays.files[0]}: only one class (label 0); a classifier needs at least 2")
    names = arrays.class_names if len(arrays.class_names) == classes else tuple(str(i) for i in range(classes))

    n_train = len(arrays.train_labels)
    if source.val_size >= n_train:
        raise DataError(f"Invalid value dataset.val_size={source.val_size}: must be smaller than the {n_train} "
                        f"training images in {where}")  # fmt: skip
    available = n_train - source.val_size
    if source.train_size is not None and source.train_size > available:
        raise DataError(f"Invalid value dataset.train_size={source.train_size}: at most {available} ({n_train} "
                        f"training images - dataset.val_size={source.val_size}), or null for all")  # fmt: skip
    end = n_train if source.train_size is None else source.val_size + source.train_size
    n_test = len(arrays.test_labels)
    if source.test_size is not None and source.test_size > n_test:
        raise DataError(f"Invalid value dataset.test_size={source.test_size}: at most the {n_test} test images in "
                        f"{where}, or null for all")  # fmt: skip
    for array in (arrays.train_images, arrays.train_labels, arrays.test_images, arrays.test_labels):
        array.flags.writeable = False  # shared by every job of this process: nobody may change it
    train_images, train_labels = arrays.train_images, arrays.train_labels
    return Dataset(
        train=Split(train_images[source.val_size : end], train_labels[source.val_size : end]),
        val=Split(train_images[: source.val_size], train_labels[: source.val_size]),
        test=Split(arrays.test_images[: source.test_size], arrays.test_labels[: source.test_size]),
        source_dir=where, sha256=arrays.sha256, name=source.key, class_names=names, origin=source.origin,
    )  # fmt: skip


def load(dataset_cfg: Any, seed: int = 0) -> Dataset:
    """The `dataset` config's data: found, read and checked, split, and with its training-label noise.

    The first `val_size` training images become the validation set; with `label_noise > 0` the run's `seed`
    picks which training labels are corrupted (`with_label_noise`), and with `noisy_validation` which
    validation labels too.
    """
    source = of(dataset_cfg)
    clean = read_splits(source)
    if source.label_noise > 0:
        return with_label_noise(clean, source.label_noise, clean.num_classes, seed, source.noisy_validation)
    return clean


def split_digests(dataset_cfg: Any, dataset: Dataset, seed: int) -> dict[str, str]:
    """Each split's identity ("train", "val", "test" -> 16 hex digits): the digests of the files read and the
    rule that cut the split from them (the dataset's keys but where it was found, and the seed where it picked
    noisy labels). The same files split the same way give the same digest on any machine, without hashing
    the images again (MLflow's dataset digest)."""
    given = OmegaConf.to_container(dataset_cfg, resolve=True) if OmegaConf.is_config(dataset_cfg) else dataset_cfg
    assert isinstance(given, dict)
    keys = {k: v for k, v in given.items() if k not in ("path", "download")}
    if keys.get("test_size") is None:  # the whole test set: the rule every run before the key had
        keys.pop("test_size", None)
    noisy = float(keys.get("label_noise") or 0) > 0
    digests = {}
    for split in ("train", "val", "test"):
        picked_by_seed = noisy and split != "test"  # test labels are never corrupted
        rule = {"files": dataset.sha256, "keys": keys, "seed": seed if picked_by_seed else None, "split": split}
        text = json.dumps(rule, sort_keys=True, default=str)
        digests[split] = hashlib.sha256(text.encode()).hexdigest()[:16]
    return digests


LABEL_NOISE_STREAM = 0x4E015E  # keeps the noise draws apart from every other use of the seed
VALIDATION_NOISE_STREAM = 0x4E015F


def corrupt(labels: np.ndarray, fraction: float, num_classes: int, rng: np.random.Generator) -> np.ndarray:
    """round(fraction * n) of `labels`, chosen by `rng`, each replaced with a uniformly random *other* class."""
    chosen = rng.choice(len(labels), size=round(fraction * len(labels)), replace=False)
    noisy = labels.copy()
    noisy[chosen] = (labels[chosen].astype(np.int64) + rng.integers(1, num_classes, size=len(chosen))) % num_classes
    return noisy


def with_label_noise(
    dataset: Dataset, fraction: float, num_classes: int, seed: int, noisy_validation: bool = False
) -> Dataset:
    """Corrupt `fraction` of the training labels (`corrupt`, chosen by `seed`); the clean ones are kept aside
    for the memorization probe, the realised fraction goes in `label_noise`.

    Test labels stay clean, so test accuracy still measures the true task (the mixup paper's corrupted-label
    setting). Validation labels stay clean too unless `noisy_validation`: then the best epoch is chosen as a
    practitioner whose labels are all noisy would choose it.
    """
    labels = dataset.train.labels
    noisy = corrupt(labels, fraction, num_classes, np.random.default_rng([seed, LABEL_NOISE_STREAM]))
    realised = float(np.mean(noisy != labels)) if len(labels) else 0.0
    val = dataset.val
    if noisy_validation:
        rng = np.random.default_rng([seed, VALIDATION_NOISE_STREAM])
        val = Split(val.images, corrupt(val.labels, fraction, num_classes, rng))
    return replace(
        dataset, train=Split(dataset.train.images, noisy), val=val, label_noise=realised, clean_train_labels=labels,
        noisy_validation=noisy_validation,
    )  # fmt: skip
