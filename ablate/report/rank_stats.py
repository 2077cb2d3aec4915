"""The leaderboard's statistics: Table 1 with intervals, who beats whom, agreement with the paper, and the
test of Figure 3's claim.

- Table 1 columns: ``all``, ``5 steps``, ``50 steps`` (every 50-step setting) and ``50 steps cfg5`` (the
  paper-faithful reading, :data:`ablate.report.paper.PAPER_50_STEP_CFG`), each the point estimate of
  :mod:`ablate.report.ranking` (the rank of the seed means); ``per seed`` (the mean over seeds of each seed's
  own average rank over all settings) with its ``95% CI`` (:mod:`ablate.report.intervals`: a moderated
  Student-t interval over seeds, its coverage checked by simulation); ``beats next`` (in how many seeds the variant's
  own average rank is lower than the next row's, ties counting one half).
- Who beats whom: the share of seeds in which the row's own average rank is lower than the column's.
- Paper agreement (:mod:`ablate.report.agreement`): Spearman rho with a permutation p-value per reading, in
  the paper's pool, and the positions there.
- Figure 3's claim: D = mean over non-rf variants of log(f5 / f50) minus the same over rf variants
  (f = fidelity, lower is better, at the largest cfg with both 5 and 50 steps, matched by dataset,
  weights and time grid). D > 0 means the rf variants lose less from 50 to 5 steps. Its interval is a
  percentile bootstrap over seeds, and over the samples within a setting where records keep the metric's parts (KID
  blocks) or replicates (fd_effnet on random halves; :mod:`ablate.report.statistics`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ablate.report import agreement as paper_agreement
from ablate.report import intervals
from ablate.report import paper
from ablate.report import sample_noise
from ablate.report import statistics
from ablate.report.statistics import SeedArray

COLUMNS = ("all", "5 steps", "50 steps", "50 steps cfg5")


@dataclass
class RankStats:
    """Everything the leaderboard shows about uncertainty and the paper."""

    table: pd.DataFrame  # variant, COLUMNS, per seed, its low/high (numbers) and 95% CI (text), settings, beats next
    beats: pd.DataFrame                    # share of seeds in which the row beats the column, in table order
    seeds: int
    replicates: int                        # of Figure 3's bootstrap
    agreement: pd.DataFrame = field(default_factory=pd.DataFrame)    # headline readings: rho, p
    sensitivity: pd.DataFrame = field(default_factory=pd.DataFrame)  # every other reading: rho, p
    positions: pd.DataFrame = field(default_factory=pd.DataFrame)    # positions in the paper's pool
    agreement_note: str = ""
    figure3: dict[str, float | str] = field(default_factory=dict)
    noise: pd.DataFrame = field(default_factory=pd.DataFrame)        # the fidelity metric: sample SD vs seed SD
    noise_note: str = ""
    resampling: str = ""                   # which records' samples Figure 3's bootstrap resamples


def column_masks(settings: pd.DataFrame) -> dict[str, np.ndarray]:
    steps, cfg = settings["steps"].to_numpy(), settings["cfg"].to_numpy(dtype=float)
    return {"all": np.ones(len(settings), bool), "5 steps": steps == 5, "50 steps": steps == 50,
            "50 steps cfg5": (steps == 50) & (cfg == paper.PAPER_50_STEP_CFG)}


def rank_stats(frame: pd.DataFrame, alignment: str, fidelity: str, replicates: int = statistics.DEFAULT_REPLICATES,
               seed: int = 0) -> RankStats:
    """Table 1 with intervals, the beats matrix, paper agreement and Figure 3's test for one grid's records."""
    data = statistics.seed_array(frame, alignment, fidelity)
    masks = column_masks(data.settings)
    point = {k: v[0] for k, v in statistics.average_ranks(data, np.ones((1, len(data.seeds)), int), masks).items()}
    per_seed = intervals.per_seed_average_ranks(data, {"all": masks["all"]})["all"]  # (seeds, variants)
    mean, low, high = intervals.moderated_t_interval(per_seed, resolution=intervals.rank_resolution(masks["all"]))
    low, high = np.maximum(low, 1.0), np.minimum(high, len(data.variants))  # an average rank lies in [1, variants]
    table = pd.DataFrame({"variant": data.variants, **{k: point[k] for k in COLUMNS}})
    table["per seed"], table["per seed low"], table["per seed high"] = mean, low, high
    table["95% CI"] = [_interval(a, b, 2) for a, b in zip(low, high)]
    table["settings"] = data.present.any(-1).sum(-1)
    order = np.lexsort((np.array(data.variants), point["all"]))
    table = table.iloc[order].reset_index(drop=True)
    shares = statistics.beats(per_seed)[np.ix_(order, order)]
    k = len(data.seeds)
    table["beats next"] = [f"{shares[i, i + 1] * k:g}/{k}" if i + 1 < len(order) else "n/a" for i in range(len(order))]
    names = table["variant"].tolist()
    stats = RankStats(table=table, beats=pd.DataFrame(shares, index=names, columns=names), seeds=k,
                      replicates=replicates)
    stats.agreement, stats.sensitivity, stats.agreement_note = paper_agreement.agreement(frame, alignment, fidelity)
    stats.positions = paper_agreement.pool_positions(frame, table.set_index("variant")["all"], alignment, fidelity)
    stats.noise = sample_noise.split_table(data)
    stats.noise_note = sample_noise.note(stats.noise, fidelity, k)
    stats.resampling = sample_noise.resampling_line(data, fidelity)
    stats.figure3 = figure3_test(data, boot_counts=statistics.seed_counts(len(data.seeds), replicates,
                                                                          np.random.default_rng(seed + 1)))
    return stats


def _interval(low: float, high: float, digits: int) -> str:
    if not (np.isfinite(low) and np.isfinite(high)):
        return "n/a"
    return f"[{low:.{digits}f}, {high:.{digits}f}]"


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

    def statistic(counts: np.ndarray, values: np.ndarray = data.fidelity) -> np.ndarray:
        f = statistics.weighted_means(values, data.present, counts)             # (B, V, S)
        with np.errstate(invalid="ignore", divide="ignore"):
            loss = np.log(f[:, :, five["index_5"]] / f[:, :, five["index_50"]])  # (B, V, pairs)
            per_variant = np.nanmean(loss, axis=-1)
            return np.nanmean(per_variant[:, ~rf], -1) - np.nanmean(per_variant[:, rf], -1)

    point = float(statistic(np.ones((1, len(data.seeds)), int))[0])
    # the seeds are resampled, and the samples within a setting too where records keep what that needs
    resampled = statistics.within_setting(data, len(boot_counts), np.random.default_rng(len(boot_counts)))
    low, high = statistics.percentile_interval(statistic(boot_counts, resampled))
    return {"cfg": cfg, "pairs": len(five), "rf": int(rf.sum()), "others": int((~rf).sum()),
            "D": point, "low": float(low), "high": float(high)}
