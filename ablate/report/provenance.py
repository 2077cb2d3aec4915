"""Provenance text for the leaderboard's header: which scorer (model, weights, feature layer, reference set,
resolution, sample count) made a metric, and compact renderings of the settings' values. Reads records only."""

from __future__ import annotations

import json
import math
from typing import Any

import pandas as pd


def metric_provenance(frame: pd.DataFrame, metric: str) -> list[str]:
    """One line per distinct scorer provenance behind ``metric``, naming the datasets it covers.

    Ranks compare variants within one dataset, so a dataset whose records carry several
    provenances for the metric is flagged MIXED (its numbers are not comparable).
    """
    rows = frame[frame[metric].notna()]
    groups: dict[str, dict[str, Any]] = {}  # provenance text -> datasets, sample counts, records
    for dataset, scorers, samples in zip(rows["dataset"], rows["scorers"], rows["num_samples"]):
        names = scorers_of(metric, scorers or {})
        text = "; ".join(f"scorer {n}: {render_dict(scorers[n])}" for n in names) or "no scorer provenance"
        group = groups.setdefault(text, {"datasets": set(), "samples": set(), "records": 0})
        group["datasets"].add(str(dataset))
        group["samples"].add(fmt_value(samples))
        group["records"] += 1
    seen: dict[str, int] = {}
    for group in groups.values():
        for dataset in group["datasets"]:
            seen[dataset] = seen.get(dataset, 0) + 1
    lines = []
    for text, group in groups.items():
        mixed = sorted(d for d in group["datasets"] if seen[d] > 1)
        lines.append(
            f"{metric} ({', '.join(sorted(group['datasets']))}): {text}; samples per setting: "
            f"{', '.join(sorted(group['samples']))}"
            + (f" (MIXED provenance within {', '.join(mixed)}: this one in {group['records']} records)." if mixed else ".")
        )
    return lines


def scorers_of(metric: str, scorers: dict[str, Any]) -> list[str]:
    """The scorers that produced ``metric``: those listing it under "metrics", else the scorer named
    like the metric (``fid_clip``), else those it is named after (``fd_probe`` -> ``probe``), else all."""
    listed = [n for n, p in scorers.items() if isinstance(p, dict) and metric in (p.get("metrics") or ())]
    if listed:
        return listed
    if metric in scorers:
        return [metric]
    named = [n for n in scorers if metric.startswith(f"{n}_") or metric.endswith(f"_{n}")]
    return named or sorted(scorers)


def render_dict(d: Any) -> str:
    if not isinstance(d, dict):
        return str(d)
    return ", ".join(
        f"{k}={json.dumps(v, sort_keys=True) if isinstance(v, (dict, list)) else v}"
        for k, v in d.items() if k != "metrics"
    ) or "(empty)"


def values_text(series: pd.Series) -> str:
    present = [v for v in series.tolist() if fmt_value(v) != "n/a"]
    try:
        present = sorted(set(present))
    except TypeError:  # mixed types: sort by their text
        present = sorted(set(present), key=str)
    return ", ".join(fmt_value(v) for v in present) or "n/a"


def fmt_value(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    return f"{v:g}" if isinstance(v, float) else str(v)


def span(series: pd.Series) -> str:
    lo, hi = int(series.min()), int(series.max())
    return str(lo) if lo == hi else f"{lo}-{hi}"
