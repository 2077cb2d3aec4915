"""The scorer interface: a scorer turns a batch of generated samples into named metrics.

Scorers are selected by name in a grid (``eval.scorers: [probe]``) through :func:`get_scorer`.
Samples arrive as the sampler produced them: latents (N, C, H, W) of the dataset, with the
class labels and captions they were prompted with. A scorer decodes latents to pixels itself
(through the dataset's autoencoder) if it needs pixels. Every metric says whether it measures
alignment (to the prompt), fidelity (to the data) or diversity (coverage of the data), and which way is
better (records carry both, :func:`metric_roles`); the leaderboard ranks on one alignment and one fidelity
metric, as the paper did (CLIP score up, FID down).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch

from ablate.data.base import DatasetInfo
from ablate.errors import ConfigError


@dataclass(frozen=True)
class Metric:
    name: str                                  # column name in the results, e.g. "fd_probe"
    role: Literal["alignment", "fidelity", "diversity"]  # diversity: coverage of the data (e.g. recall)
    higher_is_better: bool
    description: str


@dataclass
class ScoreContext:
    """Everything a scorer may need besides the samples."""

    dataset: DatasetInfo
    data_dir: Path | None = None               # where the dataset's raw files are looked for
    cache_dir: Path = Path("cache")            # probe weights, reference statistics (content-hashed)
    weights_dir: Path | None = None            # explicit pretrained weights (--weights-dir)
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    options: dict[str, Any] = field(default_factory=dict)  # per-scorer options from the grid


class Scorer(ABC):
    name: ClassVar[str]
    metrics: ClassVar[tuple[Metric, ...]]
    uses_labels: ClassVar[bool] = False       # True: scores depend on each sample's prompted class index
    min_samples: ClassVar[int] = 1            # samples per setting it needs (2 for a covariance)
    options: ClassVar[dict[str, str]] = {}    # the options it reads (``eval.scorer_options.<name>``): what each is

    def __init__(self, ctx: ScoreContext) -> None:
        self.ctx = ctx

    def check_available(self) -> None:
        """Raise :class:`ablate.errors.ScorerUnavailableError` now if scoring would fail later."""

    def reference_count(self, splits: dict[str, Any]) -> int | None:
        """How many reference items it compares samples with, when the dataset's ``splits`` tell (None: it has no
        reference, or one the splits do not tell); a pre-flight check, before any cell runs."""
        return None

    @abstractmethod
    def provenance(self) -> dict[str, Any]:
        """Model, pretrained tag, feature layer, reference set, resolution: shown with every score."""

    @abstractmethod
    def score(self, samples: torch.Tensor, labels: torch.Tensor, captions: list[str]) -> dict[str, float]:
        """Metrics for one batch of samples (the whole setting's samples at once)."""

    def resamples(self) -> dict[str, list[float]]:
        """Per metric of the last :meth:`score`, the values of independent parts of the samples whose mean is
        the metric (e.g. KID's disjoint blocks): the record keeps them for resampling samples within a setting."""
        return {}

    def replicates(self) -> dict[str, list[float]]:
        """Per metric of the last :meth:`score`, replicates of the metric itself on resampled sets of the samples
        whose spread is the metric's (e.g. a Frechet distance on random halves: no mean over parts); the record
        keeps them apart from :meth:`resamples` (``metric_replicates``)."""
        return {}


_REGISTRY: dict[str, type[Scorer]] = {}


def register_scorer(cls: type[Scorer]) -> type[Scorer]:
    _REGISTRY[cls.name] = cls
    return cls


def scorer_names() -> list[str]:
    _load_builtin()
    return sorted(_REGISTRY)


def get_scorer(name: str, ctx: ScoreContext) -> Scorer:
    _load_builtin()
    if name not in _REGISTRY:
        raise ConfigError(
            f"Unknown scorer {name!r}. Available scorers: {', '.join(sorted(_REGISTRY))}."
        )
    return _REGISTRY[name](ctx)


def metric_roles(scorer: Scorer) -> dict[str, dict[str, Any]]:
    """Each metric's role and direction, as a record's scorer provenance carries them (``metrics``): the
    leaderboard reads which way is better from the records, without importing the scorers."""
    return {m.name: {"role": m.role, "higher_is_better": m.higher_is_better} for m in scorer.metrics}


POSITIVE_INTEGER_OPTIONS = ("batch_size", "reference_count")


def option_problem(name: str, options: dict[str, Any]) -> str | None:
    """What is wrong with the options ``options`` of scorer ``name`` (an option it does not read, a count that is
    not a positive integer), as the end of a sentence; None when nothing is."""
    _load_builtin()
    allowed = _REGISTRY[name].options
    for key, value in options.items():
        if key not in allowed:
            known = "; ".join(f"{k} ({what})" for k, what in allowed.items()) or "none"
            return f"scorer {name!r} has no option {key!r}; allowed options of {name!r}: {known}"
        if key in POSITIVE_INTEGER_OPTIONS and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            return f"option {key!r} of scorer {name!r} is {value!r}; allowed: a positive integer"
    return None


def sample_needs(names: tuple[str, ...] | list[str]) -> dict[str, int]:
    """The least samples per setting each known scorer of ``names`` needs (its ``min_samples``)."""
    _load_builtin()
    return {n: _REGISTRY[n].min_samples for n in names if n in _REGISTRY}


def min_samples(names: tuple[str, ...] | list[str]) -> int:
    """The most samples per setting any of the scorers ``names`` needs."""
    return max(sample_needs(names).values(), default=1)


def metric_info(name: str) -> Metric | None:
    _load_builtin()
    for cls in _REGISTRY.values():
        for m in cls.metrics:
            if m.name == name:
                return m
    return None


def _load_builtin() -> None:
    import importlib

    for module in ("probe", "clip", "fid", "effnet"):
        try:
            importlib.import_module(f"ablate.scorers.{module}")
        except ModuleNotFoundError as err:  # a scorer module not written yet
            if err.name != f"ablate.scorers.{module}":
                raise
