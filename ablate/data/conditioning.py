"""What a network is conditioned on: a sample's class label or pooled caption embedding, and the null
input that classifier-free guidance and conditioning dropout use in its place."""

from __future__ import annotations

import torch
from torch import Tensor

from ablate.data.base import DatasetInfo, LatentSplit


def conditioning_of(split: LatentSplit, index: Tensor, mode: str) -> Tensor:
    """The conditioning of samples ``index``: class labels (``mode`` "class"), or pooled caption
    embeddings ("caption")."""
    if mode == "caption":
        if split.text_emb is None:
            raise ValueError("conditioning 'caption' needs a dataset prepared with caption embeddings")
        return torch.as_tensor(split.text_emb[index], dtype=torch.float32)
    return split.labels[index]


MODES = ("class", "caption")  # what `data.conditioning` may name; a dataset supports those it can serve


def conditioning_modes(info: DatasetInfo, split: LatentSplit) -> tuple[str, ...]:
    """The conditioning modes a dataset serves: those :func:`conditioning_of` gives for its ``split`` (class labels
    need classes). Asked of the data itself, so a dataset that gains a mode (captions) is accepted at once."""
    if len(split) == 0:
        return ()
    first = torch.zeros(1, dtype=torch.int64)
    modes = []
    for mode in MODES:
        if mode == "class" and info.num_classes < 1:
            continue
        try:
            conditioning_of(split, first, mode)
        except (ValueError, TypeError, IndexError):
            continue
        modes.append(mode)
    return tuple(modes)


def null_conditioning(cond: Tensor, num_classes: int) -> Tensor:
    """The unconditional input: the null class (index ``num_classes``) for labels, zeros for embeddings."""
    if cond.dtype.is_floating_point:
        return torch.zeros_like(cond)
    return torch.full_like(cond, num_classes)
