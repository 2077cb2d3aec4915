"""The dataset interface every training set implements (Fashion-MNIST default, prepared latents).

A dataset is a pair of tensors (latents, labels) per split plus a :class:`DatasetInfo`.
Latents may be memory-mapped; training draws random index batches from them.
Pixels-as-latents datasets (Fashion-MNIST) use the identity autoencoder and values in [-1, 1].
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch


@dataclass
class DatasetInfo:
    """What the trainer, sampler and scorers need to know about a dataset."""

    name: str                    # e.g. "fashion-mnist", "imagenet"
    channels: int                # latent channels (1 for Fashion-MNIST pixels, 4/16 for VAE latents)
    resolution: int              # latent side length (H = W)
    num_classes: int             # class-conditional datasets; the null class index is num_classes
    class_names: list[str]
    autoencoder: str             # "identity" or a diffusers VAE id/path (decoded before pixel scorers)
    caption: Callable[[int, torch.Generator | None], str]  # "a photo of a <synonym>" for a class index
    provenance: dict[str, Any] = field(default_factory=dict)  # source path, checksums, transforms


@dataclass
class LatentSplit:
    """One split: latents (N, C, H, W) float32 and labels (N,) int64 (class index)."""

    latents: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])
