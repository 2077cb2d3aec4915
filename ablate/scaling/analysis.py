"""Fits of a whole study: per formulation and metric, the isoFLOP fit of every budget and the power
laws of N_opt, D_opt and the optimal metric against the budget (see :mod:`ablate.scaling.fit`)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ablate.scaling.fit import IsoFlopFit, PowerLaw, fit_isoflop, fit_power_law
from ablate.scaling.spec import ScalingConfig

METRICS = ("val_x0_mse", "val_loss", "fidelity")  # lower is better for each


@dataclass
class MetricFits:
    """One formulation, one metric: fits by budget (None: no minimum) and the power laws."""

    variant: str
    metric: str
    isoflop: dict[float, IsoFlopFit | None] = field(default_factory=dict)
    laws: dict[str, PowerLaw | None] = field(default_factory=dict)

    @property
    def fitted(self) -> list[IsoFlopFit]:
        return [f for f in self.isoflop.values() if f is not None]


def fit_study(rows: pd.DataFrame, scaling: ScalingConfig) -> dict[tuple[str, str], MetricFits]:
    """Fits keyed by (variant, metric) from the isoFLOP rows of :func:`ablate.scaling.collect.collect`."""
    out: dict[tuple[str, str], MetricFits] = {}
    iso = rows[rows["kind"] == "isoflop"]
    for v_index, (variant, cells) in enumerate(iso.groupby("variant", sort=False)):
        for m_index, metric in enumerate(METRICS):
            fits = MetricFits(str(variant), metric)
            for b_index, budget in enumerate(scaling.budgets):
                at = cells[(cells["budget"] == budget) & np.isfinite(cells[metric].astype(float))]
                rng = np.random.default_rng([scaling.seed, v_index, m_index, b_index])
                fits.isoflop[budget] = fit_isoflop(
                    budget, at["num_params"].to_numpy(float), at["images"].to_numpy(float),
                    at[metric].to_numpy(float), noise_floor=scaling.noise_floor, replicates=scaling.bootstrap,
                    confidence=scaling.confidence, rng=rng) if len(at) else None
            for quantity in ("n_opt", "d_opt", "y_opt"):
                fits.laws[quantity] = fit_power_law(fits.fitted, quantity, scaling.confidence)
            out[(str(variant), metric)] = fits
    return out
