"""MM-DiT, the multimodal diffusion transformer of SD3 (Esser et al. 2024, section 4), in plain torch.

Two streams, image patches and caption tokens, each with its own weights for the adaLN modulation,
QKV, output projection and MLP; one joint attention over the concatenated sequence [text, image].
Both streams are modulated by c = timestep embedding + pooled text embedding. Optional RMS
normalisation of queries and keys per head (the paper's stabiliser for mixed precision), on by default.
As in SD3, the last block's text stream only contributes keys and values (its output is never used, so
it has no output projection, MLP or their modulation). The size rule has one knob d: width 64 d,
d heads, depth d (:meth:`MMDiTConfig.from_depth`). Interface and conventions: :mod:`ablate.models.context`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ablate.models.context import TextBackboneConfig, TextStem, count_params, xavier_linears, zero_
from ablate.models.dit import FinalLayer, mlp_layers, modulate, unpatchify

HEAD_WIDTH = 64  # the size rule: width 64 d, d heads


@dataclass
class MMDiTConfig(TextBackboneConfig):
    """MM-DiT shape: DiT's keys, the caption's tokens, and RMS QK-normalisation (``qk_norm``)."""

    qk_norm: bool = True

    @classmethod
    def from_depth(cls, depth: int, **keys: object) -> MMDiTConfig:
        """The paper's size rule: depth d, width 64 d, d heads; ``keys`` gives the rest."""
        return cls(depth=depth, hidden_size=HEAD_WIDTH * depth, num_heads=depth, **keys)  # type: ignore[arg-type]

    def flops(self) -> dict[str, int]:
        """Forward FLOPs per image by component, DiT convention (matmuls and the patch conv only)."""
        n, ctx, d, m, depth = self.num_patches, self.context_length, self.hidden_size, self.mlp_hidden_size, self.depth
        return {
            **self.stem_flops(),
            # image stream 6 d^2 per block; text stream 6 d^2, its last block 2 d^2 (shift, scale); final 2 d^2
            "adaLN_modulation": depth * 6 * d * d + (depth - 1) * 6 * d * d + 2 * d * d + 2 * d * d,
            "attention_projections": depth * 4 * n * d * d + (depth - 1) * 4 * ctx * d * d + 3 * ctx * d * d,
            "attention_matmuls": depth * 2 * (n + ctx) ** 2 * d,
            "mlp": depth * 2 * n * d * m + (depth - 1) * 2 * ctx * d * m,
        }

    def gflops_per_image(self) -> float:
        return sum(self.flops().values()) / 1e9


class StreamIn(nn.Module):
    """One stream's half of a block before attention: adaLN, QKV and the optional QK RMS-norm."""

    def __init__(self, hidden_size: int, num_heads: int, qk_norm: bool, modulations: int) -> None:
        super().__init__()
        self.num_heads, self.modulations = num_heads, modulations
        self.norm1 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.adaLN_modulation = nn.Linear(hidden_size, modulations * hidden_size)  # input is SiLU(c)
        self.qkv = nn.Linear(hidden_size, 3 * hidden_size)
        head = hidden_size // num_heads
        self.q_norm = nn.RMSNorm(head, eps=1e-6) if qk_norm else nn.Identity()
        self.k_norm = nn.RMSNorm(head, eps=1e-6) if qk_norm else nn.Identity()

    def forward(self, x: Tensor, c_act: Tensor) -> tuple[Tensor, Tensor, Tensor, list[Tensor]]:
        """q, k, v (B, heads, n, head) and the remaining modulation vectors (B, 1, D)."""
        shift, scale, *rest = self.adaLN_modulation(c_act).unsqueeze(1).chunk(self.modulations, dim=-1)
        b, n, d = x.shape
        qkv = self.qkv(modulate(self.norm1(x), shift, scale)).view(b, n, 3, self.num_heads, d // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        return self.q_norm(q).to(v.dtype), self.k_norm(k).to(v.dtype), v, rest  # bf16 under autocast


class StreamOut(nn.Module):
    """One stream's half of a block after attention: gated output projection, then the gated MLP."""

    def __init__(self, hidden_size: int, mlp_hidden_size: int) -> None:
        super().__init__()
        self.proj = nn.Linear(hidden_size, hidden_size)
        self.norm2 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.mlp = mlp_layers(hidden_size, mlp_hidden_size)

    def forward(self, x: Tensor, attended: Tensor, mods: list[Tensor]) -> Tensor:
        gate_msa, shift_mlp, scale_mlp, gate_mlp = mods
        x = torch.addcmul(x, gate_msa, self.proj(attended))
        return torch.addcmul(x, gate_mlp, self.mlp(modulate(self.norm2(x), shift_mlp, scale_mlp)))


class MMDiTBlock(nn.Module):
    """Joint attention over [text, image]; each stream its own weights. ``last``: text gives K, V only."""

    def __init__(self, config: MMDiTConfig, last: bool) -> None:
        super().__init__()
        d, h, m = config.hidden_size, config.num_heads, config.mlp_hidden_size
        self.image_in, self.image_out = StreamIn(d, h, config.qk_norm, 6), StreamOut(d, m)
        self.text_in = StreamIn(d, h, config.qk_norm, 2 if last else 6)
        self.text_out = None if last else StreamOut(d, m)

    def forward(self, x: Tensor, ctx: Tensor, c_act: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor]:
        qx, kx, vx, mods_x = self.image_in(x, c_act)
        qc, kc, vc, mods_c = self.text_in(ctx, c_act)
        q, k, v = (torch.cat(pair, dim=2) for pair in ((qc, qx), (kc, kx), (vc, vx)))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (B, heads, L + N, head)
        b, n_all = out.shape[0], out.shape[2]
        out = out.transpose(1, 2).reshape(b, n_all, -1)
        length = ctx.shape[1]
        x = self.image_out(x, out[:, length:], mods_x)
        if self.text_out is not None:
            ctx = self.text_out(ctx, out[:, :length], mods_c)
        return x, ctx


class MMDiT(nn.Module):
    """``forward(x (B,C,H,W), t (B,), y=(tokens, pooled)) -> (B,C,H,W)``; see the module doc.

    ``image_attends_text`` (a switch for tests, True by default) masks the image queries' attention to
    the text keys when False: the caption then reaches the image only through the pooled modulation.
    """

    def __init__(self, config: MMDiTConfig) -> None:
        super().__init__()
        self.config = config
        self.stem = TextStem(config)
        self.blocks = nn.ModuleList(MMDiTBlock(config, last=i == config.depth - 1) for i in range(config.depth))
        self.final_layer = FinalLayer(config.hidden_size, config.patch_size**2 * config.in_channels)
        self.image_attends_text = True
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """DiT's init: xavier linears, the stem's, and zero adaLN modulation and output layer."""
        xavier_linears(self)
        self.stem.initialize_weights()
        zero_(*(s.adaLN_modulation for b in self.blocks for s in (b.image_in, b.text_in)),
              self.final_layer.adaLN_modulation, self.final_layer.linear)

    def _mask(self, length: int, n: int, device: torch.device) -> Tensor | None:
        if self.image_attends_text:
            return None
        mask = torch.ones(length + n, length + n, dtype=torch.bool, device=device)
        mask[length:, :length] = False
        return mask

    def forward(self, x: Tensor, t: Tensor, y: tuple[Tensor, Tensor]) -> Tensor:
        """Network output (B, C, H, W) for noisy latents x, noise level t (B,) and caption y."""
        tokens, c, ctx = self.stem(x, t, y, "MM-DiT")
        c_act = F.silu(c)
        mask = self._mask(ctx.shape[1], tokens.shape[1], x.device)
        for block in self.blocks:
            tokens, ctx = block(tokens, ctx, c_act, mask)
        return unpatchify(self.final_layer(tokens, c_act), self.config)

    def gflops_per_image(self) -> float:
        return self.config.gflops_per_image()

    def num_params(self) -> int:
        return count_params(self)
