"""Convergence and stability of training as numbers, per cell and per variant (issue 26), read from the
validation curve every record carries (``train.val_curve``: per validation, its ``step`` and the means over
the 8 validation levels of the native loss and the x0-MSE, ``val/{raw,ema}_{loss,x0_mse}``).

Per cell (a variant on a dataset with a seed):

- ``gain``: the last-quarter gain of the EMA validation loss, ``1 - L_last / L_q`` with ``L_q`` the last
  validation at or before 3/4 of the last validation's step (positive: still improving; relative).
- ``jump_raw``, ``jump_ema``: the largest validation-loss jump of the raw and the EMA weights, ``max_k L_k /
  min_{j<k} L_j - 1``: how far a validation rose above the lowest one before it (relative), with its step.
- ``ema_vs_raw``: the EMA weights' validation loss relative to the raw weights' at the kept checkpoint,
  ``val_loss / val_loss_raw - 1`` (negative: EMA better).

The criterion (issue 26): no jump above :data:`MAX_JUMP` (3%) of either weights in any cell, and a
last-quarter gain below :data:`MAX_GAIN` (0.5%) in every cell. :func:`warning_line` names exactly the
variants that miss it. Per variant the EMA-against-raw comparison is also made on the samples' metrics:
the share of (dataset, seed, steps, cfg, time grid) pairs where the EMA weights score worse than raw.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

TAIL = 0.25       # the last quarter of training
MAX_JUMP = 0.03   # no validation loss may rise more than 3% above its lowest earlier value
MAX_GAIN = 0.005  # converged: less than 0.5% EMA validation gain over the last quarter


def _curve(train: dict[str, Any], key: str) -> list[tuple[int, float]]:
    points = [(int(p["step"]), float(p[key])) for p in train.get("val_curve") or []
              if isinstance(p.get(key), (int, float)) and isinstance(p.get("step"), (int, float))]
    return sorted(points)


def last_quarter_gain(points: list[tuple[int, float]]) -> float:
    """``1 - L_last / L_q`` (see the module); NaN without a validation at or before 3/4 of the last step."""
    if not points:
        return math.nan
    last_step, last = points[-1]
    earlier = [v for s, v in points if s <= (1 - TAIL) * last_step]
    return 1 - last / earlier[-1] if earlier and earlier[-1] > 0 else math.nan


def largest_jump(points: list[tuple[int, float]]) -> tuple[float, int | None]:
    """(the largest ``L_k / min_{j<k} L_j - 1``, its step); (NaN, None) with fewer than two validations.
    A non-finite validation is an infinite jump."""
    best, worst, where = math.inf, -math.inf, None
    for step, value in points:
        if best < math.inf:
            rise = value / best - 1 if math.isfinite(value) and best > 0 else math.inf
            if rise > worst:
                worst, where = rise, step
        if math.isfinite(value):
            best = min(best, value)
    return (worst, where) if where is not None else (math.nan, None)


def cell_numbers(train: dict[str, Any]) -> dict[str, Any]:
    """One cell's numbers (see the module) from its training summary; NaN where the record lacks them."""
    jump_raw, at_raw = largest_jump(_curve(train, "val/raw_loss"))
    jump_ema, at_ema = largest_jump(_curve(train, "val/ema_loss"))
    ema, raw = train.get("val_loss"), train.get("val_loss_raw")
    known = isinstance(ema, (int, float)) and isinstance(raw, (int, float)) and raw > 0
    return {"gain": last_quarter_gain(_curve(train, "val/ema_loss")), "jump_raw": jump_raw, "jump_raw_step": at_raw,
            "jump_ema": jump_ema, "jump_ema_step": at_ema, "ema_vs_raw": ema / raw - 1 if known else math.nan}


def cell_table(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per (variant, dataset, seed) of a :meth:`ablate.results.ResultsStore.frame`: its numbers."""
    cells = frame.drop_duplicates(["variant", "dataset", "seed"])
    rows = [{"variant": v, "dataset": d, "seed": int(s), **cell_numbers((r or {}).get("train") or {})}
            for v, d, s, r in zip(cells["variant"], cells["dataset"], cells["seed"], cells["record"])]
    return pd.DataFrame(rows)


def _ema_worse(frame: pd.DataFrame, metric: str, higher_is_better: bool) -> pd.Series:
    """Per variant: the share of setting pairs (dataset, seed, steps, cfg, time grid) where EMA scores worse."""
    keys = ["variant", "dataset", "seed", "steps", "cfg", "time_grid"]
    wide = frame.pivot_table(index=keys, columns="weights", values=metric, aggfunc="first")
    if not {"ema", "raw"} <= set(wide.columns):
        return pd.Series(dtype=float)
    worse = wide["ema"] < wide["raw"] if higher_is_better else wide["ema"] > wide["raw"]
    return worse.groupby(level="variant").mean()


def variant_table(frame: pd.DataFrame, alignment: str, fidelity: str) -> pd.DataFrame:
    """Per variant: cells; the last-quarter gain (mean, min, max over cells); the largest raw and EMA jumps
    (with step and seed); EMA against raw on validation loss (mean, min, max) and on both metrics (share of
    pairs where EMA is worse); whether the criterion is met (``meets``: True, False, or None when no cell has
    a validation curve)."""
    cells = cell_table(frame)
    if cells.empty:
        return pd.DataFrame()
    rows = []
    for variant, part in cells.groupby("variant", sort=True):
        row: dict[str, Any] = {"variant": variant, "cells": len(part)}
        gain = part["gain"].to_numpy(dtype=float)
        row.update(gain=_nanmean(gain), gain_min=_nanmin(gain), gain_max=_nanmax(gain),
                   gain_cells=int(np.isfinite(gain).sum()))
        for weights in ("raw", "ema"):
            jumps = part[f"jump_{weights}"].to_numpy(dtype=float)
            known = np.isfinite(jumps) | np.isposinf(jumps)
            if known.any():
                worst = part[known].iloc[int(np.argmax(jumps[known]))]
                row.update({f"jump_{weights}": float(worst[f"jump_{weights}"]),
                            f"jump_{weights}_step": worst[f"jump_{weights}_step"], f"jump_{weights}_seed": int(worst["seed"])})
            else:
                row.update({f"jump_{weights}": math.nan, f"jump_{weights}_step": None, f"jump_{weights}_seed": None})
        ratio = part["ema_vs_raw"].to_numpy(dtype=float)
        row.update(ema_vs_raw=_nanmean(ratio), ema_vs_raw_min=_nanmin(ratio), ema_vs_raw_max=_nanmax(ratio))
        row["meets"] = _meets(row, part)
        rows.append(row)
    table = pd.DataFrame(rows)
    table["ema_fidelity_worse"] = table["variant"].map(_ema_worse(frame, fidelity, higher_is_better=False))
    table["ema_alignment_worse"] = table["variant"].map(_ema_worse(frame, alignment, higher_is_better=True))
    return table


def _meets(row: dict[str, Any], part: pd.DataFrame) -> bool | None:
    jumps = part[["jump_raw", "jump_ema"]].to_numpy(dtype=float)
    gains = part["gain"].to_numpy(dtype=float)
    if not (np.isfinite(gains).any() or np.isfinite(jumps).any() or np.isposinf(jumps).any()):
        return None
    unstable = bool((np.nan_to_num(jumps, nan=-np.inf) > MAX_JUMP).any())
    return not unstable and bool(np.isfinite(gains).all() and (gains < MAX_GAIN).all())


def _nanmean(x: np.ndarray) -> float:
    return float(np.mean(x[np.isfinite(x)])) if np.isfinite(x).any() else math.nan


def _nanmin(x: np.ndarray) -> float:
    return float(np.min(x[np.isfinite(x)])) if np.isfinite(x).any() else math.nan


def _nanmax(x: np.ndarray) -> float:
    return float(np.max(x[np.isfinite(x)])) if np.isfinite(x).any() else math.nan


def misses(table: pd.DataFrame) -> list[str]:
    """The variants that miss the criterion, in the table's order."""
    return [] if table.empty else table.loc[table["meets"].eq(False), "variant"].tolist()


def warning_line(table: pd.DataFrame) -> str:
    """The line at the top of the leaderboard: names exactly the variants that miss the criterion."""
    if table.empty:
        return "Convergence: no training summaries in these records."
    unknown = table.loc[table["meets"].isna(), "variant"].tolist()
    tail = (f" {len(unknown)} variant(s) have no validation curve in their records and are not checked: "
            f"{', '.join(unknown)}." if unknown else "")
    criterion = (f"no validation-loss jump above {MAX_JUMP:.0%} (raw or EMA weights) in any cell and a last-quarter "
                 f"EMA validation gain below {MAX_GAIN:.1%} in every cell")
    missed = misses(table)
    if not missed:
        checked = len(table) - len(unknown)
        return f"Convergence: all {checked} checked variants meet the criterion ({criterion}).{tail}"
    return (f"Convergence WARNING: {len(missed)} of {len(table)} variants miss the criterion ({criterion}), so their "
            f"ranks may reflect training length or instability, not the formulation: {', '.join(missed)} (see "
            f"'Convergence and stability').{tail}")


def _pct(x: Any, digits: int = 1) -> str:
    if x is None or np.isnan(x):
        return "n/a"
    return "inf" if np.isposinf(x) else f"{100 * x:+.{digits}f}%"


def _step(step: Any) -> str:
    return "n/a" if step is None or (isinstance(step, float) and math.isnan(step)) else \
        f"{int(step) // 1000}k" if int(step) % 1000 == 0 else str(int(step))


def shown(table: pd.DataFrame, order: list[str]) -> pd.DataFrame:
    """The table as the leaderboard shows it, rows in ``order`` (Table 1's)."""
    if table.empty:
        return table
    rank = {v: i for i, v in enumerate(order)}
    t = table.sort_values("variant", key=lambda s: s.map(lambda v: rank.get(v, len(rank)))).reset_index(drop=True)

    def jump(r: Any, w: str) -> str:
        value = r[f"jump_{w}"]
        if r[f"jump_{w}_step"] is None or pd.isna(r[f"jump_{w}_step"]):
            return "n/a"
        return "none" if value <= 0 else f"{_pct(value)} ({_step(r[f'jump_{w}_step'])}, seed {int(r[f'jump_{w}_seed'])})"

    def share(x: Any) -> str:
        return "n/a" if not np.isfinite(x) else f"{x:.0%}"

    return pd.DataFrame({
        "variant": t["variant"], "cells": t["cells"],
        "last-quarter gain [seeds]": [f"{_pct(r.gain, 2)} [{_pct(r.gain_min, 2)}, {_pct(r.gain_max, 2)}]"
                                      if np.isfinite(r.gain) else "n/a" for r in t.itertuples()],
        "largest jump raw": [jump(r, "raw") for _, r in t.iterrows()],
        "largest jump EMA": [jump(r, "ema") for _, r in t.iterrows()],
        "EMA vs raw val loss [seeds]": [f"{_pct(r.ema_vs_raw)} [{_pct(r.ema_vs_raw_min)}, {_pct(r.ema_vs_raw_max)}]"
                                        if np.isfinite(r.ema_vs_raw) else "n/a" for r in t.itertuples()],
        "EMA fidelity worse": [share(x) for x in t["ema_fidelity_worse"]],
        "EMA alignment worse": [share(x) for x in t["ema_alignment_worse"]],
        "criterion": ["meets" if m is True else "MISSES" if m is False else "n/a" for m in t["meets"]],
    })


NOTE = (f"Per variant, from each cell's validation curve (ablate/report/convergence.py). Last-quarter gain: 1 - "
        "L_last / L_q of the EMA validation loss, L_q the last validation at or before 3/4 of training (positive: "
        "still improving), mean [min, max] over the cells (seeds). Largest jump: the largest rise of a validation "
        "loss above the lowest validation before it, relative, with its step and seed ('none': it never rose). EMA vs raw val loss: the EMA "
        "weights' validation loss relative to the raw weights' at the kept checkpoint (negative: EMA better). EMA "
        "fidelity / alignment worse: the share of (seed, steps, cfg, time grid) pairs where the EMA weights' samples "
        f"score worse than the raw weights'. Criterion: no jump above {MAX_JUMP:.0%} in any cell and a gain below "
        f"{MAX_GAIN:.1%} in every cell.")
