"""What the leaderboard says about itself: how much of an unfinished grid it covers."""

from __future__ import annotations


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


def test_an_unfinished_grid_with_a_backbone_axis_counts_its_variant_backbone_cells():
    """On a grid with backbones the leaderboard ranks "<variant> @ <backbone>" pairs: the grid's cells are variants x
    backbones x datasets x seeds, and a finished pair counts as found (it once read "0 of the 6 cells")."""
    import pandas as pd

    from ablate.report.backbones import label_variants
    from ablate.report.diagnostics import completeness_line

    config = {"variants": ["rf", "eps/linear"], "backbones": ["dit", "mmdit"], "datasets": ["fashion-mnist"], "seeds": [0, 1]}
    rows = [("rf", "dit", 0), ("rf", "dit", 1), ("eps/linear", "dit", 0), ("rf", "mmdit", 0)]
    frame = label_variants(pd.DataFrame([{"variant": v, "backbone": b, "dataset": "fashion-mnist", "seed": s,
                                          "created": f"2026-12-07T0{i}", "config": config}
                                         for i, (v, b, s) in enumerate(rows)]))
    line = completeness_line(frame)
    assert line is not None and line.startswith("INCOMPLETE GRID: 4 of the 8 cells of the grid (variants x backbones")
    assert line.endswith("1 variants have none yet: eps/linear @ mmdit.")
