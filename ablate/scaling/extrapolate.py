"""The extrapolation check: predict the optimal model at a budget larger than any fitted one, train
the family size nearest the predicted N_opt there, and compare its loss with the prediction interval.

The size is chosen from the x0-MSE power law of N_opt (the metric comparable across formulations), or
from the native loss's where the x0-MSE has no law (fewer than two budgets with a minimum: eps/linear's
x0 estimate punishes large, less-trained models, so its x0-MSE minimum appears late); each
metric's optimum (x0-MSE, native loss, and the probe fidelity where it has a law: Liang et al. find FID
follows a power law too) is then predicted by its own power law, with a prediction interval that adds the
noise of one measurement (the mean bootstrap spread of the isoFLOP fits) to the fits' uncertainty.
The trained model is the nearest family size, not exactly N_opt; near the minimum the isoFLOP curve
is flat, so this costs little (the report shows how far, in ln N, the trained size is).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ablate.scaling.analysis import MetricFits
from ablate.scaling.family import DataShape, ModelSize, network_of, model_size, num_params
from ablate.scaling.fit import Interval, PowerLaw
from ablate.scaling.plan import Point, make_point
from ablate.scaling.spec import Study

SIZE_METRIC = "val_x0_mse"
FALLBACK_SIZE_METRIC = "val_loss"


@dataclass(frozen=True)
class Extrapolation:
    """A prediction at the extrapolation budget, and the measurement when the cell has run."""

    variant: str
    metric: str
    budget: float
    n_opt: Interval
    y_opt: Interval
    size: ModelSize
    num_params: int
    measured: float
    size_metric: str = SIZE_METRIC  # whose N_opt law chose the size

    @property
    def inside(self) -> bool | None:
        return None if math.isnan(self.measured) else self.y_opt.contains(self.measured)


def candidates(study: Study, data: DataShape) -> list[tuple[ModelSize, int]]:
    """Family sizes the extrapolation may train: d1 .. twice the deepest listed size, and the named ones."""
    listed = [model_size(s) for s in study.scaling.sizes]
    sizes = {model_size(f"d{d}") for d in range(1, 2 * max(s.depth for s in listed) + 1)} | set(listed)
    mlp = study.base.model.mlp_ratio
    return sorted(((s, num_params(network_of(s, study.scaling.patch_size, data, mlp))) for s in sizes),
                  key=lambda pair: pair[1])


def nearest(target: float, options: list[tuple[ModelSize, int]]) -> tuple[ModelSize, int]:
    """The option whose parameter count is nearest ``target`` in ln N."""
    return min(options, key=lambda pair: abs(math.log(pair[1]) - math.log(target)))


def size_law(fits: dict[tuple[str, str], MetricFits], variant: str) -> tuple[str, PowerLaw] | None:
    """The N_opt law that sizes ``variant``'s extrapolation cell, and its metric: the x0-MSE's, else the
    native loss's; None when neither has one."""
    for metric in (SIZE_METRIC, FALLBACK_SIZE_METRIC):
        mf = fits.get((variant, metric))
        law = mf.laws.get("n_opt") if mf is not None else None
        if law is not None:
            return metric, law
    return None


def predictions(study: Study, data: DataShape, fits: dict[tuple[str, str], MetricFits],
                rows: pd.DataFrame) -> list[Extrapolation]:
    """Predictions (and measurements, where trained) of every metric with a law, for every variant with a
    size law (:func:`size_law`)."""
    budget, s = study.scaling.extrapolation, study.scaling
    if budget is None:
        return []
    options = candidates(study, data)
    out = []
    for (variant, metric), mf in fits.items():
        sizing, law = size_law(fits, variant), mf.laws.get("y_opt")
        if sizing is None or law is None:
            continue
        n_opt = sizing[1].predict(budget, s.confidence)
        size, params = nearest(n_opt.value, options)
        noise = float(np.mean([f.sigma for f in mf.fitted]))
        cells = rows[(rows["kind"] == "extrapolation") & (rows["variant"] == variant)]
        measured = float(cells[metric].mean()) if len(cells) else math.nan
        out.append(Extrapolation(variant, metric, budget, n_opt, law.predict(budget, s.confidence, noise, s.seed),
                                 size, params, measured, sizing[0]))
    return out


def extrapolation_points(study: Study, data: DataShape, fits: dict[tuple[str, str], MetricFits]) -> list[Point]:
    """The grids of the extrapolation cells: one per chosen size, holding the variants that chose it."""
    budget = study.scaling.extrapolation
    if budget is None:
        return []
    options = candidates(study, data)
    chosen: dict[ModelSize, list[str]] = {}
    for variant in dict.fromkeys(v for v, _ in fits):
        sizing = size_law(fits, variant)
        if sizing is not None:
            size, _ = nearest(sizing[1].predict(budget, study.scaling.confidence).value, options)
            chosen.setdefault(size, []).append(variant)
    return [make_point(study, data, "extrapolation", size, study.scaling.patch_size, budget=budget,
                       variants=tuple(variants), where="`scaling.extrapolation`")
            for size, variants in sorted(chosen.items(), key=lambda kv: kv[0].depth)]
