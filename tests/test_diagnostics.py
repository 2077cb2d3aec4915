"""Convergence flags: a cell is 'still improving' only when its curve has not flattened."""

from __future__ import annotations

import pytest

from ablate.report.diagnostics import _still_improving


def _curve(losses: list[float], every: int = 1000) -> dict:
    return {"val_curve": [{"step": every * (i + 1), "val/ema_loss": v} for i, v in enumerate(losses)]}


@pytest.mark.parametrize("losses, improving", [
    ([0.20, 0.17, 0.16, 0.155, 0.150, 0.140, 0.130, 0.120], True),     # 20% lower over the last quarter
    ([0.185, 0.164, 0.158, 0.154, 0.151, 0.1493, 0.1481, 0.1480], False),  # the sizing curve: 0.9% over the last quarter
    ([0.20, 0.17, 0.16, 0.150, 0.149, 0.150, 0.151, 0.152], False),    # best before the end
    ([0.20], True),                                                     # one validation: cannot tell, counted as improving
])
def test_still_improving_needs_more_than_one_percent_over_the_last_quarter(losses, improving):
    assert _still_improving(_curve(losses)) is improving


def test_records_without_a_curve_fall_back_to_the_best_step():
    assert _still_improving({"best_step": 600, "max_steps": 600}) is True
    assert _still_improving({"best_step": 400, "max_steps": 600}) is False
    assert _still_improving({}) is None


def test_an_unfinished_grid_says_how_much_of_it_the_ranks_cover():
    import pandas as pd

    from ablate.report.diagnostics import completeness_line

    config = {"variants": ["rf", "eps/linear", "v/cos"], "datasets": ["fashion-mnist"], "seeds": [0, 1]}
    rows = [("rf", 0), ("rf", 1), ("eps/linear", 0)]
    frame = pd.DataFrame([{"variant": v, "dataset": "fashion-mnist", "seed": s, "created": f"2026-11-30T0{i}",
                           "config": config} for i, (v, s) in enumerate(rows)])
    line = completeness_line(frame)
    assert line is not None and line.startswith("INCOMPLETE GRID: 3 of the 6 cells")
    assert line.endswith("1 variants have none yet: v/cos.")
    full = pd.concat([frame, frame.assign(variant="v/cos"), frame.assign(variant="eps/linear", seed=1)])
    assert completeness_line(full) is None
    assert completeness_line(frame.assign(config=[{}] * 3)) is None  # no config: nothing to compare with
