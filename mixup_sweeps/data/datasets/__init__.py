"""The datasets, one object each (like the augmentations): `dataset=<key>` picks one, `load` reads it.

Members: `fashion_mnist` (the seed's), `mnist`, `kmnist` (idx.py: the IDX files), `cifar10`, `cifar100`
(cifar.py: the pickle batches Keras caches), `npz` (arrays.py: your arrays) and `folder` (folder.py: your
images). Adding one is a class registered in a module here plus conf/dataset/<key>.yaml; what every dataset
shares (the checks, the split, one copy per process, the label noise) is in `_base.py`.

`python -m mixup_sweeps.data [KEY]` prints where a dataset is found (exit 1 with how to get it when it is not).
"""

from __future__ import annotations

import sys
from pathlib import Path

from mixup_sweeps.data.datasets import arrays, cifar, folder, idx  # noqa: F401  (each registers its members)
from mixup_sweeps.data.datasets._base import (
    DATASETS,
    Arrays,
    DataError,
    Dataset,
    DataSource,
    Split,
    corrupt,
    load,
    of,
    read_splits,
    register,
    split_digests,
    with_label_noise,
)
from mixup_sweeps.data.datasets.idx import FILES, FashionMNIST

__all__ = ["DATASETS", "FILES", "Arrays", "DataError", "DataSource", "Dataset", "FashionMNIST", "Split", "corrupt",
           "find_data_dir", "load", "main", "of", "read_splits", "register", "split_digests",
           "with_label_noise"]  # fmt: skip


def find_data_dir(path: str | None = None, download: bool = False, name: str = "fashion_mnist") -> Path:
    """Where dataset `name`'s files are (`path` alone when given): its search path, then its downloader."""
    source = DATASETS[name](name=name, path=path, download=download)
    return source.locate()


def main(argv: list[str] | None = None) -> int:
    """`python -m mixup_sweeps.data [KEY]`: print where a dataset is (default fashion_mnist), or how to get it."""
    args = sys.argv[1:] if argv is None else argv
    name = args[0] if args else FashionMNIST.key
    if name not in DATASETS:
        print(f"Unknown dataset {name}: one of {sorted(DATASETS)}", file=sys.stderr)
        return 2
    try:
        print(find_data_dir(name=name))
    except DataError as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0
