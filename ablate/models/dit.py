"""DiT, the diffusion transformer of Peebles & Xie (2023), in plain torch.

Conventions:

- ``x``: (B, C, H, W) noisy latents; the output has the same shape (no learned sigma). What the
  output *means* (eps, v, velocity, EDM's F) is the formulation layer's business, not the model's.
- ``t``: (B,) float, whatever scalar noise conditioning the formulation layer hands the network.
  It is embedded as the sinusoidal frequency embedding of ``1000 * t`` followed by an MLP, as in
  DiT. For most formulations t is in [0, 1] (t = 0 data, t = 1 noise); for EDM it is
  ``c_noise = ln(sigma) / 4``, which can be negative. The embedding is defined for any real t.
- Precision: the module computes in whatever dtype its inputs and weights have. Under autocast
  (bf16 on the GPU) with ``autocast_stream`` on, the residual stream and the adaLN input are
  carried in the autocast dtype, so every elementwise pass between the matmuls moves half the
  bytes; LayerNorm and softmax still compute in fp32 (autocast's rule), and the output is
  returned in the autocast dtype (the loss upcasts it). Without autocast nothing changes.
- ``y``: the conditioning, by configuration:

  - ``num_classes > 0``: class labels, LongTensor (B,). The table has ``num_classes + 1`` rows;
    index ``num_classes`` is the NULL class used for classifier-free guidance.
  - ``cond_dim > 0``: pooled text embeddings, FloatTensor (B, cond_dim), through a bias-free
    linear projection, so an all-zero vector (the null) adds exactly nothing.
  - both: a pair ``(labels, text)``; neither: ``y`` is ignored (pass None).

  Conditioning dropout is not done here: the trainer replaces labels with the null class.

FLOPs follow the DiT paper's convention (fvcore: one multiply-add is one FLOP; matmuls and
convolutions only, no norms, activations or elementwise ops); see :meth:`DiTConfig.flops`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ablate.errors import ConfigError

FREQUENCY_EMBEDDING_SIZE = 256  # sinusoidal timestep features before the MLP (DiT's value)
TIMESTEP_SCALE = 1000.0  # the embedding sees 1000 * t, as DiT's integer timesteps did

# The paper's model sizes (Table 1): name -> (depth, hidden_size, num_heads).
_DIT_SIZES: dict[str, tuple[int, int, int]] = {
    "S": (12, 384, 6),
    "B": (12, 768, 12),
    "L": (24, 1024, 16),
    "XL": (28, 1152, 16),
}
DIT_PRESETS: dict[str, dict[str, int]] = {
    f"{size}/{patch}": {"depth": d, "hidden_size": w, "num_heads": h, "patch_size": patch}
    for size, (d, w, h) in _DIT_SIZES.items()
    for patch in (2, 4, 8)
}


@dataclass
class DiTConfig:
    """Shape of a DiT: latent size/channels, patch, width, depth, heads, conditioning."""

    input_size: int  # latent side length H = W
    in_channels: int  # latent channels C (also the output channels)
    patch_size: int
    hidden_size: int
    depth: int
    num_heads: int
    mlp_ratio: float = 4.0
    num_classes: int = 0  # > 0: class-conditional, with a null row at index num_classes
    cond_dim: int = 0  # > 0: pooled-text-conditional, y is (B, cond_dim) float
    autocast_stream: bool = True  # under autocast: residual stream and adaLN input in the autocast dtype

    def __post_init__(self) -> None:
        for key in ("input_size", "in_channels", "patch_size", "hidden_size", "depth", "num_heads"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"DiT config key '{key}' is {value!r}; it must be a positive integer.")
        for key in ("num_classes", "cond_dim"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ConfigError(
                    f"DiT config key '{key}' is {value!r}; it must be a non-negative integer (0 turns it off)."
                )
        if not isinstance(self.autocast_stream, bool):
            raise ConfigError(f"DiT config key 'autocast_stream' is {self.autocast_stream!r}; it must be true or false.")
        if not self.mlp_ratio > 0:
            raise ConfigError(f"DiT config key 'mlp_ratio' is {self.mlp_ratio!r}; it must be a positive number.")
        if self.input_size % self.patch_size:
            raise ConfigError(
                f"DiT config 'input_size' {self.input_size} is not divisible by 'patch_size' {self.patch_size}; "
                "the latent side length must be a whole number of patches."
            )
        if self.hidden_size % self.num_heads:
            raise ConfigError(
                f"DiT config 'hidden_size' {self.hidden_size} is not divisible by 'num_heads' {self.num_heads}; "
                "each attention head must get an equal share of the width."
            )
        if self.hidden_size % 4:
            raise ConfigError(
                f"DiT config 'hidden_size' {self.hidden_size} is not divisible by 4, which the fixed 2-D "
                "sin-cos positional embedding needs (sin and cos for each of the two axes)."
            )

    @property
    def num_patches(self) -> int:
        """Tokens per image, (input_size / patch_size)^2."""
        return (self.input_size // self.patch_size) ** 2

    @property
    def mlp_hidden_size(self) -> int:
        return int(self.hidden_size * self.mlp_ratio)

    def flops(self) -> dict[str, int]:
        """Forward FLOPs per image by component, one multiply-add = one FLOP (fvcore, as in DiT).

        Counts matmuls and the patch convolution only (norms, activations, softmax, biases and
        the class-table lookup are not counted, as in the paper's Table 4).
        """
        n, d, m, depth = self.num_patches, self.hidden_size, self.mlp_hidden_size, self.depth
        patch_dim = self.patch_size**2 * self.in_channels
        return {
            "patch_embed": n * patch_dim * d,
            "embedders": FREQUENCY_EMBEDDING_SIZE * d + d * d + self.cond_dim * d,
            "adaLN_modulation": depth * 6 * d * d + 2 * d * d,  # blocks + final layer
            "attention_projections": depth * 4 * n * d * d,  # qkv and output projection
            "attention_matmuls": depth * 2 * n * n * d,  # Q K^T and A V over all heads
            "mlp": depth * 2 * n * d * m,
            "final_linear": n * d * patch_dim,
        }

    def gflops_per_image(self) -> float:
        """Forward GFLOPs per image in the DiT paper's convention (sum of :meth:`flops`, / 1e9)."""
        return sum(self.flops().values()) / 1e9

    def to_dict(self) -> dict[str, int | float]:
        return asdict(self)


def timestep_embedding(t: Tensor, dim: int = FREQUENCY_EMBEDDING_SIZE, max_period: float = 10000.0) -> Tensor:
    """Sinusoidal features [cos, sin] of ``1000 * t`` (B,) -> (B, dim), float32; any real t works."""
    half = dim // 2
    freqs = torch.exp(torch.arange(half, device=t.device, dtype=torch.float32) * (-math.log(max_period) / half))
    args = (TIMESTEP_SCALE * t.to(torch.float32))[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


def sincos_pos_embed_2d(hidden_size: int, grid_size: int) -> Tensor:
    """Fixed 2-D sin-cos embedding (grid_size^2, hidden_size), row-major tokens; half per axis."""
    quarter = hidden_size // 4
    omega = 1.0 / 10000.0 ** (torch.arange(quarter, dtype=torch.float64) / quarter)
    coords = torch.arange(grid_size, dtype=torch.float64)
    rows, cols = torch.meshgrid(coords, coords, indexing="ij")

    def axis(pos: Tensor) -> Tensor:
        out = pos.reshape(-1, 1) * omega[None]
        return torch.cat([torch.sin(out), torch.cos(out)], dim=1)

    return torch.cat([axis(cols), axis(rows)], dim=1).to(torch.float32)


def modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    """x * (1 + scale) + shift, with shift/scale (B, 1, D) broadcast over tokens."""
    return torch.addcmul(shift, x, 1 + scale)


def mlp_layers(hidden_size: int, mlp_hidden_size: int) -> nn.Sequential:
    """The transformer MLP: linear, tanh-GELU, linear (DiT's)."""
    return nn.Sequential(
        nn.Linear(hidden_size, mlp_hidden_size),
        nn.GELU(approximate="tanh"),
        nn.Linear(mlp_hidden_size, hidden_size),
    )


def timestep_embedder(hidden_size: int) -> nn.Sequential:
    """The MLP on the sinusoidal timestep features (DiT's; init N(0, 0.02) by its owner)."""
    return nn.Sequential(nn.Linear(FREQUENCY_EMBEDDING_SIZE, hidden_size), nn.SiLU(),
                         nn.Linear(hidden_size, hidden_size))


class Attention(nn.Module):
    """Multi-head self-attention through ``F.scaled_dot_product_attention``."""

    def __init__(self, hidden_size: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(hidden_size, 3 * hidden_size)
        self.proj = nn.Linear(hidden_size, hidden_size)

    def forward(self, x: Tensor) -> Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.num_heads, d // self.num_heads).permute(2, 0, 3, 1, 4).unbind(0)
        out = F.scaled_dot_product_attention(q, k, v)  # (B, heads, N, head_dim)
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class DiTBlock(nn.Module):
    """adaLN-Zero block: shift/scale/gate from the conditioning for attention and MLP."""

    def __init__(self, hidden_size: int, num_heads: int, mlp_hidden_size: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(hidden_size, num_heads)
        self.norm2 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.mlp = mlp_layers(hidden_size, mlp_hidden_size)
        self.adaLN_modulation = nn.Linear(hidden_size, 6 * hidden_size)  # input is SiLU(c)

    def forward(self, x: Tensor, c_act: Tensor) -> Tensor:
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = (
            self.adaLN_modulation(c_act).unsqueeze(1).chunk(6, dim=-1)
        )
        x = torch.addcmul(x, gate_msa, self.attn(modulate(self.norm1(x), shift_msa, scale_msa)))
        return torch.addcmul(x, gate_mlp, self.mlp(modulate(self.norm2(x), shift_mlp, scale_mlp)))


class FinalLayer(nn.Module):
    """adaLN (shift/scale) then a linear to patch_size^2 * channels per token."""

    def __init__(self, hidden_size: int, patch_dim: int) -> None:
        super().__init__()
        self.norm_final = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.adaLN_modulation = nn.Linear(hidden_size, 2 * hidden_size)  # input is SiLU(c)
        self.linear = nn.Linear(hidden_size, patch_dim)

    def forward(self, x: Tensor, c_act: Tensor) -> Tensor:
        shift, scale = self.adaLN_modulation(c_act).unsqueeze(1).chunk(2, dim=-1)
        return self.linear(modulate(self.norm_final(x), shift, scale))


def embed_patches(patch_embed: nn.Conv2d, pos_embed: Tensor, x: Tensor, config: DiTConfig, who: str) -> Tensor:
    """Latents (B, C, H, W) -> patch tokens plus positions (B, N, D); ``who`` names the model in errors."""
    ch, side = config.in_channels, config.input_size
    if x.shape[1:] != (ch, side, side):
        raise ValueError(f"{who} input x has shape {tuple(x.shape)}; this model was built for "
                         f"(B, {ch}, {side}, {side}) latents.")
    tokens = patch_embed(x).flatten(2).transpose(1, 2)  # (B, N, D), strided view
    # pos_embed first: the sum then takes its contiguous (B, N, D) layout, which every later
    # op inherits (the other order keeps the conv's layout and each LayerNorm copies).
    return pos_embed + tokens


def unpatchify(out: Tensor, config: DiTConfig) -> Tensor:
    """Per-token patches (B, N, p*p*C), row-major, back to the image (B, C, H, W)."""
    b, p, ch, side = out.shape[0], config.patch_size, config.in_channels, config.input_size
    out = out.view(b, side // p, side // p, p, p, ch).permute(0, 5, 1, 3, 2, 4)
    return out.reshape(b, ch, side, side)


class DiT(nn.Module):
    """Diffusion transformer: ``forward(x (B,C,H,W), t (B,), y) -> (B,C,H,W)``; see module doc."""

    def __init__(self, config: DiTConfig) -> None:
        super().__init__()
        self.config = config
        d, p, c = config.hidden_size, config.patch_size, config.in_channels
        self.patch_embed = nn.Conv2d(c, d, kernel_size=p, stride=p)
        self.register_buffer(
            "pos_embed", sincos_pos_embed_2d(d, config.input_size // p)[None], persistent=False
        )
        self.t_embedder = timestep_embedder(d)
        self.class_embedding = nn.Embedding(config.num_classes + 1, d) if config.num_classes else None
        self.text_projection = nn.Linear(config.cond_dim, d, bias=False) if config.cond_dim else None
        self.blocks = nn.ModuleList(
            DiTBlock(d, config.num_heads, config.mlp_hidden_size) for _ in range(config.depth)
        )
        self.final_layer = FinalLayer(d, p * p * c)
        self.initialize_weights()

    @property
    def null_class(self) -> int:
        """Index of the classifier-free-guidance null row of the class table (= num_classes)."""
        return self.config.num_classes

    def initialize_weights(self) -> None:
        """DiT's init: xavier linears/patch conv, N(0, 0.02) embedders, zero adaLN and output."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        w = self.patch_embed.weight
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.zeros_(self.patch_embed.bias)
        nn.init.normal_(self.t_embedder[0].weight, std=0.02)
        nn.init.normal_(self.t_embedder[2].weight, std=0.02)
        if self.class_embedding is not None:
            nn.init.normal_(self.class_embedding.weight, std=0.02)
        if self.text_projection is not None:
            nn.init.normal_(self.text_projection.weight, std=0.02)
        for layer in [*(b.adaLN_modulation for b in self.blocks), self.final_layer.adaLN_modulation,
                      self.final_layer.linear]:
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def condition(self, t: Tensor, y: Tensor | tuple[Tensor, Tensor] | None) -> Tensor:
        """The conditioning vector c (B, hidden_size): timestep embedding + class and/or text."""
        cfg = self.config
        c = self.t_embedder(timestep_embedding(t).to(self.pos_embed.dtype))
        labels = text = None
        if cfg.num_classes and cfg.cond_dim:
            if not (isinstance(y, (tuple, list)) and len(y) == 2):
                raise TypeError(
                    "This DiT is both class- and text-conditional, so y must be a pair "
                    f"(labels LongTensor (B,), text FloatTensor (B, {cfg.cond_dim})); got {type(y).__name__}."
                )
            labels, text = y
        elif cfg.num_classes:
            labels = y
        elif cfg.cond_dim:
            text = y
        if labels is not None:
            if not isinstance(labels, Tensor) or labels.dtype.is_floating_point or labels.dim() != 1:
                raise TypeError(
                    "Class labels y must be an integer tensor of shape (B,) with values in "
                    f"[0, {cfg.num_classes}] ({cfg.num_classes} is the null class); got "
                    f"{getattr(labels, 'dtype', type(labels).__name__)} {tuple(getattr(labels, 'shape', ()))}."
                )
            c = c + self.class_embedding(labels)
        if text is not None:
            if not isinstance(text, Tensor) or not text.dtype.is_floating_point or text.shape[-1:] != (cfg.cond_dim,):
                raise TypeError(
                    f"Pooled text conditioning y must be a float tensor of shape (B, {cfg.cond_dim}) "
                    "(all zeros for the null); got "
                    f"{getattr(text, 'dtype', type(text).__name__)} {tuple(getattr(text, 'shape', ()))}."
                )
            c = c + self.text_projection(text.to(c.dtype))
        return c

    def forward(self, x: Tensor, t: Tensor, y: Tensor | tuple[Tensor, Tensor] | None = None) -> Tensor:
        """Network output (B, C, H, W) for noisy latents x, noise level t (B,) and conditioning y."""
        cfg = self.config
        tokens = embed_patches(self.patch_embed, self.pos_embed, x, cfg, "DiT")
        c_act = F.silu(self.condition(t, y))  # every adaLN linear sees SiLU(c)
        if cfg.autocast_stream and torch.is_autocast_enabled(x.device.type):
            # carry the residual stream and SiLU(c) in the autocast dtype (bf16): half the bytes of
            # every elementwise pass; LayerNorm still computes in fp32 under autocast
            low = torch.get_autocast_dtype(x.device.type)
            tokens, c_act = tokens.to(low), c_act.to(low)
        for block in self.blocks:
            tokens = block(tokens, c_act)
        return unpatchify(self.final_layer(tokens, c_act), cfg)

    def gflops_per_image(self) -> float:
        """Forward GFLOPs per image, DiT paper convention (1 multiply-add = 1 FLOP); analytic."""
        return self.config.gflops_per_image()

    def num_params(self) -> int:
        """All parameters (every one is trainable); the fixed positional embedding is a buffer."""
        return sum(p.numel() for p in self.parameters())
