"""Fits, extrapolation and report of a study on synthetic cells with known exponents (no training)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import ablate  # noqa: F401  (before lightning)
from ablate.scaling.analysis import fit_study
from ablate.scaling.collect import COLUMNS
from ablate.scaling.extrapolate import extrapolation_points, predictions
from ablate.scaling.family import DataShape
from ablate.scaling.plan import Point, isoflop_points
from ablate.scaling.report import write_report
from ablate.scaling.spec import load_study

SMOKE = Path(__file__).resolve().parent.parent / "grids" / "scaling-smoke.yaml"
FASHION = DataShape(resolution=32, channels=1, num_classes=10)
LAWS = {"rf/lognorm(0.00, 1.00)": (0.5, -0.10), "eps/linear": (0.6, -0.05)}  # (a, c) per formulation


def truth(variant: str, budget: float, n: float) -> float:
    a, c = LAWS[variant]
    n_opt = 4e5 * (budget / 6e10) ** a
    return 5.0 * budget**c + 0.05 * math.log(n / n_opt) ** 2


def rows_for(points: list[Point]) -> pd.DataFrame:
    rows = []
    for p in points:
        for variant in p.grid.variants:
            y = truth(variant, p.spend.budget, p.num_params)
            rows.append({"variant": variant, "seed": 0, "kind": p.kind, "grid": p.grid.name, "label": p.label,
                         "size": p.size.label, "depth": p.size.depth, "patch": p.patch_size, "budget": p.spend.budget,
                         "steps": p.spend.steps, "images": p.spend.images, "flops": p.spend.flops,
                         "num_params": p.num_params, "forward_gflops": p.forward_gflops, "val_x0_mse": y,
                         "val_loss": 2 * y, "fidelity": 100 * y, "alignment": 0.5, "wall_s": 1.0})
    return pd.DataFrame(rows, columns=list(COLUMNS))


def test_synthetic_study_end_to_end(tmp_path) -> None:
    study = load_study(SMOKE, tmp_path / "results")
    points = isoflop_points(study, FASHION)
    rows = rows_for(points)
    fits = fit_study(rows, study.scaling)
    for variant, (a, c) in LAWS.items():
        mf = fits[(variant, "val_x0_mse")]
        assert len(mf.fitted) == 2
        assert mf.laws["n_opt"].exponent.value == pytest.approx(a, abs=0.02)
        law = mf.laws["y_opt"]
        assert law.exponent.low < law.exponent.value < law.exponent.high
        # the native loss is 2x the x0-MSE here: same exponent
        assert fits[(variant, "val_loss")].laws["y_opt"].exponent.value == pytest.approx(law.exponent.value, abs=1e-6)
    extra = extrapolation_points(study, FASHION, fits)
    assert extra and all(p.kind == "extrapolation" and p.spend.budget == study.scaling.extrapolation for p in extra)
    assert sorted(v for p in extra for v in p.grid.variants) == sorted(LAWS)
    before = predictions(study, FASHION, fits, rows)
    assert before and all(e.inside is None for e in before)  # not trained yet
    rows = pd.concat([rows, rows_for(extra)], ignore_index=True)
    after = predictions(study, FASHION, fits, rows)
    x0 = [e for e in after if e.metric == "val_x0_mse"]
    assert len(x0) == 2 and all(e.inside for e in x0), x0
    fid = [e for e in after if e.metric == "fidelity"]  # the probe fidelity's own law is checked too
    assert len(fid) == 2 and all(e.inside for e in fid), fid
    written = write_report(tmp_path / "lb", study, points + extra, rows, fits, after, "fd_probe", "align_probe")
    md = written[0].read_text()
    assert written[0].name == "scaling-smoke.md" and all(p.exists() and p.stat().st_size > 0 for p in written)
    assert "| eps/linear | x0-MSE | 0.6" in md and "| rf/lognorm(0.00, 1.00) | x0-MSE | 0.5" in md
    assert "inside" in md and "OUTSIDE" not in md
    planned = sum(len(p.grid.variants) for p in points)
    assert f"{planned} of the {planned} planned isoFLOP and quality cells finished." in md


def test_the_report_names_the_cells_not_yet_finished(tmp_path) -> None:
    study = load_study(SMOKE, tmp_path / "results")
    points = isoflop_points(study, FASHION)
    rows = rows_for(points)
    cut = rows[(rows["label"] == points[0].label) & (rows["variant"] == "eps/linear")].index
    rows = rows.drop(cut)
    written = write_report(tmp_path / "lb", study, points, rows, fit_study(rows, study.scaling), [], "fd_probe", None)
    md = written[0].read_text()
    assert f"{len(rows)} of the {len(rows) + 1} planned isoFLOP and quality cells finished; " \
           f"not yet: {points[0].label} eps/linear." in md


def test_wrong_prediction_is_flagged(tmp_path) -> None:
    study = load_study(SMOKE, tmp_path / "results")
    points = isoflop_points(study, FASHION)
    rows = rows_for(points)
    fits = fit_study(rows, study.scaling)
    extra = rows_for(extrapolation_points(study, FASHION, fits))
    extra["val_x0_mse"] *= 1.5  # far worse than the laws predict
    after = predictions(study, FASHION, fits, pd.concat([rows, extra], ignore_index=True))
    assert [e.inside for e in after if e.metric == "val_x0_mse"] == [False, False]
    assert np.isfinite([e.measured for e in after]).all()


def test_a_formulation_without_an_x0_mse_law_is_sized_by_its_native_loss(tmp_path) -> None:
    study = load_study(SMOKE, tmp_path / "results")
    points = isoflop_points(study, FASHION)
    rows = rows_for(points)
    low = (rows["variant"] == "eps/linear") & (rows["budget"] == min(study.scaling.budgets))
    rows.loc[low, "val_x0_mse"] = 1.0 + rows.loc[low, "num_params"] / 1e6  # the smallest size best: no minimum
    fits = fit_study(rows, study.scaling)
    assert fits[("eps/linear", "val_x0_mse")].laws["n_opt"] is None
    assert fits[("eps/linear", "val_loss")].laws["n_opt"].exponent.value == pytest.approx(0.6, abs=0.02)
    extra = extrapolation_points(study, FASHION, fits)
    assert sorted(v for p in extra for v in p.grid.variants) == sorted(LAWS)
    after = predictions(study, FASHION, fits, pd.concat([rows, rows_for(extra)], ignore_index=True))
    eps = {e.metric: e for e in after if e.variant == "eps/linear"}
    assert set(eps) == {"val_loss", "fidelity"} and eps["val_loss"].size_metric == "val_loss" and eps["val_loss"].inside
    assert all(e.size_metric == "val_x0_mse" for e in after if e.variant != "eps/linear")
    md = write_report(tmp_path / "lb", study, points + extra, rows, fits, after, "fd_probe", None)[0].read_text()
    assert "| eps/linear | native loss |" in md and "(native loss) |" in md
