"""The leaderboard's figures, as PNG bytes (matplotlib's Agg canvas, no display needed).

- :func:`plot_fidelity_vs_steps`: the paper's Figure 3, fidelity vs Euler steps, with +- 1 SE bands.
- :func:`plot_average_ranks`: average rank per variant with its bootstrap 95% interval as error bars.
"""

from __future__ import annotations

import io
import math
import numpy as np
import pandas as pd


def _png(fig) -> bytes:  # noqa: ANN001 (a matplotlib Figure)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    return buf.getvalue()


def plot_fidelity_vs_steps(grid: str, means: pd.DataFrame, fidelity: str, order: list[str]) -> bytes:
    """PNG bytes: fidelity vs Euler steps per variant (log x), one panel per dataset (paper Figure 3),
    with a band of +- one standard error of the seed mean where there are several seeds.

    Uses EMA weights, the ``own`` time grid when present (else the most common), and the largest
    cfg that has several step counts; a panel says so when no cfg has several step counts. ``means``:
    seed means per (variant, setting) (:func:`ablate.report.ranking.seed_means`); ``order``: the legend's order.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    ema = means[means["weights"] == "ema"]
    datasets = sorted(map(str, means["dataset"].unique()))
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
            ax.plot(line["steps"], line[fidelity], marker="o", markersize=3, label=variant,
                    color=f"C{i % 10}", linestyle=styles[(i // 10) % len(styles)])
            se = line.get(f"{fidelity}_se")
            if se is not None and np.isfinite(se.to_numpy(dtype=float)).any():
                ax.fill_between(line["steps"], line[fidelity] - se, line[fidelity] + se,
                                color=f"C{i % 10}", alpha=0.15, linewidth=0)
        steps = sorted(part["steps"].unique())
        ax.set_xscale("log")
        ax.set_xticks(steps, [str(int(s)) for s in steps])
        ax.minorticks_off()
        ax.set_xlabel("Euler steps")
        ax.set_ylabel(f"{fidelity} (lower is better)")
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
    fig.suptitle(f"{grid}: {fidelity} vs sampling steps")
    return _png(fig)


def plot_average_ranks(grid: str, table: pd.DataFrame, seeds: int) -> bytes:
    """PNG bytes: average rank over all settings per variant (best at the top) with 95% bootstrap error bars
    (``table``: columns variant, all and, when there are intervals, ``all low`` / ``all high``)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    n = len(table)
    fig = Figure(figsize=(7.0, 1.2 + 0.28 * n), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    y = np.arange(n)[::-1]
    point = table["all"].to_numpy(dtype=float)
    low = table["all low"].to_numpy(dtype=float) if "all low" in table else point
    high = table["all high"].to_numpy(dtype=float) if "all high" in table else point
    low, high = np.where(np.isfinite(low), low, point), np.where(np.isfinite(high), high, point)
    ax.errorbar(point, y, xerr=[point - low, high - point], fmt="o", color="C0", ecolor="0.4", capsize=3)
    ax.set_yticks(y, table["variant"].tolist(), fontsize="small")
    ax.set_xlabel("average rank over all settings (lower is better)")
    ax.set_title(f"{grid}: average rank, 95% bootstrap interval over {seeds} seed(s)", fontsize="medium")
    ax.grid(True, axis="x", alpha=0.3)
    return _png(fig)
