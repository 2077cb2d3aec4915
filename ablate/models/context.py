"""What the text-attending backbones (MM-DiT, CrossDiT, UViT) share: their config and their input stem.

Conventions (beside :mod:`ablate.models.dit`'s, which still hold):

- ``y`` is a pair ``(tokens, pooled)``: the caption's token sequence (B, context_length, context_dim)
  and its pooled embedding (B, cond_dim). The null caption of classifier-free guidance is all zeros in
  both (the text encoder gives zeros for it); conditioning dropout is not done here.
- The stem is DiT's: patch convolution plus fixed 2-D sin-cos positions, the timestep MLP, the pooled
  text through a bias-free linear (so the null adds exactly nothing to the timestep embedding), and a
  linear "context embedder" taking the tokens to the model width (SD3's).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ablate.errors import ConfigError
from ablate.models.dit import (FREQUENCY_EMBEDDING_SIZE, DiTConfig, embed_patches, sincos_pos_embed_2d,
                               timestep_embedder, timestep_embedding)


@dataclass
class TextBackboneConfig(DiTConfig):
    """A DiT shape plus the caption's token sequence: ``context_length`` tokens of ``context_dim``."""

    context_dim: int = 0     # width of each caption token handed to the model
    context_length: int = 0  # caption tokens per sample

    def __post_init__(self) -> None:
        super().__post_init__()
        name = type(self).__name__
        if self.num_classes:
            raise ConfigError(f"{name} 'num_classes' is {self.num_classes}; text-attending backbones are conditioned "
                              "on captions only (num_classes 0, with cond_dim, context_dim and context_length >= 1).")
        for key in ("cond_dim", "context_dim", "context_length"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{name} key '{key}' is {value!r}; it must be a positive integer (the caption's "
                                  "pooled width, token width and token count).")

    def stem_flops(self) -> dict[str, int]:
        """Forward FLOPs of the stem (DiT convention, 1 multiply-add = 1 FLOP)."""
        d = self.hidden_size
        return {
            "patch_embed": self.num_patches * self.patch_size**2 * self.in_channels * d,
            "embedders": FREQUENCY_EMBEDDING_SIZE * d + d * d + self.cond_dim * d,
            "context_embedder": self.context_length * self.context_dim * d,
            "final_linear": self.num_patches * d * self.patch_size**2 * self.in_channels,
        }


def split_context(y: object, config: TextBackboneConfig, who: str) -> tuple[Tensor, Tensor]:
    """``y`` checked as ``(tokens (B, L, context_dim), pooled (B, cond_dim))``; a TypeError names what came."""
    ok = isinstance(y, (tuple, list)) and len(y) == 2 and all(isinstance(v, Tensor) for v in y)
    if ok:
        tokens, pooled = y
        ok = (tokens.dim() == 3 and tokens.shape[1:] == (config.context_length, config.context_dim)
              and pooled.dim() == 2 and pooled.shape[1] == config.cond_dim and tokens.dtype.is_floating_point)
    if not ok:
        got = tuple(tuple(v.shape) for v in y) if isinstance(y, (tuple, list)) else type(y).__name__
        raise TypeError(f"{who} conditioning y must be a pair (tokens float (B, {config.context_length}, "
                        f"{config.context_dim}), pooled float (B, {config.cond_dim})), all zeros for the null; "
                        f"got {got}.")
    return tokens, pooled


class TextStem(nn.Module):
    """Patch tokens, the conditioning vector c and the embedded caption tokens of a text backbone."""

    def __init__(self, config: TextBackboneConfig) -> None:
        super().__init__()
        d, p = config.hidden_size, config.patch_size
        self.config = config
        self.patch_embed = nn.Conv2d(config.in_channels, d, kernel_size=p, stride=p)
        self.register_buffer("pos_embed", sincos_pos_embed_2d(d, config.input_size // p)[None], persistent=False)
        self.t_embedder = timestep_embedder(d)
        self.text_projection = nn.Linear(config.cond_dim, d, bias=False)
        self.context_embedder = nn.Linear(config.context_dim, d)

    def initialize_weights(self) -> None:
        """DiT's init of the stem: xavier patch conv, N(0, 0.02) timestep MLP and pooled projection."""
        w = self.patch_embed.weight
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.zeros_(self.patch_embed.bias)
        for layer in (self.t_embedder[0], self.t_embedder[2], self.text_projection):
            nn.init.normal_(layer.weight, std=0.02)

    def forward(self, x: Tensor, t: Tensor, y: object, who: str) -> tuple[Tensor, Tensor, Tensor]:
        """(patch tokens (B, N, D), c (B, D) = timestep + pooled-text embedding, context (B, L, D))."""
        tokens, pooled = split_context(y, self.config, who)
        patches = embed_patches(self.patch_embed, self.pos_embed, x, self.config, who)
        c = self.t_embedder(timestep_embedding(t).to(self.pos_embed.dtype))
        c = c + self.text_projection(pooled.to(c.dtype))
        return patches, c, self.context_embedder(tokens.to(c.dtype))


class LearnedPositions(nn.Module):
    """A learned positional embedding (1, length, width), added to a token sequence (B, length, width).

    A module of its own (not a bare parameter of the backbone) so that every parameter of a backbone lies in a
    leaf module: a pack then stacks it flat (:mod:`ablate.engine.stack`), as it does a DiT. (As a bare parameter it
    took the vmap stack, whose compiled backward failed on an H100: "LSE is not correctly aligned", 2026-12-08.)
    Created zero (it draws no random numbers; the owner initialises ``weight``)."""

    def __init__(self, length: int, width: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1, length, width))

    def forward(self, tokens: Tensor) -> Tensor:
        return tokens + self.weight


def load_bare_positions(owner: nn.Module, *names: str) -> None:
    """Let ``owner`` load a checkpoint written when its :class:`LearnedPositions` ``names`` were bare parameters
    (``name`` for ``name.weight``)."""

    def rename(state_dict: dict, prefix: str, *args: object) -> None:
        for name in names:
            if prefix + name in state_dict and prefix + name + ".weight" not in state_dict:
                state_dict[prefix + name + ".weight"] = state_dict.pop(prefix + name)

    owner._register_load_state_dict_pre_hook(rename)


def xavier_linears(module: nn.Module) -> None:
    """DiT's default for every linear of ``module``: xavier-uniform weights, zero biases."""
    for layer in module.modules():
        if isinstance(layer, nn.Linear):
            nn.init.xavier_uniform_(layer.weight)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)


def zero_(*layers: nn.Module) -> None:
    """Zero the weights and biases of ``layers`` (adaLN-Zero gates, output layers)."""
    with torch.no_grad():
        for layer in layers:
            for p in layer.parameters():
                p.zero_()


def count_params(module: nn.Module) -> int:
    """All parameters of ``module`` (the fixed positional embedding is a buffer)."""
    return sum(p.numel() for p in module.parameters())
