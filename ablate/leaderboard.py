"""The leaderboard: Table 1 (average non-dominated rank), Table 2, validation loss, Figure 3.

Reads the results store (:meth:`ablate.results.ResultsStore.frame`) and nothing else. The ranking
itself lives in :mod:`ablate.ranking`; this module gathers the provenance every number needs
(scorer model, weights, feature layer, reference set, resolution, sample count, seeds, settings)
and renders it: rich tables, markdown, CSV, and a fidelity-vs-steps plot in the style of the
paper's Figure 3. :func:`write_outputs` writes ``<out>/<grid>.md`` and
``<out>/<grid>-fidelity-vs-steps.png`` atomically.
"""

from __future__ import annotations

import functools
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table
from rich.text import Text

from ablate import ranking
from ablate.io import write_bytes_atomic, write_text_atomic

TABLE2_STEPS = 25
VALIDATION_NOTE = (
    "val_loss is each formulation's own training loss (different targets and weightings): "
    "compare it only between variants of the same formulation, never across formulations. "
    "val_x0_mse is the x0 mean squared error at 8 fixed log-SNR levels (spec section 6), "
    "comparable across formulations. Both are seed means of what training recorded."
)


@dataclass
class Leaderboard:
    """Everything rendered for one grid."""

    grid: str
    alignment: str
    fidelity: str
    means: pd.DataFrame      # per (variant, setting): seed-mean metrics, seeds, rank
    table1: pd.DataFrame
    table2: pd.DataFrame
    validation: pd.DataFrame
    header: list[str] = field(default_factory=list)  # provenance and protocol lines


def build_leaderboard(
    frame: pd.DataFrame, grid: str, alignment: str | None = None, fidelity: str | None = None,
) -> Leaderboard:
    """Rank the variants of one grid's records (a :meth:`ablate.results.ResultsStore.frame`)."""
    alignment = ranking.choose_metric(frame, "alignment", alignment)
    fidelity = ranking.choose_metric(frame, "fidelity", fidelity)
    means = ranking.setting_ranks(ranking.seed_means(frame, alignment, fidelity), alignment, fidelity)
    t1 = ranking.table1(means)
    order = t1["variant"].tolist()
    lb = Leaderboard(
        grid=grid, alignment=alignment, fidelity=fidelity, means=means, table1=t1,
        table2=ranking.table2(means, alignment, fidelity, order, steps=TABLE2_STEPS),
        validation=ranking.validation_table(frame, order),
    )
    lb.header = _header(frame, lb)
    return lb


# ------------------------------------------------------------------------------------ provenance

def _header(frame: pd.DataFrame, lb: Leaderboard) -> list[str]:
    settings = lb.means[[*ranking.SETTING_KEYS, "steps", "cfg", "time_grid", "weights"]].drop_duplicates(
        list(ranking.SETTING_KEYS))
    seeds = lb.means["seeds"]
    per_variant = lb.table1["settings"]
    lines = [
        f"Ranked {len(lb.table1)} variants over {len(settings)} control settings "
        f"(dataset x steps x cfg x time grid x weights) from {len(frame)} records; datasets: "
        f"{', '.join(sorted(map(str, settings['dataset'].unique())))}; steps: {_values(settings['steps'])}; "
        f"cfg: {_values(settings['cfg'])}; time grids: {_values(settings['time_grid'])}; "
        f"weights: {_values(settings['weights'])}; seeds per (variant, setting): {_span(seeds)}.",
        f"Alignment metric: {lb.alignment} (higher is better); fidelity metric: {lb.fidelity} "
        "(lower is better). Metrics are averaged over seeds, then in each setting the variants are "
        "ranked by repeated non-dominated sorting (Pareto front = 1); a NaN metric ranks last.",
    ]
    if per_variant.min() != per_variant.max():
        lines.append(
            f"Warning: variants cover different numbers of settings ({_span(per_variant)}); "
            "their average ranks are over different settings."
        )
    for metric in (lb.alignment, lb.fidelity):
        lines.extend(metric_provenance(frame, metric))
    stamps = {k: _values(frame[k]) for k in ("version", "git_commit", "device")}
    lines.append(
        f"Records written by ablate {stamps['version']}, commit {stamps['git_commit']}, "
        f"on {stamps['device']}."
    )
    return lines


def metric_provenance(frame: pd.DataFrame, metric: str) -> list[str]:
    """One line per distinct scorer provenance behind ``metric``, naming the datasets it covers.

    Ranks compare variants within one dataset, so a dataset whose records carry several
    provenances for the metric is flagged MIXED (its numbers are not comparable).
    """
    rows = frame[frame[metric].notna()]
    groups: dict[str, dict[str, Any]] = {}  # provenance text -> datasets, sample counts, records
    for dataset, scorers, samples in zip(rows["dataset"], rows["scorers"], rows["num_samples"]):
        names = _scorers_of(metric, scorers or {})
        text = "; ".join(f"scorer {n}: {_render_dict(scorers[n])}" for n in names) or "no scorer provenance"
        group = groups.setdefault(text, {"datasets": set(), "samples": set(), "records": 0})
        group["datasets"].add(str(dataset))
        group["samples"].add(_fmt_value(samples))
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


def _scorers_of(metric: str, scorers: dict[str, Any]) -> list[str]:
    """The scorers that produced ``metric``: those listing it under "metrics", else the scorer named
    like the metric (``fid_clip``), else those it is named after (``fd_probe`` -> ``probe``), else all."""
    listed = [n for n, p in scorers.items() if isinstance(p, dict) and metric in (p.get("metrics") or ())]
    if listed:
        return listed
    if metric in scorers:
        return [metric]
    named = [n for n in scorers if metric.startswith(f"{n}_") or metric.endswith(f"_{n}")]
    return named or sorted(scorers)


def _render_dict(d: Any) -> str:
    if not isinstance(d, dict):
        return str(d)
    return ", ".join(
        f"{k}={json.dumps(v, sort_keys=True) if isinstance(v, (dict, list)) else v}"
        for k, v in d.items() if k != "metrics"
    ) or "(empty)"


def _values(series: pd.Series) -> str:
    present = [v for v in series.tolist() if _fmt_value(v) != "n/a"]
    try:
        present = sorted(set(present))
    except TypeError:  # mixed types: sort by their text
        present = sorted(set(present), key=str)
    return ", ".join(_fmt_value(v) for v in present) or "n/a"


def _fmt_value(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    return f"{v:g}" if isinstance(v, float) else str(v)


def _span(series: pd.Series) -> str:
    lo, hi = int(series.min()), int(series.max())
    return str(lo) if lo == hi else f"{lo}-{hi}"


# ------------------------------------------------------------------------------------- rendering

def _formatters(table: pd.DataFrame) -> list[Any]:
    """Per column, a value -> text function: ranks 2 decimals, counts as integers, metrics with the
    decimals that give the column's largest value 4 significant digits (0.2470, 49.70); NaN -> n/a."""
    out = []
    for col in table.columns:
        values = pd.to_numeric(table[col], errors="coerce") if col != "variant" else pd.Series(dtype=float)
        if col == "settings":
            spec = "d"
        elif col in ("all", "5 steps", "50 steps"):
            spec = ".2f"
        elif values.notna().any() and np.isfinite(values).any():
            top = float(np.nanmax(np.abs(values[np.isfinite(values)])))
            spec = f".{max(0, 3 - math.floor(math.log10(top))) if top > 0 else 4}f"
        else:
            spec = None
        out.append(functools.partial(_fmt, spec=spec))
    return out


def _fmt(v: Any, spec: str | None) -> str:
    if v is None or (isinstance(v, (float, np.floating)) and math.isnan(v)):
        return "n/a"
    if spec is None or isinstance(v, str):
        return str(v)
    return format(int(v) if spec == "d" else float(v), spec)


def _rows(table: pd.DataFrame) -> list[list[str]]:
    fmts = _formatters(table)
    return [[f(v) for f, v in zip(fmts, row)] for row in table.itertuples(index=False)]


def _sections(lb: Leaderboard) -> list[tuple[str, str, pd.DataFrame]]:
    """(title, note, table) for every table, in reading order."""
    return [
        ("Table 1: average non-dominated rank (lower is better)",
         f"Rank per setting on ({lb.alignment} up, {lb.fidelity} down), averaged over all settings, "
         "the 5-step and the 50-step settings; 'settings' counts the settings a variant was ranked in.",
         lb.table1),
        (f"Table 2: {lb.alignment} / {lb.fidelity} at {TABLE2_STEPS} Euler steps, EMA weights",
         "Seed means per dataset." if not lb.table2.empty
         else f"No {TABLE2_STEPS}-step settings with EMA weights in this grid.",
         lb.table2),
        ("Validation loss", VALIDATION_NOTE if not lb.validation.empty
         else "No validation losses in these records.", lb.validation),
    ]


def markdown_table(table: pd.DataFrame) -> str:
    """A GitHub markdown table (first column left-aligned, the rest right-aligned)."""
    cols = list(table.columns)
    lines = [
        "| " + " | ".join(str(c) for c in cols) + " |",
        "|" + "|".join([":---"] + ["---:"] * (len(cols) - 1)) + "|",
    ]
    for row in _rows(table):
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |")
    return "\n".join(lines)


def render_markdown(lb: Leaderboard, figure: str | None = None) -> str:
    """All tables with their provenance header as one markdown document."""
    parts = [f"# Leaderboard: {lb.grid}", "\n".join(f"- {line}" for line in lb.header)]
    for title, note, table in _sections(lb):
        parts += [f"## {title}", note] + ([markdown_table(table)] if not table.empty else [])
    if figure:
        parts += [f"## {lb.fidelity} vs sampling steps", f"![{lb.fidelity} vs steps]({figure})"]
    return "\n\n".join(parts) + "\n"


def render_console(lb: Leaderboard, console: Console) -> None:
    """Rich tables with the provenance header."""
    console.rule(Text(f"Leaderboard: {lb.grid}"))
    for line in lb.header:
        console.print(f"- {line}", highlight=False, markup=False)
    for title, note, table in _sections(lb):
        console.print()
        console.print(title, highlight=False, markup=False, style="bold")
        console.print(note, highlight=False, markup=False, style="dim")
        if table.empty:
            continue
        width = max(len(str(v)) for v in [*table["variant"], "variant"])
        rt = Table()
        for i, col in enumerate(table.columns):
            if i == 0:
                rt.add_column(str(col), no_wrap=True, min_width=width)
            else:
                rt.add_column(str(col), justify="right")
        for row in _rows(table):
            rt.add_row(*map(Text, row))  # names from the records: plain text, never markup
        console.print(rt)


def table1_csv(lb: Leaderboard) -> str:
    """Table 1 as CSV with a leading ``grid`` column (full precision)."""
    return lb.table1.assign(grid=lb.grid)[["grid", *lb.table1.columns]].to_csv(index=False)


# ------------------------------------------------------------------------------------------ plot

def plot_fidelity_vs_steps(lb: Leaderboard) -> bytes:
    """PNG bytes: fidelity vs Euler steps per variant (log x), one panel per dataset (paper Figure 3).

    Uses EMA weights, the ``own`` time grid when present (else the most common), and the largest
    cfg that has several step counts; a panel says so when no cfg has several step counts.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    ema = lb.means[lb.means["weights"] == "ema"]
    datasets = sorted(map(str, lb.means["dataset"].unique()))
    order = lb.table1["variant"].tolist()
    fig = Figure(figsize=(6.0 * len(datasets) + 3.0, 4.5), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(datasets), squeeze=False)[0]
    styles = ["-", "--", ":", "-."]
    for ax, dataset in zip(axes, datasets):
        part = ema[ema["dataset"] == dataset]
        grids = part["time_grid"].value_counts()
        if not grids.empty:
            part = part[part["time_grid"] == ("own" if "own" in grids.index else grids.index[0])]
        counts = part.groupby("cfg")["steps"].nunique()
        cfgs = counts[counts > 1].index
        if len(cfgs) == 0:
            ax.set_title(f"{dataset}: no cfg with several step counts (EMA)")
            ax.set_axis_off()
            continue
        cfg = float(max(cfgs))
        part = part[part["cfg"] == cfg]
        for i, variant in enumerate(v for v in order if v in set(part["variant"])):
            line = part[part["variant"] == variant].sort_values("steps")
            ax.plot(line["steps"], line[lb.fidelity], marker="o", markersize=3, label=variant,
                    color=f"C{i % 10}", linestyle=styles[(i // 10) % len(styles)])
        steps = sorted(part["steps"].unique())
        ax.set_xscale("log")
        ax.set_xticks(steps, [str(int(s)) for s in steps])
        ax.minorticks_off()
        ax.set_xlabel("Euler steps")
        ax.set_ylabel(f"{lb.fidelity} (lower is better)")
        ax.set_title(f"{dataset}: cfg={cfg:g}, EMA, {part['time_grid'].iloc[0]} time grid")
        ax.grid(True, alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    for ax in axes[1:]:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    if handles:
        fig.legend(handles, labels, loc="outside right upper", fontsize="x-small",
                   ncols=max(1, math.ceil(len(labels) / 32)))
    fig.suptitle(f"{lb.grid}: {lb.fidelity} vs sampling steps")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    return buf.getvalue()


def write_outputs(lb: Leaderboard, out_dir: Path) -> list[Path]:
    """Write ``<out_dir>/<grid>.md`` and ``<out_dir>/<grid>-fidelity-vs-steps.png`` atomically."""
    out_dir = Path(out_dir)
    png = out_dir / f"{lb.grid}-fidelity-vs-steps.png"
    md = out_dir / f"{lb.grid}.md"
    write_bytes_atomic(png, plot_fidelity_vs_steps(lb))
    write_text_atomic(md, render_markdown(lb, figure=png.name))
    return [md, png]
