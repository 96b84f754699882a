"""CIFAR-10 and CIFAR-100 (Krizhevsky 2009): the "python version" pickle batches that Keras's downloader caches.

The batches are Python pickles; they are read with an unpickler that rebuilds NumPy arrays and nothing else
(as Keras's own loader does), so a tampered file cannot run code. Each batch is a dict with `data` (n x 3072
uint8, the red, green and blue planes of a 32x32 image one after another) and its labels; a `meta` file names
the classes. CIFAR-100 has 100 fine classes and 20 coarse ones (`dataset.label_mode`).
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from omegaconf import MISSING

from mixup_sweeps.data.datasets._base import Arrays, DataError, DataSource, keras_home, register
from mixup_sweeps.errors import require

# What rebuilding a pickled NumPy array takes, under NumPy 1 and 2 names (Keras's loader allows the same), and
# the bytes of a protocol-2 pickle written by Python 3 (`_codecs.encode`: text to bytes, it runs nothing else).
ARRAY_GLOBALS = frozenset({("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "_reconstruct"),
                           ("numpy._core.multiarray", "_reconstruct"), ("_codecs", "encode")})  # fmt: skip


class _ArraysOnly(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in ARRAY_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing {module}.{name}: a CIFAR batch holds only arrays, lists and bytes")


def read_batch(path: Path) -> tuple[dict[str, Any], str]:
    """One pickle batch as a dict with str keys, and the sha256 of the file; `DataError` if it is not one."""
    blob = path.read_bytes()
    try:
        batch = _ArraysOnly(io.BytesIO(blob), encoding="bytes").load()
    except Exception as exc:  # truncated, not a pickle, a forbidden global: the file is not a batch
        raise DataError(f"{path}: not a CIFAR python batch ({type(exc).__name__}: {exc})") from None
    if not isinstance(batch, dict):
        raise DataError(f"{path}: not a CIFAR python batch (a {type(batch).__name__}, not a dict)")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}, hashlib.sha256(blob).hexdigest()


def _images(batch: dict[str, Any], path: Path) -> np.ndarray:
    data = batch.get("data")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        found = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DataError(f"{path}: 'data' must be uint8 (n, 3072), found {found}")
    return np.ascontiguousarray(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))  # channels last


def _labels(batch: dict[str, Any], key: str, path: Path) -> np.ndarray:
    if key not in batch:
        raise DataError(f"{path}: no '{key}' in the batch (it has {sorted(batch)})")
    labels = np.asarray(batch[key])
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{path}: '{key}' must be a list of integer labels")
    return labels.astype(np.uint8) if len(labels) and 0 <= labels.min() and labels.max() < 256 else labels


@dataclass
class CifarDataset(DataSource):
    """Pickle batches in one directory, as the published archive unpacks."""

    archive: ClassVar[str]  # the published archive's name (origin = its URL)
    archive_sha256: ClassVar[str]
    inner: ClassVar[str]  # the directory the archive unpacks to
    train_files: ClassVar[tuple[str, ...]]
    test_file: ClassVar[str]
    meta_file: ClassVar[str]
    env_var: ClassVar[str]

    def label_key(self) -> tuple[str, str]:
        """The batch key of the labels, and the meta key of their names."""
        raise NotImplementedError

    def places(self) -> list[Path]:
        env = [Path(os.environ[self.env_var]).expanduser()] if os.environ.get(self.env_var) else []
        cache = keras_home() / "datasets"  # Keras 3 unpacks into <name>-target/<inner>, Keras 2 into <inner>
        return [*env, cache / f"{self.inner}-target" / self.inner, cache / self.inner]

    def _files(self) -> list[str]:
        return [*self.train_files, self.test_file, self.meta_file]

    def present(self, where: Path) -> bool:
        return all((where / name).is_file() for name in self._files())

    def missing(self, where: Path) -> str:
        return "missing " + ", ".join(n for n in self._files() if not (where / n).is_file())

    def fetch(self) -> Path | None:
        from keras.utils import get_file  # Keras (and its backend) only when a download is asked for

        unpacked = get_file(fname=f"{self.inner}-target", origin=self.origin, extract=True,
                            file_hash=self.archive_sha256)  # fmt: skip
        return Path(unpacked) / self.inner

    def how_to_get(self) -> str:
        return (f"unpack {self.origin} and set dataset.path to its {self.inner} directory (or {self.env_var}=DIR), "
                f"or put it in {keras_home() / 'datasets'}")  # fmt: skip

    def read(self, where: Path) -> Arrays:
        labels_key, names_key = self.label_key()
        sha256, parts = {}, []
        for names in (self.train_files, (self.test_file,)):
            images, labels = [], []
            for name in names:
                batch, sha256[name] = read_batch(where / name)
                images.append(_images(batch, where / name))
                labels.append(_labels(batch, labels_key, where / name))
                if len(images[-1]) != len(labels[-1]):
                    raise DataError(f"{where / name}: {len(images[-1])} images but {len(labels[-1])} labels")
            parts.append((np.concatenate(images), np.concatenate(labels)))
        meta, sha256[self.meta_file] = read_batch(where / self.meta_file)
        listed = meta.get(names_key)
        if not isinstance(listed, list) or not listed:
            raise DataError(f"{where / self.meta_file}: no '{names_key}' list of class names")
        class_names = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in listed)
        (train_images, train_labels), (test_images, test_labels) = parts
        return Arrays(train_images, train_labels, test_images, test_labels, sha256, class_names,
                      files=(str(where / self.train_files[0]), str(where / self.test_file)))  # fmt: skip


@register
@dataclass
class CIFAR10(CifarDataset):
    key = "cifar10"
    title = "CIFAR-10"
    origin = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
    archive_sha256 = "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"  # as Keras checks it
    inner = "cifar-10-batches-py"
    train_files = tuple(f"data_batch_{i}" for i in range(1, 6))
    test_file = "test_batch"
    meta_file = "batches.meta"
    env_var = "CIFAR10_DIR"

    def label_key(self) -> tuple[str, str]:
        return "labels", "label_names"


@register
@dataclass
class CIFAR100(CifarDataset):
    key = "cifar100"
    title = "CIFAR-100"
    origin = "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"
    archive_sha256 = "85cd44d02ba6437773c5bbd22e183051d648de2e7d6b014e1ef29b855ba677a7"  # as Keras checks it
    inner = "cifar-100-python"
    train_files = ("train",)
    test_file = "test"
    meta_file = "meta"
    env_var = "CIFAR100_DIR"
    label_mode: str = MISSING  # fine (100 classes, the mixup paper's) | coarse (20 superclasses)

    def check(self) -> None:
        super().check()
        mode = self.label_mode
        require(mode in ("fine", "coarse"), "dataset.label_mode", mode, "one of ['coarse', 'fine']")

    def label_key(self) -> tuple[str, str]:
        return f"{self.label_mode}_labels", f"{self.label_mode}_label_names"
