"""Your own images: `dataset=folder dataset.path=DIR` with DIR/train/<class>/ and DIR/test/<class>/ (PNG, JPEG).

The classes are the sub-folders of train/, in name order (label 0 is the first); test/ may lack a class but
not add one. Images are taken in file-name order across the classes (numbered files keep their order), so the
first `val_size` of train/ validate: name them so the classes interleave. All images must have one size, or
`dataset.image_size: [height, width]` resizes them (bilinear); all grey (one channel) unless any has colour
(then all RGB). The tree is decoded once and cached as arrays under ~/.cache/mixup-sweeps/folders, keyed by a
digest of the file names, sizes and modification times: a changed tree is read again.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from omegaconf import MISSING

from mixup_sweeps import files
from mixup_sweeps.data.datasets._base import Arrays, DataError, DataSource, register
from mixup_sweeps.errors import require

SUFFIXES = (".png", ".jpg", ".jpeg")
PARTS = ("train", "test")


def cache_dir() -> Path:
    """Where decoded trees are kept (`XDG_CACHE_HOME`, else ~/.cache)."""
    return files.user_cache_dir("folders")


def listing(where: Path) -> tuple[list[str], dict[str, list[tuple[str, Path]]]]:
    """The classes (train/'s sub-folders) and each part's (class, image) pairs in file-name order."""
    for part in PARTS:
        if not (where / part).is_dir():
            raise DataError(f"{where}: no {part}/ folder (dataset=folder reads {where}/train/<class>/ and "
                            f"{where}/test/<class>/)")  # fmt: skip
    classes = sorted(d.name for d in (where / "train").iterdir() if d.is_dir())
    if len(classes) < 2:
        raise DataError(f"{where / 'train'}: {len(classes)} class folder(s); a classifier needs at least 2")
    images: dict[str, list[tuple[str, Path]]] = {}
    for part in PARTS:
        extra = sorted({d.name for d in (where / part).iterdir() if d.is_dir()} - set(classes))
        if extra:
            raise DataError(f"{where / part / extra[0]}: a class train/ does not have")
        pairs = []
        for name in classes:
            folder = where / part / name
            files = [f for f in folder.iterdir() if f.suffix.lower() in SUFFIXES] if folder.is_dir() else []
            if not files and (part == "train" or folder.is_dir()):
                raise DataError(f"{folder}: no PNG or JPEG images (an empty class folder)")
            pairs += [(name, f) for f in files]
        images[part] = sorted(pairs, key=lambda pair: (pair[1].name, pair[0]))
    return classes, images


@register
@dataclass
class Folder(DataSource):
    key = "folder"
    title = "An image folder"
    image_size: list[int] | None = MISSING  # [height, width] to resize every image to; null: all one size

    def check(self) -> None:
        super().check()
        require(bool(self.path), "dataset.path", self.path, "set it to a folder with train/<class>/ and test/<class>/")
        size = self.image_size
        require(size is None or (len(size) == 2 and all(d >= 1 for d in size)), "dataset.image_size",
                None if size is None else list(size), "must be null (all one size) or [height, width]")  # fmt: skip

    def present(self, where: Path) -> bool:
        return where.is_dir()

    def missing(self, where: Path) -> str:
        return "no such folder"

    def how_to_get(self) -> str:
        return "make one with a sub-folder per class in train/ and test/ (PNG or JPEG images)"

    def stamp(self, where: Path) -> tuple:
        return (self._key(where),)

    def _key(self, where: Path) -> str:
        _, images = listing(where)
        text = [f"size={self.image_size}"]
        for part, pairs in images.items():
            text += [f"{part}/{name}/{f.name}:{f.stat().st_size}:{f.stat().st_mtime_ns}" for name, f in pairs]
        return hashlib.sha256("\n".join(text).encode()).hexdigest()

    def read(self, where: Path) -> Arrays:
        cached = cache_dir() / f"{self._key(where)}.npz"
        if cached.is_file():
            with np.load(cached, allow_pickle=False) as npz:
                return _arrays(where, {k: npz[k] for k in npz.files})
        classes, images = listing(where)
        decoded = _decode(images, classes, self.image_size, where)
        cached.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=cached.parent, suffix=".npz", delete=False) as tmp:
            np.savez(tmp, **decoded)  # type: ignore[arg-type]  # numpy's stub takes the names for flags
        os.replace(tmp.name, cached)  # whole or not at all: two processes may build it at once
        return _arrays(where, decoded)


def _arrays(where: Path, arrays: dict[str, np.ndarray]) -> Arrays:
    return Arrays(
        arrays["train_images"], arrays["train_labels"], arrays["test_images"], arrays["test_labels"],
        {"tree": str(arrays["tree_sha256"])}, tuple(str(n) for n in arrays["class_names"]),
        files=(str(where / "train"), str(where / "test")),
    )  # fmt: skip


def _decode(
    images: dict[str, list[tuple[str, Path]]], classes: list[str], size: list[int] | None, where: Path
) -> dict[str, np.ndarray]:
    """Every image as uint8 (n, h, w, c), with its label and the tree's content digest."""
    from PIL import Image  # Pillow (a Matplotlib dependency): only when a tree is decoded, not from the cache

    sizes, colour = {}, False
    for pairs in images.values():
        for _, path in pairs:
            try:
                with Image.open(path) as image:  # the header only: size and mode
                    sizes[path] = (image.height, image.width)
                    colour |= image.mode not in ("1", "L", "LA", "I", "I;16", "F")
            except OSError as exc:
                raise DataError(f"{path}: not a readable image ({exc})") from None
    if size is None and len(set(sizes.values())) > 1:
        first = next(iter(sizes))
        other = next(p for p, s in sizes.items() if s != sizes[first])
        raise DataError(f"{where}: images of several sizes ({first.name} is {sizes[first]}, {other.name} "
                        f"{sizes[other]}, as (height, width)); set dataset.image_size=[height,width] to resize "
                        "them")  # fmt: skip
    label_of = {name: label for label, name in enumerate(classes)}
    digest = hashlib.sha256()
    arrays: dict[str, np.ndarray] = {}
    for part, pairs in images.items():
        pixels, labels = [], []
        for name, path in pairs:
            blob = path.read_bytes()
            digest.update(f"{part}/{name}/{path.name}\n".encode() + hashlib.sha256(blob).digest())
            with Image.open(io.BytesIO(blob)) as image:
                image = image.convert("RGB" if colour else "L")
                if size is not None and (image.height, image.width) != tuple(size):
                    image = image.resize((size[1], size[0]), Image.Resampling.BILINEAR)
                array = np.asarray(image, dtype=np.uint8)
            pixels.append(array if colour else array[..., None])
            labels.append(label_of[name])
        arrays[f"{part}_images"] = np.stack(pixels)
        arrays[f"{part}_labels"] = np.asarray(labels, dtype=np.uint8 if len(classes) <= 256 else np.int64)
    arrays["class_names"] = np.asarray(classes, dtype=str)
    arrays["tree_sha256"] = np.asarray(digest.hexdigest())
    return arrays
