"""The learning rate in grid files: its two-significant-digit spelling, per-variant tuning written
``train.lr: search(low, high, log)`` (see :class:`LrSearch`; :mod:`ablate.runs.lr_tuning` runs it), and
its schedule over the steps, ``train.lr_schedule`` (:class:`LrSchedule`)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Literal

from ablate.config.schema import opt
from ablate.errors import ConfigError, shorten


@dataclass(frozen=True)
class LrSearch:
    """Per-variant learning-rate tuning, written ``train.lr: search(low, high, log)`` (and optionally
    ``train.lr_trials: N``): ``trials`` rates log-spaced over [low, high] at two significant digits; each
    variant trains at each rate on the grid's first seed, and the rate with its lowest EMA validation
    loss (the variant's own loss: comparable between rates of one variant) becomes its rate in
    ``lr_by_variant`` for the grid (:mod:`ablate.runs.lr_tuning`)."""

    low: float = opt(gt=0)
    high: float = opt(gt=0)
    trials: int = opt(3, ge=2)


@dataclass(frozen=True)
class LrSchedule:
    """The learning rate over training, as a factor of the peak rate (``train.lr``, or the variant's own
    rate): a linear warm-up over ``train.warmup_steps`` steps to 1, then ``kind``: ``constant`` (1 to the
    end: the default, and every grid's behaviour before the option), or a decay to ``min_lr_ratio`` at the
    last step, ``cosine`` (half a cosine) or ``linear``."""

    kind: Literal["constant", "cosine", "linear"] = "constant"
    min_lr_ratio: float = opt(0.01, ge=0, lt=1)

    def factor(self, step: int, max_steps: int, warmup_steps: int) -> float:
        """The factor of optimizer step ``step`` (0-based) of ``max_steps``: (step + 1) / warm-up during the
        warm-up, then 1 (constant) or decaying to exactly ``min_lr_ratio`` at step ``max_steps - 1``."""
        warmup = max(warmup_steps, 1)
        if self.kind == "constant" or step + 1 < warmup:
            return min(1.0, (step + 1) / warmup)
        progress = min(1.0, max(0.0, (step + 1 - warmup) / max(max_steps - warmup, 1)))
        shape = 0.5 * (1 + math.cos(math.pi * progress)) if self.kind == "cosine" else 1 - progress
        return self.min_lr_ratio + (1 - self.min_lr_ratio) * shape



_LR_SEARCH = re.compile(r"search\(\s*([0-9.eE+-]+)\s*,\s*([0-9.eE+-]+)\s*,\s*log\s*\)")


def read_lr_search(raw: Any, where: str) -> None:
    """``train.lr: search(low, high, log)`` (and ``train.lr_trials``) into ``train.lr_search``; ``train.lr``
    becomes the geometric mean (the rate of a variant the tuning did not cover). ``where``: the file and line
    of ``train.lr`` (or the command-line option that set it), for the error."""
    train = raw.get("train") if isinstance(raw, dict) else None
    if not isinstance(train, dict) or not isinstance(train.get("lr"), str):
        return
    match = _LR_SEARCH.fullmatch(train["lr"].strip())
    try:
        low, high = (float(x) for x in match.groups()) if match else (math.nan, math.nan)
    except ValueError:
        low = high = math.nan
    if not (0 < low < high):
        raise ConfigError(f"{where}: `train.lr` is {shorten(train['lr'])}; allowed: a number (1.0e-4) or "
                          "'search(low, high, log)' with 0 < low < high, e.g. 'search(1e-4, 1e-3, log)': each variant "
                          "is trained at `train.lr_trials` (default 3) log-spaced rates and keeps its best.")
    train["lr_search"] = {"low": low, "high": high, **({"trials": train.pop("lr_trials")} if "lr_trials" in train else {})}
    train["lr"] = round_lr(math.sqrt(low * high))


def lr_label(lr: float) -> str:
    """A learning rate rounded to two significant digits, as text for a grid name: ``3.2e-04``."""
    return f"{lr:.1e}"


def lr_grid_name(name: str, lr: float) -> str:
    """The grid that trains at ``lr`` instead of the file's rate: ``<name>.lr<rate>`` (e.g. ``sd3.lr3.2e-04``);
    a grid's cells share one rate, so each tried rate is a grid (searches and per-variant tuning alike)."""
    return f"{name}.lr{lr_label(lr)}"


def round_lr(lr: float) -> float:
    """The learning rate a cell trains with: :func:`lr_label`'s value."""
    return float(lr_label(lr)) if math.isfinite(lr) else lr
