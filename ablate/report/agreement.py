"""Agreement with the paper's Table 1, measured honestly (issue 26): Spearman rho with a one-sided permutation
p-value for every reading, the headline reading named and the others shown beside it (pure numpy).

Pool: the variants both this grid and the paper's Table 1 ran, re-ranked among themselves (the paper's pool;
variants the paper never ran cannot move the comparison). Positions quoted beside a rho must come from this
pool: :func:`pool_positions` gives them, with the position in the whole grid's pool for contrast.

A *reading* is how our average rank is made: which settings (all, 5 steps, 50 steps at one cfg or at all),
which weights (EMA and raw, or one), which metrics (both, as the paper's non-dominated ranking, or one alone).
The headline readings are the paper's protocol: both weights, both metrics, and for its 50-step column cfg 5
(:data:`ablate.report.paper.PAPER_50_STEP_CFG`: its 50-step values are multiples of 0.25, which fits 4
settings, not 12). The sensitivity table shows every other reading beside them.

p-value: H0 no association; the probability that rho of a random permutation of the paper's ranks is at
least the observed rho (one-sided), exact (every permutation) when n! <= :data:`PERMUTATIONS`, else from
:data:`PERMUTATIONS` random permutations with a fixed seed, ``(1 + hits) / (1 + permutations)``.
"""

from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np
import pandas as pd

from ablate.report import paper, ranking
from ablate.report.statistics import SeedArray, average_ranks, rankdata, seed_array, spearman

PERMUTATIONS = 20_000


def permutation_p(ours: np.ndarray, theirs: np.ndarray, permutations: int = PERMUTATIONS, seed: int = 0,
                  two_sided: bool = False) -> float:
    """One-sided (or, ``two_sided``, |rho|) permutation p-value of Spearman's rho of ``ours`` with ``theirs``
    (pairs with a NaN dropped); NaN with fewer than 3 pairs or a constant side."""
    ours, theirs = np.asarray(ours, float), np.asarray(theirs, float)
    keep = np.isfinite(ours) & np.isfinite(theirs)
    x, y = rankdata(ours[keep]), rankdata(theirs[keep])
    n = len(x)
    observed = spearman(x, y)
    if n < 3 or not np.isfinite(observed):
        return math.nan
    if math.factorial(n) <= permutations:
        orders = np.array(list(itertools.permutations(range(n))))
        exact = True
    else:
        rng = np.random.default_rng(seed)
        orders = np.argsort(rng.random((permutations, n)), axis=1)
        exact = False
    rhos = _pearson_rows(x, y[orders])
    hits = int(np.sum((np.abs(rhos) if two_sided else rhos) >= (abs(observed) if two_sided else observed) - 1e-12))
    return hits / len(orders) if exact else (1 + hits) / (1 + len(orders))


def _pearson_rows(x: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Pearson correlation of ``x`` with each row of ``rows`` (already ranks: Spearman's rho)."""
    dx = x - x.mean()
    dy = rows - rows.mean(-1, keepdims=True)
    return (dy @ dx) / np.sqrt((dx ** 2).sum() * (dy ** 2).sum(-1))


@dataclasses.dataclass(frozen=True)
class Reading:
    """One way to make our average rank: settings (``steps``, ``cfg``: None = all), ``weights`` (None = both),
    ``metrics`` ("both", "alignment", "fidelity"), compared with the paper's column ``paper_column``."""

    paper_column: str
    steps: int | None = None
    cfg: float | None = None
    weights: str | None = None
    metrics: str = "both"
    headline: bool = False

    @property
    def name(self) -> str:
        settings = "all settings" if self.steps is None else f"{self.steps} steps" + (
            "" if self.cfg is None else f" cfg {self.cfg:g}")
        weights = "all weights" if self.weights is None else f"{self.weights.upper() if self.weights == 'ema' else 'raw'} only"
        metrics = "both metrics" if self.metrics == "both" else f"{self.metrics} alone"
        return f"{settings}, {weights}, {metrics}"

    def mask(self, settings: pd.DataFrame) -> np.ndarray:
        keep = np.ones(len(settings), bool)
        if self.steps is not None:
            keep &= settings["steps"].to_numpy() == self.steps
        if self.cfg is not None:
            keep &= settings["cfg"].to_numpy(dtype=float) == self.cfg
        if self.weights is not None:
            keep &= settings["weights"].to_numpy() == self.weights
        return keep


def readings(settings: pd.DataFrame) -> list[Reading]:
    """The headline readings first, then every other: each 50-step cfg, EMA or raw only, each metric alone."""
    cfg50 = sorted({float(c) for s, c in zip(settings["steps"], settings["cfg"]) if s == 50})
    faithful = paper.PAPER_50_STEP_CFG if paper.PAPER_50_STEP_CFG in cfg50 else None
    bases = [Reading("all"), Reading("5 steps", steps=5), Reading("50 steps", steps=50, cfg=faithful)]
    out = [dataclasses.replace(r, headline=True) for r in bases]
    out += [Reading("50 steps", steps=50, cfg=c) for c in cfg50 if c != faithful]
    if faithful is not None and len(cfg50) > 1:
        out.append(Reading("50 steps", steps=50))
    for weights in sorted(set(settings["weights"])) if settings["weights"].nunique() > 1 else []:
        out += [dataclasses.replace(r, weights=weights) for r in bases]
    out += [dataclasses.replace(r, metrics=m) for m in ("alignment", "fidelity") for r in bases]
    return out


def reading_ranks(data: SeedArray, reading: Reading) -> np.ndarray:
    """(V,) average rank of the seed means over the reading's settings, ranked on its metrics."""
    if reading.metrics == "alignment":
        data = dataclasses.replace(data, fidelity=np.zeros_like(data.fidelity))
    elif reading.metrics == "fidelity":
        data = dataclasses.replace(data, alignment=np.zeros_like(data.alignment))
    mask = reading.mask(data.settings)
    return average_ranks(data, np.ones((1, len(data.seeds)), int), {"r": mask})["r"][0]


def agreement(frame: pd.DataFrame, alignment: str, fidelity: str,
              permutations: int = PERMUTATIONS) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """(headline table, sensitivity table, note): rho and its permutation p-value per reading, in the paper's
    pool. Both tables: reading, paper column, settings, variants, rho, p (one-sided), p (two-sided)."""
    shared = [v for v in paper.TABLE1 if v in set(frame["variant"])]
    if ranking.ranks_pairs(frame):  # a backbone axis
        return pd.DataFrame(), pd.DataFrame(), (
            "This grid ranks (variant @ backbone) pairs; the paper's Table 1 ranks formulations on one backbone, so "
            "no rank correlation is drawn with it. Its backbone comparison (Figure 4) is under 'Backbones against the "
            "paper'.")
    if len(shared) < 3:
        return pd.DataFrame(), pd.DataFrame(), (f"{len(shared)} of this grid's variants are in the paper's Table 1; "
                                                "a rank correlation needs at least 3.")
    data = seed_array(frame, alignment, fidelity, variants=shared)
    rows = []
    for reading in readings(data.settings):
        mask = reading.mask(data.settings)
        if not mask.any():
            continue
        ours = reading_ranks(data, reading)
        truth = np.array([paper.paper_column(reading.paper_column)[v] for v in shared])
        rows.append({"reading": reading.name, "paper column": reading.paper_column, "settings": int(mask.sum()),
                     "variants": int(np.isfinite(ours).sum()), "rho": spearman(ours, truth),
                     "p (one-sided)": permutation_p(ours, truth, permutations),
                     "p (two-sided)": permutation_p(ours, truth, permutations, two_sided=True),
                     "headline": reading.headline})
    table = pd.DataFrame(rows)
    for column in ("p (one-sided)", "p (two-sided)"):
        table[column] = [_p_text(p, permutations) for p in table[column]]
    headline = table[table["headline"]].drop(columns="headline").reset_index(drop=True)
    others = table[~table["headline"]].drop(columns="headline").reset_index(drop=True)
    left_out = sorted(set(frame["variant"]) - set(shared))
    note = (f"Spearman rho between our average ranks and Table 1's, in the paper's pool: the {len(shared)} variants "
            "both ran, re-ranked among themselves"
            + (f" (the {len(left_out)} the paper never ran are left out: {', '.join(left_out)})" if left_out else "")
            + ". p: permutation p-value of rho under no association, one-sided (agreement: rho at least this large) "
            "and two-sided (|rho| at least this large), exact when every permutation fits in "
            f"{permutations:,}, else {permutations:,} random permutations. Headline: the paper's protocol, both "
            f"weights and both metrics, and for its 50-step column cfg {paper.PAPER_50_STEP_CFG:g} (its 50-step values "
            "are multiples of 0.25, which fits 4 settings, not 12: an assumption, so every other cfg, each weights and "
            "each metric alone are shown under 'Sensitivity of the agreement'). rho = 1 is the paper's order.")
    return headline, others, note


def _p_text(p: float, permutations: int) -> str:
    if not np.isfinite(p):
        return "n/a"
    floor = 1 / (1 + permutations)
    return f"< {floor:.1g}" if p <= floor else f"{p:.3f}" if p >= 0.001 else f"{p:.1e}"


def pool_positions(frame: pd.DataFrame, grid_ranks: pd.Series, alignment: str, fidelity: str) -> pd.DataFrame:
    """Per paper variant: our average rank over all settings in the paper's pool and its position there (ties
    share the best position), the paper's position, and the position in the whole grid's pool (from
    ``grid_ranks``, Table 1's 'all' by variant) for contrast."""
    shared = [v for v in paper.TABLE1 if v in set(frame["variant"])]
    if len(shared) < 3:
        return pd.DataFrame()
    ours = reading_ranks(seed_array(frame, alignment, fidelity, variants=shared), Reading("all"))
    theirs = np.array([paper.paper_column("all")[v] for v in shared])
    full = grid_ranks.to_numpy(dtype=float)
    table = pd.DataFrame({
        "variant": shared, "paper pool rank": ours, "position (paper pool)": _positions(ours),
        "paper position": _positions(theirs),
        "position (all variants)": [_positions(full)[list(grid_ranks.index).index(v)] for v in shared],
    })
    return table.sort_values(["paper pool rank", "variant"]).reset_index(drop=True)


def _positions(x: np.ndarray) -> list[str]:
    """1 + how many are strictly better; a shared position is written with '='."""
    x = np.asarray(x, float)
    better = (x[None, :] < x[:, None]).sum(1)
    tied = (x[None, :] == x[:, None]).sum(1) > 1
    return [f"{b + 1}=" if t else str(b + 1) for b, t in zip(better, tied)]
