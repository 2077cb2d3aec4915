"""Ranking variants as the paper's Table 1 does, and the Table 2 / validation views (pure pandas).

Protocol (Esser et al. 2024, section 5.1): a *control setting* is a dataset and a
:class:`~ablate.config.setting.Setting` (solver, steps, cfg, time_grid, weights; the frame's ``setting``
column holds its key). Metrics are first averaged over seeds per (variant, setting); then, in each
setting, the variants are ranked by repeated non-dominated sorting on (alignment up, fidelity
down): the Pareto front gets rank 1, is removed, the next front gets rank 2, and so on. A
variant's score is its rank averaged over all settings ("all"), over the 5-step settings and over
the 50-step settings. Lower is better.

NaN: a metric that is NaN for any seed makes the (variant, setting) value NaN (a failed seed is
not hidden by averaging the others), and NaN points rank after every front of that setting.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ablate.errors import ConfigError
from ablate.results import DICT_KEYS, SCALAR_KEYS, SETTING_FIELDS

# First present is used. Which way each is better comes from the records (:func:`higher_is_better`):
# ckid_effnet is an alignment metric where lower is better; the probe's pair failed the validity bench
# (leaderboard/validity-fashion-mnist.md) and is the last resort.
ALIGNMENT_METRICS = ("clip", "ckid_effnet", "align_probe")
FIDELITY_METRICS = ("fid_clip", "fd_effnet", "kid_effnet", "fd_probe")  # fd_effnet: passes every corruption of the validity bench
SETTING_KEYS = ("dataset", "setting")  # a control setting
CELL_KEYS = ("variant",) + SETTING_KEYS
_GROUP = list(CELL_KEYS + SETTING_FIELDS)  # the fields are functions of the key: carried along


def non_dominated_ranks(
    alignment: np.ndarray, fidelity: np.ndarray, alignment_higher: bool = True, fidelity_lower: bool = True,
) -> np.ndarray:
    """Rank points by repeated non-dominated sorting (1 = Pareto front).

    p dominates q iff p is at least as good as q in both objectives and strictly better in one,
    so identical points never dominate each other and share a front. Points with a NaN in either
    objective all get the rank after the last front (rank 1 if no point is finite).
    """
    a = np.asarray(alignment, dtype=float)
    f = np.asarray(fidelity, dtype=float)
    if a.ndim != 1 or a.shape != f.shape:
        raise ValueError(f"alignment and fidelity must be 1-D of equal length, got {a.shape} and {f.shape}")
    cost = np.stack([-a if alignment_higher else a, f if fidelity_lower else -f], axis=1)  # lower is better
    valid = ~np.isnan(cost).any(axis=1)
    le = (cost[:, None, :] <= cost[None, :, :]).all(axis=2)
    lt = (cost[:, None, :] < cost[None, :, :]).any(axis=2)
    dominates = le & lt  # dominates[p, q]: p dominates q
    ranks = np.zeros(len(a), dtype=int)
    remaining = valid.copy()
    rank = 1
    while remaining.any():
        dominated = dominates[remaining].any(axis=0)
        front = remaining & ~dominated
        ranks[front] = rank
        remaining &= ~front
        rank += 1
    ranks[~valid] = rank
    return ranks


def higher_is_better(frame: pd.DataFrame, metric: str, role: str) -> bool:
    """Which way ``metric`` is better, as its records' scorer provenance declares it (``metrics`` ->
    ``higher_is_better``); records without the declaration: alignment higher, anything else lower."""
    for scorers in frame["scorers"] if "scorers" in frame else ():
        for provenance in (scorers or {}).values():
            declared = (provenance.get("metrics") if isinstance(provenance, dict) else None) or {}
            if isinstance(declared, dict) and isinstance(declared.get(metric), dict):
                return bool(declared[metric]["higher_is_better"])
    return role == "alignment"


def pair_label(variant: str, backbone: str | None) -> str:
    """The name a (variant, backbone) pair is ranked under on a grid with a backbone axis: ``"<variant> @ <backbone>"``."""
    return f"{variant} @ {backbone or 'dit'}"


def ranks_pairs(frame: pd.DataFrame) -> bool:
    """Whether ``frame``'s variants are (variant, backbone) pairs (:func:`pair_label`; the formulation is kept as
    ``formulation_variant`` by :func:`ablate.report.backbones.label_variants`)."""
    return "formulation_variant" in frame


def directions(frame: pd.DataFrame, alignment: str, fidelity: str) -> tuple[bool, bool]:
    """(alignment: higher is better, fidelity: lower is better), as the records declare them."""
    return higher_is_better(frame, alignment, "alignment"), not higher_is_better(frame, fidelity, "fidelity")


def metric_columns(frame: pd.DataFrame) -> list[str]:
    """The metric columns of a :meth:`ablate.results.ResultsStore.frame`."""
    reserved = set(SCALAR_KEYS) | set(DICT_KEYS) | {"record", "path"}
    return [
        c for c in frame.columns
        if c not in reserved and not c.startswith(("train_", "eval_")) and frame[c].notna().any()
    ]


def choose_metric(frame: pd.DataFrame, role: str, override: str | None = None) -> str:
    """The alignment or fidelity metric to rank on: ``override``, else the first present default."""
    available = metric_columns(frame)
    defaults = ALIGNMENT_METRICS if role == "alignment" else FIDELITY_METRICS
    if override is not None:
        if override not in available:
            raise ConfigError(
                f"The {role} metric {override!r} (--{role}) is not in these results. Metrics "
                f"present: {', '.join(available) or 'none'}."
            )
        return override
    for name in defaults:
        if name in available:
            return name
    raise ConfigError(
        f"None of the default {role} metrics ({', '.join(defaults)}) is in these results; metrics "
        f"present: {', '.join(available) or 'none'}. Pass --{role} METRIC to choose one."
    )


def extra_metrics(frame: pd.DataFrame, alignment: str, fidelity: str) -> list[str]:
    """The other default metrics present (e.g. the probe's beside effnet's): extra columns, not ranked on."""
    present = set(metric_columns(frame)) - {alignment, fidelity}
    return [m for m in ALIGNMENT_METRICS + FIDELITY_METRICS if m in present]


def seed_means(frame: pd.DataFrame, alignment: str, fidelity: str, extra: list[str] | None = None) -> pd.DataFrame:
    """Per (variant, setting): the seed-mean of both metrics (and of ``extra`` ones; NaN if any seed is NaN), its
    standard error (``<metric>_se``: sample SD / sqrt(seeds), NaN for one seed) and the seed count."""
    grouped = frame.groupby(_GROUP, dropna=False, sort=True)
    metrics = [alignment, fidelity, *(extra or [])]
    means = grouped[metrics].agg(lambda s: float(np.mean(s.to_numpy(dtype=float))))
    for metric in metrics:
        means[f"{metric}_se"] = grouped[metric].agg(_standard_error)
    means["seeds"] = grouped["seed"].nunique()
    return means.reset_index()


def _standard_error(values: pd.Series) -> float:
    x = values.to_numpy(dtype=float)
    return float(np.std(x, ddof=1) / np.sqrt(len(x))) if len(x) > 1 else float("nan")


def setting_ranks(means: pd.DataFrame, alignment: str, fidelity: str, alignment_higher: bool = True,
                  fidelity_lower: bool = True) -> pd.DataFrame:
    """``means`` with a ``rank`` column: non-dominated rank of each variant within its setting."""
    ranked = means.copy()
    ranked["rank"] = 0
    for _, idx in ranked.groupby(list(SETTING_KEYS), dropna=False).groups.items():
        ranked.loc[idx, "rank"] = non_dominated_ranks(
            ranked.loc[idx, alignment].to_numpy(), ranked.loc[idx, fidelity].to_numpy(), alignment_higher, fidelity_lower
        )
    return ranked


def table1(ranks: pd.DataFrame) -> pd.DataFrame:
    """Average rank per variant: "all", "5 steps", "50 steps" (NaN when no such setting), "settings".

    Sorted by "all" (then by variant name).
    """
    by_variant = ranks.groupby("variant")
    table = pd.DataFrame({
        "all": by_variant["rank"].mean(),
        "5 steps": ranks[ranks["steps"] == 5].groupby("variant")["rank"].mean(),
        "50 steps": ranks[ranks["steps"] == 50].groupby("variant")["rank"].mean(),
        "settings": by_variant["rank"].size(),
    })
    table = table.rename_axis("variant").reset_index()
    return table.sort_values(["all", "variant"], kind="stable").reset_index(drop=True)


def table2(
    means: pd.DataFrame, alignment: str, fidelity: str, order: list[str], steps: int = 25, weights: str = "ema",
    extra: list[str] | None = None, marks: dict[str, str] | None = None,
) -> pd.DataFrame:
    """Per dataset: seed-mean alignment and fidelity (then the ``extra`` metrics) at ``steps`` with ``weights``
    (the paper's Table 2), as text ``mean ± SE`` where several seeds give a standard error (``mean ± h`` where
    ``means`` has the 95% half-width ``h`` in ``<metric>_ci95``: :func:`ablate.report.intervals.with_t_half_widths`).

    Columns ``"<dataset> <metric><mark>"`` (``marks``: e.g. a failed validity check); when a dataset has several
    (cfg, time_grid) at these steps, the column names add ``cfg=<cfg> <time_grid>``. Rows follow ``order`` (Table 1's order).
    """
    sel = means[(means["steps"] == steps) & (means["weights"] == weights)]
    if sel.empty:
        return pd.DataFrame(columns=["variant"])
    several = sel.groupby("dataset")[["cfg", "time_grid"]].apply(lambda d: len(d.drop_duplicates()) > 1)
    columns: dict[str, pd.Series] = {}
    for (dataset, cfg, time_grid), part in sel.groupby(["dataset", "cfg", "time_grid"], sort=True):
        label = f"{dataset} cfg={cfg:g} {time_grid}" if several[dataset] else str(dataset)
        part = part.set_index("variant")
        for metric in (alignment, fidelity, *(m for m in extra or [] if m in part)):
            spread = part.get(f"{metric}_ci95", part.get(f"{metric}_se"))  # the 95% half-width where known
            columns[f"{label} {metric}{(marks or {}).get(metric, '')}"] = _with_se(part[metric], spread)
    return _in_order(pd.DataFrame(columns), order)


def _with_se(mean: pd.Series, se: pd.Series | None) -> pd.Series:
    if se is None or not np.isfinite(se.to_numpy(dtype=float)).any():
        return mean
    smallest = float(np.nanmin(se[se > 0])) if (se > 0).any() else 1.0
    digits = max(3, min(6, int(1 - np.floor(np.log10(smallest)))))  # two significant digits of the SE
    return pd.Series([f"{m:.{digits}f} ± {e:.{digits}f}" if np.isfinite(e) else f"{m:.{digits}f}"
                      for m, e in zip(mean, se)], index=mean.index)


def validation_table(frame: pd.DataFrame, order: list[str]) -> pd.DataFrame:
    """Per variant and dataset: seed-mean ``val_loss`` (native) and ``val_x0_mse`` (cross-formulation).

    The training summary repeats in every record of a cell, so each (variant, dataset, seed)
    counts once. Columns ``"<dataset> val_loss"``, ``"<dataset> val_x0_mse"``.
    """
    keys = ["train_val_loss", "train_val_x0_mse"]
    present = [k for k in keys if k in frame]
    if not present:
        return pd.DataFrame(columns=["variant"])
    cells = frame.drop_duplicates(["variant", "dataset", "seed"])
    means = cells.groupby(["variant", "dataset"])[present].mean()
    columns: dict[str, pd.Series] = {}
    for dataset in sorted(cells["dataset"].unique()):
        part = means.xs(dataset, level="dataset")
        for key in present:
            columns[f"{dataset} {key.removeprefix('train_')}"] = part[key]
    return _in_order(pd.DataFrame(columns), order)


def _in_order(table: pd.DataFrame, order: list[str]) -> pd.DataFrame:
    rows = [v for v in order if v in table.index] + sorted(v for v in table.index if v not in order)
    return table.loc[rows].rename_axis("variant").reset_index()
