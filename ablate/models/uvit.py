"""UViT (Bao et al. 2023): every input is a token; long skips join the first half to the second.

The sequence is [c, caption tokens, image patches]: c = timestep embedding + pooled text embedding as
one token, the embedded caption tokens, and the patches with DiT's fixed 2-D sin-cos positions (the
first 1 + L tokens get learned positions). Blocks are plain pre-LayerNorm transformer blocks (no adaLN):
``depth // 2`` in, one middle block when ``depth`` is odd, ``depth // 2`` out; out-block i first joins
the output of in-block ``depth // 2 - 1 - i`` through a linear on their concatenation (the long skip).
The patch tokens leave through a LayerNorm and a zero-initialised linear. Interface and conventions:
:mod:`ablate.models.context`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ablate.models.context import (LearnedPositions, TextBackboneConfig, TextStem, count_params, load_bare_positions,
                                   xavier_linears, zero_)
from ablate.models.dit import Attention, mlp_layers, unpatchify


@dataclass
class UViTConfig(TextBackboneConfig):
    """UViT shape: DiT's keys (``depth`` counts every block) plus the caption's tokens."""

    @property
    def sequence_length(self) -> int:
        """Tokens in the sequence: c, the caption tokens and the patches."""
        return 1 + self.context_length + self.num_patches

    def flops(self) -> dict[str, int]:
        """Forward FLOPs per image by component, DiT convention (matmuls and the patch conv only)."""
        s, d, m, depth = self.sequence_length, self.hidden_size, self.mlp_hidden_size, self.depth
        return {
            **self.stem_flops(),
            "attention_projections": depth * 4 * s * d * d,
            "attention_matmuls": depth * 2 * s * s * d,
            "mlp": depth * 2 * s * d * m,
            "skip_linears": (depth // 2) * s * 2 * d * d,
        }

    def gflops_per_image(self) -> float:
        return sum(self.flops().values()) / 1e9


class UViTBlock(nn.Module):
    """Pre-LayerNorm transformer block; with ``skip``, a linear first joins a long-skip input."""

    def __init__(self, hidden_size: int, num_heads: int, mlp_hidden_size: int, skip: bool) -> None:
        super().__init__()
        self.skip_linear = nn.Linear(2 * hidden_size, hidden_size) if skip else None
        self.norm1 = nn.LayerNorm(hidden_size)
        self.attn = Attention(hidden_size, num_heads)
        self.norm2 = nn.LayerNorm(hidden_size)
        self.mlp = mlp_layers(hidden_size, mlp_hidden_size)

    def forward(self, x: Tensor, skip: Tensor | None = None) -> Tensor:
        if self.skip_linear is not None:
            x = self.skip_linear(torch.cat([x, skip], dim=-1))
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class UViT(nn.Module):
    """``forward(x (B,C,H,W), t (B,), y=(tokens, pooled)) -> (B,C,H,W)``; see the module doc."""

    def __init__(self, config: UViTConfig) -> None:
        super().__init__()
        self.config = config
        d, h, m, half = config.hidden_size, config.num_heads, config.mlp_hidden_size, config.depth // 2
        self.stem = TextStem(config)
        self.extra_pos = LearnedPositions(1 + config.context_length, d)
        self.in_blocks = nn.ModuleList(UViTBlock(d, h, m, skip=False) for _ in range(half))
        self.mid_blocks = nn.ModuleList(UViTBlock(d, h, m, skip=False) for _ in range(config.depth % 2))
        self.out_blocks = nn.ModuleList(UViTBlock(d, h, m, skip=True) for _ in range(half))
        self.norm_final = nn.LayerNorm(d)
        self.final_linear = nn.Linear(d, config.patch_size**2 * config.in_channels)
        self.initialize_weights()
        load_bare_positions(self, "extra_pos")

    def initialize_weights(self) -> None:
        """xavier linears, the stem's init, N(0, 0.02) extra positions and a zero output layer."""
        xavier_linears(self)
        self.stem.initialize_weights()
        nn.init.normal_(self.extra_pos.weight, std=0.02)
        zero_(self.final_linear)

    def forward(self, x: Tensor, t: Tensor, y: tuple[Tensor, Tensor]) -> Tensor:
        """Network output (B, C, H, W) for noisy latents x, noise level t (B,) and caption y."""
        patches, c, ctx = self.stem(x, t, y, "UViT")
        extra = self.extra_pos(torch.cat([c.unsqueeze(1), ctx], dim=1))
        h = torch.cat([extra, patches.to(extra.dtype)], dim=1)
        skips = []
        for block in self.in_blocks:
            h = block(h)
            skips.append(h)
        for block in self.mid_blocks:
            h = block(h)
        for block in self.out_blocks:
            h = block(h, skips.pop())
        out = self.final_linear(self.norm_final(h[:, extra.shape[1]:]))
        return unpatchify(out, self.config)

    def gflops_per_image(self) -> float:
        return self.config.gflops_per_image()

    def num_params(self) -> int:
        return count_params(self)
