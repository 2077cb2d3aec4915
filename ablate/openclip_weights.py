"""Where an open_clip model's pretrained weights are found: shared by the CLIP scorers and the
caption text encoder of the data layer (so neither imports the other). The lookup order is
:mod:`ablate.weights`': an explicit file, then the hub cache, then a download when allowed."""

from __future__ import annotations

import os
from pathlib import Path

from ablate.errors import ConfigError
from ablate.weights import WeightsRequest


def clip_weights_request(model: str, pretrained: str | None, explicit: str | None, scorer: str) -> WeightsRequest:
    """Accepted files, cache lookup and download for an open_clip (model, pretrained tag)."""
    import open_clip

    if model not in open_clip.list_models():
        raise ConfigError(
            f"Scorer {scorer!r}: unknown open_clip model {model!r} (option 'model'). Use a built-in name "
            "such as 'ViT-L-14' (the paper's) or 'ViT-B-32'; open_clip.list_models() lists all."
        )
    cfg = open_clip.get_pretrained_cfg(model, pretrained) if pretrained else {}
    if pretrained and not cfg:
        tags = ", ".join(open_clip.list_pretrained_tags_by_model(model)) or "none"
        raise ConfigError(
            f"Scorer {scorer!r}: open_clip has no pretrained tag {pretrained!r} for {model!r} (option "
            f"'pretrained'). Known tags: {tags}. For other weights give a file as the 'clip_weights' option."
        )
    if not pretrained and not explicit:
        raise ConfigError(
            f"Scorer {scorer!r}: neither a 'pretrained' tag nor a 'clip_weights' file is set for {model!r}; "
            "a randomly initialised CLIP gives meaningless scores. Set pretrained: openai (the paper's)."
        )
    repo, hf_file = _split_hf(cfg.get("hf_hub", ""))
    hf_names = [n for n in (_safe_name(hf_file), hf_file) if n] if repo else []
    url = cfg.get("url", "")
    names = [f"{repo.split('/')[-1]}/{n}" for n in hf_names] + ([Path(url).name] if url else [])
    if not names:
        names = [f"{model}-{pretrained}.safetensors"]
    source = f"https://huggingface.co/{repo} (file {hf_names[0]})" if repo else (url or "the model's authors")

    def find_in_cache() -> Path | None:
        from huggingface_hub import try_to_load_from_cache

        for name in hf_names:
            hit = try_to_load_from_cache(repo, name)
            if isinstance(hit, str):
                return Path(hit)
        if url and (Path.home() / ".cache" / "clip" / Path(url).name).is_file():
            return Path.home() / ".cache" / "clip" / Path(url).name
        return None

    def download() -> Path:
        return Path(open_clip.pretrained.download_pretrained(cfg))

    host = "huggingface.co" if repo else (url.split("/")[2] if url else "huggingface.co")
    return WeightsRequest(
        scorer, tuple(names), source, host, find_in_cache, download if cfg else None, "clip_weights", explicit
    )


def _split_hf(hf_hub: str) -> tuple[str, str]:
    """open_clip's rule: 'org/name/' -> ('org/name', its default file); 'org/name/f.pt' -> ('org/name', 'f.pt')."""
    if not hf_hub:
        return "", ""
    from open_clip.constants import HF_WEIGHTS_NAME

    repo, filename = os.path.split(hf_hub)
    return repo, filename or HF_WEIGHTS_NAME


def _safe_name(filename: str) -> str | None:
    """The safetensors file open_clip tries first for a hub checkpoint name (its own rule)."""
    from open_clip.pretrained import _get_safe_alternatives

    return next(iter(_get_safe_alternatives(filename)), None)
