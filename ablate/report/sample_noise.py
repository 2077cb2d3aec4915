"""How much of the fidelity metric's uncertainty is the samples and how much the training seeds (pure numpy).

Per variant, pooled over its settings (the root mean of the variances, so settings with a large spread weigh most):

- ``sample SD``: the spread of the metric over the samples of one trained network at one setting, from the
  records' replicates (``metric_replicates``: fd_effnet on random halves of the samples, whose SD estimates the
  SD over fresh sample sets; :func:`ablate.scorers.frechet.half_sample_weights`);
- ``seed SD``: the spread of the record values over training seeds at a setting. A seed also draws its own
  prompts and noise, so this contains the sample spread: the training seeds' own share is
  ``training SD = sqrt(seed SD^2 - sample SD^2)`` (0 where the difference is negative);
- ``seed / sample``: how much more a retrained network moves the metric than resampling one. The FID Lottery
  (Dufour, Efros and Perez, 2026) measured about 3.2 for FID on its models.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from ablate.report.statistics import SeedArray

LITERATURE = "retraining moves FID about 3.2x more than resampling a fixed network (Dufour, Efros and Perez, 2026)"


def split_table(data: SeedArray) -> pd.DataFrame:
    """variant, records (with replicates / all), sample SD, seed SD, training SD, seed / sample; one row per
    variant with replicates, then ``all`` (every variant pooled); empty when no record keeps replicates."""
    if data.fidelity_replicates is None:
        return pd.DataFrame()
    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)                     # records or settings with fewer than 2
        sample_var = np.nanvar(data.fidelity_replicates, axis=-1, ddof=1)   # (V, S, K)
        values = np.where(data.present, data.fidelity, np.nan)
        seed_var = np.nanvar(values, axis=-1, ddof=1)                       # (V, S)
    kept = np.isfinite(sample_var)
    rows = [_row(name, sample_var[v], seed_var[v], kept[v], data.present[v])
            for v, name in enumerate(data.variants) if kept[v].any()]
    rows.append(_row("all", sample_var, seed_var, kept, data.present))
    return pd.DataFrame(rows)


def _row(name: str, sample_var: np.ndarray, seed_var: np.ndarray, kept: np.ndarray, present: np.ndarray) -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)                     # nothing to pool: NaN
        sample = float(np.sqrt(np.nanmean(sample_var)))
        seed = float(np.sqrt(np.nanmean(seed_var)))
    training = float(np.sqrt(max(seed ** 2 - sample ** 2, 0.0))) if np.isfinite(seed) else float("nan")
    return {"variant": name, "records": f"{int(kept.sum())}/{int(present.sum())}", "sample SD": sample,
            "seed SD": seed, "training SD": training,
            "seed / sample": seed / sample if sample > 0 else float("nan")}


def note(table: pd.DataFrame, fidelity: str, seeds: int) -> str:
    """What the table shows, or why it is empty."""
    if table.empty:
        return (f"No record keeps replicates of {fidelity} (``metric_replicates``; records written before they were "
                "kept, or a metric that has none): its uncertainty is measured over training seeds only.")
    pooled = table.iloc[-1]
    text = (f"{fidelity}: 'sample SD' is its spread over the samples of one trained network at one setting (the SD of "
            "its values on random halves of the samples, kept in each record), 'seed SD' its spread over "
            f"the {seeds} training seeds at a setting (which contains the sample spread, as each seed draws its own "
            "prompts and noise), 'training SD' = sqrt(seed SD^2 - sample SD^2); each the root mean variance over "
            f"the variant's settings. Pooled over variants, seed SD / sample SD = {pooled['seed / sample']:.2f}; for "
            f"reference, {LITERATURE}. With few seeds the seed SD is itself uncertain, "
            "and the variants' seed SDs move together (the variants of a seed share its prompts and noise). "
            "'records': the records that keep replicates; the others are resampled over seeds only.")
    return text if seeds > 1 else text + " One training seed: no seed SD."


def resampling_line(data: SeedArray, fidelity: str) -> str:
    """Which records' samples Figure 3's bootstrap resamples within a setting, and which over seeds only."""
    total = int(data.present.sum())
    kept = {kind: int(np.isfinite(array).any(-1).sum()) if array is not None else 0
            for kind, array in (("parts", data.fidelity_parts), ("replicates", data.fidelity_replicates))}
    if not any(kept.values()):
        return (f"No record keeps parts or replicates of {fidelity}: Figure 3's bootstrap resamples training seeds "
                "only.")
    which = " and ".join(f"its {kind} in {count}" for kind, count in kept.items() if count)
    return (f"Figure 3's bootstrap also resamples the samples within a setting, from what the records keep of "
            f"{fidelity}: {which} of {total} records; the others over training seeds only.")
