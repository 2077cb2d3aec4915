"""What the leaderboard says about itself: convergence flags per variant and the deviations from the
paper's protocol, both read from the records (their training summary, config and solver details).

Convergence flags (a variant is flagged when any of its cells is):

- ``still improving``: the best EMA validation is the cell's last validation and it is more than 1%
  below the validation a quarter of the steps earlier (from the record's validation curve
  ``train.val_curve``; records without one: ``best_step == max_steps``).
- ``EMA val > raw``: at the kept checkpoint the EMA weights' validation loss is above the raw
  weights' (``train.val_loss`` vs ``train.val_loss_raw``).
- ``EMA samples worse``: the EMA weights' fidelity is worse than the raw weights' in most of the
  (dataset, seed, steps, cfg, time grid) pairs that have both.

A grid whose name is ``smoke`` or starts with ``smoke-`` is a smoke test of the machinery: the
rendered leaderboard says so first (:func:`is_smoke`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ablate.report import paper
from ablate.results import preview_path


def is_smoke(grid: str) -> bool:
    return grid == "smoke" or grid.startswith("smoke-")


TAIL, TOLERANCE = 0.25, 0.01  # still improving: > 1% lower EMA validation loss over the last quarter of the steps


def _still_improving(train: dict[str, Any]) -> bool | None:
    """Whether a cell was still improving when it stopped: its best EMA validation is its last one and
    that is more than ``TOLERANCE`` (relative) below the validation at or before the last ``TAIL`` of its
    steps. A curve has to flatten, not merely stop going down (any finite run's last validation can be
    its best by noise alone)."""
    curve = sorted((p for p in train.get("val_curve") or [] if isinstance(p.get("val/ema_loss"), (int, float))),
                   key=lambda p: p["step"])
    if curve:
        best = min(curve, key=lambda p: (p["val/ema_loss"], p["step"]))
        last = curve[-1]
        if best["step"] != last["step"]:
            return False
        earlier = [p for p in curve if p["step"] <= (1 - TAIL) * last["step"]]
        if not earlier:
            return True  # too few validations to tell: counted as still improving
        return last["val/ema_loss"] < (1 - TOLERANCE) * earlier[-1]["val/ema_loss"]
    if "best_step" in train and "max_steps" in train:
        return int(train["best_step"]) >= int(train["max_steps"])
    return None


def convergence_table(frame: pd.DataFrame, fidelity: str) -> pd.DataFrame:
    """Per variant: cells, how many are still improving, how many have EMA val loss above raw, the share of
    setting pairs where EMA samples score worse than raw, and the flags."""
    cells = frame.drop_duplicates(["variant", "dataset", "seed"])
    rows = []
    for variant, part in cells.groupby("variant", sort=True):
        trains = [r.get("train") or {} for r in part["record"]]
        improving = [x for x in map(_still_improving, trains) if x is not None]
        ema_val = [t["val_loss"] > t["val_loss_raw"] for t in trains
                   if isinstance(t.get("val_loss"), (int, float)) and isinstance(t.get("val_loss_raw"), (int, float))]
        rows.append({"variant": variant, "cells": len(part), "improving": sum(improving), "known": len(improving),
                     "ema_val_worse": sum(ema_val), "ema_val_known": len(ema_val)})
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    keys = ["variant", "dataset", "seed", "steps", "cfg", "time_grid"]
    wide = frame.pivot_table(index=keys, columns="weights", values=fidelity, aggfunc="first")
    if {"ema", "raw"} <= set(wide.columns):
        worse = (wide["ema"] > wide["raw"]).groupby(level="variant").mean()
        table["ema_samples_worse"] = table["variant"].map(worse)
    else:
        table["ema_samples_worse"] = np.nan
    table["flags"] = [_flags(r) for r in table.itertuples()]
    return table


def _flags(row: Any) -> str:
    flags = []
    if row.improving:
        flags.append(f"still improving ({row.improving}/{row.known} cells)")
    if row.ema_val_worse:
        flags.append(f"EMA val > raw ({row.ema_val_worse}/{row.ema_val_known} cells)")
    if isinstance(row.ema_samples_worse, float) and row.ema_samples_worse > 0.5:
        flags.append(f"EMA samples worse ({row.ema_samples_worse:.0%} of settings)")
    return "; ".join(flags)


def convergence_line(table: pd.DataFrame) -> str:
    """The one line at the top of the leaderboard."""
    if table.empty:
        return "Convergence: no training summaries in these records."
    improving = (table["improving"] > 0).sum()
    ema = ((table["ema_val_worse"] > 0) | (table["ema_samples_worse"] > 0.5)).sum()
    if not improving and not ema:
        return (f"Convergence: all {len(table)} variants passed their best EMA validation before the last one, "
                "and their EMA weights are not worse than raw.")
    return (f"Convergence WARNING: {improving} of {len(table)} variants were still improving at their last "
            f"validation and {ema} have EMA weights worse than raw (see 'Convergence'); their ranks may "
            "reflect training length, not the formulation.")


def completeness_line(frame: pd.DataFrame) -> str | None:
    """A line for the top of the leaderboard when the grid is not finished: how many of the cells its file
    names (variants x datasets x seeds, from the newest record's config) have records, and which variants
    have none. None when every cell has records (or no record carries its grid's config)."""
    configs = frame.sort_values("created")["config"]
    config = next((c for c in reversed(configs.tolist()) if isinstance(c, dict) and c.get("variants")), None)
    if config is None:
        return None
    expected = {(v, d, int(s)) for v in config["variants"] for d in config.get("datasets", []) for s in config.get("seeds", [])}
    found = set(zip(frame["variant"], frame["dataset"], frame["seed"].astype(int)))
    if not expected or expected <= found:
        return None
    none = [v for v in config["variants"] if not any(c[0] == v for c in found)]
    return (f"INCOMPLETE GRID: {len(expected & found)} of the {len(expected)} cells of the grid (variants x datasets x "
            f"seeds) have results; the ranks cover only those" +
            (f"; {len(none)} variants have none yet: {', '.join(none)}." if none else "."))


def _config_values(frame: pd.DataFrame, *path: str) -> str:
    values = set()
    for config in frame["config"]:
        node: Any = config
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
        values.add("n/a" if node is None else json_text(node))
    return ", ".join(sorted(values))


def json_text(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def last_call_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Per variant and time grid: the rf-equivalent noise level of the last network call, at each step count."""
    rows = []
    for record in frame["record"]:
        details = record.get("solver_details") or {}
        if "last_call_rf_noise" in details:
            rows.append({"variant": record["variant"], "time_grid": record["time_grid"], "steps": record["steps"],
                         "noise": details["last_call_rf_noise"]})
    if not rows:
        return pd.DataFrame()
    data = pd.DataFrame(rows).drop_duplicates(["variant", "time_grid", "steps"])
    table = data.pivot_table(index="variant", columns=["time_grid", "steps"], values="noise", aggfunc="first")
    table.columns = [f"{grid} grid, {steps} steps" for grid, steps in table.columns]
    return table.reset_index()


def deviations(frame: pd.DataFrame, variants: list[str]) -> list[str]:
    """Where this grid's protocol differs from the paper's, one line each, with the values recorded."""
    outside = [v for v in variants if v not in paper.TABLE1]
    references = sorted({str(p.get("reference_set")) for s in frame["scorers"] for p in (s or {}).values()
                         if isinstance(p, dict) and p.get("reference_set")})
    grids = sorted(set(frame["time_grid"]))
    noise = last_call_table(frame)
    worst = ""
    if not noise.empty:
        column = noise.columns[1:][int(np.nanargmax(noise.iloc[:, 1:].max().to_numpy()))]
        top = noise.loc[noise[column].idxmax()]
        worst = f" The highest last-call noise level is {top[column]:.2f} ({top['variant']}, {column})."
    return [
        f"Prompts and the fidelity reference come from each dataset's test split (reference sets: "
        f"{', '.join(references) or 'n/a'}); the paper uses {paper.PAPER_EVAL}.",
        "Columns: '5 steps' averages the 5-step settings; '50 steps' averages every 50-step setting (all cfgs); "
        f"'50 steps cfg5' only cfg {paper.PAPER_50_STEP_CFG:g}, the paper-faithful reading (its 50-step values are "
        "multiples of 0.25, which fits 4 settings, not 12). Both are shown; the paper comparison uses '50 steps cfg5'.",
        f"Rank pool: Table 1 ranks all {len(variants)} variants of this grid together"
        + (f", including {len(outside)} the paper never ran ({', '.join(outside)}), which can move the others' "
           "ranks; the paper comparison re-ranks the paper's variants among themselves." if outside else "."),
        f"CFG dropout: one conditioning embedding replaced by the null one with probability "
        f"{_config_values(frame, 'train', 'cond_dropout')}; the paper: {paper.PAPER_CFG_DROPOUT}.",
        f"Gradient clipping at norm {_config_values(frame, 'train', 'grad_clip')} (the paper states none); "
        f"training {_config_values(frame, 'train', 'max_steps')} steps at batch "
        f"{_config_values(frame, 'train', 'batch_size')} (the paper: batch 1024).",
        f"EMA: updated every {_config_values(frame, 'train', 'ema', 'every')} steps with decay "
        f"{_config_values(frame, 'train', 'ema', 'decay')}, starting at step "
        f"{_config_values(frame, 'train', 'ema', 'start')} (0: from the first update, as the paper; n/a: records "
        "from before the option, which behaved as 0).",
        f"Solver time grid: {', '.join(grids)} ('own': uniform in each formulation's t, the paper's literal "
        "reading; 'rf': the same rf noise levels for every formulation). The last network call's rf-equivalent "
        "noise level per variant is in 'Solver: last network call'." + worst,
        _learning_rate_line(frame),
    ]


def _learning_rate_line(frame: pd.DataFrame) -> str:
    """The learning rate(s): the grid's one rate (the paper: 1e-4 for every formulation), or each variant's own
    tuned rate (``train.lr_by_variant``, :mod:`ablate.runs.lr_tuning`), which the ranks then compare."""
    own: dict[str, set[float]] = {}
    for variant, config in zip(frame["variant"], frame["config"]):
        rates = ((config or {}).get("train") or {}).get("lr_by_variant") or {}
        if variant in rates:
            own.setdefault(variant, set()).add(float(rates[variant]))
    if not own:
        return f"Learning rate {_config_values(frame, 'train', 'lr')} for every variant (the paper: 1e-4 for all)."
    listed = "; ".join(f"{v} {', '.join(f'{r:.1e}' for r in sorted(rs))}" for v, rs in sorted(own.items()))
    return ("LEARNING RATE TUNED PER VARIANT: each variant ran at its own best rate (lowest EMA validation loss over "
            "the rates of `train.lr: search(...)`, first seed; the paper used 1e-4 for all), so the ranks compare "
            f"formulations each at its best rate: {listed}.")


def sample_previews(frame: pd.DataFrame, order: list[str]) -> tuple[list[str], dict[str, list[Path | None]]]:
    """The sample sheet's columns and, per variant in ``order``, the preview of each (None: none written):
    EMA weights, the ``own`` time grid, the largest cfg, its fewest and most steps, the first dataset
    and the lowest seed (every variant's seed draws the same prompts, so a column compares like for like)."""
    rows = frame[(frame["weights"] == "ema") & (frame["time_grid"] == "own")]
    if rows.empty:
        return [], {}
    rows = rows[(rows["cfg"] == rows["cfg"].max()) & (rows["dataset"] == sorted(rows["dataset"].unique())[0])]
    steps = sorted({int(rows["steps"].min()), int(rows["steps"].max())})
    columns = [f"{n} steps, cfg {rows['cfg'].max():g}, EMA" for n in steps]
    out: dict[str, list[Path | None]] = {}
    for variant in order:
        mine = rows[rows["variant"] == variant]
        mine = mine[mine["seed"] == mine["seed"].min()] if not mine.empty else mine
        paths: list[Path | None] = []
        for n in steps:
            hit = mine[mine["steps"] == n]
            path = preview_path(Path(hit["path"].iloc[0])) if not hit.empty else None
            paths.append(path if path is not None and path.is_file() else None)
        out[variant] = paths
    return columns, out


def uncertainty_line(seeds: int, replicates: int, fidelity: str, fewest: int, samples: bool = False) -> str:
    """How the leaderboard's intervals were made: ``seeds`` training seeds (``fewest`` for some variant),
    ``replicates`` bootstrap replicates (:mod:`ablate.report.statistics`); ``samples``: the fidelity metric's
    sample blocks were resampled too."""
    within = (f"the samples within a setting are resampled too ({fidelity}'s disjoint sample blocks, kept in the "
              "records, redrawn with replacement)" if samples else "samples within a setting are not resampled "
              f"({fidelity} is a distance between feature sets, not a per-sample mean, and records keep only its value)")
    line = (f"Uncertainty: {seeds} training seed(s), {replicates} bootstrap replicates resampling the seeds jointly "
            f"(each seed also draws its own prompts and noise); {within}. " + ("With one seed there are no intervals." if seeds < 2 else
                          "Metrics are shown as seed mean ± standard error."))
    if 1 < seeds and fewest < seeds:
        line += (f" Unequal seeds: some variants have only {fewest} of the {seeds}; a replicate drawing none of a "
                 "variant's seeds takes the mean of those it has, so their intervals miss some of that variant's "
                 "seed variation (all of it with one seed).")
    return line
