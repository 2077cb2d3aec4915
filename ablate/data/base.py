"""The dataset interface every training set implements (Fashion-MNIST default, prepared latents).

A dataset is a pair of tensors (latents, labels) per split plus a :class:`DatasetInfo`.
Latents may be memory-mapped; training draws random index batches from them.
Pixels-as-latents datasets (Fashion-MNIST) use the identity autoencoder and values in [-1, 1].
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

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
    cond_dim: int = 0            # width of LatentSplit.text_emb (pooled caption embedding); 0: none stored
    # Prepared VAE latents are served normalised per channel, z = (raw - latent_mean[c]) / latent_std[c];
    # decode raw = z * latent_std[c] + latent_mean[c] (ablate.data.latents.denormalise). None: identity.
    latent_mean: list[float] | None = None
    latent_std: list[float] | None = None
    # The conditioning modes (grid key data.conditioning) this dataset supports.
    conditionings: tuple[str, ...] = ("class",)
    caption_vocab: int = 0       # > 0: LatentSplit.text_tokens are caption token ids (N, L) of this vocabulary
    caption_length: int = 0      # L of those token ids
    token_shape: tuple[int, int] | None = None  # (L, W) of stored caption token sequences, or None


@dataclass
class LatentSplit:
    """One split: latents (N, C, H, W) float32 and labels (N,) int64 (class index).

    Prepared datasets give tensor-like views instead of tensors for ``latents``, ``text_emb`` and
    ``text_tokens`` (memory-mapped; indexing with an int, slice or index tensor returns float32 tensors).
    """

    latents: torch.Tensor
    labels: torch.Tensor
    text_emb: Any = None         # pooled caption embeddings (N, D), or None
    text_tokens: Any = None      # caption token sequences (N, L, W) float, or token ids (N, L) int64, or None
    captions: Sequence[str] | None = None  # each sample's caption text, or None

    def __len__(self) -> int:
        return int(self.labels.shape[0])
