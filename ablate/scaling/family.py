"""The model family of a scaling study: one knob, depth d, sets width 64 d and d heads.

That is the SD3 paper's rule (head width 64); DiT's sizes S, B, L, XL (:data:`ablate.models.dit.DIT_PRESETS`)
are named points off the rule. The patch size is a second, separate axis. A size is written
``d<depth>`` (``d4``: depth 4, width 256, 4 heads) or ``S``, ``B``, ``L``, ``XL``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import torch

from ablate.errors import ConfigError
from ablate.models.dit import DIT_PRESETS, DiT, DiTConfig
from ablate.models.network import NetworkConfig, build_network

WIDTH_PER_DEPTH = 64  # SD3: hidden size 64 d, d heads
NAMED_SIZES = ("S", "B", "L", "XL")


@dataclass(frozen=True)
class ModelSize:
    """One member of the family: its label (``d4`` or ``S``), depth, width and heads."""

    label: str
    depth: int
    hidden_size: int
    num_heads: int


def model_size(spec: str) -> ModelSize:
    """The size named ``spec``: ``d<depth>`` on the 64 d rule, or a DiT size ``S``/``B``/``L``/``XL``."""
    text = str(spec).strip()
    match = re.fullmatch(r"d([1-9][0-9]*)", text)
    if match:
        d = int(match.group(1))
        return ModelSize(f"d{d}", d, WIDTH_PER_DEPTH * d, d)
    if text in NAMED_SIZES:
        preset = DIT_PRESETS[f"{text}/2"]
        return ModelSize(text, preset["depth"], preset["hidden_size"], preset["num_heads"])
    raise ConfigError(f"Model size {spec!r} is not a size of the scaling family; allowed: d<depth> with depth >= 1 "
                      f"(width 64 x depth, depth heads, e.g. d4) or a DiT size {', '.join(NAMED_SIZES)}.")


def canonical_size(spec: str) -> str:
    """The label of a size spec (checks it): used to read ``scaling.sizes``."""
    return model_size(spec).label


@dataclass(frozen=True)
class DataShape:
    """What the network's shape needs from the dataset: latent side, channels and conditioning width."""

    resolution: int
    channels: int
    num_classes: int
    cond_dim: int = 0
    backbone: str = "dit"
    # the dataset's DatasetInfo and conditioning when the network is more than a DiT of labels or pooled
    # vectors (another backbone, or caption token ids): its shape is then the trained one (network_of)
    info: Any = field(default=None, compare=False, repr=False)
    conditioning: str = "class"


def dit_config(size: ModelSize, patch_size: int, data: DataShape, mlp_ratio: float = 4.0) -> DiTConfig:
    """The :class:`DiTConfig` of a family member at a patch size on a dataset."""
    return DiTConfig(input_size=data.resolution, in_channels=data.channels, patch_size=patch_size,
                     hidden_size=size.hidden_size, depth=size.depth, num_heads=size.num_heads, mlp_ratio=mlp_ratio,
                     num_classes=data.num_classes, cond_dim=data.cond_dim)


def network_of(size: ModelSize, patch_size: int, data: DataShape, mlp_ratio: float = 4.0) -> DiTConfig | NetworkConfig:
    """The network a family member trains on a dataset: :func:`dit_config` for a DiT of labels or pooled
    vectors, else exactly what a cell of its backbone builds (:func:`ablate.engine.train.network_config`)."""
    if data.info is None:
        return dit_config(size, patch_size, data, mlp_ratio)
    from ablate.config.grid import ModelConfig
    from ablate.engine.train import network_config

    model = ModelConfig(patch_size=patch_size, hidden_size=size.hidden_size, depth=size.depth,
                        num_heads=size.num_heads, mlp_ratio=mlp_ratio)
    return network_config(model, data.info, data.conditioning, data.backbone)


def num_params(config: DiTConfig | NetworkConfig) -> int:
    """Parameters of the network (built on the meta device: no memory, no initialisation cost)."""
    with torch.device("meta"):
        if isinstance(config, NetworkConfig):
            return sum(p.numel() for p in build_network(config).parameters())
        return DiT(config).num_params()
