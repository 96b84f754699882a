"""Fashion-MNIST from the four IDX files, read offline and checked, split as the Keras mixup example does.

Run `python -m mixup_sweeps.data.datasets` to see where the data is found (exit 1 with instructions when it is not).
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import sys
import zlib
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from mixup_sweeps.errors import ConfigError

log = logging.getLogger(__name__)

FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}
IDX_UBYTE_IMAGES = 0x00000803  # unsigned bytes, 3 dimensions (count, rows, cols)
IDX_UBYTE_LABELS = 0x00000801  # unsigned bytes, 1 dimension (count)
CLASS_NAMES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
HOW_TO_GET = (
    "install it with `apt-get install -y dataset-fashion-mnist` (Debian), "
    "or put the four files in a directory and set dataset.path=DIR or FASHION_MNIST_DIR=DIR"
)


class DataError(ConfigError):
    """Missing, truncated or corrupt data: one line naming the file, non-zero exit, nothing trained."""


@dataclass
class Split:
    images: np.ndarray  # uint8, (n, height, width, channels)
    labels: np.ndarray  # uint8 class indices, (n,)

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class Dataset:
    """The three splits a job uses, and where they came from (recorded with every run)."""

    train: Split
    val: Split
    test: Split
    source_dir: Path
    sha256: dict[str, str]  # file name -> sha256 of the .gz file
    label_noise: float = 0.0  # realised fraction of training labels that were replaced (see with_label_noise)
    clean_train_labels: np.ndarray | None = None  # the training labels before the noise (None: no noise)
    noisy_validation: bool = False  # whether the validation labels carry the same noise


def search_path(explicit: str | None = None) -> list[Path]:
    """Where the data is looked for, in order. An explicit `dataset.path` is the only place looked."""
    if explicit:
        return [Path(explicit).expanduser()]
    candidates = []
    if os.environ.get("FASHION_MNIST_DIR"):
        candidates.append(Path(os.environ["FASHION_MNIST_DIR"]).expanduser())
    candidates += [Path.home() / ".keras" / "datasets" / "fashion-mnist", DEBIAN_DIR]
    return candidates


def _has_all_files(directory: Path) -> bool:
    return all((directory / name).is_file() for name in FILES.values())


def find_data_dir(explicit: str | None = None, download: bool = False) -> Path:
    """First directory on the search path that holds all four files; Keras's downloader as a last resort."""
    candidates = search_path(explicit)
    for directory in candidates:
        if _has_all_files(directory):
            return directory
    if explicit:
        missing = [n for n in FILES.values() if not (candidates[0] / n).is_file()]
        raise DataError(f"dataset.path={explicit}: missing {', '.join(missing)}; {HOW_TO_GET}")
    if download:
        try:
            from keras.datasets import fashion_mnist

            fashion_mnist.load_data()  # writes ~/.keras/datasets/fashion-mnist/*.gz
        except Exception as exc:
            log.warning("Keras's downloader failed too: %s", str(exc).splitlines()[0] if str(exc) else exc)
        if _has_all_files(candidates[-2]):
            return candidates[-2]
    looked = ", ".join(str(c) for c in candidates)
    raise DataError(
        f"Fashion-MNIST not found (looked in {looked}{' and tried Keras download' if download else ''}); {HOW_TO_GET}"
    )


def read_idx(path: Path, magic: int) -> tuple[np.ndarray, str]:
    """Decode one gzipped IDX file, checking magic number and size; returns (array, sha256 of the file)."""
    blob = path.read_bytes()
    digest = hashlib.sha256(blob).hexdigest()
    try:
        raw = gzip.decompress(blob)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: truncated or corrupt gzip ({exc})") from None
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(raw) < header or int.from_bytes(raw[:4], "big") != magic:
        found = int.from_bytes(raw[:4], "big") if len(raw) >= 4 else None
        raise DataError(f"{path}: not an IDX file of this kind (magic {found!r}, expected {magic:#010x})")
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(dims))
    if len(raw) - header != expected:
        raise DataError(f"{path}: header says {dims} = {expected} bytes of data, file has {len(raw) - header}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims), digest


def load(dataset_cfg: DictConfig, seed: int = 0) -> Dataset:
    """The `dataset` config's data: found, read and checked, split, and with its training-label noise.

    The first `val_size` training images become the validation set; with `label_noise > 0` the run's `seed`
    picks which training labels are corrupted (`with_label_noise`), and with `noisy_validation` which
    validation labels too.
    """
    clean = read_splits(
        dataset_cfg.path,
        val_size=dataset_cfg.val_size,
        train_size=dataset_cfg.train_size,
        image_shape=tuple(dataset_cfg.image_shape),
        num_classes=dataset_cfg.num_classes,
        download=dataset_cfg.download,
    )
    if dataset_cfg.label_noise > 0:
        return with_label_noise(
            clean, dataset_cfg.label_noise, dataset_cfg.num_classes, seed, dataset_cfg.noisy_validation
        )
    return clean


_READ: dict[tuple, Dataset] = {}  # the clean splits this process has read (one entry: the latest)


def read_splits(
    path: str | None, *, val_size: int, train_size: int | None, image_shape: tuple[int, ...], num_classes: int,
    download: bool,
) -> Dataset:  # fmt: skip
    """Load and check all four files; the first `val_size` training images become the validation set.

    The splits are read once per process and shared, read-only: the members of a pack (and the jobs one after
    another in a process) hold one copy of the pixels, not one each; a file changed on disk is read again."""
    directory = find_data_dir(path, download)
    files = [directory / name for name in FILES.values()]
    key = (str(directory), tuple((f.stat().st_mtime_ns, f.stat().st_size) for f in files if f.exists()), val_size,
           train_size, tuple(image_shape), num_classes)  # fmt: skip
    if key not in _READ:
        _READ.clear()
        _READ[key] = _read_splits(directory, val_size, train_size, tuple(image_shape), num_classes)
    return _READ[key]


def _read_splits(
    directory: Path, val_size: int, train_size: int | None, image_shape: tuple[int, ...], num_classes: int
) -> Dataset:
    arrays, sha256 = {}, {}
    for key, name in FILES.items():
        magic = IDX_UBYTE_IMAGES if key.endswith("images") else IDX_UBYTE_LABELS
        arrays[key], sha256[name] = read_idx(directory / name, magic)
    for part in ("train", "test"):
        images, labels = arrays[f"{part}_images"], arrays[f"{part}_labels"]
        if len(images) != len(labels):
            raise DataError(
                f"{directory / FILES[part + '_images']}: {len(images)} images but "
                f"{FILES[part + '_labels']} has {len(labels)} labels"
            )
        if tuple(images.shape[1:]) != tuple(image_shape[:2]):
            raise DataError(
                f"{directory / FILES[part + '_images']}: images are {images.shape[1:]}, "
                f"dataset.image_shape says {list(image_shape)}"
            )
        if labels.size and labels.max() >= num_classes:
            raise DataError(
                f"{directory / FILES[part + '_labels']}: label {labels.max()} is not below "
                f"dataset.num_classes={num_classes}"
            )
    n_train = len(arrays["train_labels"])
    if val_size >= n_train:
        raise DataError(
            f"Invalid value dataset.val_size={val_size}: must be smaller than the {n_train} "
            f"training images in {directory}"
        )
    available = n_train - val_size
    if train_size is not None and train_size > available:
        raise DataError(
            f"Invalid value dataset.train_size={train_size}: at most {available} "
            f"({n_train} training images - dataset.val_size={val_size}), or null for all"
        )
    end = n_train if train_size is None else val_size + train_size

    for array in arrays.values():
        array.flags.writeable = False  # shared by every job of this process: nobody may change it

    def split(images: np.ndarray, labels: np.ndarray, lo: int, hi: int | None) -> Split:
        return Split(images[lo:hi].reshape(-1, *image_shape), labels[lo:hi])

    return Dataset(
        train=split(arrays["train_images"], arrays["train_labels"], val_size, end),
        val=split(arrays["train_images"], arrays["train_labels"], 0, val_size),
        test=split(arrays["test_images"], arrays["test_labels"], 0, None),
        source_dir=directory,
        sha256=sha256,
    )


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


def main() -> int:
    """`python -m mixup_sweeps.data`: print where the data is, or how to get it (exit 1)."""
    try:
        print(find_data_dir())
    except DataError as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
