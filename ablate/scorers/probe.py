"""The offline "probe" scorer: a small CNN trained by ablate on Fashion-MNIST stands in for CLIP.

* ``fd_probe`` (fidelity, lower is better): Frechet distance between the probe's penultimate
  features of the samples and those of the Fashion-MNIST test split (10k images), like FID.
* ``align_probe`` (alignment, higher is better): mean probability the probe gives to the class
  each sample was prompted with, like CLIP score.

The probe trains deterministically (fixed seed, one CPU thread: the float reductions of a CPU
convolution depend on the thread count, so two runs with different ``OMP_NUM_THREADS`` trained
different probes) on the train split at the dataset's resolution; inputs are resized to 32x32
inside it, so one architecture serves every resolution. Weights, a JSON record (test accuracy,
training time, ``weights_sha256``) and the test split's feature statistics are cached under
``<cache_dir>/probe/<hash>.*``, the hash covering the training data bytes, the resolution, the
architecture, its training code and the hyper-parameters. The hash names the recipe; the
provenance also carries ``weights_sha256`` (of the weights actually used), which pins the probe
itself (another CPU kind or a GPU may train slightly different weights from one recipe). Samples
are clamped to [-1, 1].
"""

from __future__ import annotations

import hashlib
import inspect
import io
import json
import platform
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ablate.data import fashion_mnist
from ablate.data.base import LatentSplit
from ablate.errors import AblateError, ScorerUnavailableError
from ablate.io import write_bytes_atomic, write_json_atomic
from ablate.scorers.base import Metric, ScoreContext, Scorer, register_scorer
from ablate.scorers.frechet import FeatureStats, frechet_distance

PROBE_VERSION = 1            # bump when training code changes in a way the hash cannot see
INPUT_SIZE = 32              # every input is resized to this side length inside the probe
MIN_TEST_ACCURACY = 0.90
HYPERPARAMETERS: dict[str, Any] = {
    "optimizer": "adam", "lr": 5e-3, "schedule": "one-cycle, 15% warm-up", "epochs": 8,
    "batch_size": 256, "seed": 0, "augmentation": "none", "threads": 1,
}
FEATURE_LAYER = "fc (128-d, after ReLU): the classifier's input"
MODEL_NAME = "ablate probe CNN"


class ProbeCNN(nn.Module):
    """4x4/2 conv stem (32 ch) -> pool -> 3x3 conv (64 ch) -> pool -> fc 128 -> 10 classes (BN + ReLU)."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 32, 4, stride=2, padding=1, bias=False), nn.BatchNorm2d(32),
                                  nn.ReLU(), nn.MaxPool2d(2))                            # 32x32 -> 8x8
        self.conv = nn.Sequential(nn.Conv2d(32, 64, 3, padding=1, bias=False), nn.BatchNorm2d(64),
                                  nn.ReLU(), nn.MaxPool2d(2))                            # 8x8 -> 4x4
        self.fc = nn.Linear(64 * 4 * 4, 128)
        self.head = nn.Linear(128, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features (N, 128) of images (N, 1, R, R) in [-1, 1]."""
        if x.shape[-1] != INPUT_SIZE or x.shape[-2] != INPUT_SIZE:
            x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", antialias=True, align_corners=False)
        x = self.conv(self.stem(x.contiguous(memory_format=torch.channels_last)))  # ~2x faster on CPU
        return F.relu(self.fc(x.flatten(1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


@dataclass
class Probe:
    """A trained probe at one resolution, with its record and the test split's feature statistics."""

    model: ProbeCNN
    resolution: int
    hash: str                       # the recipe (cache key); weights_sha256 pins the weights
    weights_sha256: str
    record: dict[str, Any]          # test_accuracy, train_seconds, hash, ... (the JSON beside the weights)
    reference: FeatureStats         # penultimate features of the test split
    trained_now: bool               # False when the weights came from the cache

    @torch.inference_mode()
    def embed(self, images: torch.Tensor, batch_size: int = 1000) -> tuple[torch.Tensor, torch.Tensor]:
        """Penultimate features (N, 128) and class probabilities (N, 10), float32 on the CPU."""
        device = next(self.model.parameters()).device
        feats, probs = [], []
        for chunk in images.split(batch_size):
            f = self.model.features(chunk.to(device, torch.float32).clamp(-1.0, 1.0))
            feats.append(f.cpu())
            probs.append(self.model.head(f).softmax(dim=1).cpu())
        return torch.cat(feats), torch.cat(probs)


SHIPPED = Path(__file__).resolve().parent / "probe_files"


def _complete(stem: Path) -> bool:
    return stem.with_suffix(".pt").is_file() and stem.with_suffix(".json").is_file()


def get_probe(resolution: int, data_dir: Path | None = None, cache_dir: Path = Path("cache"),
              device: torch.device | str = "cpu") -> Probe:
    """The probe for ``resolution``: from ``cache_dir/probe`` if trained before, else the one shipped with
    ablate (``probe_files/``, trained on one thread with the pinned CPU torch) if its hash matches, else
    trained and cached. The hash covers the training data, code and hyper-parameters; the record's
    ``weights_sha256`` pins the weights."""
    info, splits = fashion_mnist.load(resolution, data_dir)
    digest = probe_hash(resolution, data_dir)
    stem = Path(cache_dir).expanduser() / "probe" / digest
    if not _complete(stem) and _complete(SHIPPED / digest):
        stem = SHIPPED / digest  # read only: nothing is written there
    weights, record_path, stats_path = (stem.with_suffix(s) for s in (".pt", ".json", ".test-stats.npz"))
    model = _build(info.num_classes, HYPERPARAMETERS["seed"])
    trained_now = not (weights.is_file() and record_path.is_file())
    if trained_now:
        record = _train(model, splits, torch.device(device))
        record.update(hash=digest, weights_sha256=weights_sha256(model), resolution=resolution,
                      source=info.provenance["source"])
        if record["test_accuracy"] < MIN_TEST_ACCURACY:
            raise ScorerUnavailableError(
                f"The probe trained at resolution {resolution} reached only {record['test_accuracy']:.2%} "
                f"test accuracy on Fashion-MNIST (at least {MIN_TEST_ACCURACY:.0%} is required), so its "
                "scores would not be trustworthy; nothing was cached. Check the dataset files "
                f"({info.provenance['source']}) or use a resolution of at least 16."
            )
        buffer = io.BytesIO()
        torch.save(model.state_dict(), buffer)
        write_bytes_atomic(weights, buffer.getvalue())
        write_json_atomic(record_path, record)
    else:
        model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
        record = json.loads(record_path.read_text())
        if record.get("weights_sha256") != weights_sha256(model):
            raise ScorerUnavailableError(
                f"The cached probe weights {weights} do not match their record {record_path} (weights SHA-256 "
                f"{weights_sha256(model)}, recorded {record.get('weights_sha256')}): the cache was changed or "
                "damaged. Delete both files to train the probe again."
            )
    model = model.to(device).eval()
    probe = Probe(model, resolution, digest, record["weights_sha256"], record, FeatureStats(), trained_now)
    if stats_path.is_file() and not trained_now:
        probe.reference = FeatureStats.load(stats_path)
    else:
        probe.reference.update(probe.embed(splits["test"].latents)[0])
        if stem.parent == SHIPPED:
            return probe
        probe.reference.save(stats_path, {"model": MODEL_NAME, "hash": digest, "feature_layer": FEATURE_LAYER,
                                          "reference_set": "fashion-mnist test", "resolution": resolution})
    return probe


@lru_cache(maxsize=8)
def _data_hash(source: str, resolution: int) -> str:
    _, splits = fashion_mnist.load(resolution, Path(source))
    h = hashlib.sha256()
    for tensor in (splits["train"].latents, splits["train"].labels):
        h.update(tensor.contiguous().numpy().tobytes())
    return h.hexdigest()


def probe_hash(resolution: int, data_dir: Path | None = None) -> str:
    """Content hash (20 hex digits) of the training data bytes, resolution, architecture, code, hyper-parameters."""
    info, _ = fashion_mnist.load(resolution, data_dir)
    key = {
        "version": PROBE_VERSION, "resolution": resolution, "input_size": INPUT_SIZE,
        "architecture": repr(_build(info.num_classes)), "hyperparameters": HYPERPARAMETERS,
        "code": [inspect.getsource(f) for f in (ProbeCNN, _train)],
        "train_data_sha256": _data_hash(info.provenance["source"], resolution),
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]


def weights_sha256(model: nn.Module) -> str:
    """SHA-256 of the parameter and buffer values (names, dtypes, shapes, bytes): the probe's identity."""
    h = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        value = tensor.detach().cpu().contiguous()
        h.update(f"{name}:{value.dtype}:{tuple(value.shape)}".encode())
        h.update(value.numpy().tobytes())
    return h.hexdigest()


def _build(num_classes: int, seed: int = 0) -> ProbeCNN:
    """A freshly initialised probe (from ``seed``, leaving the global RNG untouched), channels-last."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return ProbeCNN(num_classes).to(memory_format=torch.channels_last)


def _train(model: ProbeCNN, splits: dict[str, LatentSplit], device: torch.device) -> dict[str, Any]:
    """Train ``model`` (seeded init) in place with :data:`HYPERPARAMETERS`; return the training record."""
    hp = HYPERPARAMETERS
    x, y = splits["train"].latents, splits["train"].labels
    steps_per_epoch = len(y) // hp["batch_size"]
    deterministic, threads = torch.are_deterministic_algorithms_enabled(), torch.get_num_threads()
    start_wall, start_cpu = time.perf_counter(), time.process_time()
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.set_num_threads(hp["threads"])  # CPU results depend on the thread count: fix it
    try:
        model.to(device).train()
        optimizer = torch.optim.Adam(model.parameters(), lr=hp["lr"])
        schedule = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=hp["lr"], total_steps=hp["epochs"] * steps_per_epoch, pct_start=0.15)
        order = torch.Generator().manual_seed(hp["seed"])  # the only randomness: the batch order
        for _ in range(hp["epochs"]):
            perm = torch.randperm(len(y), generator=order)
            for i in range(steps_per_epoch):
                idx = perm[i * hp["batch_size"]:(i + 1) * hp["batch_size"]]
                loss = F.cross_entropy(model(x[idx].to(device)), y[idx].to(device))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
    finally:
        torch.use_deterministic_algorithms(deterministic)
        torch.set_num_threads(threads)
    train_seconds = time.perf_counter() - start_wall
    cpu_seconds = time.process_time() - start_cpu
    model.eval()
    with torch.inference_mode():
        test = splits["test"]
        correct = sum(int((model(xb.to(device)).argmax(1).cpu() == yb).sum())
                      for xb, yb in zip(test.latents.split(1000), test.labels.split(1000)))
    return {
        "model": MODEL_NAME, "version": PROBE_VERSION, "architecture": repr(model),
        "hyperparameters": hp, "feature_layer": FEATURE_LAYER, "final_train_loss": float(loss.detach()),
        "test_accuracy": correct / len(test), "test_images": len(test),
        "train_seconds": round(train_seconds, 2), "train_cpu_seconds": round(cpu_seconds, 2),
        "threads": hp["threads"], "device": str(device), "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(),
    }


@register_scorer
class ProbeScorer(Scorer):
    name = "probe"
    uses_labels = True
    min_samples = 2  # fd_probe: a covariance of the samples' features
    metrics = (
        Metric("fd_probe", "fidelity", False,
               "Frechet distance between probe features of the samples and of the Fashion-MNIST test split"),
        Metric("align_probe", "alignment", True,
               "mean probability the probe gives to the prompted class (offline stand-in for CLIP score)"),
    )

    def __init__(self, ctx: ScoreContext) -> None:
        super().__init__(ctx)
        self._probe: Probe | None = None

    @property
    def probe(self) -> Probe:
        if self._probe is None:
            self.check_dataset()
            ctx = self.ctx
            self._probe = get_probe(ctx.dataset.resolution, ctx.data_dir, ctx.cache_dir, ctx.device)
        return self._probe

    def check_dataset(self) -> None:
        if self.ctx.dataset.name != fashion_mnist.NAME:
            raise ScorerUnavailableError(
                f"Scorer 'probe' works only on the dataset 'fashion-mnist' (its classifier is trained "
                f"there), not on {self.ctx.dataset.name!r}; use the scorers 'clip' and 'fid_clip' for it."
            )

    def check_available(self) -> None:
        """Fail now if the dataset is not Fashion-MNIST or its files are missing; trains the probe if needed."""
        self.check_dataset()
        try:
            self.probe
        except AblateError as err:
            if isinstance(err, ScorerUnavailableError):
                raise
            raise ScorerUnavailableError(f"Scorer 'probe' cannot run: {err}") from err

    def provenance(self) -> dict[str, Any]:
        probe = self.probe
        return {
            "model": MODEL_NAME, "hash": probe.hash, "weights_sha256": probe.weights_sha256,
            "test_accuracy": probe.record["test_accuracy"],
            "feature_layer": FEATURE_LAYER, "reference_set": f"fashion-mnist test, {probe.reference.n} images",
            "resolution": probe.resolution,
        }

    def score(self, samples: torch.Tensor, labels: torch.Tensor, captions: list[str]) -> dict[str, float]:
        probe = self.probe
        r = probe.resolution
        if samples.ndim != 4 or tuple(samples.shape[1:]) != (1, r, r) or samples.shape[0] < 2:
            raise ValueError(f"probe scores at least 2 samples of shape (N, 1, {r}, {r}), got {tuple(samples.shape)}")
        labels = labels.to("cpu", torch.int64)
        if labels.shape != samples.shape[:1] or labels.min() < 0 or labels.max() >= probe.model.head.out_features:
            raise ValueError(f"probe needs one class index in [0, 10) per sample, got labels of shape {tuple(labels.shape)}")
        features, probs = probe.embed(samples)
        fd = frechet_distance(FeatureStats().update(features), probe.reference)
        align = probs.gather(1, labels[:, None]).mean()
        return {"fd_probe": fd, "align_probe": float(align)}
