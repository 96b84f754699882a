"""The MNIST family: Fashion-MNIST, MNIST and Kuzushiji-MNIST, four gzipped IDX files each, one reader.

Each member differs only in its names: where its files are looked for (an environment variable, Keras's cache,
a system copy), where they are downloaded from (with the published digests, checked by Keras's downloader) and
its class names. The reader checks the IDX magic number and that the header's sizes match the data.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from mixup_sweeps.data.datasets._base import Arrays, DataError, DataSource, keras_home, register

FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}
IDX_UBYTE_IMAGES = 0x00000803  # unsigned bytes, 3 dimensions (count, rows, cols)
IDX_UBYTE_LABELS = 0x00000801  # unsigned bytes, 1 dimension (count)


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


@dataclass
class IdxDataset(DataSource):
    """Four gzipped IDX files (`FILES`) in one directory: 28x28 grey images, labels 0-9."""

    env_var: ClassVar[str]  # a directory named by this variable is looked in first
    keras_dir: ClassVar[str]  # ~/.keras/datasets/<keras_dir>: where the downloader puts the files
    system_dirs: ClassVar[tuple[Path, ...]] = ()  # a copy a package manager installs
    digests: ClassVar[dict[str, str]] = {}  # file name -> published md5 or sha256 (checked when downloading)
    class_names: ClassVar[tuple[str, ...]] = ()

    def places(self) -> list[Path]:
        env = [Path(os.environ[self.env_var]).expanduser()] if os.environ.get(self.env_var) else []
        return [*env, keras_home() / "datasets" / self.keras_dir, *self.system_dirs]

    def present(self, where: Path) -> bool:
        return all((where / name).is_file() for name in FILES.values())

    def missing(self, where: Path) -> str:
        return "missing " + ", ".join(n for n in FILES.values() if not (where / n).is_file())

    def fetch(self) -> Path | None:
        from keras.utils import get_file  # Keras (and its backend) only when a download is asked for

        for name in FILES.values():
            get_file(name, origin=self.origin + name, cache_subdir=f"datasets/{self.keras_dir}",
                     file_hash=self.digests.get(name))  # fmt: skip
        return keras_home() / "datasets" / self.keras_dir

    def how_to_get(self) -> str:
        return (f"put the four files ({', '.join(FILES.values())}; from {self.origin}) in a directory and set "
                f"dataset.path=DIR or {self.env_var}=DIR")  # fmt: skip

    def read(self, where: Path) -> Arrays:
        arrays, sha256 = {}, {}
        for part, name in FILES.items():
            magic = IDX_UBYTE_IMAGES if part.endswith("images") else IDX_UBYTE_LABELS
            arrays[part], sha256[name] = read_idx(where / name, magic)
        for part in ("train", "test"):
            if len(arrays[f"{part}_images"]) != len(arrays[f"{part}_labels"]):
                raise DataError(f"{where / FILES[part + '_images']}: {len(arrays[part + '_images'])} images but "
                                f"{FILES[part + '_labels']} has {len(arrays[part + '_labels'])} labels")  # fmt: skip
        return Arrays(
            arrays["train_images"][..., None], arrays["train_labels"], arrays["test_images"][..., None],
            arrays["test_labels"], sha256, self.class_names,
            files=(str(where / FILES["train_images"]), str(where / FILES["test_images"])),
        )  # fmt: skip


@register
@dataclass
class FashionMNIST(IdxDataset):
    """Zalando's Fashion-MNIST (Xiao et al. 2017): the Keras mixup example's data, and Debian's package."""

    key = "fashion_mnist"
    title = "Fashion-MNIST"
    origin = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"  # what keras.datasets.fashion_mnist uses
    env_var = "FASHION_MNIST_DIR"
    keras_dir = "fashion-mnist"
    system_dirs = (Path("/usr/share/datasets/fashion-mnist"),)
    class_names = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot")  # fmt: skip

    def how_to_get(self) -> str:
        return ("install it with `apt-get install -y dataset-fashion-mnist` (Debian), or put the four files in a "
                "directory and set dataset.path=DIR or FASHION_MNIST_DIR=DIR")  # fmt: skip


@register
@dataclass
class MNIST(IdxDataset):
    """LeCun's handwritten digits, from the mirror torchvision downloads from (the original site is gone)."""

    key = "mnist"
    title = "MNIST"
    origin = "https://ossci-datasets.s3.amazonaws.com/mnist/"
    env_var = "MNIST_DIR"
    keras_dir = "mnist-idx"  # Keras's own MNIST is one mnist.npz beside it: that one is `dataset=npz`'s to read
    digests = {  # md5, as torchvision lists them
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    }
    class_names = tuple(str(digit) for digit in range(10))


@register
@dataclass
class KMNIST(IdxDataset):
    """Kuzushiji-MNIST (Clanuwat et al. 2018): ten cursive hiragana, as MNIST is laid out; from its authors."""

    key = "kmnist"
    title = "Kuzushiji-MNIST"
    origin = "http://codh.rois.ac.jp/kmnist/dataset/kmnist/"
    env_var = "KMNIST_DIR"
    keras_dir = "kmnist"
    digests = {  # sha256
        "train-images-idx3-ubyte.gz": "51467d22d8cc72929e2a028a0428f2086b092bb31cfb79c69cc0a90ce135fde4",
        "train-labels-idx1-ubyte.gz": "e38f9ebcd0f3ebcdec7fc8eabdcdaef93bb0df8ea12bee65224341c8183d8e17",
        "t10k-images-idx3-ubyte.gz": "edd7a857845ad6bb1d0ba43fe7e794d164fe2dce499a1694695a792adfac43c5",
        "t10k-labels-idx1-ubyte.gz": "20bb9a0ef54c7db3efc55a92eef5582c109615df22683c380526788f98e42a1c",
    }
    class_names = ("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo")
