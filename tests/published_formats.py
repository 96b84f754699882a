"""Small data files written in the exact published formats (the tests cannot download the real ones), and the
real Fashion-MNIST written out as the generic forms (an .npz, an image folder, CIFAR batches)."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def _pickle(path: Path, batch: dict) -> None:
    """As the published batches are: a dict with bytes keys, pickled (protocol 2, as Python 2's cPickle wrote)."""
    path.write_bytes(pickle.dumps({k.encode(): v for k, v in batch.items()}, protocol=2))


def cifar_rows(images: np.ndarray) -> np.ndarray:
    """(n, 32, 32, 3) images as the batches store them: n rows of 3072, the red plane, then green, then blue."""
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2)).reshape(len(images), 3 * 32 * 32)


def write_cifar10(directory: Path, train: tuple, test: tuple, names: list[str] = CIFAR10_NAMES) -> Path:
    """cifar-10-batches-py: the training images over data_batch_1..5, test_batch, batches.meta."""
    directory.mkdir(parents=True, exist_ok=True)
    images, labels = train
    for i, (part_images, part_labels) in enumerate(zip(np.array_split(images, 5), np.array_split(labels, 5)), 1):
        _pickle(directory / f"data_batch_{i}", {"batch_label": f"training batch {i} of 5".encode(),
                                                 "labels": [int(v) for v in part_labels],
                                                 "data": cifar_rows(part_images),
                                                 "filenames": [b"x.png"] * len(part_labels)})  # fmt: skip
    _pickle(directory / "test_batch", {"batch_label": b"testing batch 1 of 1", "labels": [int(v) for v in test[1]],
                                       "data": cifar_rows(test[0])})  # fmt: skip
    _pickle(directory / "batches.meta", {"label_names": [n.encode() for n in names], "num_cases_per_batch": 10000,
                                         "num_vis": 3072})  # fmt: skip
    return directory


def write_cifar100(directory: Path, train: tuple, test: tuple) -> Path:
    """cifar-100-python: train, test (fine_labels, coarse_labels = fine // 5 here), meta."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, (images, fine) in (("train", train), ("test", test)):
        _pickle(directory / name, {"fine_labels": [int(v) for v in fine], "coarse_labels": [int(v) // 5 for v in fine],
                                   "data": cifar_rows(images), "batch_label": name.encode()})  # fmt: skip
    _pickle(directory / "meta", {"fine_label_names": [f"fine{i}".encode() for i in range(100)],
                                 "coarse_label_names": [f"coarse{i}".encode() for i in range(20)]})  # fmt: skip
    return directory


def write_folder(directory: Path, parts: dict[str, tuple], names: list[str], digits: int = 5) -> Path:
    """DIR/<part>/<class name>/<index>.png for each part's (images, labels): numbered files keep their order."""
    from PIL import Image

    for part, (images, labels) in parts.items():
        for name in names:
            (directory / part / name).mkdir(parents=True, exist_ok=True)
        for i, (image, label) in enumerate(zip(images, labels)):
            pixels = image[..., 0] if image.shape[-1] == 1 else image
            Image.fromarray(pixels).save(directory / part / names[label] / f"{i:0{digits}d}.png")
    return directory


def as_colour_32(images: np.ndarray) -> np.ndarray:
    """28x28 grey images as 32x32 colour ones (padded by 2, the grey copied to red, green and blue)."""
    padded = np.pad(images[..., 0], ((0, 0), (2, 2), (2, 2)))
    return np.repeat(padded[..., None], 3, axis=-1)
