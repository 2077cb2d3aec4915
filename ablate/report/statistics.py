"""Uncertainty of the leaderboard's numbers: a bootstrap over training seeds (pure numpy).

What is resampled: the grid's training seeds, jointly for every variant (seed k of every variant
shares its prompts and initial noise, so pairing is kept). A cell's seed also draws the prompts
and noise its samples are scored on, so seed resampling carries that variation too. Samples *within* a
setting are resampled as well where the record keeps what that needs (:mod:`ablate.resampling`,
:func:`within_setting`):

- the fidelity metric's parts (``metric_resamples``: KID's disjoint sample blocks, whose mean is the metric):
  each replicate redraws every record's blocks with replacement (:func:`part_means`), a bootstrap of the
  samples in blocks;
- replicates of the metric itself (``metric_replicates``: fd_effnet on random halves of the samples, whose
  spread estimates the metric's spread over the samples, :func:`ablate.scorers.frechet.half_sample_weights`):
  each replicate moves every record's value by the deviation of one of its stored replicates from their mean
  (:func:`replicate_deviations`; their mean is not the metric: a half carries a larger bias, so the record's
  value stays the centre). The stored replicate is one uniform draw per (replicate, seed), shared by every
  variant and setting of that seed: their samples share prompts and noise and the scorer drew the same halves
  for each, so the draw is paired, as the samples are. A seed drawn twice reuses its draw.

A record without either is resampled over seeds only (records written before the scorer kept them).

Per replicate the pipeline is the point estimate's (:mod:`ablate.report.ranking`): seed-mean metrics per
(variant, setting) over the drawn seeds (a NaN on a drawn seed makes the mean NaN; a variant without
records at a setting is left out of that setting; one with records but none of the drawn seeds, in a grid
not yet complete, takes the mean of the seeds it has), repeated non-dominated sorting per setting, ranks
averaged over the settings of a column. Intervals are percentile intervals of the replicates; only Figure 3's
test uses them now. The same machinery with one seed per row gives each seed's own ranking, whose
t-intervals (:mod:`ablate.report.intervals`) are the leaderboard's rank intervals.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ablate import resampling
from ablate.report import ranking
from ablate.report.ranking import SETTING_KEYS

DEFAULT_REPLICATES = 1000
LEVEL = 0.95            # confidence level of the intervals


@dataclass(frozen=True)
class SeedArray:
    """Metrics as arrays (variant, setting, seed); ``present`` marks records that exist."""

    variants: list[str]
    settings: pd.DataFrame  # one row per control setting: dataset, setting, steps, cfg, time_grid, weights
    seeds: list[int]
    alignment: np.ndarray
    fidelity: np.ndarray
    present: np.ndarray
    alignment_higher: bool = True
    fidelity_lower: bool = True
    fidelity_parts: np.ndarray | None = None  # (V, S, K, P) the fidelity metric's parts, NaN-padded; None: none kept
    fidelity_replicates: np.ndarray | None = None  # (V, S, K, R) its replicates (metric_replicates), NaN-padded


def seed_array(frame: pd.DataFrame, alignment: str, fidelity: str, variants: list[str] | None = None) -> SeedArray:
    """The records of ``frame`` (a :meth:`ablate.results.ResultsStore.frame`) as a :class:`SeedArray`."""
    variants = variants if variants is not None else sorted(frame["variant"].unique())
    frame = frame[frame["variant"].isin(variants)]
    settings = (frame[[*SETTING_KEYS, "steps", "cfg", "time_grid", "weights"]]
                .drop_duplicates(list(SETTING_KEYS)).sort_values(list(SETTING_KEYS)).reset_index(drop=True))
    seeds = sorted(int(s) for s in frame["seed"].unique())
    vi = {v: i for i, v in enumerate(variants)}
    si = {tuple(k): i for i, k in enumerate(settings[list(SETTING_KEYS)].itertuples(index=False))}
    ki = {s: i for i, s in enumerate(seeds)}
    shape = (len(variants), len(settings), len(seeds))
    a, f, present = np.zeros(shape), np.zeros(shape), np.zeros(shape, dtype=bool)
    parts: dict[tuple[int, int, int], list[float]] = {}
    replicates: dict[tuple[int, int, int], list[float]] = {}
    records = frame["record"] if "record" in frame else [None] * len(frame)
    for row, record in zip(frame[["variant", *SETTING_KEYS, "seed", alignment, fidelity]].itertuples(index=False),
                           records):
        index = (vi[row[0]], si[(row[1], row[2])], ki[int(row[3])])
        a[index], f[index], present[index] = float(row[4]), float(row[5]), True
        for key, into in ((resampling.PARTS, parts), (resampling.REPLICATES, replicates)):
            kept = ((record or {}).get(key) or {}).get(fidelity) if isinstance(record, dict) else None
            finite = [float(v) for v in kept or () if np.isfinite(v)]
            if finite and np.isfinite(f[index]):
                into[index] = finite
    return SeedArray(list(variants), settings, seeds, a, f, present,
                     *ranking.directions(frame, alignment, fidelity), _parts_array(parts, shape),
                     _parts_array(replicates, shape))


def _parts_array(parts: dict[tuple[int, int, int], list[float]], shape: tuple[int, ...]) -> np.ndarray | None:
    if not parts:
        return None
    out = np.full((*shape, max(len(v) for v in parts.values())), np.nan)
    for index, values in parts.items():
        out[index][:len(values)] = values
    return out


def part_means(parts: np.ndarray, values: np.ndarray, replicates: int, rng: np.random.Generator) -> np.ndarray:
    """(B, V, S, K) values with each record's parts (V, S, K, P; NaN-padded) redrawn with replacement and
    averaged; records without parts keep ``values``."""
    counts = np.isfinite(parts).sum(-1)                                               # (V, S, K)
    draws = np.floor(rng.random((replicates, *parts.shape)) * np.maximum(counts, 1)[..., None]).astype(int)
    drawn = np.take_along_axis(np.broadcast_to(parts, (replicates, *parts.shape)), draws, axis=-1).mean(-1)
    return np.where(counts > 0, drawn, values[None])


def replicate_deviations(replicates: np.ndarray, draws: int, rng: np.random.Generator) -> np.ndarray:
    """(B, V, S, K): per draw, each record's stored replicate (V, S, K, R; NaN-padded) minus the mean of its
    replicates (0 for a record without any); which replicate is one uniform draw per (draw, seed), the same for
    every variant and setting of the seed (paired: records with as many replicates take the same one)."""
    counts = np.isfinite(replicates).sum(-1)                                          # (V, S, K)
    u = rng.random((draws, replicates.shape[2]))                                      # (B, K)
    pick = np.minimum(np.floor(u[:, None, None, :] * np.maximum(counts, 1)[None]), np.maximum(counts - 1, 0))
    drawn = np.take_along_axis(np.broadcast_to(replicates, (draws, *replicates.shape)),
                               pick.astype(int)[..., None], axis=-1)[..., 0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)                               # records without replicates
        centre = np.nanmean(replicates, axis=-1)
    return np.where(counts > 0, drawn - centre[None], 0.0)


def within_setting(data: SeedArray, draws: int, rng: np.random.Generator) -> np.ndarray:
    """The fidelity values with the samples within each setting resampled where records keep what that needs:
    (B, V, S, K) (parts redrawn, :func:`part_means`; replicates' deviations added, :func:`replicate_deviations`),
    or ``data.fidelity`` itself (V, S, K) when no record keeps either (seeds only, as before they were kept)."""
    values = data.fidelity
    if data.fidelity_parts is not None:
        values = part_means(data.fidelity_parts, values, draws, rng)
    if data.fidelity_replicates is not None:
        values = values + replicate_deviations(data.fidelity_replicates, draws, rng)
    return values


def seed_counts(n_seeds: int, replicates: int, rng: np.random.Generator) -> np.ndarray:
    """(replicates, n_seeds) multinomial counts: each row one bootstrap draw of the seeds."""
    return rng.multinomial(n_seeds, np.full(n_seeds, 1.0 / n_seeds), size=replicates)


def weighted_means(values: np.ndarray, present: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """(B, V, S) seed means of ``values`` ((V, S, K), or (B, V, S, K) per replicate) with seed weights ``counts``
    (B, K); NaN where a drawn seed is NaN or no seed is
    present. Where a (variant, setting) has records but none of a replicate's drawn seeds (a grid not yet
    complete: fewer seeds for some variants), it contributes the mean of the seeds it has, so it is not
    ranked as missing; its own seed-to-seed variation is then only partly in the intervals (not at all
    with one seed)."""
    w = present[None] * counts[:, None, None, :].astype(float)          # (B, V, S, K)
    w = np.where((w.sum(-1) == 0)[..., None], present[None].astype(float), w)
    total = w.sum(-1)
    values = values if values.ndim == 4 else values[None]               # (B or 1, V, S, K)
    clean = np.where(np.isnan(values), 0.0, values)
    means = (w * clean).sum(-1) / np.where(total > 0, total, 1.0)
    poisoned = ((w > 0) & np.isnan(values)).any(-1)
    return np.where((total > 0) & ~poisoned, means, np.nan)


def batch_ranks(alignment: np.ndarray, fidelity: np.ndarray, active: np.ndarray, alignment_higher: bool = True,
                fidelity_lower: bool = True) -> np.ndarray:
    """Non-dominated ranks along the last axis (alignment up, fidelity down) for a batch of rows.

    Same rule as :func:`ablate.report.ranking.non_dominated_ranks` for the ``active`` entries (a NaN ranks
    after the last front); inactive entries get NaN.
    """
    c1, c2 = (-alignment if alignment_higher else alignment), (fidelity if fidelity_lower else -fidelity)
    valid = active & np.isfinite(c1) & np.isfinite(c2)
    le = (c1[..., :, None] <= c1[..., None, :]) & (c2[..., :, None] <= c2[..., None, :])
    lt = (c1[..., :, None] < c1[..., None, :]) | (c2[..., :, None] < c2[..., None, :])
    dominates = (le & lt & valid[..., :, None] & valid[..., None, :]).astype(np.float32)  # [..., p, q]
    ranks = np.zeros(alignment.shape)
    remaining, rank = valid.copy(), 1
    while remaining.any():  # a front: the remaining points no remaining point dominates (a batched mat-vec)
        dominated = (remaining[..., None, :].astype(np.float32) @ dominates)[..., 0, :] > 0
        front = remaining & ~dominated
        ranks[front] = rank
        remaining &= ~front
        rank += 1
    last = ranks.max(-1, keepdims=True) + 1
    ranks = np.where(active & ~valid, np.broadcast_to(last, ranks.shape), ranks)
    return np.where(active, ranks, np.nan)


def average_ranks(data: SeedArray, counts: np.ndarray, columns: dict[str, np.ndarray],
                  fidelity: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Per column (a boolean mask over settings): (B, V) average rank for each row of ``counts``; ``fidelity``:
    per-replicate fidelity values (B, V, S, K) (samples resampled, :func:`part_means`) instead of the records'."""
    a = weighted_means(data.alignment, data.present, counts)
    f = weighted_means(data.fidelity if fidelity is None else fidelity, data.present, counts)
    active = data.present.any(-1)                                          # (V, S)
    ranks = batch_ranks(np.moveaxis(a, 1, 2), np.moveaxis(f, 1, 2), active.T[None],
                        data.alignment_higher, data.fidelity_lower)  # (B, S, V)
    out = {}
    for name, mask in columns.items():
        part = ranks[:, mask, :]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a variant absent from every setting of the column
            out[name] = np.nanmean(part, axis=1) if part.shape[1] else np.full((len(counts), len(data.variants)), np.nan)
    return out


def percentile_interval(samples: np.ndarray, level: float = LEVEL, axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The central ``level`` interval of bootstrap replicates along ``axis`` (NaN-aware)."""
    tail = (1 - level) / 2 * 100
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanpercentile(samples, tail, axis=axis), np.nanpercentile(samples, 100 - tail, axis=axis)


def beats(avg: np.ndarray) -> np.ndarray:
    """(V, V) probability that variant i has a lower average rank than j (ties count one half)."""
    lower = (avg[:, :, None] < avg[:, None, :]).mean(0)
    tied = (avg[:, :, None] == avg[:, None, :]).mean(0)
    return lower + 0.5 * tied


def spearman(x: np.ndarray, y: np.ndarray) -> np.ndarray | float:
    """Spearman's rho (average ranks for ties) of ``y`` (n,) with ``x`` (n,) or with each row of ``x``
    (B, n); pairs with a NaN are dropped per row; NaN with fewer than 3 pairs or a constant side."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    rows = np.atleast_2d(x)
    out = np.full(len(rows), np.nan)
    for keep in {tuple(k) for k in (np.isfinite(rows) & np.isfinite(y))}:  # rows sharing their missing pairs
        mask = np.array(keep, bool)
        sel = (np.isfinite(rows) & np.isfinite(y) == mask).all(-1)
        if mask.sum() < 3:
            continue
        rx, ry = rankdata(rows[sel][:, mask]), rankdata(y[mask])
        dx, dy = rx - rx.mean(-1, keepdims=True), ry - ry.mean()
        with np.errstate(invalid="ignore", divide="ignore"):
            out[sel] = (dx * dy).sum(-1) / np.sqrt((dx ** 2).sum(-1) * (dy ** 2).sum())
    return float(out[0]) if x.ndim == 1 else out


def rankdata(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n along the last axis, tied values sharing their average rank."""
    x = np.asarray(x, float)
    less = (x[..., None, :] < x[..., :, None]).sum(-1)
    equal = (x[..., None, :] == x[..., :, None]).sum(-1)
    return less + (equal + 1) / 2


def mean_and_se(values: np.ndarray, axis: int = -1) -> tuple[np.ndarray, np.ndarray]:
    """Mean and its standard error (sample SD / sqrt(n)) along ``axis``; SE NaN for one value."""
    n = np.sum(np.isfinite(values), axis=axis)
    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN or single values: NaN, as documented
        mean = np.nanmean(values, axis=axis)
        se = np.where(n > 1, np.nanstd(values, axis=axis, ddof=1) / np.sqrt(np.maximum(n, 1)), np.nan)
    return mean, se
