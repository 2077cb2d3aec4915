"""The leaderboard: Table 1 (average non-dominated rank) with intervals, who beats whom, agreement with
the paper, Table 2, validation loss, convergence, deviations from the paper, Figure 3 and a rank plot.

Reads the results store (:meth:`ablate.results.ResultsStore.frame`) and nothing else. The ranking
itself lives in :mod:`ablate.report.ranking`; this module gathers the provenance every number needs
(scorer model, weights, feature layer, reference set, resolution, sample count, seeds, settings)
and renders it: rich tables, markdown, CSV, and the figures of :mod:`ablate.report.plots`. The statistics
are :mod:`ablate.report.rank_stats` (seed bootstrap), the self-checks :mod:`ablate.report.diagnostics`. The
document opens with what to know before reading a number: a smoke grid says it is one, then one line
on convergence, then how uncertainty was measured. :func:`write_outputs` writes ``<out>/<grid>.md``,
``<out>/<grid>-fidelity-vs-steps.png`` and ``<out>/<grid>-ranks.png`` atomically.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table
from rich.text import Text

from ablate.report import convergence
from ablate.report import diagnostics
from ablate.report import intervals
from ablate.report import ranking
from ablate.report import provenance
from ablate.report import rank_stats
from ablate.report import run_facts
from ablate.report import validity
from ablate.io import write_bytes_atomic, write_text_atomic
from ablate.report.plots import plot_average_ranks, plot_fidelity_vs_steps, plot_sample_sheet
from ablate.report.rank_stats import RankStats

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
    top: list[str] = field(default_factory=list)     # read-first lines: smoke banner, convergence, uncertainty
    stats: RankStats | None = None
    convergence: pd.DataFrame = field(default_factory=pd.DataFrame)
    last_call: pd.DataFrame = field(default_factory=pd.DataFrame)
    deviations: list[str] = field(default_factory=list)
    sample_columns: list[str] = field(default_factory=list)  # the sample sheet: diagnostics.sample_previews
    previews: dict[str, list[Path | None]] = field(default_factory=dict)
    completeness: str | None = None
    appendix: list[str] = field(default_factory=list)  # markdown parts after the figures (ablate.report.backbones)
    validity: list[str] = field(default_factory=list)  # each shown metric's validity-bench verdict
    off_manifold: str | None = None                   # samples off the real images' manifold (validity.off_manifold_line)
    flags: list[str] = field(default_factory=list)   # what the store check found (ablate.store_audit), read first


def build_leaderboard(
    frame: pd.DataFrame, grid: str, alignment: str | None = None, fidelity: str | None = None,
    replicates: int = rank_stats.statistics.DEFAULT_REPLICATES, validity_dirs: tuple[Path, ...] = (),
    flags: list[str] | tuple[str, ...] = (),
) -> Leaderboard:
    """Rank the variants of one grid's records (a ResultsStore frame); validity verdicts from ``validity_dirs``;
    ``flags``: lines on the store's state (e.g. missing records) shown first."""
    alignment = ranking.choose_metric(frame, "alignment", alignment)
    fidelity = ranking.choose_metric(frame, "fidelity", fidelity)
    extra, found = ranking.extra_metrics(frame, alignment, fidelity), validity.for_frame(frame, validity_dirs)
    means = ranking.setting_ranks(ranking.seed_means(frame, alignment, fidelity, extra), alignment, fidelity,
                                  *ranking.directions(frame, alignment, fidelity))
    means = intervals.with_t_half_widths(means, [alignment, fidelity])
    t1 = ranking.table1(means)
    order = t1["variant"].tolist()
    lb = Leaderboard(
        grid=grid, alignment=alignment, fidelity=fidelity, means=means, table1=t1,
        table2=ranking.table2(means, alignment, fidelity, order, TABLE2_STEPS, extra=extra,
                              marks=validity.marks(found, [alignment, fidelity, *extra])),
        validation=ranking.validation_table(frame, order), flags=list(flags),
    )
    lb.validity = validity.header_lines(found, [alignment, fidelity, *extra])
    lb.off_manifold = validity.off_manifold_line(frame)
    lb.completeness = diagnostics.completeness_line(frame)
    lb.header = _header(frame, lb)
    lb.stats = rank_stats.rank_stats(frame, alignment, fidelity, replicates=replicates)
    lb.convergence = convergence.variant_table(frame, alignment, fidelity)
    lb.last_call = diagnostics.last_call_table(frame)
    lb.deviations = diagnostics.deviations(frame, order)
    lb.sample_columns, lb.previews = diagnostics.sample_previews(frame, order)
    lb.top = _top(lb)
    return lb


def _top(lb: Leaderboard) -> list[str]:
    lines = []
    if diagnostics.is_smoke(lb.grid):
        lines.append("SMOKE TEST of the machinery, not a result: a short CPU run that checks the pipeline end to "
                     "end; its ranks say nothing about the formulations.")
    lines += lb.flags + [line for line in [lb.completeness] if line]
    lines.append(convergence.warning_line(lb.convergence))
    lines += [line for line in [lb.off_manifold] if line]
    lines.append(intervals.uncertainty_line(lb.stats.seeds if lb.stats else 1, lb.fidelity, int(lb.means["seeds"].min()),
                                            lb.stats.replicates if lb.stats else 0)
                 + (f" {lb.stats.resampling}" if lb.stats and lb.stats.resampling else ""))
    return lines


# ------------------------------------------------------------------------------------ provenance

def _header(frame: pd.DataFrame, lb: Leaderboard) -> list[str]:
    settings = lb.means[[*ranking.SETTING_KEYS, "steps", "cfg", "time_grid", "weights"]].drop_duplicates(
        list(ranking.SETTING_KEYS))
    seeds, (a, f) = lb.means["seeds"], ranking.directions(frame, lb.alignment, lb.fidelity)
    per_variant = lb.table1["settings"]
    lines = [
        f"Ranked {len(lb.table1)} variants over {len(settings)} control settings "
        f"(dataset x steps x cfg x time grid x weights) from {len(frame)} records; datasets: "
        f"{', '.join(sorted(map(str, settings['dataset'].unique())))}; steps: {provenance.values_text(settings['steps'])}; "
        f"cfg: {provenance.values_text(settings['cfg'])}; time grids: {provenance.values_text(settings['time_grid'])}; "
        f"weights: {provenance.values_text(settings['weights'])}; seeds per (variant, setting): {provenance.span(seeds)}.",
        f"Alignment metric: {lb.alignment} ({'higher' if a else 'lower'} is better); fidelity metric: {lb.fidelity} "
        f"({'lower' if f else 'higher'} is better). Metrics are averaged over seeds, then in each setting the variants are "
        "ranked by repeated non-dominated sorting (Pareto front = 1); a NaN metric ranks last.",
    ]
    if per_variant.min() != per_variant.max():
        lines.append(
            f"Warning: variants cover different numbers of settings ({provenance.span(per_variant)}); "
            "their average ranks are over different settings."
        )
    shown = (lb.alignment, lb.fidelity, *ranking.extra_metrics(frame, lb.alignment, lb.fidelity))
    lines += [line for metric in shown for line in provenance.metric_provenance(frame, metric)] + lb.validity
    stamps = {k: provenance.values_text(frame[k]) for k in ("version", "git_commit", "device")}
    lines.append(
        f"Records written by ablate {stamps['version']}, commit {stamps['git_commit']}, "
        f"on {stamps['device']}."
    )
    return lines + run_facts.facts(frame)


# ------------------------------------------------------------------------------------- rendering

def _formatters(table: pd.DataFrame) -> list[Any]:
    """Per column, a value -> text function: ranks 2 decimals, counts as integers, metrics with the
    decimals that give the column's largest value 4 significant digits (0.2470, 49.70); NaN -> n/a."""
    out = []
    for col in table.columns:
        values = pd.to_numeric(table[col], errors="coerce") if col != "variant" else pd.Series(dtype=float)
        if col in ("settings", "cells", "variants") or pd.api.types.is_integer_dtype(table[col]):
            spec = "d"
        elif col in ("all", "per seed", "5 steps", "50 steps", "50 steps cfg5", "rho", "paper pool rank"):
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


TABLE1_SHOWN = ("variant", "all", "per seed", "95% CI", "5 steps", "50 steps", "50 steps cfg5", "beats next", "settings")
BEATS_SHOWN = 10  # the beats matrix shows the top variants only


def _beats_table(stats: RankStats) -> pd.DataFrame:
    top = stats.beats.iloc[:BEATS_SHOWN, :BEATS_SHOWN]
    table = top.map(lambda p: f"{p:.0%}").rename_axis("variant").reset_index()
    table.columns = ["variant", *[f"#{i + 1}" for i in range(len(top))]]
    return table


def _figure3_text(f3: dict[str, Any]) -> str:
    if "D" not in f3:
        return f"Figure 3's claim (rf variants lose less from 50 to 5 steps): not testable here, {f3.get('note')}."
    verdict = ("supported (the CI excludes 0)" if f3["low"] > 0 else "contradicted (the CI is below 0)"
               if f3["high"] < 0 else "not resolved (the CI includes 0)")
    return (f"Figure 3's claim, rf variants lose less quality from 50 to 5 steps: D = mean log(f5/f50) of the "
            f"{f3['others']} other variants minus that of the {f3['rf']} rf variants, at cfg {f3['cfg']:g} over "
            f"{f3['pairs']} (dataset, weights, time grid) pairs: D = {f3['D']:.3f}, 95% CI "
            f"[{f3['low']:.3f}, {f3['high']:.3f}]; {verdict}.")


def _sections(lb: Leaderboard) -> list[tuple[str, str, pd.DataFrame]]:
    """(title, note, table) for every table, in reading order."""
    st = lb.stats
    table1 = st.table[[c for c in TABLE1_SHOWN if c in st.table]] if st is not None else lb.table1
    sections = [
        ("Table 1: average non-dominated rank (lower is better)",
         f"Rank per setting on ({lb.alignment}, {lb.fidelity}; the header says which way is better), pool: all {len(lb.table1)} variants of this grid; "
         "'all', '5 steps', '50 steps', '50 steps cfg5': the rank of the seed means averaged over all settings, the "
         "5-step, the 50-step and the 50-step cfg-5 settings (see Deviations). 'per seed': the average rank over all "
         "settings of one training run (each seed ranked with its own cells), mean over seeds, with its 95% CI "
         "(moderated Student t over seeds, continuity-corrected; coverage checked by simulation in "
         "tests/test_intervals.py): "
         "the interval is for 'per seed', not for 'all', which noise pulls less toward the middle. 'beats next': in "
         "how many seeds the variant's own average rank is lower than the next row's (ties count one half). "
         "'settings': the settings a variant was ranked in.", table1),
    ]
    if st is not None:
        sections += [
            ("Who beats whom", f"Share of seeds in which the row's own average rank over all settings is lower than "
             f"the column's (ties count one half), top {BEATS_SHOWN} variants, column #k is row k.", _beats_table(st)),
            *([(f"Seeds or samples: where the uncertainty of {lb.fidelity} comes from", st.noise_note, st.noise)]
              if not st.noise.empty else []),
            ("Agreement with the paper", (st.agreement_note + " " + _figure3_text(st.figure3)).strip(),
             st.agreement),
            ("Sensitivity of the agreement", "rho and its permutation p-value for every other reading: each cfg of the "
             "50-step settings, EMA or raw weights only, each metric alone (same pool, same test).", st.sensitivity),
            ("Positions in the paper's pool", "Quote these positions beside a rho: our average rank over all settings "
             "re-ranked within the paper's pool, its position there, the paper's position, and the position among all "
             "variants of this grid (Table 1) for contrast; '=' marks a shared position.", st.positions),
        ]
    sections += [
        (f"Table 2: {lb.alignment} / {lb.fidelity} at {TABLE2_STEPS} Euler steps, EMA weights",
         "Seed means ± the half-width of their 95% t-interval over seeds, per dataset." if not lb.table2.empty
         else f"No {TABLE2_STEPS}-step settings with EMA weights in this grid.",
         lb.table2),
        ("Validation loss", VALIDATION_NOTE if not lb.validation.empty
         else "No validation losses in these records.", lb.validation),
        ("Convergence and stability", convergence.NOTE,
         convergence.shown(lb.convergence, lb.table1["variant"].tolist())),
        ("Solver: last network call", "rf-equivalent noise level b/(a+b) at the solver's last network call (the "
         "last step returns that call's x0 estimate)." if not lb.last_call.empty
         else "Not recorded in these records (written before the solver details had it).", lb.last_call),
    ]
    return sections


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


def render_markdown(lb: Leaderboard, figure: str | None = None, rank_figure: str | None = None,
                    sample_figure: str | None = None) -> str:
    """All tables with the read-first lines and the provenance header as one markdown document."""
    parts = [f"# Leaderboard: {lb.grid}", "\n\n".join(f"**{line}**" for line in lb.top),
             "\n".join(f"- {line}" for line in lb.header)]
    for title, note, table in _sections(lb):
        parts += [f"## {title}", note] + ([markdown_table(table)] if not table.empty else [])
        if title.startswith("Table 1") and rank_figure:
            parts.append(f"![average rank per variant]({rank_figure})")
    if lb.deviations:
        parts += ["## Deviations from the paper", "\n".join(f"- {line}" for line in lb.deviations)]
    if figure:
        parts += [f"## {lb.fidelity} vs sampling steps", f"![{lb.fidelity} vs steps]({figure})"]
    if sample_figure:
        parts += ["## Samples", f"![samples per variant]({sample_figure})"]
    parts += lb.appendix
    return "\n\n".join(parts) + "\n"


def render_console(lb: Leaderboard, console: Console) -> None:
    """Rich tables with the provenance header."""
    console.rule(Text(f"Leaderboard: {lb.grid}"))
    for line in lb.top:
        console.print(line, highlight=False, markup=False, style="bold")
    for line in lb.header:
        console.print(f"- {line}", highlight=False, markup=False)
    for title, note, table in _sections(lb):
        console.print()
        console.print(title, highlight=False, markup=False, style="bold")
        console.print(note, highlight=False, markup=False, style="dim")
        if table.empty:
            continue
        width = max(len(str(v)) for v in [*table.iloc[:, 0], table.columns[0]])
        rt = Table()
        for i, col in enumerate(table.columns):
            if i == 0:
                rt.add_column(str(col), no_wrap=True, min_width=width)
            else:
                rt.add_column(str(col), justify="right")
        for row in _rows(table):
            rt.add_row(*map(Text, row))  # names from the records: plain text, never markup
        console.print(rt)
    if lb.deviations:
        console.print()
        console.print("Deviations from the paper", highlight=False, markup=False, style="bold")
        for line in lb.deviations:
            console.print(f"- {line}", highlight=False, markup=False)


def table1_csv(lb: Leaderboard) -> str:
    """Table 1 as CSV with a leading ``grid`` column (full precision)."""
    return lb.table1.assign(grid=lb.grid)[["grid", *lb.table1.columns]].to_csv(index=False)


def write_outputs(lb: Leaderboard, out_dir: Path) -> list[Path]:
    """Write ``<grid>.md``, ``<grid>-fidelity-vs-steps.png``, ``<grid>-ranks.png`` and, where sample previews
    exist, ``<grid>-samples.png`` under ``out_dir`` atomically; the .md first in the returned list."""
    md, png, ranks, samples = (Path(out_dir) / f"{lb.grid}{end}" for end in (".md", "-fidelity-vs-steps.png",
                                                                           "-ranks.png", "-samples.png"))
    write_bytes_atomic(png, plot_fidelity_vs_steps(lb.grid, lb.means, lb.fidelity, lb.table1["variant"].tolist()))
    table, seeds = (lb.stats.table, lb.stats.seeds) if lb.stats is not None else (lb.table1, 1)
    write_bytes_atomic(ranks, plot_average_ranks(lb.grid, table, seeds))
    written = [md, png, ranks]
    if any(p is not None for paths in lb.previews.values() for p in paths):
        write_bytes_atomic(samples, plot_sample_sheet(lb.grid, lb.sample_columns, lb.previews))
        written.append(samples)
    write_text_atomic(md, render_markdown_for(lb, written))
    return written


def render_markdown_for(lb: Leaderboard, written: list[Path]) -> str:
    """:func:`render_markdown` with the figures :func:`write_outputs` wrote (names relative to the .md)."""
    return render_markdown(lb, *(p.name for p in written[1:]))
