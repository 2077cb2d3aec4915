"""Assertions on the GPU check's real results. ``nox -s gpu`` runs a 2-variant fashion-mnist grid on
the GPU first and points ABLATE_GPU_RESULTS at it; without that variable these tests are skipped."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest

from ablate.config.grid import load_grid
from ablate.results import ResultsStore

pytestmark = pytest.mark.gpu
RESULTS = os.environ.get("ABLATE_GPU_RESULTS")


@pytest.fixture(scope="module")
def summaries() -> list[dict]:
    if not RESULTS:
        pytest.skip("ABLATE_GPU_RESULTS is not set: run `nox -s gpu` on a GPU machine")
    found = [json.loads(p.read_text()) for p in sorted(Path(RESULTS).rglob("train.json"))]
    assert len(found) == 3, f"expected the 3 cells of the GPU check under {RESULTS}, found {len(found)}"
    return found


def test_training_took_the_gpu_path(summaries):
    grid = load_grid("grids/fashion-mnist.yaml")
    for s in summaries:
        assert s["precision"] == "bf16-mixed" and s["compiled"] is True and s["fused_optimizer"] is True
        assert s["cuda_graphs"] is True  # CUDA graphs selected (train.cuda_graphs: auto), and none fell back
        assert s["grad_clip"] == grid.train.grad_clip and s["gpu_hours"] > 0
        assert math.isfinite(s["val_loss"]) and s["train_img_per_s"] > 0


def test_every_setting_was_sampled_and_scored(summaries):
    grid = load_grid("grids/fashion-mnist.yaml")
    frame = ResultsStore(Path(RESULTS)).frame("fashion-mnist")
    per_variant = frame.groupby("variant").size()
    assert len(per_variant) == 3 and (per_variant == len(grid.eval.settings) * len(grid.eval.weights)).all()
    assert frame["num_samples"].eq(grid.eval.num_samples).all()
    for metric in ("fd_probe", "align_probe"):
        assert frame[metric].notna().all() and frame[metric].map(math.isfinite).all()


def test_the_loss_fell(summaries):
    """Training trained: each cell's logged training loss (means over windows of 50 steps) fell by half."""
    import pandas as pd

    for metrics in sorted(Path(RESULTS).rglob("logs/metrics.csv")):
        loss = pd.read_csv(metrics)["train/loss"].dropna()
        assert len(loss) >= 4 and loss.iloc[-1] < 0.5 * loss.iloc[0], (metrics, loss.tolist())


def test_leaderboard_was_written_under_the_results(summaries):
    boards = list(Path(RESULTS).rglob("*.md")) + list(Path("leaderboard").glob("fashion-mnist*.md"))
    assert boards, "the run printed no leaderboard file"
