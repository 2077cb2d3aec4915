"""The leaderboard's statistics: Table 1 with intervals, who beats whom, agreement with the paper,
and the test of Figure 3's claim, all from one seed bootstrap (:mod:`ablate.report.statistics`).

- Table 1 columns: ``all``, ``5 steps``, ``50 steps`` (every 50-step setting) and ``50 steps
  cfg5`` (the paper-faithful reading, :data:`ablate.report.paper.PAPER_50_STEP_CFG`), each the point
  estimate of :mod:`ablate.report.ranking`; ``all 95% CI`` (percentile, seeds resampled); ``rank 90%``
  (the interval of the variant's position); ``P(beats next)`` (that it beats the next row).
- Paper agreement: the paper's variants are re-ranked among themselves only (the paper's pool), so
  variants it never ran cannot move the comparison; Spearman rho against Table 1 per column, with a
  bootstrap CI.
- Figure 3's claim: D = mean over non-rf variants of log(f5 / f50) minus the same over rf variants
  (f = fidelity, lower is better, at the largest cfg with both 5 and 50 steps, matched by dataset,
  weights and time grid). D > 0 means the rf variants lose less from 50 to 5 steps.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ablate.report import paper
from ablate.report import statistics
from ablate.report.statistics import SeedArray

COLUMNS = ("all", "5 steps", "50 steps", "50 steps cfg5")


@dataclass
class RankStats:
    """Everything the leaderboard shows about uncertainty and the paper."""

    table: pd.DataFrame  # variant, COLUMNS, all low/high (numbers) and 95% CI (text), rank 90%, settings, P(beats next)
    beats: pd.DataFrame                    # P(row beats column), rows and columns in table order
    seeds: int
    replicates: int
    samples_resampled: bool = False        # the fidelity metric's sample parts were resampled too
    agreement: pd.DataFrame = field(default_factory=pd.DataFrame)  # column, variants, rho, CI low, CI high
    agreement_note: str = ""
    figure3: dict[str, float | str] = field(default_factory=dict)


def column_masks(settings: pd.DataFrame) -> dict[str, np.ndarray]:
    steps, cfg = settings["steps"].to_numpy(), settings["cfg"].to_numpy(dtype=float)
    return {"all": np.ones(len(settings), bool), "5 steps": steps == 5, "50 steps": steps == 50,
            "50 steps cfg5": (steps == 50) & (cfg == paper.PAPER_50_STEP_CFG)}


def _bootstrap(data: SeedArray, replicates: int, seed: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Point estimates (V,) and replicates (B, V) of every column's average rank."""
    masks = column_masks(data.settings)
    point = {k: v[0] for k, v in statistics.average_ranks(data, np.ones((1, len(data.seeds)), int), masks).items()}
    rng = np.random.default_rng(seed)
    counts = statistics.seed_counts(len(data.seeds), replicates, rng)
    fidelity = None if data.fidelity_parts is None else statistics.part_means(data.fidelity_parts, data.fidelity,
                                                                                replicates, rng)
    return point, statistics.average_ranks(data, counts, masks, fidelity)


def rank_stats(frame: pd.DataFrame, alignment: str, fidelity: str, replicates: int = statistics.DEFAULT_REPLICATES,
               seed: int = 0) -> RankStats:
    """Table 1 with intervals, the beats matrix, paper agreement and Figure 3's test for one grid's records."""
    data = statistics.seed_array(frame, alignment, fidelity)
    point, boot = _bootstrap(data, replicates, seed)
    low, high = statistics.percentile_interval(boot["all"])
    pos_low, pos_high = statistics.percentile_interval(statistics.positions(boot["all"]), statistics.RANK_LEVEL)
    table = pd.DataFrame({"variant": data.variants, **{k: point[k] for k in COLUMNS}})
    table["all low"], table["all high"] = low, high
    table["all 95% CI"] = [_interval(a, b, 2) for a, b in zip(low, high)]
    table["rank 90%"] = [_interval(a, b, 0) for a, b in zip(np.floor(pos_low), np.ceil(pos_high))]
    table["settings"] = data.present.any(-1).sum(-1)
    order = np.lexsort((np.array(data.variants), point["all"]))
    table = table.iloc[order].reset_index(drop=True)
    p = statistics.beats(boot["all"])[np.ix_(order, order)]
    table["P(beats next)"] = [p[i, i + 1] if i + 1 < len(order) else np.nan for i in range(len(order))]
    names = table["variant"].tolist()
    stats = RankStats(table=table, beats=pd.DataFrame(p, index=names, columns=names), seeds=len(data.seeds),
                      replicates=replicates, samples_resampled=data.fidelity_parts is not None)
    stats.agreement, stats.agreement_note = paper_agreement(frame, alignment, fidelity, replicates, seed)
    stats.figure3 = figure3_test(data, boot_counts=statistics.seed_counts(len(data.seeds), replicates,
                                                                          np.random.default_rng(seed + 1)))
    return stats


def _interval(low: float, high: float, digits: int) -> str:
    if not (np.isfinite(low) and np.isfinite(high)):
        return "n/a"
    return f"[{low:.{digits}f}, {high:.{digits}f}]" if digits else f"{int(low)}-{int(high)}"


def paper_agreement(frame: pd.DataFrame, alignment: str, fidelity: str, replicates: int = statistics.DEFAULT_REPLICATES,
                    seed: int = 0) -> tuple[pd.DataFrame, str]:
    """Spearman rho between our average ranks, within the paper's pool, and Table 1's, per column."""
    shared = [v for v in paper.TABLE1 if v in set(frame["variant"])]
    if len(shared) < 3:
        return pd.DataFrame(), (f"{len(shared)} of this grid's variants are in the paper's Table 1; a rank "
                                "correlation needs at least 3.")
    data = statistics.seed_array(frame, alignment, fidelity, variants=shared)
    point, boot = _bootstrap(data, replicates, seed)
    has_faithful = bool(column_masks(data.settings)["50 steps cfg5"].any())
    ours_50 = "50 steps cfg5" if has_faithful else "50 steps"
    rows = []
    for theirs, ours in (("all", "all"), ("5 steps", "5 steps"), ("50 steps", ours_50)):
        truth = np.array([paper.paper_column(theirs)[v] for v in shared])
        rho = statistics.spearman(point[ours], truth)
        reps = statistics.spearman(boot[ours], truth)
        low, high = statistics.percentile_interval(reps) if np.isfinite(reps).any() else (np.nan, np.nan)
        rows.append({"paper column": theirs, "our column": ours, "variants": int(np.isfinite(point[ours]).sum()),
                     "rho": rho, "95% CI": _interval(float(low), float(high), 2)})
    left_out = sorted(set(frame["variant"]) - set(shared))
    note = (f"Spearman rho between our average ranks and Table 1's over the {len(shared)} variants both ran, "
            "re-ranked among themselves (the paper's pool)"
            + (f"; the {len(left_out)} variants the paper never ran ({', '.join(left_out)}) are left out of "
               "this ranking, so they cannot move the comparison" if left_out else "")
            + f". The paper's 50-step column is compared with our '{ours_50}' column"
            + (" (4 settings: its values are multiples of 0.25)." if has_faithful else
               " (this grid has no 50-step cfg-5 settings).")
            + " rho = 1 is the paper's order; CIs resample our training seeds (the paper's ranks are fixed).")
    return pd.DataFrame(rows), note


def figure3_test(data: SeedArray, boot_counts: np.ndarray) -> dict[str, float | str]:
    """D = mean log(f5/f50) over non-rf variants minus over rf variants, with a bootstrap CI."""
    s = data.settings
    both = s.groupby("cfg")["steps"].agg(lambda x: {5, 50} <= set(x))
    cfgs = both[both].index
    rf = np.array([paper.is_rf_family(v) for v in data.variants])
    if len(cfgs) == 0 or rf.all() or not rf.any():
        return {"note": "needs 5- and 50-step settings at one cfg and both rf and non-rf variants"}
    cfg = float(max(cfgs))
    keys = ["dataset", "time_grid", "weights"]
    five = s[(s["steps"] == 5) & (s["cfg"] == cfg)].reset_index().merge(
        s[(s["steps"] == 50) & (s["cfg"] == cfg)].reset_index(), on=keys, suffixes=("_5", "_50"))

    def statistic(counts: np.ndarray) -> np.ndarray:
        f = statistics.weighted_means(data.fidelity, data.present, counts)      # (B, V, S)
        with np.errstate(invalid="ignore", divide="ignore"):
            loss = np.log(f[:, :, five["index_5"]] / f[:, :, five["index_50"]])  # (B, V, pairs)
            per_variant = np.nanmean(loss, axis=-1)
            return np.nanmean(per_variant[:, ~rf], -1) - np.nanmean(per_variant[:, rf], -1)

    point = float(statistic(np.ones((1, len(data.seeds)), int))[0])
    low, high = statistics.percentile_interval(statistic(boot_counts))
    return {"cfg": cfg, "pairs": len(five), "rf": int(rf.sum()), "others": int((~rf).sum()),
            "D": point, "low": float(low), "high": float(high)}
