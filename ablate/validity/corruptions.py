"""Graded corruptions of a set of real images (pixels in [-1, 1], (N, C, H, W)) and their labels.

Each corruption maps (strength, random generator) to a new set of the same size drawn from a pool of
held-out real images (the dataset's train split: the scorers' reference is its test split). Strength 0
is the clean set (for ``blur+noise``: the set blurred by :data:`BLUR_THEN_NOISE` px). What a corruption
stands for:

- ``noise``: Gaussian noise of std sigma (in [-1, 1] units), clamped: leftover sampling noise.
- ``blur``: Gaussian blur of std sigma px: over-smooth samples.
- ``blur+noise``: the blurred set with noise added: noise must never make a blurred set look better.
- ``pixelate``: mean-pool by a factor, then nearest upsampling: lost detail, blocky artefacts.
- ``drop classes``: only the images of 10 - k random classes (mode collapse).
- ``imbalance``: a share p of the set from one class, the rest uniform over the others.
- ``memorise``: a share p of the set replaced by copies of 10 training images (one per class): a
  generator that memorised a few training images; every image is real, only diversity is lost.
- ``shuffle labels``: a share p of the labels replaced by another class (images untouched): alignment.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

BLUR_THEN_NOISE = 1.0   # px: the blur under ``blur+noise``
MEMORISED = 10          # training images a memorising generator repeats


@dataclass(frozen=True)
class Pool:
    """Held-out real images and their class labels."""

    images: Tensor
    labels: Tensor
    num_classes: int


Apply = Callable[[Pool, int, float, torch.Generator], tuple[Tensor, Tensor]]


@dataclass(frozen=True)
class Corruption:
    name: str
    strengths: tuple[float, ...]   # first: the uncorrupted level
    unit: str
    kind: str                      # "quality" (pixels degrade), "coverage" (which images), "labels"
    apply: Apply


def draw(pool: Pool, n: int, gen: torch.Generator, classes: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """n images (without replacement) from ``pool``, from ``classes`` only when given."""
    index = torch.arange(len(pool.labels)) if classes is None else torch.nonzero(torch.isin(pool.labels, classes))[:, 0]
    pick = index[torch.randperm(len(index), generator=gen)[:n]]
    return pool.images[pick], pool.labels[pick]


def gaussian_blur(x: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian blur (std ``sigma`` px, radius 3 sigma), reflect padding; sigma 0 is the identity."""
    if sigma <= 0:
        return x
    radius = max(1, math.ceil(3 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    c = x.shape[1]
    x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="reflect"), k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    return F.conv2d(F.pad(x, (0, 0, radius, radius), mode="reflect"), k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)


def _noise(x: Tensor, sigma: float, gen: torch.Generator) -> Tensor:
    return (x + sigma * torch.randn(x.shape, generator=gen)).clamp(-1.0, 1.0)


def _pixelate(x: Tensor, factor: int) -> Tensor:
    if factor <= 1:
        return x
    return F.interpolate(F.avg_pool2d(x, factor), scale_factor=factor, mode="nearest")


def _pixels(fn: Callable[[Tensor, float, torch.Generator], Tensor]) -> Apply:
    def apply(pool: Pool, n: int, s: float, gen: torch.Generator) -> tuple[Tensor, Tensor]:
        x, y = draw(pool, n, gen)
        return fn(x, s, gen), y
    return apply


def _drop(pool: Pool, n: int, dropped: float, gen: torch.Generator) -> tuple[Tensor, Tensor]:
    kept = torch.randperm(pool.num_classes, generator=gen)[: pool.num_classes - int(dropped)]
    return draw(pool, n, gen, kept)


def _imbalance(pool: Pool, n: int, share: float, gen: torch.Generator) -> tuple[Tensor, Tensor]:
    major = torch.randint(pool.num_classes, (1,), generator=gen)
    k = round(share * n)
    xa, ya = draw(pool, k, gen, major)
    others = torch.tensor([c for c in range(pool.num_classes) if c != int(major)])
    xb, yb = draw(pool, n - k, gen, others)
    return torch.cat([xa, xb]), torch.cat([ya, yb])


def _memorise(pool: Pool, n: int, share: float, gen: torch.Generator) -> tuple[Tensor, Tensor]:
    x, y = draw(pool, n, gen)
    memorised = torch.stack([torch.nonzero(pool.labels == c)[0, 0] for c in range(min(MEMORISED, pool.num_classes))])
    k = round(share * n)
    copies = memorised[torch.randint(len(memorised), (k,), generator=gen)]
    x, y = x.clone(), y.clone()
    x[:k], y[:k] = pool.images[copies], pool.labels[copies]
    return x, y


def _shuffle(pool: Pool, n: int, share: float, gen: torch.Generator) -> tuple[Tensor, Tensor]:
    x, y = draw(pool, n, gen)
    k = round(share * n)
    wrong = (y[:k] + torch.randint(1, pool.num_classes, (k,), generator=gen)) % pool.num_classes  # never the true class
    return x, torch.cat([wrong, y[k:]])


CORRUPTIONS: tuple[Corruption, ...] = (
    Corruption("noise", (0.0, 0.05, 0.1, 0.2, 0.4), "sigma", "quality", _pixels(_noise)),
    Corruption("blur", (0.0, 0.5, 1.0, 1.5, 2.0), "sigma px", "quality", _pixels(lambda x, s, g: gaussian_blur(x, s))),
    Corruption("blur+noise", (0.0, 0.05, 0.1, 0.2), "sigma after 1 px blur", "quality",
               _pixels(lambda x, s, g: _noise(gaussian_blur(x, BLUR_THEN_NOISE), s, g) if s > 0
                       else gaussian_blur(x, BLUR_THEN_NOISE))),
    Corruption("pixelate", (1.0, 2.0, 4.0, 8.0), "factor", "quality", _pixels(lambda x, s, g: _pixelate(x, int(s)))),
    Corruption("drop classes", (0.0, 3.0, 6.0, 8.0, 9.0), "classes dropped", "coverage", _drop),
    Corruption("imbalance", (0.1, 0.3, 0.5, 0.7, 0.9), "share of one class", "coverage", _imbalance),
    Corruption("memorise", (0.0, 0.25, 0.5, 0.75, 1.0), "share of copies of 10 train images", "coverage", _memorise),
    Corruption("shuffle labels", (0.0, 0.25, 0.5, 0.75, 1.0), "share of wrong labels", "labels", _shuffle),
)


def corruption(name: str) -> Corruption:
    return next(c for c in CORRUPTIONS if c.name == name)
