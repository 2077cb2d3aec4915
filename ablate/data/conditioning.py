"""What a network is conditioned on: a sample's class label, its caption's token ids, or its stored caption
embeddings, and the null input that classifier-free guidance and conditioning dropout use in its place
(one tensor in every case; :mod:`ablate.models.network` says how each reaches a backbone)."""

from __future__ import annotations

import torch
from torch import Tensor

from ablate.data.base import DatasetInfo, LatentSplit


def conditioning_of(split: LatentSplit, index: Tensor, mode: str, tokens: bool = False) -> Tensor:
    """The conditioning of samples ``index``: class labels (``mode`` "class"), or for "caption" the
    caption's token ids (B, L) when the split has them (a jointly trained encoder reads them), else the
    stored pooled embeddings (B, P), followed by the stored token sequence flattened (B, P + L W) when
    ``tokens`` (backbones that attend to text)."""
    if mode == "caption":
        ids = split.text_tokens
        if isinstance(ids, Tensor) and not ids.dtype.is_floating_point:
            return ids[index]
        if split.text_emb is None:
            raise ValueError("conditioning 'caption' needs a dataset with caption token ids or caption embeddings")
        pooled = torch.as_tensor(split.text_emb[index], dtype=torch.float32)
        if not tokens:
            return pooled
        if split.text_tokens is None:
            raise ValueError("this backbone attends to caption tokens, but the dataset was prepared without them")
        sequence = torch.as_tensor(split.text_tokens[index], dtype=torch.float32)
        return torch.cat([pooled, sequence.flatten(1)], dim=1)
    return split.labels[index]


MODES = ("class", "caption")  # what `data.conditioning` may name; a dataset supports those it can serve


def conditioning_modes(info: DatasetInfo, split: LatentSplit) -> tuple[str, ...]:
    """The conditioning modes a dataset serves: those it declares (``DatasetInfo.conditionings``) that
    :func:`conditioning_of` gives for its ``split`` (class labels need classes, captions stored or made captions)."""
    if len(split) == 0:
        return ()
    first = torch.zeros(1, dtype=torch.int64)
    modes = []
    for mode in (m for m in MODES if m in info.conditionings):
        if mode == "class" and info.num_classes < 1:
            continue
        try:
            conditioning_of(split, first, mode)
        except (ValueError, TypeError, IndexError):
            continue
        modes.append(mode)
    return tuple(modes)


def null_conditioning(cond: Tensor, num_classes: int) -> Tensor:
    """The unconditional input: the null class (index ``num_classes``) for labels (B,), zeros for caption
    token ids (B, L) (all padding) and for embeddings."""
    if cond.dtype.is_floating_point or cond.dim() > 1:
        return torch.zeros_like(cond)
    return torch.full_like(cond, num_classes)
