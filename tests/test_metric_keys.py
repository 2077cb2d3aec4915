"""Metric names (ablate.engine.metric_keys) and the validation numbers a checkpoint keeps (ablate.engine.checkpointing)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import ablate  # noqa: F401  (torchvision fix first)
from ablate.engine.checkpointing import VALIDATION_KEY, CellCheckpoint, validation_of
from ablate.errors import ResultsError
from ablate.engine.metric_keys import (KINDS, NUM_LEVELS, SELECTION, WEIGHTS, is_validation_key, level_key, levels, mean_key,
                                summary)


def numbers() -> dict[str, float]:
    """Distinct numbers for every validation key: 100 (ema) + 10 (x0_mse) + level (mean: 9)."""
    out = {}
    for w, weights in enumerate(WEIGHTS):
        for c, kind in enumerate(KINDS):
            out[mean_key(weights, kind)] = 100 * w + 10 * c + 9
            out.update({level_key(weights, kind, k): 100 * w + 10 * c + k for k in range(NUM_LEVELS)})
    return out


def test_the_logged_names_and_the_selection_key():
    assert mean_key("ema", "loss") == SELECTION == "val/ema_loss"  # what train.json and old records used
    assert level_key("raw", "x0_mse", 7) == "val_levels/raw_x0_mse_7"
    assert all(is_validation_key(k) for k in numbers()) and len(numbers()) == 4 * (NUM_LEVELS + 1)
    assert not is_validation_key("train/loss") and not is_validation_key("epoch")


def test_summary_takes_the_ema_numbers_by_level_and_the_raw_loss():
    s = summary(numbers())
    assert s == {"val_loss": 109, "val_loss_raw": 9, "val_x0_mse": 119,
                 "val_loss_by_t": [100 + k for k in range(8)], "val_x0_mse_by_t": [110 + k for k in range(8)]}
    assert levels(numbers(), "raw", "x0_mse") == [10 + k for k in range(8)]


def test_a_checkpoint_keeps_the_validation_numbers_and_nothing_else(tmp_path: Path):
    metrics = {k: torch.tensor(float(v)) for k, v in numbers().items()} | {"train/loss": torch.tensor(1.0)}
    checkpoint: dict = {}
    CellCheckpoint(tmp_path).on_save_checkpoint(SimpleNamespace(callback_metrics=metrics), None, checkpoint)
    assert validation_of(checkpoint, tmp_path / "x.ckpt") == {k: float(v) for k, v in numbers().items()}
    assert VALIDATION_KEY in checkpoint
    with pytest.raises(ResultsError, match="x.ckpt holds no validation numbers"):
        validation_of({}, tmp_path / "x.ckpt")
