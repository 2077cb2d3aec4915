"""The backbone axis of a leaderboard (SD3 section 5.2.3, its Figure 4): variants ranked within each
backbone and across them, final values with intervals, validation curves per backbone with bands.

A grid with several backbones (or one other than DiT) is ranked across backbones by naming each
(variant, backbone) pair ``"<variant> @ <backbone>"`` (:func:`label_variants`): the ordinary leaderboard
then ranks the pairs. :func:`section` adds what belongs to the axis. Intervals over seeds are the mean
+- t(0.975, n - 1) standard errors (none for one seed). The curves are the validation losses each cell
recorded while training (EMA weights): x0-MSE at fixed log-SNR levels (comparable across formulations)
and each formulation's own loss (comparable within a formulation only), then fidelity and alignment where the
grid drew them through training (``eval.curve_every``: the EMA weights sampled the first setting at those
validations); else fidelity and alignment are the final (best-EMA) checkpoint's only, final values, not curves.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ablate.io import write_bytes_atomic
from ablate.report import ranking
from ablate.report.leaderboard import markdown_table
from ablate.report.plots import _png
from ablate.report.statistics import mean_and_se

CURVES = (("val/ema_x0_mse", "validation x0-MSE (EMA)"), ("val/ema_loss", "validation loss, own formulation (EMA)"))
CURVE_METRIC = "val/curve_{}"  # a scorer's metric through training (ablate.engine.metric_keys.curve_key)


def has_backbones(frame: pd.DataFrame) -> bool:
    """Whether the records name a backbone axis (several backbones, or one that is not DiT)."""
    return "backbone" in frame and set(frame["backbone"].fillna("dit")) != {"dit"}


def label_variants(frame: pd.DataFrame) -> pd.DataFrame:
    """The records with ``variant`` read as ``"<variant> @ <backbone>"`` (``formulation`` keeps the name)."""
    return frame.assign(formulation_variant=frame["variant"],  # the column ranking.ranks_pairs tests
                        variant=[ranking.pair_label(v, b) for v, b in zip(frame["variant"], frame["backbone"].fillna("dit"))])


def _interval(values: np.ndarray, digits: int = 4) -> str:
    from scipy.stats import t as student

    values = np.asarray(values, float)
    mean, se = mean_and_se(values)
    n = int(np.isfinite(values).sum())
    if n < 2 or not np.isfinite(se):
        return f"{mean:.{digits}g}"
    half = float(student.ppf(0.975, n - 1) * se)
    return f"{mean:.{digits}g} [{mean - half:.{digits}g}, {mean + half:.{digits}g}]"


def _per_cell(frame: pd.DataFrame, alignment: str, fidelity: str) -> pd.DataFrame:
    """Per (backbone, variant, seed): size, best validation x0-MSE and loss, and the mean fidelity and alignment
    over the cell's settings."""
    return frame.groupby(["backbone", "variant", "seed"]).agg(
        params=("train_num_params", "first"), gflops=("train_gflops_per_image", "first"),
        x0=("train_val_x0_mse", "first"), loss=("train_val_loss", "first"),
        fid=(fidelity, "mean"), align=(alignment, "mean")).reset_index()


def paper_comparison(frame: pd.DataFrame, alignment: str, fidelity: str) -> tuple[pd.DataFrame, str]:
    """The paper's Figure 4 has MM-DiT ahead of DiT, CrossDiT and UViT in validation loss, CLIP score and FID.
    Per formulation and metric (validation x0-MSE, ``fidelity``, ``alignment``, each the way its records say is
    better): the backbones best first with their seed means, MM-DiT's place, and MM-DiT against the best other
    backbone (difference of means, two-sided Welch t-test over seeds; n/a under two seeds a side). With a sentence:
    in how many (formulation, metric) pairs MM-DiT is first."""
    from scipy.stats import ttest_ind

    higher_align, lower_fid = ranking.directions(frame, alignment, fidelity)
    metrics = (("x0", "val x0-MSE", False), ("fid", fidelity, not lower_fid), ("align", alignment, higher_align))
    per_cell, rows, first = _per_cell(frame, alignment, fidelity), [], 0
    for variant, part in per_cell.groupby("variant", sort=False):
        for column, name, higher in metrics:
            means = part.groupby("backbone")[column].mean().sort_values(ascending=not higher)
            if "mmdit" not in means or len(means) < 2:
                continue
            other = next(b for b in means.index if b != "mmdit")
            mine, theirs = (part.loc[part["backbone"] == b, column].to_numpy(float) for b in ("mmdit", other))
            p = float(ttest_ind(mine, theirs, equal_var=False).pvalue) if min(len(mine), len(theirs)) > 1 else np.nan
            first += means.index[0] == "mmdit"
            rows.append({"variant": variant, "metric": name + (" (higher is better)" if higher else ""),
                         "backbones, best first (seed mean)": ", ".join(f"{b} {v:.4g}" for b, v in means.items()),
                         "MM-DiT's place": f"{list(means.index).index('mmdit') + 1} of {len(means)}",
                         "MM-DiT - best other": f"{means['mmdit'] - means[other]:+.4g} (vs {other})",
                         "Welch p": "n/a" if np.isnan(p) else f"{p:.3g}"})
    table = pd.DataFrame(rows)
    verdict = (f"The paper's Figure 4 puts MM-DiT first in validation loss, CLIP score and FID; here MM-DiT is first in "
               f"{first} of {len(table)} (formulation, metric) pairs." if len(table) else
               "No MM-DiT cells beside another backbone: nothing to compare with the paper's Figure 4.")
    return table, verdict


def final_values(frame: pd.DataFrame, alignment: str, fidelity: str) -> pd.DataFrame:
    """Per (backbone, variant): parameters, GFLOPs, best validation x0-MSE and loss, fidelity and alignment
    (each cell's mean over its settings), as mean [95% interval] over seeds."""
    per_cell = _per_cell(frame, alignment, fidelity)
    rows = []
    for (backbone, variant), part in per_cell.groupby(["backbone", "variant"], sort=False):
        rows.append({"backbone": backbone, "variant": variant, "seeds": len(part),
                     "params (M)": f"{part['params'].iloc[0] / 1e6:.3f}", "GFLOPs/img": f"{part['gflops'].iloc[0]:.4f}",
                     "val x0-MSE": _interval(part["x0"]), "val loss": _interval(part["loss"]),
                     fidelity: _interval(part["fid"]), alignment: _interval(part["align"])})
    return pd.DataFrame(rows).sort_values(["backbone", "variant"]).reset_index(drop=True)


def within_ranks(frame: pd.DataFrame, alignment: str, fidelity: str) -> pd.DataFrame:
    """Average non-dominated rank of each variant within each backbone (the paper's Table 1 ranking on the
    backbone's records alone): rows variants, columns backbones."""
    columns, directions = {}, ranking.directions(frame, alignment, fidelity)
    for backbone, part in frame.groupby("backbone"):
        means = ranking.setting_ranks(ranking.seed_means(part, alignment, fidelity), alignment, fidelity, *directions)
        t1 = ranking.table1(means)
        columns[backbone] = t1.set_index("variant")["all"]
    return pd.DataFrame(columns)


def _order(ranks: pd.Series) -> str:
    """``a > b = c``: best first, ties joined by ``=``."""
    groups = ranks.dropna().groupby(ranks.dropna()).groups
    return " > ".join(" = ".join(sorted(groups[r])) for r in sorted(groups))


def ranking_verdict(ranks: pd.DataFrame) -> str:
    """Whether the formulation ranking changes across backbones: it does when some pair of variants is
    strictly ordered one way within one backbone and strictly the other way within another (a tie
    contradicts neither)."""
    flips = []
    variants = list(ranks.index)
    for i, a in enumerate(variants):
        for b in variants[i + 1:]:
            diff = (ranks.loc[a] - ranks.loc[b]).dropna()
            if (diff < 0).any() and (diff > 0).any():
                flips.append(f"{a} vs {b}")
    orders = "; ".join(f"{backbone}: {_order(ranks[backbone])}" for backbone in ranks.columns)
    if flips:
        return f"The formulation ranking changes across backbones ({', '.join(flips)} swap). Orders: {orders}."
    return f"The formulation ranking does not change across backbones (no pair swaps). Orders: {orders}."


def curve_keys(frame: pd.DataFrame, alignment: str, fidelity: str) -> list[tuple[str, str]]:
    """:data:`CURVES`, then the fidelity and alignment metrics through training where the records carry them."""
    present = {key for points in frame.get("train_val_curve", pd.Series(dtype=object)) if isinstance(points, list)
               for p in points if isinstance(p, dict) for key in p}
    return [*CURVES, *((CURVE_METRIC.format(m), f"{m} through training (EMA, first setting)")
                       for m in (fidelity, alignment) if CURVE_METRIC.format(m) in present)]


def curves(frame: pd.DataFrame, keys: Sequence[tuple[str, str]] = CURVES) -> pd.DataFrame:
    """Curves per (backbone, variant, step) of each of ``keys`` (:func:`curve_keys`): mean and 95% t-band over seeds;
    for a metric positive throughout (drawn on a log axis) the geometric mean and the band of its logs, which stays
    positive where a linear band of few seeds would reach below zero."""
    cells = frame.drop_duplicates(["backbone", "variant", "seed"])
    rows = [{"backbone": r.backbone, "variant": r.variant, "seed": r.seed, "step": p["step"],
             **{key: p.get(key, np.nan) for key, _ in keys}}
            for r in cells.itertuples() for p in (getattr(r, "train_val_curve", None) or [])
            if isinstance(p, dict)]
    if not rows:
        return pd.DataFrame()
    from scipy.stats import t as student

    data = pd.DataFrame(rows)
    positive = {key for key, _ in keys if (data[key].dropna() > 0).all()}  # drawn on a log axis (plot_curves)
    out = []
    for (backbone, variant, step), part in data.groupby(["backbone", "variant", "step"]):
        row = {"backbone": backbone, "variant": variant, "step": step}
        for key, _ in keys:
            values = part[key].to_numpy(float)
            mean, se = mean_and_se(np.log(values) if key in positive else values)
            half = student.ppf(0.975, len(part) - 1) * se if len(part) > 1 else np.nan
            low, high = mean - half, mean + half
            row |= ({key: np.exp(mean), f"{key} low": np.exp(low), f"{key} high": np.exp(high)} if key in positive
                    else {key: mean, f"{key} low": low, f"{key} high": high})
        out.append(row)
    return pd.DataFrame(out)


def plot_curves(grid: str, table: pd.DataFrame, keys: Sequence[tuple[str, str]] = CURVES) -> bytes:
    """PNG bytes in the shape of the paper's Figure 4: one column per variant, one row per curve of ``keys``, a line
    per backbone with its 95% band (a curve's points where it was drawn)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    variants = sorted(table["variant"].unique())
    fig = Figure(figsize=(4.5 * len(variants) + 1.0, 3.5 * len(keys)), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(keys), len(variants), squeeze=False)
    for col, variant in enumerate(variants):
        for row, (key, label) in enumerate(keys):
            ax = axes[row][col]
            for backbone, part in table[table["variant"] == variant].groupby("backbone"):
                part = part.sort_values("step").dropna(subset=[key])
                ax.plot(part["step"], part[key], label=backbone)
                ax.fill_between(part["step"], part[f"{key} low"], part[f"{key} high"], alpha=0.2)
            ax.set_title(variant, fontsize=9)
            ax.set_xlabel("training step")
            if (table[key].dropna() > 0).all():  # KID-like estimates can be negative
                ax.set_yscale("log")
            if col == 0:
                ax.set_ylabel(label, fontsize=8)
    axes[0][0].legend(fontsize=7, title="backbone", title_fontsize=7)
    fig.suptitle(f"{grid}: validation curves per backbone (geometric mean of positive metrics, 95% t-band over seeds)", fontsize=10)
    return _png(fig)


def section(frame: pd.DataFrame, grid: str, alignment: str, fidelity: str, out_dir: Path) -> list[str]:
    """Markdown parts of the backbone axis; writes ``<out_dir>/<grid>-backbones.png`` (the curves)."""
    ranks = within_ranks(frame, alignment, fidelity)
    parts = ["## Backbones: formulations ranked within each backbone",
             "Average non-dominated rank (lower is better) of each variant among the variants of the same backbone; "
             "Table 1 above ranks every (variant @ backbone) pair together.",
             markdown_table(ranks.map(lambda v: f"{v:.2f}").rename_axis("variant").reset_index()),
             ranking_verdict(ranks),
             "## Backbones: final values",
             "Best-EMA checkpoint; mean [95% t-interval over seeds]; fidelity and alignment averaged over each cell's "
             "settings; val loss compares only within a formulation. Parameters include the caption encoder.",
             markdown_table(final_values(frame, alignment, fidelity))]
    table, verdict = paper_comparison(frame, alignment, fidelity)
    seeds = frame.groupby(["variant", "backbone"])["seed"].nunique()
    side = f"{seeds.min()}" if seeds.min() == seeds.max() else f"{seeds.min()}-{seeds.max()}"
    parts += ["## Backbones against the paper",
              "Best-EMA checkpoint; each cell's fidelity and alignment averaged over its settings; a Welch test over "
              f"seeds compares MM-DiT with the best other backbone (two-sided; with {side} seeds a side it detects only "
              "large differences, and the settings averaged share each seed's prompts and noise).", verdict]
    if len(table):
        parts.append(markdown_table(table))
    keys = curve_keys(frame, alignment, fidelity)
    table = curves(frame, keys)
    if not table.empty:
        png = Path(out_dir) / f"{grid}-backbones.png"
        write_bytes_atomic(png, plot_curves(grid, table, keys))
        through = len(keys) > len(CURVES)
        parts += ["## Backbones: validation curves (the paper's Figure 4)",
                  "Validation x0-MSE and own loss against training steps per backbone (EMA weights; a positive metric "
                  "as the geometric mean over seeds with the 95% t-band of its logs, else the mean and its 95% t-band)" + (f", then {', '.join(k for k, _ in keys[len(CURVES):])}: the EMA weights "
                                        "sampled the grid's first setting at those validations (`eval.curve_every`)."
                                        if through else ". Fidelity and alignment are measured at the end of training "
                                        "only (table above): the grid drew no curve of them (`eval.curve_every`)."),
                  f"![validation curves per backbone]({png.name})"]
    return parts
