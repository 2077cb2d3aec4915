"""A small caption encoder trained jointly with the backbone, from scratch (the offline default).

``forward(ids (B, L) int64) -> (tokens (B, L, width), pooled (B, pooled_dim))``. Token ids index a
compact vocabulary (the dataset's; 0 is padding); learned positions; ``depth`` pre-LayerNorm
transformer blocks attending over all positions (padding included: no data-dependent masking), a final
LayerNorm; pooled = a linear of the mean over non-padding tokens. A caption of padding only (all ids 0)
is the null caption of classifier-free guidance: its tokens and pooled vector are exactly zero, so every
null gives the backbone the same input. The encoder is part of the trained network (checkpointed and
EMA-averaged with it).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

from ablate.errors import ConfigError
from ablate.models.context import LearnedPositions, load_bare_positions
from ablate.models.uvit import UViTBlock


@dataclass
class TextEncoderConfig:
    """Shape of the caption encoder: vocabulary, context length, width, depth, heads, pooled width."""

    vocab_size: int       # compact vocabulary including the padding id 0
    context_length: int
    width: int
    depth: int
    num_heads: int
    pooled_dim: int
    mlp_ratio: float = 4.0

    def __post_init__(self) -> None:
        for key in ("vocab_size", "context_length", "width", "depth", "num_heads", "pooled_dim"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"Text encoder config key '{key}' is {value!r}; it must be a positive integer.")
        if self.width % self.num_heads:
            raise ConfigError(f"Text encoder 'width' {self.width} is not divisible by 'num_heads' {self.num_heads}; "
                              "each attention head must get an equal share of the width.")

    def flops(self) -> dict[str, int]:
        """Forward FLOPs per caption, DiT convention (matmuls only; the embedding lookup is free)."""
        n, w, m = self.context_length, self.width, int(self.width * self.mlp_ratio)
        return {"text_encoder": self.depth * (4 * n * w * w + 2 * n * n * w + 2 * n * w * m) + w * self.pooled_dim}

    def to_dict(self) -> dict[str, int | float]:
        return asdict(self)


class TextEncoder(nn.Module):
    """Token ids -> (tokens, pooled); the all-padding caption maps to exact zeros. See the module doc."""

    def __init__(self, config: TextEncoderConfig) -> None:
        super().__init__()
        self.config = config
        w = config.width
        self.token_embedding = nn.Embedding(config.vocab_size, w)
        self.positions = LearnedPositions(config.context_length, w)
        self.blocks = nn.ModuleList(UViTBlock(w, config.num_heads, int(w * config.mlp_ratio), skip=False)
                                    for _ in range(config.depth))
        self.norm_final = nn.LayerNorm(w)
        self.pooled_projection = nn.Linear(w, config.pooled_dim)
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.positions.weight, std=0.01)
        load_bare_positions(self, "positions")

    def forward(self, ids: Tensor) -> tuple[Tensor, Tensor]:
        if ids.dtype.is_floating_point or ids.dim() != 2 or ids.shape[1] != self.config.context_length:
            raise TypeError(f"The caption encoder takes token ids, an integer tensor (B, {self.config.context_length}) "
                            f"(all zeros for the null caption); got {ids.dtype} {tuple(ids.shape)}.")
        h = self.positions(self.token_embedding(ids))
        for block in self.blocks:
            h = block(h)
        h = self.norm_final(h)
        real = (ids != 0).to(h.dtype).unsqueeze(-1)  # (B, L, 1)
        pooled = self.pooled_projection((h * real).sum(1) / real.sum(1).clamp(min=1.0))
        keep = real.amax(1)  # (B, 1): 0 for the null caption
        return h * keep.unsqueeze(1), pooled * keep
