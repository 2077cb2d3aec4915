"""Latents -> pixels in [-1, 1] through the dataset's autoencoder, before any pixel scorer.

Conventions (one rule per way latents can have been stored):

- ``autoencoder == "identity"`` (Fashion-MNIST): the latents *are* the pixels; returned unchanged.
- otherwise a diffusers :class:`~diffusers.AutoencoderKL` from a local folder or a hub id
  (``autoencoder_subfolder`` in the dataset provenance, if any), output clamped to [-1, 1]:

  * per-channel normalised latents (``DatasetInfo.latent_mean/latent_std`` set, as ``ablate prepare``
    serves them): ``raw = z * latent_std[c] + latent_mean[c]`` (the inverse of
    :func:`ablate.data.latents.denormalise`'s normalisation), then ``x = D(raw)``;
  * otherwise diffusers' rule ``z = (E(x) - shift_factor) * scaling_factor`` (``shift_factor = 0`` for
    SD 1.x/2.x VAEs), decoded as ``x = D(z / scaling_factor + shift_factor)``, the factors read from
    the dataset provenance (keys ``scaling_factor``, ``shift_factor``), else from the VAE's config.

  :meth:`Decoder.provenance` says which rule and which numbers were used.
- ``to_uint8`` turns [-1, 1] pixels into the uint8 RGB images every scorer sees (as if saved to PNG),
  so scoring in memory and scoring saved image files (``read_images``) give the same numbers.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ablate.data.base import DatasetInfo
from ablate.data.sources import center_crop
from ablate.errors import ConfigError, ScorerUnavailableError
from ablate.weights import download_allowed, hub_offline

IDENTITY = "identity"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


class Decoder:
    """Decode latents (N, C, h, w) to pixels (N, 3, H, W) in [-1, 1]; identity passes its input through."""

    def __init__(
        self,
        autoencoder: str,
        scaling_factor: float | None = None,
        shift_factor: float | None = None,
        latent_mean: list[float] | None = None,
        latent_std: list[float] | None = None,
        subfolder: str | None = None,
        device: torch.device | str = "cpu",
        batch_size: int = 16,
    ) -> None:
        self.autoencoder = autoencoder
        self.subfolder = subfolder
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.vae = None if autoencoder == IDENTITY else _load_vae(autoencoder, subfolder, str(self.device))
        config = getattr(self.vae, "config", None)
        self.normalised = latent_mean is not None and latent_std is not None
        if self.normalised:
            self.mean = torch.tensor(latent_mean, dtype=torch.float32).view(1, -1, 1, 1)
            self.std = torch.tensor(latent_std, dtype=torch.float32).view(1, -1, 1, 1)
        self.factors_from = "dataset provenance" if scaling_factor is not None else "autoencoder config"
        scale = scaling_factor if scaling_factor is not None else getattr(config, "scaling_factor", None)
        shift = shift_factor if shift_factor is not None else getattr(config, "shift_factor", None)
        self.scaling_factor = float(scale if scale is not None else 1.0)
        self.shift_factor = float(shift or 0.0)

    @property
    def identity(self) -> bool:
        return self.vae is None

    def raw(self, latents: torch.Tensor) -> torch.Tensor:
        """Stored latents -> the autoencoder's own latent space (what ``vae.decode`` takes)."""
        z = latents.to(self.device, torch.float32)
        if self.normalised:
            return z * self.std.to(z.device) + self.mean.to(z.device)
        return z / self.scaling_factor + self.shift_factor

    @torch.no_grad()
    def __call__(self, latents: torch.Tensor) -> torch.Tensor:
        if self.vae is None:
            return latents
        out = [self.vae.decode(self.raw(chunk)).sample.clamp(-1.0, 1.0) for chunk in latents.split(self.batch_size)]
        return torch.cat(out)

    def provenance(self) -> dict[str, Any]:
        if self.vae is None:
            return {"autoencoder": IDENTITY}
        name = self.autoencoder + (f" (subfolder {self.subfolder})" if self.subfolder else "")
        if self.normalised:
            return {"autoencoder": name, "latents": "per-channel normalised: raw = z * latent_std + latent_mean"}
        return {
            "autoencoder": name,
            "latents": "raw = z / scaling_factor + shift_factor",
            "scaling_factor": self.scaling_factor,
            "shift_factor": self.shift_factor,
            "factors_from": self.factors_from,
        }


def decoder_for(dataset: DatasetInfo, device: torch.device | str = "cpu", autoencoder: str | None = None) -> Decoder:
    """The decoder of a dataset (``autoencoder`` overrides where its VAE is loaded from, e.g. a local copy)."""
    prov = dataset.provenance or {}
    return Decoder(
        autoencoder or dataset.autoencoder,
        scaling_factor=_opt_float(prov.get("scaling_factor")),
        shift_factor=_opt_float(prov.get("shift_factor")),
        latent_mean=dataset.latent_mean,
        latent_std=dataset.latent_std,
        subfolder=prov.get("autoencoder_subfolder"),
        device=device,
    )


def check_decoder(dataset: DatasetInfo, autoencoder: str | None = None) -> None:
    """Raise :class:`ScorerUnavailableError` now if the dataset's autoencoder cannot be loaded later (cheap)."""
    name = autoencoder or dataset.autoencoder
    if name == IDENTITY:
        return
    subfolder = (dataset.provenance or {}).get("autoencoder_subfolder")
    if Path(name).expanduser().is_dir():
        folder = Path(name).expanduser() / (subfolder or "")
        if not (folder / "config.json").is_file():
            raise _vae_error(name, f"the folder {str(folder)!r} has no config.json")
        return
    from huggingface_hub import try_to_load_from_cache

    config = "/".join(p for p in (subfolder, "config.json") if p)
    if isinstance(try_to_load_from_cache(name, config), str) or download_allowed("huggingface.co"):
        return
    reason = "HF_HUB_OFFLINE is set" if hub_offline() else "huggingface.co cannot be reached"
    raise _vae_error(name, f"it is neither a local folder nor in the Hugging Face cache, and {reason}")


def samples_to_images(
    samples: torch.Tensor, dataset: DatasetInfo, device: torch.device | str = "cpu", autoencoder: str | None = None
) -> torch.Tensor:
    """What every pixel scorer sees: dataset latents are decoded; uint8 images pass through. -> uint8 RGB."""
    if samples.dtype == torch.uint8:
        return to_uint8(samples)
    return to_uint8(decoder_for(dataset, device, autoencoder)(samples))


def to_uint8(pixels: torch.Tensor) -> torch.Tensor:
    """Pixels in [-1, 1], (N, 1 or 3, H, W) -> uint8 RGB (N, 3, H, W), rounded as a PNG writer would."""
    if pixels.dim() != 4 or pixels.shape[1] not in (1, 3):
        raise ValueError(f"expected pixels of shape (N, 1 or 3, H, W), got {tuple(pixels.shape)}")
    if pixels.dtype == torch.uint8:
        images = pixels
    else:
        images = ((pixels.float() + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8)
    return images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images


def image_files(folder: Path) -> list[Path]:
    """The image files (PNG, JPEG, WebP, BMP) under ``folder``, recursively, in sorted order."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"{str(folder)!r} is not a folder of images.")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise ConfigError(
            f"The folder {str(folder)!r} holds no images (looked for {', '.join(IMAGE_SUFFIXES)}, recursively)."
        )
    return files


def read_images(paths: list[Path], resolution: int | None = None) -> torch.Tensor:
    """Image files -> uint8 RGB (N, 3, H, W), read with PIL.

    With ``resolution``, an image of another size is resized (shorter side, bicubic) and center-cropped
    to ``resolution`` x ``resolution`` (ADM's reference-batch rule); without it, all must have one size.
    """
    from PIL import Image

    arrays = []
    for path in paths:
        try:
            with Image.open(path) as img:
                img = img.convert("RGB")
                if resolution is not None and img.size != (resolution, resolution):
                    img = center_crop(img, resolution)
                arrays.append(np.asarray(img, dtype=np.uint8))
        except OSError as err:
            raise ConfigError(f"The image {str(path)!r} cannot be read ({err}).") from err
        if arrays[-1].shape != arrays[0].shape:
            raise ConfigError(
                f"Images differ in size: {str(paths[0])!r} is {arrays[0].shape[1]}x{arrays[0].shape[0]} but "
                f"{str(path)!r} is {arrays[-1].shape[1]}x{arrays[-1].shape[0]}; give a resolution to resize them."
            )
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


@functools.lru_cache(maxsize=2)  # one VAE per process, shared by every pixel scorer
def _load_vae(name: str, subfolder: str | None, device: str) -> torch.nn.Module:
    from ablate.data.encode import AutoencoderUnavailableError, load_autoencoder

    try:
        return load_autoencoder(name, subfolder, device)
    except AutoencoderUnavailableError as err:
        raise _vae_error(name, f"loading it failed ({err.__cause__ or err})") from err


def _vae_error(name: str, reason: str) -> ScorerUnavailableError:
    return ScorerUnavailableError(
        f"The dataset's autoencoder {name!r} is needed to decode latents for the pixel scorers "
        f"(clip, fid_clip, fid_inception), but {reason}. Fill the cache on a machine with internet access "
        f"(`huggingface-cli download {name}`), or put a local copy (a folder with config.json and "
        "diffusion_pytorch_model.safetensors, as written by save_pretrained) somewhere and give its path as "
        "the scorers' 'autoencoder' option in the grid (or --autoencoder for `ablate score`)."
    )


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)
