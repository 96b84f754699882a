"""The augmentations, one object each: its config schema, its checks, and what it draws for an epoch.

Every augmentation mixes the same way (`augment.MixImages`, in the compiled train step): each image keeps a
share `k` of itself and takes `1 - k` from a partner image, `k` a per-pixel *keep mask*, and its soft label
keeps the mask's mean of its own one-hot label. An augmentation only says how the mask is built, from what
the host sends with each image (`MASK_INPUTS`): `lam` (the same share everywhere: mixup), `box` (a rectangle
taken from the partner: CutMix) or `pasted` (the pixels taken from the partner, where nothing shorter
describes them: FMix). The keep mask is 0 where the partner's pixel is taken and `lam` (1 when not sent)
elsewhere. (The issue's mask `m` is `1 - k`; the step computes with `k`, so that mixup's images stay bit for
bit `x·λ + y·(1 - λ)`.)

An augmentation is a dataclass (the schema Hydra checks `aug` against; the values live in conf/aug/<name>.yaml)
registered under its `name` with `@register`: adding one means one class here and one YAML file. Each draws
from (seed, epoch) alone (`draw` gets the epoch's generators), so an epoch is the same whichever backend,
process or restart computes it. NumPy only: the config check imports this without Keras.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, fields
from typing import Any, ClassVar

import numpy as np
from omegaconf import MISSING

from mixup_sweeps.errors import require

MASK_INPUTS = ("lam", "box", "pasted")  # what may build a keep mask, in the order a step takes them
_TINY = float(np.finfo(np.float64).tiny)


# --- draws shared by several augmentations ----------------------------------------------------------------
def sample_beta(rng: np.random.Generator, size: int, alpha: float) -> np.ndarray:
    """Beta(alpha, alpha) as G1 / (G1 + G2) with Gi ~ Gamma(alpha), computed in log space (float32 result).

    log G(alpha) = log G(alpha + 1) + log(U) / alpha has the same distribution and does not underflow,
    so a tiny alpha gives lambdas near 0 or 1 instead of the 0/0 = NaN the direct ratio produces.
    """
    log_gammas = [
        np.log(rng.standard_gamma(alpha + 1.0, size)) + np.log(1.0 - rng.random(size) + _TINY) / alpha for _ in range(2)
    ]
    return (0.5 * (1.0 + np.tanh(0.5 * (log_gammas[0] - log_gammas[1])))).astype(np.float32)  # sigmoid


def sample_lambdas(rng: np.random.Generator, n: int, batch_size: int, alpha: float, lam: str) -> np.ndarray:
    """`n` lambdas (`aug.lam`): independent ("per_sample"), or one draw for each batch of `batch_size`."""
    if lam == "per_batch":
        return np.repeat(sample_beta(rng, -(-n // batch_size), alpha), batch_size)[:n]
    return sample_beta(rng, n, alpha)


def permute_within_batches(rng: np.random.Generator, n: int, batch_size: int) -> np.ndarray:
    """Positions 0..n-1, each batch of `batch_size` shuffled within itself (a batch's partners come from it)."""
    return np.argsort(np.arange(n) // batch_size + rng.random(n), kind="stable")


def cut_boxes(rng: np.random.Generator, lam: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """CutMix boxes as keras.layers.CutMix draws them: sides sqrt(1 - lambda) of the image's, placed uniformly
    inside it. Returns the boxes (n, 4: y0, y1, x0, x1, float32; a pixel (i, j) is pasted when y0 <= i < y1 and
    x0 <= j < x1) and the share of each image that stays its own (the label weight; exact pixel count)."""
    ratio = np.sqrt(1.0 - lam.astype(np.float64))
    bounds = []
    for length in (height, width):
        crop = ratio * length
        start = rng.random(len(lam)) * (length - crop)
        bounds += [start, start + crop]
    boxes = np.stack(bounds, axis=1).astype(np.float32)
    pixels = np.ceil(boxes)  # the integer coordinates inside [start, end)
    pasted = np.clip(pixels[:, 1] - pixels[:, 0], 0, None) * np.clip(pixels[:, 3] - pixels[:, 2], 0, None)
    return boxes, (1.0 - pasted / (height * width)).astype(np.float32)


# --- the registry ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Mixing:
    """What an augmentation draws for an epoch's n positions: partners, the mask inputs, each image's own share."""

    partner: np.ndarray  # index of the image each position is mixed with
    masks: dict[str, np.ndarray]  # some of MASK_INPUTS: lam (n,) float32, box (n, 4) float32, pasted (n, h, w) uint8
    own_share: np.ndarray  # (n,) float32: the keep mask's mean, the weight of the image's own label


AUGMENTATIONS: dict[str, type[Augmentation]] = {}


def register(cls: type[Augmentation]) -> type[Augmentation]:
    """Class decorator: `cls` is the augmentation named by its `key` (what `aug=<key>` and `aug.name` say)."""
    AUGMENTATIONS[cls.key] = cls
    return cls


def of(aug: Any) -> Augmentation:
    """The augmentation a config's `aug` node describes (a DictConfig or a mapping with a `name`)."""
    name = aug.get("name")
    require(name in AUGMENTATIONS, "aug.name", name, f"one of {sorted(AUGMENTATIONS)}")
    cls = AUGMENTATIONS[name]
    return cls(**{f.name: aug.get(f.name) for f in fields(cls)})


def input_form(augmentations: Iterable[Augmentation]) -> tuple[str, ...]:
    """The mask inputs a step must take to train all of `augmentations` (one program for a pack's members)."""
    wanted = {name for aug in augmentations for name in aug.inputs}
    return tuple(name for name in MASK_INPUTS if name in wanted)


@dataclass
class Augmentation:
    """The base: no mixing (`aug=none`). Subclasses add their schema fields and override `draw` and `check`."""

    key: ClassVar[str]
    inputs: ClassVar[tuple[str, ...]] = ()  # the MASK_INPUTS its keep mask is built from
    name: str = MISSING

    def check(self) -> None:
        """Raise `ConfigError` for a value the schema's types cannot rule out."""

    def draw(
        self, partner_rng: np.random.Generator, weight_rng: np.random.Generator, order: np.ndarray, batch_size: int,
        image_size: tuple[int, int],
    ) -> Mixing | None:  # fmt: skip
        """The epoch's mixing for images in `order`, from its partner and weight generators; None: no mixing."""
        return None


def _partners_in_batch(rng: np.random.Generator, order: np.ndarray, batch_size: int) -> np.ndarray:
    """Each position's partner: another position of its own batch (a batch mixed with a permutation of itself)."""
    return order[permute_within_batches(rng, len(order), batch_size)]


@register
@dataclass
class NoAugmentation(Augmentation):
    """The baseline: the plain shuffled stream."""

    key: ClassVar[str] = "none"


@register
@dataclass
class Mixup(Augmentation):
    """mixup (Zhang et al. 2018): the keep mask is λ ~ Beta(α, α) everywhere. Defaults are the Keras example's
    (two independently shuffled streams, one λ per sample); the paper's code draws one λ per batch and mixes a
    batch with a permutation of itself."""

    key: ClassVar[str] = "mixup"
    inputs: ClassVar[tuple[str, ...]] = ("lam",)
    LAM_MODES: ClassVar[tuple[str, ...]] = ("per_sample", "per_batch")
    PAIRINGS: ClassVar[tuple[str, ...]] = ("two_streams", "permute")
    alpha: float = MISSING
    lam: str = MISSING  # per_sample (the Keras example) | per_batch (the paper's code)
    pairing: str = MISSING  # two_streams (the Keras example) | permute (the paper's code)

    def check(self) -> None:
        require(math.isfinite(self.alpha) and self.alpha > 0, "aug.alpha", self.alpha, "must be a finite number > 0")
        require(self.lam in self.LAM_MODES, "aug.lam", self.lam, f"one of {list(self.LAM_MODES)}")
        require(self.pairing in self.PAIRINGS, "aug.pairing", self.pairing, f"one of {list(self.PAIRINGS)}")

    def draw(
        self, partner_rng: np.random.Generator, weight_rng: np.random.Generator, order: np.ndarray, batch_size: int,
        image_size: tuple[int, int],
    ) -> Mixing:  # fmt: skip
        n = len(order)
        if self.pairing == "two_streams":
            partner = partner_rng.permutation(n)
        else:
            partner = _partners_in_batch(partner_rng, order, batch_size)
        lam = sample_lambdas(weight_rng, n, batch_size, float(self.alpha), str(self.lam))
        return Mixing(partner, {"lam": lam}, lam)


@register
@dataclass
class CutMix(Augmentation):
    """CutMix (Yun et al. 2019): a box of a partner from the same batch is pasted in; boxes drawn as
    keras.layers.CutMix(factor=(α, α)) draws them (area ratio ~ Beta(α, α)); the label weight is the exact
    share of pixels that stay the image's own."""

    key: ClassVar[str] = "cutmix"
    inputs: ClassVar[tuple[str, ...]] = ("box",)
    alpha: float = MISSING  # box area ratio ~ Beta(alpha, alpha), alpha in (0, 1]

    def check(self) -> None:
        require(
            0 < self.alpha <= 1, "aug.alpha", self.alpha, "must be in (0, 1] for aug=cutmix (the box area ~ Beta(α, α))"
        )

    def draw(
        self, partner_rng: np.random.Generator, weight_rng: np.random.Generator, order: np.ndarray, batch_size: int,
        image_size: tuple[int, int],
    ) -> Mixing:  # fmt: skip
        partner = _partners_in_batch(partner_rng, order, batch_size)
        box, own = cut_boxes(weight_rng, sample_beta(weight_rng, len(order), float(self.alpha)), *image_size)
        return Mixing(partner, {"box": box}, own)


@register
@dataclass
class FMix(Augmentation):
    """FMix (Harris et al. 2020): the pixels taken from a partner of the same batch form a low-frequency
    Fourier-noise mask; the image keeps round(λ · pixels) of its own, λ ~ Beta(α, α); masks are binary."""

    key: ClassVar[str] = "fmix"
    inputs: ClassVar[tuple[str, ...]] = ("pasted",)
    alpha: float = MISSING  # the kept share λ ~ Beta(alpha, alpha)
    decay_power: float = MISSING  # δ: the noise's amplitude falls as 1 / f**δ (larger: smoother masks)

    def check(self) -> None:
        require(math.isfinite(self.alpha) and self.alpha > 0, "aug.alpha", self.alpha, "must be a finite number > 0")
        require(
            math.isfinite(self.decay_power) and self.decay_power > 0,
            "aug.decay_power", self.decay_power, "must be a finite number > 0 (the paper's is 3)",
        )  # fmt: skip

    def draw(
        self, partner_rng: np.random.Generator, weight_rng: np.random.Generator, order: np.ndarray, batch_size: int,
        image_size: tuple[int, int],
    ) -> Mixing:  # fmt: skip
        partner = _partners_in_batch(partner_rng, order, batch_size)
        lam = sample_beta(weight_rng, len(order), float(self.alpha))
        kept = self.masks(weight_rng, lam, *image_size, float(self.decay_power))
        own = kept.reshape(len(order), -1).mean(axis=1).astype(np.float32)
        return Mixing(partner, {"pasted": (~kept).astype(np.uint8)}, own)

    @staticmethod
    def masks(
        rng: np.random.Generator, keep: np.ndarray, height: int, width: int, decay_power: float, chunk: int = 4096
    ) -> np.ndarray:
        """FMix's masks (Harris et al. 2020): per image a grey image of Fourier noise whose amplitude falls as
        1 / f**decay_power, thresholded so that its brightest round(keep · pixels) pixels are kept (True).

        The spectrum is complex Gaussian on the real FFT's frequencies, scaled by 1 / max(f, 1 / max(h, w))**δ, as in
        the paper's code; a larger δ gives smoother, blob-like masks. Drawn in chunks to bound memory.
        """
        freqs = np.sqrt(np.fft.fftfreq(height)[:, None] ** 2 + np.fft.rfftfreq(width)[None, :] ** 2)
        scale = 1.0 / np.maximum(freqs, 1.0 / max(height, width)) ** decay_power
        pixels = height * width
        kept = np.rint(keep.astype(np.float64) * pixels).astype(np.int64)
        masks = np.empty((len(keep), height, width), dtype=bool)
        for first in range(0, len(keep), chunk):
            count = min(chunk, len(keep) - first)
            noise = rng.standard_normal((count, *freqs.shape, 2))
            grey = np.fft.irfft2(scale * (noise[..., 0] + 1j * noise[..., 1]), s=(height, width)).reshape(count, pixels)
            keep_count = kept[first : first + count]  # the brightest keep_count pixels: those >= the count-th value
            brightest = np.sort(grey, axis=1)[np.arange(count), np.clip(pixels - keep_count, 0, pixels - 1)]
            threshold = np.where(keep_count > 0, brightest, np.inf)  # (continuous noise: no ties)
            masks[first : first + count] = (grey >= threshold[:, None]).reshape(count, height, width)
        return masks
