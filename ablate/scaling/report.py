"""The report of a scaling study: ``<out>/scaling-<name>.md`` with its tables and three figures
(``-isoflop.png``, ``-power-laws.png``, ``-quality-vs-gflops.png``), all written atomically."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from ablate import __version__
from ablate.io import write_bytes_atomic, write_text_atomic
from ablate.scaling.analysis import METRICS, MetricFits
from ablate.scaling.budget import BUDGET_TOLERANCE
from ablate.scaling.collect import missing
from ablate.scaling.extrapolate import FALLBACK_SIZE_METRIC, SIZE_METRIC, Extrapolation
from ablate.scaling.fit import Interval, exponent_difference
from ablate.scaling.plan import Point
from ablate.scaling.plots import plot_isoflop, plot_power_laws, plot_quality
from ablate.scaling.spec import Study

NAMES = {"val_x0_mse": "x0-MSE", "val_loss": "native loss", "fidelity": "fidelity"}


def report_stem(name: str) -> str:
    """``scaling-<name>``, without doubling a name that already starts with ``scaling-``."""
    return name if name.startswith("scaling-") else f"scaling-{name}"


def _g(v: float, spec: str = ".3g") -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)


def _ci(i: Interval | None, spec: str = ".3g") -> str:
    if i is None:
        return "-"
    return f"{_g(i.value, spec)} [{_g(i.low, spec)}, {_g(i.high, spec)}]"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def _plan_table(points: list[Point]) -> str:
    rows = [[p.kind, p.label, str(p.size.depth), str(p.size.hidden_size), str(p.size.num_heads), str(p.patch_size),
             f"{p.num_params:,}", _g(p.forward_gflops, ".4g"), _g(p.train_flops_per_image, ".4g"), str(p.spend.steps),
             f"{p.spend.images:,}", _g(p.spend.flops, ".3g"), f"{p.spend.error:.2%}", ", ".join(p.grid.variants)]
            for p in points]
    return _table(["kind", "cell", "depth", "width", "heads", "patch", "N params", "fwd GFLOPs", "train FLOPs/img",
                   "steps", "images D", "FLOPs spent", "off budget", "variants"], rows)


def _exponents(fits: dict[tuple[str, str], MetricFits], confidence: float) -> str:
    rows = []
    for (variant, metric), mf in fits.items():
        laws = [mf.laws.get(q) for q in ("n_opt", "d_opt", "y_opt")]
        rows.append([variant, NAMES[metric], *(_ci(law.exponent if law else None, ".3f") for law in laws),
                     str(len(mf.fitted))])
    text = _table(["formulation", "metric", "a: N_opt ~ C^a", "b: D_opt ~ C^b", "c: optimum ~ C^c", "budgets fitted"],
                  rows)
    first = next(iter(dict.fromkeys(v for v, _ in fits)), None)
    diffs = []
    for (variant, metric), mf in fits.items():
        base = fits.get((first, metric))
        if variant == first or base is None or metric == "val_loss":
            continue
        for q in ("n_opt", "y_opt"):
            if mf.laws.get(q) and base.laws.get(q):
                d = exponent_difference(mf.laws[q], base.laws[q], confidence)
                sign = "excludes 0" if not d.contains(0.0) else "includes 0"
                diffs.append([variant, NAMES[metric], q, _ci(d, ".3f"), sign])
    if diffs:
        text += (f"\n\nExponent differences against {first} (independent bootstrap replicates; a more negative c is "
                 "a loss that falls faster with compute, the better-scaling formulation):\n\n"
                 + _table(["formulation", "metric", "law", "difference", f"{confidence:.0%} interval"], diffs))
    return text


def _no_minimum(rows: pd.DataFrame, variant: str, metric: str, budget: float) -> str:
    """Why a budget has no fit: too few sizes, or the best measured size (at an end: the optimum is beyond it)."""
    at = rows[(rows["kind"] == "isoflop") & (rows["variant"] == variant) & (rows["budget"] == budget)]
    at = at[np.isfinite(at[metric].astype(float))]
    if at["num_params"].nunique() < 3:
        return f"not fitted ({at['num_params'].nunique()} sizes measured, 3 needed)"
    best = at.loc[at[metric].astype(float).idxmin()]
    end = ("the smallest" if best["num_params"] == at["num_params"].min()
           else "the largest" if best["num_params"] == at["num_params"].max() else "inside")
    return f"no minimum (best measured: {best['size']}, {end})"


def _per_formulation(fits: dict[tuple[str, str], MetricFits], rows: pd.DataFrame) -> str:
    parts = []
    for variant in dict.fromkeys(v for v, _ in fits):
        table = []
        for metric in METRICS:
            mf = fits.get((variant, metric))
            for budget, f in (mf.isoflop.items() if mf else []):
                if f is None:
                    table.append([NAMES[metric], _g(budget), _no_minimum(rows, variant, metric, budget), "", "", ""])
                    continue
                table.append([NAMES[metric], _g(budget), _ci(f.n_opt), _ci(f.d_opt), _ci(f.y_opt, ".4g"),
                             f"{f.kept:.0%} (sigma {_g(f.sigma)})"])
        parts.append(f"### {variant}\n\n" + _table(["metric", "budget C", "N_opt", "D_opt (images)", "optimum",
                                                    "replicates kept"], table))
    return "\n\n".join(parts)


def _cells(rows: pd.DataFrame, kind: str, columns: list[str]) -> str:
    part = rows[rows["kind"] == kind].sort_values(["variant", "budget", "patch", "num_params"])
    body = [[str(r[c]) if c in ("variant", "label", "seed") else _g(r[c], ".4g") for c in columns]
            for _, r in part.iterrows()]
    return _table(columns, body) if body else "(no finished cells yet)"


def _unfinished(points: list[Point], rows: pd.DataFrame) -> str:
    """The planned isoFLOP and quality cells without a record, as ``label variant`` (seed when several)."""
    planned = [p for p in points if p.kind != "extrapolation"]
    several = len({s for p in planned for s in p.grid.seeds}) > 1
    gaps = [f"{p.label} {v}" + (f" seed {seed}" if several else "") for p, v, seed in missing(planned, rows)]
    total = sum(len(p.grid.variants) * len(p.grid.seeds) for p in planned)
    return (f"{total - len(gaps)} of the {total} planned isoFLOP and quality cells finished"
            + (f"; not yet: {', '.join(gaps)}." if gaps else "."))


def _extrapolation(extrapolations: list[Extrapolation]) -> str:
    if not extrapolations:
        return "(no extrapolation budget, or fewer than 2 budgets with a fitted minimum)"
    rows = []
    for e in extrapolations:
        gap = abs(math.log(e.num_params) - math.log(e.n_opt.value))
        verdict = "not trained yet" if e.inside is None else ("inside" if e.inside else "OUTSIDE")
        rows.append([e.variant, NAMES[e.metric], _g(e.budget), f"{_ci(e.n_opt)} ({NAMES[e.size_metric]})",
                     f"{e.size.label} ({e.num_params:,}, ln-gap {gap:.2f})", _ci(e.y_opt, ".4g"),
                     _g(e.measured, ".4g"), verdict])
    return _table(["formulation", "metric", "budget C", "predicted N_opt (by the law of)", "trained size",
                   "predicted optimum [prediction interval]", "measured", "measured in interval"], rows)


def render(study: Study, points: list[Point], rows: pd.DataFrame, fits: dict[tuple[str, str], MetricFits],
           extrapolations: list[Extrapolation], fidelity: str | None, alignment: str | None,
           figures: dict[str, str]) -> str:
    s, conf = study.scaling, study.scaling.confidence
    spent = float(rows["flops"].sum()) if len(rows) else 0.0
    wall = float(np.nansum(rows["wall_s"].to_numpy(float))) if len(rows) else 0.0
    lines = [
        f"# Scaling study `{study.name}`", "",
        f"From `{study.file}`, dataset {', '.join(study.base.datasets)}, seeds {list(study.base.seeds)}, "
        f"formulations: {', '.join(study.base.variants)}, backbone {study.base.backbones[0]}. ablate {__version__}.", "",
        "Conventions: the budget C is training FLOPs per cell (a multiply-add is 2 FLOPs), counted by "
        "torch's FlopCounterMode on a real forward + backward step and equal to the DiT-paper formula "
        f"(ablate/scaling/flops.py); every isoFLOP cell spends C within {BUDGET_TOLERANCE:.0%}. N is the "
        "parameter count, D the training images seen. Metrics are the best-EMA-checkpoint validation numbers: "
        "x0-MSE (comparable across formulations) and the native loss (comparable only within a formulation); "
        f"fidelity is {fidelity or 'absent'} and alignment {alignment or 'absent'} at the first eval setting. "
        f"Intervals are {conf:.0%} (parametric bootstrap, {s.bootstrap} replicates, noise floor "
        f"{s.noise_floor:.0%}; see ablate/scaling/fit.py). Model family: depth d, width 64 d, d heads.", "",
        f"Cells finished: {len(rows)}; training FLOPs spent {spent:.3g}; training wall time {wall / 60:.1f} min "
        "(summed over cells, which may have shared a GPU). " + _unfinished(points, rows), "",
        "## Exponents across formulations", "", _exponents(fits, conf), "",
        "## IsoFLOP fits by formulation", "", _per_formulation(fits, rows), "",
        f"![isoFLOP curves]({figures['isoflop']})", "", f"![power laws]({figures['power_laws']})", "",
        "## Extrapolation check", "",
        f"The size is chosen by the {NAMES[SIZE_METRIC]} law of N_opt (the {NAMES[FALLBACK_SIZE_METRIC]}'s where the "
        f"{NAMES[SIZE_METRIC]} has none); each metric's optimum is predicted by its own power law (interval: fit "
        "uncertainty plus one measurement's noise).", "", _extrapolation(extrapolations), "",
        "## Quality vs forward GFLOPs", "",
        _cells(rows, "quality", ["variant", "label", "forward_gflops", "steps", "fidelity", "alignment", "val_x0_mse"]),
        "", f"![quality vs GFLOPs]({figures['quality']})", "",
        "## Cells", "",
        _cells(rows, "isoflop", ["variant", "label", "budget", "num_params", "steps", "images", "val_x0_mse",
                                 "val_loss", "fidelity", "alignment", "wall_s"]), "",
        "Extrapolation cells:", "",
        _cells(rows, "extrapolation", ["variant", "label", "budget", "num_params", "steps", "val_x0_mse", "val_loss",
                                       "fidelity", "wall_s"]), "",
        "## Plan", "", _plan_table(points), "",
    ]
    return "\n".join(lines)


def write_report(out_dir: Path, study: Study, points: list[Point], rows: pd.DataFrame,
                 fits: dict[tuple[str, str], MetricFits], extrapolations: list[Extrapolation],
                 fidelity: str | None, alignment: str | None) -> list[Path]:
    """Write the markdown report and its figures; returns their paths."""
    stem = report_stem(study.name)
    out_dir = Path(out_dir)
    figures = {key: f"{stem}-{key.replace('_', '-')}.png" for key in ("isoflop", "power_laws", "quality")}
    title = f"{study.name}: "
    write_bytes_atomic(out_dir / figures["isoflop"], plot_isoflop(rows, fits, SIZE_METRIC, title + "isoFLOP curves"))
    write_bytes_atomic(out_dir / figures["power_laws"],
                       plot_power_laws(fits, SIZE_METRIC, extrapolations, title + "power laws (x0-MSE)"))
    write_bytes_atomic(out_dir / figures["quality"], plot_quality(rows, fidelity, alignment, title + "quality vs GFLOPs"))
    md = out_dir / f"{stem}.md"
    write_text_atomic(md, render(study, points, rows, fits, extrapolations, fidelity, alignment, figures))
    return [md, *(out_dir / f for f in figures.values())]
