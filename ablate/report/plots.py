"""The leaderboard's figures, as PNG bytes (matplotlib's Agg canvas, no display needed).

- :func:`plot_fidelity_vs_steps`: the paper's Figure 3, fidelity vs Euler steps, with +- 1 SE bands.
- :func:`plot_average_ranks`: average rank per variant with its 95% t-interval over seeds as error bars.
- :func:`plot_sample_sheet`: the first row of each variant's sample previews, one column per setting.
"""

from __future__ import annotations

import io
import math
from pathlib import Path
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
    """PNG bytes: average rank over all settings per variant (best at the top): where ``table`` has intervals,
    the per-seed average rank (``per seed``) with its 95% t-interval (``per seed low`` / ``per seed high``,
    :mod:`ablate.report.intervals`) and the rank of the seed means (``all``) as a cross; else ``all`` alone."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    n = len(table)
    fig = Figure(figsize=(7.0, 1.2 + 0.28 * n), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    y = np.arange(n)[::-1]
    seed_means = table["all"].to_numpy(dtype=float)
    point = table["per seed"].to_numpy(dtype=float) if "per seed" in table else seed_means
    low = table["per seed low"].to_numpy(dtype=float) if "per seed low" in table else point
    high = table["per seed high"].to_numpy(dtype=float) if "per seed high" in table else point
    low, high = np.where(np.isfinite(low), low, point), np.where(np.isfinite(high), high, point)
    ax.errorbar(point, y, xerr=[point - low, high - point], fmt="o", color="C0", ecolor="0.4", capsize=3,
                label="one run's average rank (mean over seeds, 95% t-interval)")
    if "per seed" in table:
        ax.plot(seed_means, y, "x", color="C3", label="rank of the seed means (Table 1 'all')")
        ax.legend(fontsize="x-small", loc="upper right")  # the best (top) variants sit at the left
    ax.set_yticks(y, table["variant"].tolist(), fontsize="small")
    ax.set_xlabel("average rank over all settings (lower is better)")
    ax.set_title(f"{grid}: average rank, 95% (moderated) t-interval over {seeds} seed(s)", fontsize="medium")
    ax.grid(True, axis="x", alpha=0.3)
    return _png(fig)


def sample_sheet(previews: dict[str, list[Path | None]], tile_rows: int = 1) -> tuple[np.ndarray, tuple[int, int]]:
    """The sample sheet as one grey image in [0, 1] and the shape of one cell of it: per variant (a row, in
    the given order) the first ``tile_rows`` rows of tiles of each of its previews (8-wide grids with
    1-pixel padding, :func:`ablate.engine.evaluate.save_preview`) side by side, 8 white columns apart; a
    missing preview is left white."""
    from matplotlib.image import imread

    def strip(path: Path | None) -> np.ndarray | None:
        if path is None:
            return None
        image = imread(path)
        image = image[..., 0] if image.ndim == 3 else image
        tile = (image.shape[0] - 1) // 8  # tile + padding, in pixels
        return image[: 1 + tile_rows * tile]

    strips = [[strip(p) for p in paths] for paths in previews.values()]
    shape = next((a.shape for row in strips for a in row if a is not None), (34, 265))
    gap = np.ones((shape[0], 8))
    rows = [np.hstack([part for a in row for part in (a if a is not None and a.shape == shape else np.ones(shape), gap)][:-1])
            for row in strips]
    return (np.vstack(rows) if rows else np.ones(shape)), shape


def plot_sample_sheet(grid: str, columns: list[str], previews: dict[str, list[Path | None]]) -> bytes:
    """PNG bytes: :func:`sample_sheet` with the variants' names and the columns' settings."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    sheet, shape = sample_sheet(previews)
    height, width = (n * 1.6 / 110 for n in sheet.shape)  # inches at 1.6 screen pixels per image pixel
    fig = Figure(figsize=(width + 2.6, height + 0.8))
    FigureCanvasAgg(fig)
    ax = fig.add_axes((2.4 / (width + 2.6), 0.2 / (height + 0.8), width / (width + 2.6), height / (height + 0.8)))
    ax.imshow(sheet, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_yticks([(i + 0.5) * shape[0] for i in range(len(previews))], list(previews), fontsize=8)
    ax.set_xticks([(j + 0.5) * shape[1] + j * 8 for j in range(len(columns))], columns, fontsize=8)
    ax.xaxis.tick_top()
    ax.tick_params(length=0)
    for side in ax.spines.values():
        side.set_visible(False)
    ax.set_title(f"{grid}: samples (the first seed's prompts, the same for every variant)", fontsize=9, pad=18)
    return _png(fig)
