"""The measured points of a study, read from the results store (one row per trained cell).

Per cell: the best-EMA validation numbers its training recorded (``val_loss``, the formulation's
own loss, comparable only within a formulation; ``val_x0_mse``, the x0 error at fixed log-SNR
levels, comparable across formulations) and the fidelity and alignment metrics of the first eval
setting with the first eval weights (a scaling file should list the one setting it measures).
"""

from __future__ import annotations

import math

import pandas as pd

from ablate.report import ranking
from ablate.errors import ConfigError
from ablate.results import ResultsStore
from ablate.scaling.plan import Point

LOSSES = ("val_x0_mse", "val_loss")
COLUMNS = ("variant", "seed", "kind", "grid", "label", "size", "depth", "patch", "budget", "steps", "images",
           "flops", "num_params", "forward_gflops", *LOSSES, "fidelity", "alignment", "wall_s")


def collect(points: list[Point]) -> tuple[pd.DataFrame, str | None, str | None]:
    """(rows of every finished cell, fidelity metric name, alignment metric name); metrics None if absent."""
    frames = []
    for p in points:
        records = ResultsStore(p.grid.results_root).frame(p.grid.name)
        if len(records):
            frames.append((p, records))
    if not frames:
        return pd.DataFrame(columns=list(COLUMNS)), None, None
    everything = pd.concat([r for _, r in frames], ignore_index=True)
    fidelity, alignment = _metric(everything, "fidelity"), _metric(everything, "alignment")
    rows = []
    for p, records in frames:
        first = p.grid.eval.settings[0]
        pick = records[(records["steps"] == first.steps) & (records["cfg"].astype(float) == float(first.cfg))
                       & (records["weights"] == p.grid.eval.weights[0])]
        for (variant, seed), cell in pick.groupby(["variant", "seed"], sort=False):
            rec = cell.iloc[0]
            rows.append({
                "variant": variant, "seed": int(seed), "kind": p.kind, "grid": p.grid.name, "label": p.label,
                "size": p.size.label, "depth": p.size.depth, "patch": p.patch_size, "budget": p.spend.budget,
                "steps": p.spend.steps, "images": p.spend.images, "flops": p.spend.flops, "num_params": p.num_params,
                "forward_gflops": p.forward_gflops, "val_x0_mse": _num(rec, "train_val_x0_mse"),
                "val_loss": _num(rec, "train_val_loss"), "fidelity": _num(rec, fidelity),
                "alignment": _num(rec, alignment), "wall_s": _num(rec, "train_wall_s"),
            })
    return pd.DataFrame(rows, columns=list(COLUMNS)), fidelity, alignment


def missing(points: list[Point], rows: pd.DataFrame) -> list[tuple[Point, str, int]]:
    """The planned cells of ``points`` without a row in ``rows`` (from :func:`collect`): (point, variant, seed)."""
    have = {(r["label"], r["variant"], int(r["seed"])) for _, r in rows.iterrows()}
    return [(p, v, seed) for p in points for v in p.grid.variants for seed in p.grid.seeds
            if (p.label, v, seed) not in have]


def _metric(frame: pd.DataFrame, role: str) -> str | None:
    try:
        return ranking.choose_metric(frame, role)
    except ConfigError:  # no scorer of that role in these records: the report says so
        return None


def _num(row: pd.Series, key: str | None) -> float:
    if key is None or key not in row.index:
        return math.nan
    try:
        return float(row[key])
    except (TypeError, ValueError):
        return math.nan
