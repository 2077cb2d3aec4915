"""Assertions on the CPU smoke grid of the backbone axis (grids/architectures-smoke.yaml), which the CI
runs beside the unit tests into ABLATE_STUDY_RESULTS (noxfile.py); without that variable they skip."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ablate.config.grid import load_grid
from ablate.results import ResultsStore

pytestmark = pytest.mark.smoke
STUDIES = os.environ.get("ABLATE_STUDY_RESULTS")


@pytest.fixture(scope="module")
def results() -> Path:
    if not STUDIES:
        pytest.skip("ABLATE_STUDY_RESULTS is not set: run `nox` (the ci session), which runs the grid first")
    return Path(STUDIES)


def test_every_backbone_and_variant_has_a_scored_cell(results: Path) -> None:
    grid = load_grid("architectures-smoke")
    frame = ResultsStore(results).frame("architectures-smoke")
    cells = set(zip(frame["backbone"], frame["variant"], frame["seed"]))
    assert cells == {(c.backbone, c.variant, c.seed) for c in grid.cells()}
    assert frame["fd_probe"].notna().all() and frame["align_probe"].notna().all()
    # the backbones differ: their parameter counts and FLOPs are their own
    assert frame.groupby("backbone")["train_num_params"].first().nunique() == len(grid.backbones)


def test_report_ranks_within_and_across_backbones(results: Path) -> None:
    reports = results / "reports"
    text = (reports / "architectures-smoke.md").read_text()
    for backbone in ("dit", "mmdit", "crossdit", "uvit"):
        assert f"rf/lognorm(0.00, 1.00) @ {backbone}" in text
    assert "## Backbones: formulations ranked within each backbone" in text
    assert "The formulation ranking" in text and "## Backbones: final values" in text
    assert "## Backbones against the paper" in text and "MM-DiT is first in" in text
    assert "(variant @ backbone) pairs of this grid together" in text  # the rank pool, said of pairs
    assert (reports / "architectures-smoke-backbones.png").stat().st_size > 10_000
