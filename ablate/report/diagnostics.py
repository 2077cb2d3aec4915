"""What the leaderboard says about itself: how complete the grid is, the deviations from the paper's protocol
and the sample sheet, read from the records (their config and solver details). Convergence and stability as
numbers are :mod:`ablate.report.convergence`; how the intervals are made, :mod:`ablate.report.intervals`.

A grid whose name is ``smoke`` or starts with ``smoke-`` is a smoke test of the machinery: the
rendered leaderboard says so first (:func:`is_smoke`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ablate.report import paper, ranking
from ablate.results import preview_path


def is_smoke(grid: str) -> bool:
    return grid == "smoke" or grid.startswith("smoke-")


def completeness_line(frame: pd.DataFrame) -> str | None:
    """A line for the top of the leaderboard when the grid is not finished: how many of the cells its file
    names (variants x backbones x datasets x seeds, from the newest record's config) have records, and which
    variants have none (each a ``"<variant> @ <backbone>"`` pair where the frame ranks pairs:
    :func:`ablate.report.backbones.label_variants`). None when every cell has records (or no record carries its
    grid's config)."""
    configs = frame.sort_values("created")["config"]
    config = next((c for c in reversed(configs.tolist()) if isinstance(c, dict) and c.get("variants")), None)
    if config is None:
        return None
    names = config["variants"]
    if ranking.ranks_pairs(frame):
        names = [ranking.pair_label(v, b) for b in config.get("backbones") or ["dit"] for v in config["variants"]]
    expected = {(v, d, int(s)) for v in names for d in config.get("datasets", []) for s in config.get("seeds", [])}
    found = set(zip(frame["variant"], frame["dataset"], frame["seed"].astype(int)))
    if not expected or expected <= found:
        return None
    none = [v for v in names if not any(c[0] == v for c in found)]
    axes = "variants x backbones x datasets x seeds" if ranking.ranks_pairs(frame) else "variants x datasets x seeds"
    return (f"INCOMPLETE GRID: {len(expected & found)} of the {len(expected)} cells of the grid ({axes}) have results; "
            "the ranks cover only those" + (f"; {len(none)} variants have none yet: {', '.join(none)}." if none else "."))


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
        (f"Rank pool: Table 1 ranks all {len(variants)} (variant @ backbone) pairs of this grid together; the "
         "paper ranks formulations on one backbone (its Table 1) and backbones on one formulation (its Figure 4)."
         if ranking.ranks_pairs(frame) else
         f"Rank pool: Table 1 ranks all {len(variants)} variants of this grid together"
         + (f", including {len(outside)} the paper never ran ({', '.join(outside)}), which can move the others' "
            "ranks; the paper comparison re-ranks the paper's variants among themselves." if outside else ".")),
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
    kinds = _config_values(frame, "train", "lr_schedule", "kind")
    schedule = (f" Schedule: linear warm-up over {_config_values(frame, 'train', 'warmup_steps')} steps, then {kinds}"
                + ("" if kinds in ("constant", "n/a") else ", decaying to "
                   f"{_config_values(frame, 'train', 'lr_schedule', 'min_lr_ratio')} x the peak rate at the last step")
                + (" (n/a: records from before `train.lr_schedule`, which kept the rate constant)" if "n/a" in kinds
                   else "") + ".")
    if not own:
        return f"Learning rate {_config_values(frame, 'train', 'lr')} for every variant (the paper: 1e-4 for all)." + schedule
    listed = "; ".join(f"{v} {', '.join(f'{r:.1e}' for r in sorted(rs))}" for v, rs in sorted(own.items()))
    return ("LEARNING RATE TUNED PER VARIANT: each variant ran at its own best rate (lowest EMA validation loss over "
            "the rates of `train.lr: search(...)`, first seed; the paper used 1e-4 for all), so the ranks compare "
            f"formulations each at its best rate: {listed}." + schedule)


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
