"""The frozen text encoder that embeds captions once, at prepare time: open_clip's text tower.

Per caption it gives

- ``pooled`` (D,): the projected end-of-text embedding (open_clip ``encode_text``, not
  L2-normalised); the model conditions on it through adaLN;
- ``tokens`` (L, W): the last transformer block's token sequence after the final layer norm
  (the sequence ``pooled`` is taken from), for models that attend to text later.

Weights are found the way the CLIP scorers find theirs (:mod:`ablate.weights`: an
explicit ``--text-weights`` file, the library cache, a download when online). ``--text-model``
is an open_clip architecture name or a path to an open_clip model-config JSON (its file stem
becomes the name); the default is the paper's CLIP ViT-L/14 (``openai``).
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ablate.errors import AblateError, ConfigError

DEFAULT_TEXT_MODEL = "ViT-L-14"
DEFAULT_TEXT_PRETRAINED = "openai"
POOLED = "open_clip encode_text: projected end-of-text embedding, not L2-normalised"
TOKENS = "last text transformer block, after ln_final (the sequence the pooled vector is taken from)"


class TextEncoderUnavailableError(AblateError, FileNotFoundError):
    """The text encoder's weights cannot be found locally nor downloaded."""


@dataclass(frozen=True)
class TextEncoderSpec:
    """Which open_clip text tower embeds captions, and whether token sequences are stored."""

    model: str = DEFAULT_TEXT_MODEL
    pretrained: str | None = DEFAULT_TEXT_PRETRAINED
    weights: str | None = None       # explicit weights file (overrides cache/download)
    tokens: bool = True              # also store the token sequence (L x W per caption)


def model_name(model: str) -> str:
    """An open_clip architecture name; a JSON config path is registered and its stem returned."""
    import open_clip

    if model.endswith(".json"):
        path = Path(model).expanduser()
        if not path.is_file():
            raise ConfigError(f"--text-model {model!r} ends in .json but is not a file; give an open_clip model config.")
        open_clip.add_model_config(path)
        return path.stem
    if model not in open_clip.list_models():
        raise ConfigError(
            f"--text-model {model!r} is not an open_clip architecture. Use a built-in name such as "
            "'ViT-L-14' (the paper's CLIP), a path to an open_clip model-config .json, or 'none' to "
            "store no text embeddings."
        )
    return model


class TextEncoder:
    """Captions -> (pooled (B, D), tokens (B, L, W) or None) float32 numpy arrays, frozen, on one device."""

    def __init__(self, spec: TextEncoderSpec, device: torch.device | str = "cpu") -> None:
        import open_clip

        from ablate.openclip_weights import clip_weights_request
        from ablate.weights import locate_weights
        from ablate.errors import ScorerUnavailableError

        name = model_name(spec.model)
        if not spec.pretrained and not spec.weights:
            raise ConfigError(
                f"The text encoder {name!r} has neither --text-pretrained nor --text-weights: a randomly "
                "initialised encoder gives meaningless embeddings. Use --text-pretrained openai (the paper's), "
                "give a weights file with --text-weights, or --text-model none to store no text embeddings."
            )
        if spec.weights and not Path(spec.weights).expanduser().is_file():
            raise TextEncoderUnavailableError(
                f"--text-weights {spec.weights!r} is not a file. Give the open_clip checkpoint of {name!r} "
                "(e.g. open_clip_pytorch_model.bin), or leave it out to use the library cache or download."
            )
        try:
            request = clip_weights_request(name, spec.pretrained, spec.weights, "text encoder")
            resolved = locate_weights(request, None)
        except ScorerUnavailableError as err:
            raise TextEncoderUnavailableError(
                f"The text encoder {name!r} (pretrained {spec.pretrained!r}) cannot be loaded: its weights "
                f"are neither cached nor downloadable here. Download {request.filenames[0]!r} from "
                f"{request.source} on a machine with internet access and pass it with --text-weights PATH "
                "(or fill the Hugging Face cache there and copy it), or use --text-model none to store no "
                "text embeddings (captions are kept as text)."
            ) from err
        except ConfigError as err:
            raise ConfigError(str(err).replace("Scorer 'text encoder': ", "--text-model/--text-pretrained: ")) from err
        assert resolved is not None
        self.spec, self.name, self.weights = spec, name, resolved
        tag_cfg = open_clip.get_pretrained_cfg(name, spec.pretrained) if spec.pretrained else {}
        model = open_clip.create_model(
            name, pretrained=str(resolved.path), force_quick_gelu=bool(tag_cfg.get("quick_gelu", False)), device=device
        )
        self.model = model.eval().requires_grad_(False)
        self.device = next(model.parameters()).device
        self.context_length = int(open_clip.get_model_tokenize_cfg(model).get("context_length", 77))
        self.tokenizer = open_clip.get_tokenizer(name, context_length=self.context_length)
        probe_pooled, probe_tokens = self.encode(["a photo of a cat"])
        self.pooled_dim = int(probe_pooled.shape[1])
        self.token_shape = tuple(probe_tokens.shape[1:]) if probe_tokens is not None else None

    @torch.no_grad()
    def encode(self, captions: list[str], batch_size: int = 256) -> tuple[np.ndarray, np.ndarray | None]:
        """Embed captions (truncated at the context length): pooled (B, D) and tokens (B, L, W)."""
        pooled, tokens = [], []
        for i in range(0, len(captions), batch_size):
            ids = self.tokenizer(list(captions[i : i + batch_size]), context_length=self.context_length)
            out = self.model.forward_intermediates(
                text=ids.to(self.device), text_indices=1, normalize=False, normalize_intermediates=True
            )
            pooled.append(out["text_features"].float().cpu().numpy())
            if self.spec.tokens:
                tokens.append(out["text_intermediates"][-1].float().cpu().numpy())
        return np.concatenate(pooled), (np.concatenate(tokens) if self.spec.tokens else None)

    @functools.cached_property
    def description(self) -> dict[str, Any]:
        """What the manifest records about this encoder (the weights' SHA-256 is computed once)."""
        with open(self.weights.path, "rb") as handle:
            digest = hashlib.file_digest(handle, "sha256").hexdigest()
        return {
            "library": "open_clip",
            "model": self.name,
            "pretrained": self.spec.pretrained,
            "weights": {"file": Path(self.weights.path).name, "origin": self.weights.origin, "sha256": digest},
            "context_length": self.context_length,
            "pooled": {"dim": self.pooled_dim, "what": POOLED},
            "tokens": {"shape": list(self.token_shape), "what": TOKENS} if self.token_shape else None,
        }
