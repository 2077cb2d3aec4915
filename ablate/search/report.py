"""The report of a search: ``<out>/search-<name>.md`` and ``<out>/search-<name>-front.png``, written atomically.

Sections: the search (space, objective, budget), the Pareto front (figure and table, every trial
marked by where it came from: the search, the points enqueued first, the paper's lattice, a warm
start), the best point per objective with its interval over seeds and its distance from the paper's
choices, parameter importance, and every trial.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import optuna
import pandas as pd

from ablate import __version__
from ablate.io import write_bytes_atomic, write_text_atomic
from ablate.report.paper import PAPER_CHOICES
from ablate.search.analysis import (OBJECTIVES, best_points, density_distances, importances,
                                    parameter_distances, repeats, seed_estimates, trial_table)
from ablate.config.lr import lr_label
from ablate.search.spec import Search

MARKERS = {"search": "o", "enqueued": "s", "paper lattice": "D"}  # anything else (warm start): "^"


def report_stem(name: str) -> str:
    """``search-<name>``, without doubling a name that already starts with ``search-``."""
    return name if name.startswith("search-") else f"search-{name}"


def _g(v: object, spec: str = ".4g") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return format(v, spec) if isinstance(v, (int, float, np.floating)) else str(v)


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def _lr(v: object) -> str:
    return "file" if v is None or (isinstance(v, float) and math.isnan(v)) else lr_label(float(v))


def plot_front(search: Search, table: pd.DataFrame) -> bytes:
    """PNG: the trials in objective space (front joined by a line) and in parameter space."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names = search.space.names + (["lr"] if search.space.lr is not None else [])
    fig = Figure(figsize=(12.0, 4.8), layout="constrained")
    FigureCanvasAgg(fig)
    left, right = fig.subplots(1, 2)
    for source, part in table.groupby("source", sort=True):
        marker = MARKERS.get(str(source), "^")
        left.scatter(part["fidelity"], part["alignment"], marker=marker, label=str(source), alpha=0.8)
        x = part[names[0]] if names[0] != "lr" else part["lr"].astype(float)
        y = part[names[1]] if len(names) > 1 else part["alignment"]
        right.scatter(x, y, marker=marker, c=part["front"].astype(float), cmap="viridis", vmin=1,
                      vmax=max(float(table["front"].max()), 2.0), label=str(source))
    front = table[table["front"] == 1].sort_values("fidelity")
    left.step(front["fidelity"], front["alignment"], where="post", color="black", lw=1, label="Pareto front")
    for _, row in front.iterrows():
        left.annotate(row["variant"] + ("" if row["lr"] is None or pd.isna(row["lr"]) else f" lr {_lr(row['lr'])}"),
                      (row["fidelity"], row["alignment"]), fontsize=7, xytext=(4, 2), textcoords="offset points")
    left.set(xlabel="fidelity (lower is better)", ylabel="alignment (higher is better)",
             title=f"{search.name}: objectives at {search.search.objective}")
    left.legend(fontsize=7)
    right.set(xlabel=names[0], ylabel=names[1] if len(names) > 1 else "alignment",
              title="parameters (colour: front, darkest = 1)")
    if names[0] == "lr":
        right.set_xscale("log")
    for choice in PAPER_CHOICES:
        point = search.space.params(choice, within=False)
        if point is not None and len(names) > 1 and names[1] in point:
            right.scatter([point[names[0]]], [point[names[1]]], marker="*", s=160, color="red", label=f"paper: {choice}")
    right.legend(fontsize=7)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    return buf.getvalue()


def _best_section(search: Search, table: pd.DataFrame) -> list[str]:
    confirm = search.search.confirm
    seeds = list(search.base.seeds) + list(confirm.seeds)
    lines = ["## Best point per objective", "",
             f"Mean over seeds {seeds} and a Student t 95% interval (extra seeds {list(confirm.seeds)} for the best "
             f"{confirm.top} point(s) per objective, re-trained or read from a warm-start grid trained the same way; "
             f"`-`: one seed, no interval)."
             if confirm.top else "No re-training with extra seeds (`search.confirm.top` is 0): one seed, no interval.", ""]
    rows, distance_rows, tv_rows = [], [], []
    for objective in OBJECTIVES:
        for point in best_points(table, objective, max(confirm.top, 1)):
            est = seed_estimates(search, point)
            e = est[objective]
            rows.append([objective, f"`{point[0]}`", _lr(point[1]), str(e.seeds), _g(e.mean),
                         f"[{_g(e.low)}, {_g(e.high)}]", _g(est[OBJECTIVES[1 - OBJECTIVES.index(objective)]].mean)])
            for choice, diff, dist in parameter_distances(search, point[0]):
                distance_rows.append([objective, f"`{point[0]}`", f"`{choice}`",
                                      ", ".join(f"{k} {d:+.2f}" for k, d in diff.items()), f"{dist:.2f}"])
            tv = density_distances(point[0])
            if tv:
                tv_rows.append([objective, f"`{point[0]}`", *(f"{tv[c]:.3f}" for c in PAPER_CHOICES)])
    lines.append(_table(["objective", "variant", "lr", "seeds", "mean", "95% interval", "other objective (mean)"], rows))
    lines += ["", "Distance from the paper's choices in the template's own units (variant minus choice):", ""]
    lines.append(_table(["objective", "best", "paper choice", "difference", "Euclidean"], distance_rows)
                 if distance_rows else f"No paper choice ({', '.join(PAPER_CHOICES)}) has the form `{search.space.template}`.")
    lines += ["", "Total-variation distance between timestep densities pi(t) (0 = the same density, 1 = disjoint):", ""]
    lines.append(_table(["objective", "best", *(f"`{c}`" for c in PAPER_CHOICES)], tv_rows)
                 if tv_rows else "Not an rf trajectory: its timestep density is not comparable with the paper's choices.")
    return lines + [""]


def _lattice_vs_search(table: pd.DataFrame) -> list[str]:
    lines = ["## Searched points vs the points run first", ""]
    rows = []
    for source, part in table.groupby("source", sort=True):
        rows.append([str(source), str(len(part)), _g(part["alignment"].max()), _g(part["fidelity"].min()),
                     str(int((part["front"] == 1).sum()))])
    lines.append(_table(["source", "trials", "best alignment", "best fidelity", "on the front"], rows))
    return lines + [""]


def write_report(out: Path, search: Search, study: optuna.Study, trials: int) -> list[Path]:
    """Write the report and its figure under ``out``; returns their paths."""
    table = trial_table(study, search)
    stem = report_stem(search.name)
    failed = [t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.FAIL,)) if "variant" in t.user_attrs]
    again = repeats(study)
    failed = [t for t in failed if t.number not in again]
    searched = int((~table["source"].astype(str).str.startswith("warm start")).sum())
    s = search.search
    ranges = ", ".join(f"{k} in [{r.low:g}, {r.high:g}]" for k, r in search.space.ranges.items())
    lr = (f"; lr in [{s.lr.low:g}, {s.lr.high:g}] (log scale; the trials of one rate are the grid "
          f"`{search.name}.lr<rate>`)" if s.lr else f"; lr {search.base.train.lr:g} (the file's)")
    lines = [f"# Search {search.name}", "", f"ablate {__version__}; file `{search.file}`; "
             f"{'smoke test: tiny models, noisy numbers. ' if search.name.startswith(('smoke', 'search-smoke')) else ''}"
             f"template `{s.variant}` with {ranges}{lr}.", "",
             f"Objectives: alignment up, fidelity down, {'averaged over every setting' if s.objective == 'mean' else f'at setting `{s.objective}`'}"
             f", seed means over seeds {list(search.base.seeds)}. Sampler: {s.sampler} (seed {s.seed}), "
             f"{s.batch} trials per round, budget {trials} trials; {searched + len(failed)} trials made ({searched} told, "
             f"{len(failed)} failed), {len(table) - searched} warm-start trials, {len(again)} repeated draws of a "
             "point already held (no budget spent), "
             f"points run first: {len(s.enqueue)} enqueued, paper lattice {'on' if s.lattice else 'off'}.", ""]
    if table.empty:
        lines += ["No trial has finished yet."]
        path = out / f"{stem}.md"
        write_text_atomic(path, "\n".join(lines) + "\n")
        return [path]
    png = out / f"{stem}-front.png"
    write_bytes_atomic(png, plot_front(search, table))
    front = table[table["front"] == 1]
    lines += ["## Pareto front", "", f"![front]({png.name})", "",
              _table(["trial", "source", "variant", "lr", "alignment", "fidelity"],
                     [[str(r.number), r.source, f"`{r.variant}`", _lr(r.lr), _g(r.alignment), _g(r.fidelity)]
                      for r in front.itertuples()]), ""]
    lines += _best_section(search, table) + _lattice_vs_search(table)
    imp, note = importances(study)
    lines += ["## Parameter importance", "", note + ".", ""]
    if imp:
        names = sorted({k for v in imp.values() for k in v})
        lines.append(_table(["objective", *names], [[o, *(_g(imp[o].get(k), ".2f") for k in names)] for o in imp]))
        lines.append("")
    lines += ["## Every trial", "", _table(
        ["trial", "source", "variant", "lr", "alignment", "fidelity", "front"],
        [[str(r.number), r.source, f"`{r.variant}`", _lr(r.lr), _g(r.alignment), _g(r.fidelity), str(r.front)]
         for r in table.sort_values("number").itertuples()])]
    if failed:
        lines += ["", "Failed trials: " + "; ".join(f"{t.number} `{t.user_attrs['variant']}` "
                                                    f"({t.user_attrs.get('fail_reason', 'no finite objective')})"
                                                    for t in failed)]
    md = out / f"{stem}.md"
    write_text_atomic(md, "\n".join(lines) + "\n")
    return [md, png]
