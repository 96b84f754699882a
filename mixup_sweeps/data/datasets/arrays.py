"""Your own arrays: `dataset=npz dataset.path=FILE.npz` with x_train, y_train, x_test, y_test (and class_names).

Images are uint8, (n, height, width) or (n, height, width, channels); labels integers 0..K-1, K inferred (the
largest label + 1, or the length of `class_names`) or given as `dataset.num_classes`. The file is read without
pickles (`allow_pickle=False`): an .npz holding Python objects is refused, not run.
"""

from __future__ import annotations

import hashlib
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mixup_sweeps.data.datasets._base import Arrays, DataError, DataSource, register
from mixup_sweeps.errors import require

KEYS = ("x_train", "y_train", "x_test", "y_test")


@register
@dataclass
class Npz(DataSource):
    key = "npz"
    title = "An .npz file"

    def check(self) -> None:
        super().check()
        require(bool(self.path), "dataset.path", self.path, "set it to an .npz file with arrays " + ", ".join(KEYS))

    def present(self, where: Path) -> bool:
        return where.is_file()

    def missing(self, where: Path) -> str:
        return "no such file"

    def how_to_get(self) -> str:
        return "write one with numpy.savez(FILE, " + ", ".join(f"{k}=..." for k in KEYS) + ")"

    def read(self, where: Path) -> Arrays:
        blob = where.read_bytes()
        try:
            with np.load(where, allow_pickle=False) as npz:
                missing = [k for k in KEYS if k not in npz.files]
                if missing:
                    raise DataError(f"{where}: missing arrays {', '.join(missing)} (an .npz for dataset=npz holds "
                                    f"{', '.join(KEYS)}; it has {', '.join(npz.files) or 'none'})")  # fmt: skip
                arrays = {k: npz[k] for k in KEYS}
                names = npz["class_names"] if "class_names" in npz.files else np.array([], dtype=str)
        except DataError:
            raise
        except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
            raise DataError(f"{where}: not a NumPy .npz file of plain arrays ({exc})") from None
        for key in ("x_train", "x_test"):
            images = arrays[key]
            if images.dtype != np.uint8 or images.ndim not in (3, 4):
                raise DataError(f"{where}: {key} must be uint8 images (n, height, width[, channels]), "
                                f"not {images.dtype} {list(images.shape)}")  # fmt: skip
            arrays[key] = images[..., None] if images.ndim == 3 else images
        for key in ("y_train", "y_test"):
            labels = arrays[key]
            labels = labels.reshape(-1) if labels.ndim == 2 and labels.shape[1] == 1 else labels
            if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
                raise DataError(f"{where}: {key} must be integer labels (n,), not {labels.dtype} {list(labels.shape)}")
            arrays[key] = labels
        for part in ("train", "test"):
            if len(arrays[f"x_{part}"]) != len(arrays[f"y_{part}"]):
                raise DataError(f"{where}: x_{part} has {len(arrays[f'x_{part}'])} images but y_{part} "
                                f"{len(arrays[f'y_{part}'])} labels")  # fmt: skip
        return Arrays(
            arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"],
            {where.name: hashlib.sha256(blob).hexdigest()}, tuple(str(n) for n in names.reshape(-1)),
            files=(f"{where} (x_train)", f"{where} (x_test)"),
        )  # fmt: skip
