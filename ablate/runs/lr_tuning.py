"""Per-variant learning-rate tuning for any grid (``train.lr: search(low, high, log)``, issue 14).

Conventions:

- The rates are :attr:`LrSearch.trials` values log-spaced over [low, high], rounded to two
  significant digits (:func:`rates`). Each rate is a grid of its own, ``<grid>.lr<rate>``
  (e.g. ``sd3.lr3.2e-04``), with every variant and the grid's first seed only; it runs through
  :func:`ablate.runs.workers.run_grid` like any grid (queue, storage, workers, resume, records).
- A variant's rate is the one with its lowest EMA validation loss (the checkpoint-selection number,
  :data:`ablate.engine.metric_keys.SELECTION`): its own training loss, comparable between rates of one
  variant (never across variants). A cell that failed (diverged) at a rate does not count.
- The grid then runs with ``train.lr_by_variant`` set to those rates (:func:`tuned_grid`); every record
  carries them in its ``config``, and the leaderboard says that each variant ran at its own rate.
"""

from __future__ import annotations

import dataclasses
import math

from ablate.config.grid import Grid
from ablate.config.lr import LrSearch, lr_grid_name, round_lr
from ablate.errors import ConfigError
from ablate.results import ResultsStore


def rates(search: LrSearch) -> list[float]:
    """The tried rates, low to high (two significant digits, duplicates after rounding dropped)."""
    if not 0 < search.low < search.high:
        raise ConfigError(f"`train.lr_search` needs 0 < low < high, not low {search.low:g}, high {search.high:g}.")
    steps = [math.log(search.low) + i * (math.log(search.high) - math.log(search.low)) / (search.trials - 1)
             for i in range(search.trials)]
    return sorted({round_lr(math.exp(x)) for x in steps})


def tuning_grids(grid: Grid) -> list[Grid]:
    """One grid per tried rate: ``<grid>.lr<rate>``, every variant, the first seed."""
    assert grid.train.lr_search is not None
    return [dataclasses.replace(grid, name=lr_grid_name(grid.name, rate), seeds=grid.seeds[:1],
                                train=dataclasses.replace(grid.train, lr=rate, lr_search=None, lr_by_variant={}))
            for rate in rates(grid.train.lr_search)]


def validation_losses(grids: list[Grid]) -> dict[str, dict[float, float]]:
    """Per variant, per rate: the EMA validation loss its tuning cell reached (seed and dataset means)."""
    out: dict[str, dict[float, float]] = {}
    for g in grids:
        frame = ResultsStore(g.results_root).frame(g.name)
        if frame.empty or "train_val_loss" not in frame:
            continue
        cells = frame.drop_duplicates(["variant", "dataset", "seed"])
        for variant, part in cells.groupby("variant"):
            losses = part["train_val_loss"].astype(float)
            if losses.notna().all():
                out.setdefault(str(variant), {})[g.train.lr] = float(losses.mean())
    return out


def best_rates(grid: Grid, losses: dict[str, dict[float, float]]) -> dict[str, float]:
    """Each variant's rate with the lowest validation loss; a ConfigError naming the variants that have none."""
    missing = [v for v in grid.variants if not losses.get(v)]
    if missing:
        raise ConfigError(f"Learning-rate tuning of grid {grid.name!r} has no finished cell at any rate for "
                          f"{', '.join(missing)} (every rate failed or was not run); see the grids "
                          f"{grid.name}.lr<rate> (`python -m ablate status`), or narrow `train.lr: search(...)`.")
    return {v: min(losses[v], key=lambda rate: (losses[v][rate], rate)) for v in grid.variants}


def tuned_grid(grid: Grid, best: dict[str, float]) -> Grid:
    """The grid with each variant at its tuned rate (``train.lr_by_variant``) and no search left."""
    return dataclasses.replace(grid, train=dataclasses.replace(grid.train, lr_search=None,
                                                               lr_by_variant={**grid.train.lr_by_variant, **best}))
