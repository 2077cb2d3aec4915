"""A search's points: the grid that trains a point, the sampler's distributions, and the objectives
read back from the records (alignment up, fidelity down, seed means)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable

import pandas as pd
from optuna.distributions import BaseDistribution, FloatDistribution

from ablate.config.grid import Grid
from ablate.errors import ConfigError
from ablate.report import ranking
from ablate.config.lr import lr_grid_name
from ablate.search.spec import STEP, Search

Point = tuple[str, float | None]  # (variant, learning rate or None: the file's)


def grid_name(search: Search, lr: float | None) -> str:
    """``<name>`` for the file's learning rate (None), else ``<name>.lr<lr>`` (two significant digits)."""
    return search.name if lr is None else lr_grid_name(search.name, lr)


def grid_for(search: Search, variants: Iterable[str], lr: float | None, seeds: tuple[int, ...] = ()) -> Grid:
    """The grid that trains ``variants`` at ``lr`` (None: the file's rate) with ``seeds`` (default: the file's)."""
    base = search.base
    name = grid_name(search, lr)
    train = base.train if lr is None else dataclasses.replace(base.train, lr=lr)
    return dataclasses.replace(base, name=name, variants=tuple(dict.fromkeys(variants)), train=train,
                               seeds=seeds or base.seeds)


def distributions(search: Search) -> dict[str, BaseDistribution]:
    out: dict[str, BaseDistribution] = {k: FloatDistribution(r.low, r.high, step=STEP)
                                        for k, r in search.space.ranges.items()}
    if search.space.lr is not None:
        out["lr"] = FloatDistribution(search.space.lr.low, search.space.lr.high, log=True)
    return out


def metric_names(frame: pd.DataFrame) -> tuple[str, str]:
    """(alignment, fidelity) metric of the records: the leaderboard's defaults, else the first metric each
    scorer declares for that role (a ConfigError naming what is present when none)."""
    from ablate.scorers.base import metric_info

    names = []
    for role in ("alignment", "fidelity"):
        try:
            names.append(ranking.choose_metric(frame, role))
        except ConfigError:
            declared = [c for c in ranking.metric_columns(frame) if (m := metric_info(c)) is not None and m.role == role]
            if not declared:
                raise
            names.append(declared[0])
    return names[0], names[1]


def objectives(frame: pd.DataFrame, variant: str, seeds: Iterable[int], settings: tuple[str, ...]) -> tuple[float, float]:
    """(alignment, fidelity) of a variant: seed means over the records of ``settings`` (setting keys,
    :attr:`Search.objective_settings`); NaN when a seed lacks a setting's record or a metric is NaN. Oriented
    for :data:`ablate.search.trials.DIRECTIONS` (alignment up, fidelity down): a metric the records declare
    the other way (ckid_effnet: an alignment metric, lower is better) is negated."""
    if frame.empty:
        return math.nan, math.nan
    alignment, fidelity = metric_names(frame)
    seeds = list(seeds)
    rows = frame[(frame["variant"] == variant) & frame["seed"].isin(seeds) & frame["setting"].isin(settings)]
    if len(rows[["seed", "setting"]].drop_duplicates()) != len(set(seeds)) * len(set(settings)):
        return math.nan, math.nan
    higher, lower = ranking.directions(frame, alignment, fidelity)
    a, f = float(rows[alignment].astype(float).mean()), float(rows[fidelity].astype(float).mean())
    return (a if higher else -a), (f if lower else -f)
