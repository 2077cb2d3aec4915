"""Denoising backbones: DiT (Peebles & Xie 2023), MM-DiT (SD3), CrossDiT and UViT, and the network
that feeds them captions (:mod:`ablate.models.network`)."""

from ablate.models.dit import DIT_PRESETS, DiT, DiTConfig
from ablate.models.network import BACKBONES, NetworkConfig, build_network

__all__ = ["BACKBONES", "DIT_PRESETS", "DiT", "DiTConfig", "NetworkConfig", "build_network"]
