"""Step-count arithmetic of isoFLOP grids and FLOPs measured on a real step vs the DiT formula."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

import ablate  # noqa: F401  (before lightning)
from ablate.errors import ConfigError
from ablate.models.dit import DIT_PRESETS, DiTConfig
from ablate.scaling.budget import BUDGET_TOLERANCE, budget_label, steps_for_budget
from ablate.scaling.family import DataShape, dit_config, model_size, num_params
from ablate.scaling.flops import FORMULA_TOLERANCE, formula_train_flops, measure_train_flops
from ablate.scaling.plan import isoflop_points, quality_points
from ablate.scaling.spec import load_study

ROOT = Path(__file__).resolve().parent.parent
FASHION = DataShape(resolution=32, channels=1, num_classes=10)


@pytest.mark.parametrize("name", ["scaling-smoke", "scaling-fashion-mnist"])
def test_every_cell_of_a_budget_spends_it(name: str) -> None:
    study = load_study(ROOT / "grids" / f"{name}.yaml")
    points = isoflop_points(study, FASHION)
    assert len(points) == len(study.scaling.sizes) * len(study.scaling.budgets)
    batch = study.base.train.batch_size
    for p in points:
        spent = p.grid.train.max_steps * batch * p.train_flops_per_image  # what the trainer will do
        assert abs(spent - p.spend.budget) <= BUDGET_TOLERANCE * p.spend.budget, p.label
        assert p.grid.model.depth == p.size.depth and p.grid.model.hidden_size == 64 * p.size.depth
        assert p.grid.name == f"{study.name}.{p.label}" and p.grid.results_root == study.base.results_root
    # within a budget, a bigger model trains fewer steps on fewer images
    for budget in study.scaling.budgets:
        at = sorted((p for p in points if p.spend.budget == budget), key=lambda p: p.num_params)
        assert [p.spend.images for p in at] == sorted((p.spend.images for p in at), reverse=True)
    for p in quality_points(study, FASHION):
        assert p.grid.train.max_steps == study.scaling.quality.steps


def test_rounding_error_bounded_and_small_budget_refused() -> None:
    for steps_exact in (25.0, 25.49, 100.5, 1234.4):
        spend = steps_for_budget(steps_exact * 1000.0, 10.0, 100)
        assert spend.steps == round(steps_exact) and spend.error <= BUDGET_TOLERANCE
        assert spend.images == spend.steps * 100 and spend.flops == spend.steps * 1000.0
    with pytest.raises(ConfigError, match=r"scaling.budgets\[0\].*within 2%.*at least 2.5e\+04"):
        steps_for_budget(10.4 * 1000.0, 10.0, 100, "x.yaml: `scaling.budgets[0]`")


def test_budget_labels_are_short_and_safe() -> None:
    assert [budget_label(c) for c in (3e12, 1.5e13, 6e10, 1.234e9)] == ["3e12", "1.5e13", "6e10", "1.23e9"]


@pytest.mark.parametrize("size,patch,cond_dim", [("d1", 8, 0), ("d3", 4, 0), ("d2", 2, 0), ("d2", 8, 16), ("S", 8, 0)])
def test_measured_flops_match_formula(size: str, patch: int, cond_dim: int) -> None:
    config = dit_config(model_size(size), patch, DataShape(32, 1, 10, cond_dim))
    measured, formula = measure_train_flops(config), formula_train_flops(config)
    assert measured == pytest.approx(formula, rel=FORMULA_TOLERANCE)
    forward_macs = sum(config.flops().values())
    assert 5.5 * forward_macs < measured < 6.5 * forward_macs  # ~ 3 passes x 2 FLOPs per multiply-add


def test_family_rule_and_named_points() -> None:
    d4 = model_size("d4")
    assert (d4.depth, d4.hidden_size, d4.num_heads) == (4, 256, 4)
    assert (model_size("B").depth, model_size("B").hidden_size) == (12, 768)
    config = DiTConfig(input_size=32, in_channels=4, num_classes=1000, **DIT_PRESETS["S/2"])
    assert config.gflops_per_image() == pytest.approx(6.06, abs=0.01)  # DiT paper, Table 4: S/2 6.06 GFLOPs
    assert num_params(dit_config(model_size("d2"), 8, FASHION)) == 694_080
    for bad in ("d0", "4", "XXL", "d-1"):
        with pytest.raises(ConfigError, match="d<depth>"):
            model_size(bad)
    assert math.isclose(measure_train_flops(dit_config(d4, 8, FASHION), batch=1),
                        measure_train_flops(dit_config(d4, 8, FASHION), batch=3))
