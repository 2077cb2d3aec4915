"""FID two ways: on CLIP ViT-L/14 image features (the SD3 paper's) and on Inception pool features (the field's).

Both are the Frechet distance (:func:`ablate.scorers.frechet.frechet_distance`) between float64
feature statistics (:class:`~ablate.scorers.frechet.FeatureStats`) of the generated samples and of a
reference set; lower is better.

- ``fid_clip``: open_clip image embeddings (``encode_image`` output, not normalised; the model,
  tag, weights and preprocessing of the ``clip`` scorer, :class:`~ablate.scorers.clip.ClipBackbone`).
- ``fid_inception``: torch-fidelity's TF-compatible Inception v3 (``inception-v3-compat``), the
  2048-d pool features, uint8 images resized to 299 with its TF1 bilinear rule, so numbers match
  the field's FID evaluators. Weights: ``inception_weights`` option, ``--weights-dir``, torch hub's
  cache, then torch-fidelity's download (see :mod:`ablate.weights`).

Reference set (options): ``reference`` = a folder of images, a ``.pt`` batch (key ``samples``) or
a saved ``.npz`` of statistics; otherwise the dataset's ``reference_split`` (default ``test``),
decoded through its autoencoder, first ``reference_count`` items (default all). Reference
statistics are computed once per (reference set, feature network, image resolution) and cached
under ``<cache_dir>/fid_reference/`` as ``.npz`` with a provenance ``.json`` beside it.
"""

from __future__ import annotations

import functools
import hashlib
import json
import pickle
from pathlib import Path
from typing import Any, Iterator

import torch

from ablate.io import write_json_atomic
from ablate.data.decode import check_decoder, decoder_for, image_files, read_images, samples_to_images
from ablate.errors import ConfigError, ScorerUnavailableError
from ablate.scorers.base import Metric, ScoreContext, Scorer, register_scorer
from ablate.scorers.clip import CLIP_OPTIONS, ClipBackbone
from ablate.scorers.frechet import FeatureStats, frechet_distance
from ablate.weights import ResolvedWeights, WeightsRequest, locate_weights, scorer_options, unloadable

FID_SCALE = "Frechet distance (squared, FID units) between Gaussians fitted to the features; lower is better"
INCEPTION_URL = (
    "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth"
)


class FrechetScorer(Scorer):
    """FD between feature statistics of the samples and of the cached reference set."""

    metric: str
    min_samples = 2  # a covariance of the samples' features
    options = {"batch_size": "images per batch", "autoencoder": "a local folder or hub id of the dataset's autoencoder",
               "reference": "a folder of images, a .pt batch or a .npz of statistics",
               "reference_split": "the dataset split of the reference set, e.g. test",
               "reference_count": "the reference set's first N items"}

    def __init__(self, ctx: ScoreContext) -> None:
        super().__init__(ctx)
        self.opts = scorer_options(ctx.options, self.name)
        self.batch_size = int(self.opts.get("batch_size", 64))
        self.reference_info: dict[str, Any] = {}
        self._references: dict[int, FeatureStats] = {}  # by image resolution, for the settings that follow

    # --- what a feature network provides -------------------------------------------------
    def features(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 RGB images (N, 3, H, W) -> features (N, D)."""
        raise NotImplementedError

    def feature_id(self) -> dict[str, Any]:
        """What identifies the features (model, weights): part of the reference cache key."""
        raise NotImplementedError

    def check_features(self) -> None:
        raise NotImplementedError

    # --- the shared protocol ---------------------------------------------------------------
    def check_available(self) -> None:
        self.check_features()
        check_decoder(self.ctx.dataset, self.opts.get("autoencoder"))
        reference = self.opts.get("reference")
        if reference is not None and not Path(reference).expanduser().exists():
            raise ScorerUnavailableError(
                f"Scorer {self.name!r}: its 'reference' option points to {str(reference)!r}, which does not "
                "exist. Give a folder of reference images, a .pt batch or a .npz of statistics, or remove "
                f"the option to use the dataset's {self._split()!r} split."
            )
        if reference is None:  # the dataset's split: check its size now, before any cell trains
            from ablate.data import load_dataset

            info = self.ctx.dataset
            splits = load_dataset(info.name, info.resolution, self.ctx.data_dir)[1]
            count = len(splits[self._split()]) if self._split() in splits else 0
            limit = self.opts.get("reference_count")
            count = min(count, int(limit)) if limit is not None else count
            if count < 2:
                raise ConfigError(
                    f"Scorer {self.name!r}: its reference, the {self._split()!r} split of dataset {info.name!r}, has "
                    f"{count} image(s); a Frechet distance needs at least 2 (a covariance). Prepare the dataset with "
                    "a larger --holdout, give a 'reference' option (an image folder, a .pt batch or a .npz of "
                    "statistics), or drop this scorer."
                )

    def images(self, samples: torch.Tensor) -> torch.Tensor:
        return samples_to_images(samples, self.ctx.dataset, self.ctx.device, self.opts.get("autoencoder"))

    def sample_stats(self, samples: torch.Tensor) -> tuple[FeatureStats, int]:
        """float64 feature statistics of the samples, and their image resolution (pixels)."""
        stats, resolution = FeatureStats(), 0
        for chunk in samples.split(self.batch_size):
            images = self.images(chunk)
            resolution = int(images.shape[-1])
            stats.update(self.features(images))
        return stats, resolution

    def score(self, samples: torch.Tensor, labels: torch.Tensor, captions: list[str]) -> dict[str, float]:
        if samples.shape[0] < 2:
            raise ConfigError(f"Scorer {self.name!r} needs at least 2 samples for a covariance, got {samples.shape[0]}.")
        stats, resolution = self.sample_stats(samples)
        return {self.metric: frechet_distance(stats, self.reference_stats(resolution))}

    def reference_stats(self, resolution: int) -> FeatureStats:
        """Statistics of the reference set at this image resolution: from the cache, else computed and cached."""
        if resolution not in self._references:
            self._references[resolution] = self._reference_stats(resolution)
        return self._references[resolution]

    def _reference_stats(self, resolution: int) -> FeatureStats:
        reference = self.opts.get("reference")
        if reference is not None and Path(reference).suffix == ".npz":
            return self._given_stats(Path(reference).expanduser())
        source, identity, batches = self._reference_source(resolution)
        key = _plain({"features": self.feature_id(), "reference": identity, "resolution": resolution})
        digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]
        path = Path(self.ctx.cache_dir) / "fid_reference" / f"{self.name}-{_slug(source)}-{resolution}px-{digest}.npz"
        if path.is_file():
            stats = FeatureStats.load(path)
        else:
            stats = FeatureStats()
            for images in batches():
                stats.update(self.features(images))
            provenance = {**key, "reference_set": source, "count": stats.n, "scorer": self.name}
            stats.save(path, provenance)
            write_json_atomic(path.with_suffix(".json"), provenance)
        self.reference_info = {"reference_set": source, "reference_count": stats.n, "reference_cache": str(path)}
        return stats

    def reference_count(self, splits: dict[str, Any]) -> int | None:
        """The reference split's size (at most ``reference_count``), when the reference is a split of the dataset."""
        if self.opts.get("reference") is not None:
            return None
        split = self._split()
        if split not in splits:
            raise ConfigError(f"Scorer {self.name!r}: dataset {self.ctx.dataset.name!r} has no split {split!r} (option "
                              f"'reference_split'); it has {', '.join(sorted(splits))}.")
        count = self.opts.get("reference_count")
        return min(len(splits[split]), int(count)) if count is not None else len(splits[split])

    def _split(self) -> str:
        return str(self.opts.get("reference_split", "test"))

    def _given_stats(self, path: Path) -> FeatureStats:
        stats = FeatureStats.load(path)
        saved = stats.provenance.get("features")
        if saved is not None and saved != _plain(self.feature_id()):
            raise ConfigError(
                f"Scorer {self.name!r}: the reference statistics {str(path)!r} were computed with features "
                f"{saved}, not this scorer's {self.feature_id()}; recompute them or drop the 'reference' option."
            )
        self.reference_info = {"reference_set": str(path), "reference_count": stats.n}
        return stats

    def _reference_source(self, resolution: int) -> tuple[str, dict[str, Any], Any]:
        """(description, identity for the cache key, a callable yielding uint8 image batches)."""
        reference = self.opts.get("reference")
        count = self.opts.get("reference_count")
        limit = int(count) if count is not None else None
        if reference is not None:
            path = Path(reference).expanduser().resolve()
            if path.is_dir():
                files = image_files(path)[:limit]
                listing = [(str(f.relative_to(path)), f.stat().st_size, f.stat().st_mtime_ns) for f in files]
                identity = {"folder": str(path), "files": hashlib.sha256(json.dumps(listing).encode()).hexdigest()}

                def folder_batches() -> Iterator[torch.Tensor]:
                    for i in range(0, len(files), self.batch_size):
                        yield read_images(files[i : i + self.batch_size], resolution)

                return f"folder {path} ({len(files)} images)", identity, folder_batches
            batch = torch.load(path, map_location="cpu", weights_only=True)
            if not isinstance(batch, dict) or "samples" not in batch:
                raise ConfigError(f"The reference file {str(path)!r} is not a .pt dict with key 'samples'.")
            latents = batch["samples"]
            count = min(len(latents), limit) if limit is not None else len(latents)
            identity = {"file": str(path), "size": path.stat().st_size, "mtime": path.stat().st_mtime_ns, "count": count}
            return f"file {path.name} ({count} samples)", identity, self._latent_batches(latents, count)
        from ablate.data import load_dataset

        info = self.ctx.dataset
        _, splits = load_dataset(info.name, info.resolution, self.ctx.data_dir)
        split = self._split()
        if split not in splits:
            raise ConfigError(
                f"Scorer {self.name!r}: dataset {info.name!r} has no split {split!r} (option 'reference_split'); "
                f"it has {', '.join(sorted(splits))}."
            )
        latents = splits[split].latents  # may be a memory-mapped view: read batch by batch
        count = min(len(splits[split]), limit) if limit is not None else len(splits[split])
        decoder = decoder_for(info, self.ctx.device, self.opts.get("autoencoder")).provenance()
        identity = {"dataset": info.name, "split": split, "latent_resolution": info.resolution,
                    "count": count, "dataset_provenance": info.provenance, "decoder": decoder}
        description = f"{info.name} {split} split ({count} images)"
        return description, identity, self._latent_batches(latents, count)

    def _latent_batches(self, latents: Any, count: int) -> Any:
        def batches() -> Iterator[torch.Tensor]:
            for i in range(0, count, self.batch_size):
                yield self.images(torch.as_tensor(latents[i : min(i + self.batch_size, count)]))

        return batches

    def _provenance(self, extra: dict[str, Any]) -> dict[str, Any]:
        reference = self.opts.get("reference")
        default_ref = f"{self.ctx.dataset.name} {self._split()} split"
        return {
            **extra,
            "num_samples": None,
            "reference_set": str(reference) if reference is not None else default_ref,
            "scale": FID_SCALE,
            **self.reference_info,
        }


@register_scorer
class FidClipScorer(FrechetScorer):
    """``fid_clip``: FD on CLIP image embeddings (the SD3 paper's FID)."""

    name = "fid_clip"
    metric = "fid_clip"
    options = {**FrechetScorer.options, **CLIP_OPTIONS}
    metrics = (Metric("fid_clip", "fidelity", False, "FID on CLIP image features (SD3 paper)"),)

    def __init__(self, ctx: ScoreContext) -> None:
        super().__init__(ctx)
        self.clip = ClipBackbone(ctx, self.name)

    def check_features(self) -> None:
        self.clip.check_available()

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return self.clip.model().image_features(images, self.batch_size)

    def feature_id(self) -> dict[str, Any]:
        weights = self.clip.opts.get("clip_weights")
        return {"model": self.clip.model_name, "pretrained": self.clip.pretrained,
                "weights_file": Path(str(weights)).name if weights else None, "layer": "encode_image"}

    def provenance(self) -> dict[str, Any]:
        return self._provenance({
            **self.clip.provenance(),
            "feature_layer": "encode_image embedding (projected, not normalised)",
        })


@register_scorer
class FidInceptionScorer(FrechetScorer):
    """``fid_inception``: standard FID, torch-fidelity ``inception-v3-compat`` pool features (2048-d)."""

    name = "fid_inception"
    metric = "fid_inception"
    options = {**FrechetScorer.options, "inception_weights": "a weights file (pt_inception-2015-12-05)"}
    metrics = (Metric("fid_inception", "fidelity", False, "FID on Inception-v3 pool features (TF-compatible)"),)

    def __init__(self, ctx: ScoreContext) -> None:
        super().__init__(ctx)
        self.weights: ResolvedWeights | None = None

    def check_features(self) -> None:
        explicit = self.opts.get("inception_weights")
        self.weights = locate_weights(inception_weights_request(str(explicit) if explicit else None), self.ctx.weights_dir)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        if self.weights is None:
            self.check_features()
        assert self.weights is not None
        try:
            net = load_inception(str(self.weights.path), str(torch.device(self.ctx.device)))
        except (RuntimeError, OSError, ValueError, KeyError, EOFError, pickle.UnpicklingError) as err:
            raise unloadable(self.name, self.weights.path, "torch-fidelity's inception-v3-compat", err) from err
        with torch.no_grad():
            return net(images.to(self.ctx.device))[0]

    def feature_id(self) -> dict[str, Any]:
        weights = self.opts.get("inception_weights")
        return {"model": "inception-v3-compat", "layer": "2048",
                "weights_file": Path(str(weights)).name if weights else Path(INCEPTION_URL).name}

    def provenance(self) -> dict[str, Any]:
        return self._provenance({
            "model": "torch-fidelity inception-v3-compat (TF FID Inception v3)",
            "pretrained": Path(INCEPTION_URL).stem,
            "weights": f"{self.weights.path} ({self.weights.origin})" if self.weights else None,
            "feature_layer": "2048 (pool3)",
            "resolution": 299,
            "preprocess": "uint8 RGB, TF1-compatible bilinear resize to 299, (x - 128) / 128",
        })


def inception_weights_request(explicit: str | None) -> WeightsRequest:
    """The TF-ported Inception file torch-fidelity loads: accepted names, torch hub cache, its download."""
    filename = Path(INCEPTION_URL).name
    cached = Path(torch.hub.get_dir()) / "checkpoints" / filename

    def download() -> Path:
        cached.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(INCEPTION_URL, str(cached), hash_prefix=filename.split("-")[-1].split(".")[0])
        return cached

    return WeightsRequest(
        "fid_inception", (filename,), INCEPTION_URL, "github.com",
        lambda: cached if cached.is_file() else None, download, "inception_weights", explicit,
    )


@functools.lru_cache(maxsize=2)
def load_inception(path: str, device: str) -> torch.nn.Module:
    """torch-fidelity's ``inception-v3-compat`` with 2048-d pool features, weights from ``path``."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    net = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path=path)
    return net.to(device)


def _plain(value: dict[str, Any]) -> dict[str, Any]:
    """JSON-safe copy (paths and other objects as strings), as saved in the cache's provenance."""
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def _slug(text: str) -> str:
    keep = "".join(c if c.isalnum() else "-" for c in text.split(" (")[0].split("/")[-1])
    return "-".join(p for p in keep.split("-") if p)[:40] or "reference"


