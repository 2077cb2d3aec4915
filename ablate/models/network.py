"""The trained network of a cell: a backbone, and for captions the encoder that feeds it.

Backbones by name (:data:`BACKBONES`): ``dit`` (:mod:`.dit`), ``mmdit`` (:mod:`.mmdit`), ``crossdit``
(:mod:`.crossdit`), ``uvit`` (:mod:`.uvit`). The conditioning a network receives is one tensor, so that
batching, dropout, guidance and functional stacking treat it alike for every backbone:

- class labels (B,) int64: a class-conditional DiT (the network is the DiT itself);
- caption token ids (B, L) int64 (0 is padding; all zeros is the null caption): encoded by a jointly
  trained :class:`~ablate.models.text_encoder.TextEncoder` into tokens and a pooled vector;
- stored caption embeddings (B, P) float, or (B, P + L W) float when the backbone attends to tokens:
  the frozen text tower's pooled vector, then its L x W token sequence flattened (all zeros: the null).

DiT gets the pooled vector (through adaLN); the other backbones get (tokens, pooled).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from ablate.models.crossdit import CrossDiT, CrossDiTConfig
from ablate.models.dit import DiT, DiTConfig
from ablate.models.mmdit import MMDiT, MMDiTConfig
from ablate.models.text_encoder import TextEncoder, TextEncoderConfig
from ablate.models.uvit import UViT, UViTConfig

BACKBONES: dict[str, tuple[type[DiTConfig], type[nn.Module]]] = {
    "dit": (DiTConfig, DiT),
    "mmdit": (MMDiTConfig, MMDiT),
    "crossdit": (CrossDiTConfig, CrossDiT),
    "uvit": (UViTConfig, UViT),
}


@dataclass
class NetworkConfig:
    """A backbone's config, and how captions reach it: a jointly trained ``text`` encoder of token ids,
    or stored embeddings (``stored_tokens``: True when the stored token sequence is packed after the
    pooled vector). Without either, the conditioning goes to the backbone as it is (class labels)."""

    backbone: str
    body: DiTConfig
    text: TextEncoderConfig | None = None
    stored_tokens: bool = False

    def flops(self) -> dict[str, int]:
        """Forward FLOPs per image of the backbone and the caption encoder (DiT convention)."""
        return {**self.body.flops(), **(self.text.flops() if self.text else {})}

    def gflops_per_image(self) -> float:
        return sum(self.flops().values()) / 1e9

    def to_dict(self) -> dict:
        return {"backbone": self.backbone, **self.body.to_dict(),
                **({"text_encoder": self.text.to_dict()} if self.text else {}), "stored_tokens": self.stored_tokens}


class CaptionConditioned(nn.Module):
    """A backbone fed by captions: token ids through the encoder, or stored embeddings unpacked."""

    def __init__(self, config: NetworkConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = TextEncoder(config.text) if config.text else None
        self.backbone = BACKBONES[config.backbone][1](config.body)

    @property
    def null_class(self) -> int:
        """Not used for captions (their null is all zeros); kept so trainers treat every network alike."""
        return 0

    def forward(self, x: Tensor, t: Tensor, cond: Tensor) -> Tensor:
        body = self.config.body
        if self.encoder is not None:
            tokens, pooled = self.encoder(cond)
        else:
            pooled = cond[:, :body.cond_dim]
            tokens = cond[:, body.cond_dim:].reshape(cond.shape[0], -1, getattr(body, "context_dim", 1))
        return self.backbone(x, t, pooled if self.config.backbone == "dit" else (tokens, pooled))

    def gflops_per_image(self) -> float:
        return self.config.gflops_per_image()

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())


def build_network(config: NetworkConfig) -> nn.Module:
    """The module of ``config``: the DiT itself for labels or stored pooled vectors (as ever), else
    :class:`CaptionConditioned`."""
    if config.backbone == "dit" and config.text is None:
        return DiT(config.body)
    return CaptionConditioned(config)
