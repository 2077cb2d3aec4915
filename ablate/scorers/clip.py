"""CLIP score as the SD3 paper reports it: raw cosine of CLIP ViT-L/14 image and caption embeddings.

``clip`` (alignment, higher is better) = mean over samples of cos(E_I(image), E_T(caption)), with

- the model from ``open_clip`` (default ``ViT-L-14``, pretrained tag ``openai``; grid options
  ``model``, ``pretrained``, ``clip_weights``), weights found as :mod:`ablate.weights` says;
- images decoded to pixels (:mod:`ablate.data.decode`), quantised to uint8 as a saved PNG would be,
  then resized, cropped and normalised by the model's *own* eval transform built from its
  ``preprocess_cfg`` (size, mean, std, interpolation, resize_mode), applied to tensors;
- captions tokenised by the model's open_clip tokenizer with explicit truncation at its context
  length (77 for ViT-L/14; the last kept token becomes end-of-text).

Scale: the raw cosine in [-1, 1] (the paper's Table 2 numbers, e.g. 0.247). This is a thin
wrapper, not torchmetrics' ``CLIPScore``: that metric reports ``100 * max(cos, 0)``, which clamps
negative cosines (changing the mean for weak models) and is a different scale, and it expects a
Hugging Face processor interface; adapting it would change the paper's convention.
"""

from __future__ import annotations

import functools
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F

from ablate.data.decode import check_decoder, samples_to_images
from ablate.errors import ConfigError
from ablate.scorers.base import Metric, ScoreContext, Scorer, register_scorer
from ablate.openclip_weights import clip_weights_request
from ablate.weights import ResolvedWeights, locate_weights, scorer_options, unloadable

DEFAULT_MODEL = "ViT-L-14"
DEFAULT_PRETRAINED = "openai"
CLIP_SCALE = "raw cosine similarity in [-1, 1] (paper scale, ~0.25); not torchmetrics' 100*max(cos, 0)"


@dataclass
class ClipModel:
    """An open_clip model with its own tokenizer and eval transform, on one device."""

    model: torch.nn.Module
    tokenizer: Callable[..., torch.Tensor]
    transform: Callable[[torch.Tensor], torch.Tensor]
    preprocess_cfg: dict[str, Any]
    context_length: int
    name: str
    pretrained: str
    device: torch.device

    @classmethod
    def wrap(cls, model: torch.nn.Module, name: str, pretrained: str) -> "ClipModel":
        """Wrap a created open_clip model (pretrained or not) for scoring."""
        import open_clip
        from open_clip.transform import PreprocessCfg, image_transform_v2, merge_preprocess_dict

        cfg = merge_preprocess_dict(PreprocessCfg(), open_clip.get_model_preprocess_cfg(model))
        context_length = int(open_clip.get_model_tokenize_cfg(model).get("context_length", 77))
        return cls(
            model=model.eval().requires_grad_(False),
            tokenizer=open_clip.get_tokenizer(name, context_length=context_length),
            transform=image_transform_v2(PreprocessCfg(**cfg), is_train=False),
            preprocess_cfg=cfg,
            context_length=context_length,
            name=name,
            pretrained=pretrained,
            device=next(model.parameters()).device,
        )

    @torch.no_grad()
    def image_features(self, images: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
        """uint8 RGB images (N, 3, H, W) -> image embeddings (N, D) float32, not normalised."""
        if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"expected uint8 images (N, 3, H, W), got {images.dtype} {tuple(images.shape)}")
        out = []
        for chunk in images.split(batch_size):
            x = self.transform(chunk.to(self.device).float() / 255.0)
            out.append(self.model.encode_image(x).float())
        return torch.cat(out)

    @torch.no_grad()
    def text_features(self, captions: list[str], batch_size: int = 256) -> torch.Tensor:
        """Captions -> text embeddings (N, D) float32, not normalised; truncated at the context length."""
        out = []
        for i in range(0, len(captions), batch_size):
            tokens = self.tokenizer(list(captions[i : i + batch_size]), context_length=self.context_length)
            out.append(self.model.encode_text(tokens.to(self.device)).float())
        return torch.cat(out)


def clip_cosine(image_features: torch.Tensor, text_features: torch.Tensor) -> torch.Tensor:
    """Per-sample cosine similarity (N,) of paired image and text embeddings."""
    return (F.normalize(image_features.double(), dim=-1) * F.normalize(text_features.double(), dim=-1)).sum(-1)


def load_clip(
    model: str, pretrained: str | None, weights: ResolvedWeights, device: torch.device | str = "cpu", scorer: str = "clip"
) -> ClipModel:
    """Create the open_clip model from a located weights file, with the tag's GELU and preprocessing."""
    try:
        return _load_clip(model, pretrained, str(weights.path), str(torch.device(device)))
    except (RuntimeError, OSError, ValueError, KeyError, EOFError, pickle.UnpicklingError) as err:
        raise unloadable(scorer, weights.path, f"open_clip {model}", err) from err


@functools.lru_cache(maxsize=2)  # clip and fid_clip share one model per process
def _load_clip(model: str, pretrained: str | None, path: str, device: str) -> ClipModel:
    import open_clip
    from open_clip.transform import PreprocessCfg

    cfg = open_clip.get_pretrained_cfg(model, pretrained) if pretrained else {}
    keys = set(PreprocessCfg.__dataclass_fields__) - {"size"}
    net = open_clip.create_model(
        model,
        pretrained=path,
        force_quick_gelu=bool(cfg.get("quick_gelu", False)),
        force_preprocess_cfg={k: v for k, v in cfg.items() if k in keys},
        device=device,
        weights_only=not _is_torchscript(path),  # OpenAI's own ViT-L-14.pt is a TorchScript archive
    )
    return ClipModel.wrap(net, model, pretrained or Path(path).name)


CLIP_OPTIONS = {"model": "an open_clip architecture, e.g. ViT-L-14", "pretrained": "an open_clip pretrained tag, "
                "e.g. openai, or none", "clip_weights": "a weights file", "batch_size": "images per batch",
                "autoencoder": "a local folder or hub id of the dataset's autoencoder"}


class ClipBackbone:
    """What ``clip`` and ``fid_clip`` share: options, weights lookup, decoding to images, the model."""

    def __init__(self, ctx: ScoreContext, scorer: str) -> None:
        self.ctx = ctx
        self.scorer = scorer
        self.opts = scorer_options(ctx.options, scorer)
        self.model_name = str(self.opts.get("model", DEFAULT_MODEL))
        tag = self.opts.get("pretrained", DEFAULT_PRETRAINED)
        self.pretrained = None if tag in (None, "", "none") else str(tag)
        self.batch_size = int(self.opts.get("batch_size", 64))
        self.weights: ResolvedWeights | None = None
        self._clip: ClipModel | None = None

    def check_available(self) -> None:
        """Locate (or download) the weights and check the decoder, without building the model."""
        explicit = self.opts.get("clip_weights")
        request = clip_weights_request(self.model_name, self.pretrained, str(explicit) if explicit else None, self.scorer)
        self.weights = locate_weights(request, self.ctx.weights_dir)
        check_decoder(self.ctx.dataset, self.opts.get("autoencoder"))

    def model(self) -> ClipModel:
        if self._clip is None:
            if self.weights is None:
                self.check_available()
            assert self.weights is not None
            self._clip = load_clip(self.model_name, self.pretrained, self.weights, self.ctx.device, self.scorer)
        return self._clip

    def image_features(self, samples: torch.Tensor) -> torch.Tensor:
        """Samples (dataset latents or uint8 images) -> CLIP image embeddings (N, D) float32."""
        images = samples_to_images(samples, self.ctx.dataset, self.ctx.device, self.opts.get("autoencoder"))
        return self.model().image_features(images, self.batch_size)

    def provenance(self) -> dict[str, Any]:
        import open_clip

        vision = (open_clip.get_model_config(self.model_name) or {}).get("vision_cfg", {})
        weights = self.opts.get("clip_weights")
        return {
            "model": f"open_clip {self.model_name}",
            "pretrained": self.pretrained or (Path(str(weights)).name if weights else None),
            "weights": f"{self.weights.path} ({self.weights.origin})" if self.weights else None,
            "resolution": vision.get("image_size"),
            "preprocess": dict(self._clip.preprocess_cfg) if self._clip else "the model's own eval transform",
            "num_samples": None,
        }


@register_scorer
class ClipScorer(Scorer):
    """``clip``: mean raw cosine between CLIP image and caption embeddings (see the module docstring)."""

    name = "clip"
    options = CLIP_OPTIONS
    metrics = (
        Metric("clip", "alignment", True, "CLIP score: mean cosine of CLIP image and caption embeddings"),
    )

    def __init__(self, ctx: ScoreContext) -> None:
        super().__init__(ctx)
        self.clip = ClipBackbone(ctx, self.name)

    def check_available(self) -> None:
        self.clip.check_available()

    def provenance(self) -> dict[str, Any]:
        return {
            **self.clip.provenance(),
            "feature_layer": "cosine of L2-normalised encode_image and encode_text embeddings",
            "reference_set": None,
            "scale": CLIP_SCALE,
            "tokenizer": "open_clip tokenizer, truncated at the model's context length",
        }

    def score(self, samples: torch.Tensor, labels: torch.Tensor, captions: list[str]) -> dict[str, float]:
        if len(captions) != samples.shape[0]:
            raise ConfigError(
                f"Scorer 'clip' needs one caption per sample: got {samples.shape[0]} samples and "
                f"{len(captions)} captions."
            )
        image = self.clip.image_features(samples)
        text = self.clip.model().text_features(list(captions))
        return {"clip": float(clip_cosine(image, text).mean())}


def _is_torchscript(path: str) -> bool:
    """A TorchScript archive (torch.load refuses it with weights_only=True and hands it to torch.jit.load)."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.endswith("constants.pkl") for name in archive.namelist())


