"""What a network is conditioned on: a sample's class label or pooled caption embedding, and the null
input that classifier-free guidance and conditioning dropout use in its place."""

from __future__ import annotations

import torch
from torch import Tensor

from ablate.data.base import LatentSplit


def conditioning_of(split: LatentSplit, index: Tensor, mode: str) -> Tensor:
    """The conditioning of samples ``index``: class labels (``mode`` "class"), or pooled caption
    embeddings ("caption")."""
    if mode == "caption":
        if split.text_emb is None:
            raise ValueError("conditioning 'caption' needs a dataset prepared with caption embeddings")
        return torch.as_tensor(split.text_emb[index], dtype=torch.float32)
    return split.labels[index]


def null_conditioning(cond: Tensor, num_classes: int) -> Tensor:
    """The unconditional input: the null class (index ``num_classes``) for labels, zeros for embeddings."""
    if cond.dtype.is_floating_point:
        return torch.zeros_like(cond)
    return torch.full_like(cond, num_classes)
