"""CrossDiT: DiT blocks with a cross-attention layer to the caption tokens (SD3 section 5.2.3's baseline).

Each block is DiT's adaLN-Zero block (modulated by c = timestep embedding + pooled text embedding)
with, between its self-attention and its MLP, a residual cross-attention from the image tokens
(queries, after a LayerNorm) to the embedded caption tokens (keys and values), as in PixArt-alpha.
The cross-attention's output projection starts at zero, so every block starts as DiT's.
Interface and conventions: :mod:`ablate.models.context`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ablate.models.context import TextBackboneConfig, TextStem, count_params, xavier_linears, zero_
from ablate.models.dit import DiTBlock, FinalLayer, modulate, unpatchify


@dataclass
class CrossDiTConfig(TextBackboneConfig):
    """CrossDiT shape: DiT's keys plus the caption's tokens."""

    def flops(self) -> dict[str, int]:
        """Forward FLOPs per image by component, DiT convention (matmuls and the patch conv only)."""
        n, ctx, d, m, depth = self.num_patches, self.context_length, self.hidden_size, self.mlp_hidden_size, self.depth
        return {
            **self.stem_flops(),
            "adaLN_modulation": depth * 6 * d * d + 2 * d * d,
            "attention_projections": depth * 4 * n * d * d,
            "attention_matmuls": depth * 2 * n * n * d,
            "cross_attention_projections": depth * (2 * n * d * d + 2 * ctx * d * d),  # q, out; k, v
            "cross_attention_matmuls": depth * 2 * n * ctx * d,
            "mlp": depth * 2 * n * d * m,
        }

    def gflops_per_image(self) -> float:
        return sum(self.flops().values()) / 1e9


class CrossAttention(nn.Module):
    """Multi-head attention of image queries (B, N, D) to context keys and values (B, L, D)."""

    def __init__(self, hidden_size: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.q = nn.Linear(hidden_size, hidden_size)
        self.kv = nn.Linear(hidden_size, 2 * hidden_size)
        self.proj = nn.Linear(hidden_size, hidden_size)

    def forward(self, x: Tensor, ctx: Tensor) -> Tensor:
        b, n, d = x.shape
        h, head = self.num_heads, d // self.num_heads
        q = self.q(x).view(b, n, h, head).transpose(1, 2)
        k, v = self.kv(ctx).view(b, ctx.shape[1], 2, h, head).permute(2, 0, 3, 1, 4).unbind(0)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class CrossDiTBlock(DiTBlock):
    """DiT's adaLN-Zero block with a residual cross-attention to the caption after self-attention."""

    def __init__(self, hidden_size: int, num_heads: int, mlp_hidden_size: int) -> None:
        super().__init__(hidden_size, num_heads, mlp_hidden_size)
        self.norm_cross = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.cross_attn = CrossAttention(hidden_size, num_heads)

    def forward(self, x: Tensor, c_act: Tensor, ctx: Tensor) -> Tensor:  # type: ignore[override]
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = (
            self.adaLN_modulation(c_act).unsqueeze(1).chunk(6, dim=-1)
        )
        x = torch.addcmul(x, gate_msa, self.attn(modulate(self.norm1(x), shift_msa, scale_msa)))
        x = x + self.cross_attn(self.norm_cross(x), ctx)
        return torch.addcmul(x, gate_mlp, self.mlp(modulate(self.norm2(x), shift_mlp, scale_mlp)))


class CrossDiT(nn.Module):
    """``forward(x (B,C,H,W), t (B,), y=(tokens, pooled)) -> (B,C,H,W)``; see the module doc."""

    def __init__(self, config: CrossDiTConfig) -> None:
        super().__init__()
        self.config = config
        d = config.hidden_size
        self.stem = TextStem(config)
        self.blocks = nn.ModuleList(CrossDiTBlock(d, config.num_heads, config.mlp_hidden_size)
                                    for _ in range(config.depth))
        self.final_layer = FinalLayer(d, config.patch_size**2 * config.in_channels)
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """DiT's init, plus zero cross-attention output projections."""
        xavier_linears(self)
        self.stem.initialize_weights()
        zero_(*(b.adaLN_modulation for b in self.blocks), *(b.cross_attn.proj for b in self.blocks),
              self.final_layer.adaLN_modulation, self.final_layer.linear)

    def forward(self, x: Tensor, t: Tensor, y: tuple[Tensor, Tensor]) -> Tensor:
        """Network output (B, C, H, W) for noisy latents x, noise level t (B,) and caption y."""
        tokens, c, ctx = self.stem(x, t, y, "CrossDiT")
        c_act = F.silu(c)
        for block in self.blocks:
            tokens = block(tokens, c_act, ctx)
        return unpatchify(self.final_layer(tokens, c_act), self.config)

    def gflops_per_image(self) -> float:
        return self.config.gflops_per_image()

    def num_params(self) -> int:
        return count_params(self)
