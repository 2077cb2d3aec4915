"""The names of the numbers a cell's training logs, spelled here once.

Validation (see :meth:`ablate.engine.train.DiffusionModule.validation_step`) measures, for the ``raw`` and the
``ema`` weights, two kinds of number at 8 levels k: ``loss``, the variant's own training loss at
t_k = (k + 0.5)/8, and ``x0_mse``, the cross-formulation x0-MSE at the k-th fixed log-SNR level
(t = 0 is data, t = 1 is noise). Each is logged per level and as the mean over the levels; the EMA
weights' mean loss, :data:`SELECTION`, picks the checkpoint that is evaluated (the paper's rule).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from ablate.formulations.levels import NUM_LEVELS

Weights = Literal["raw", "ema"]
Kind = Literal["loss", "x0_mse"]
WEIGHTS: tuple[Weights, ...] = ("raw", "ema")
KINDS: tuple[Kind, ...] = ("loss", "x0_mse")
TRAIN_LOSS = "train/loss"  # the mean finite training loss over a window of steps
_MEAN, _LEVEL = "val/", "val_levels/"


def mean_key(weights: Weights, kind: Kind) -> str:
    """The mean over the levels, e.g. ``val/ema_loss``."""
    return f"{_MEAN}{weights}_{kind}"


def level_key(weights: Weights, kind: Kind, level: int) -> str:
    """One level, e.g. ``val_levels/ema_x0_mse_3``."""
    return f"{_LEVEL}{weights}_{kind}_{level}"


SELECTION = mean_key("ema", "loss")  # lowest is the kept (best) checkpoint


_CURVE = f"{_MEAN}curve_"


def curve_key(metric: str) -> str:
    """A scorer's metric through training (``eval.curve_every``, :mod:`ablate.engine.curve`), e.g.
    ``val/curve_fd_effnet``: a mean key, so validation curves and records carry it."""
    return f"{_CURVE}{metric}"


def is_curve_key(key: str) -> bool:
    return key.startswith(_CURVE)


def is_validation_key(key: str) -> bool:
    return key.startswith((_MEAN, _LEVEL))


def curve_point(numbers: Mapping[str, float]) -> dict[str, float]:
    """One point of the validation curve a record carries: the step and the means over the levels (the
    per-level numbers stay in the checkpoint and the cell's ``logs/metrics.csv``; a record is one of 24 per
    cell, each carrying the whole curve)."""
    return {k: v for k, v in numbers.items() if k == "step" or k.startswith(_MEAN)}


def levels(numbers: Mapping[str, float], weights: Weights, kind: Kind) -> list[float]:
    """The :data:`NUM_LEVELS` per-level numbers of one weights and kind, level 0 first."""
    return [numbers[level_key(weights, kind, k)] for k in range(NUM_LEVELS)]


def summary(numbers: Mapping[str, float]) -> dict[str, float | list[float]]:
    """The training summary's validation fields (``train.json``) from one validation's numbers."""
    return {"val_loss": numbers[SELECTION], "val_loss_raw": numbers[mean_key("raw", "loss")],
            "val_x0_mse": numbers[mean_key("ema", "x0_mse")], "val_loss_by_t": levels(numbers, "ema", "loss"),
            "val_x0_mse_by_t": levels(numbers, "ema", "x0_mse")}
