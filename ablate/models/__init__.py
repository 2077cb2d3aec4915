"""Denoising backbones: the DiT (Peebles & Xie 2023)."""

from ablate.models.dit import DIT_PRESETS, DiT, DiTConfig

__all__ = ["DIT_PRESETS", "DiT", "DiTConfig"]
