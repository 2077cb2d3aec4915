"""Figures of a scaling study (PNG bytes): isoFLOP curves, power laws, and quality vs forward GFLOPs."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pandas as pd

from ablate.scaling.analysis import MetricFits
from ablate.scaling.extrapolate import Extrapolation

LABELS = {"val_x0_mse": "x0-MSE (validation, EMA)", "val_loss": "native loss (validation, EMA)"}


def _figure(rows: int, cols: int, width: float = 4.6, height: float = 3.6) -> tuple[Any, np.ndarray]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * cols, height * rows), layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.subplots(rows, cols, squeeze=False)


def _legend(ax: Any, size: str) -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=size)


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return buf.getvalue()


def plot_isoflop(rows: pd.DataFrame, fits: dict[tuple[str, str], MetricFits], metric: str, title: str) -> bytes:
    """One panel per formulation: ``metric`` vs parameters per budget, with the fitted parabola and its minimum."""
    iso = rows[rows["kind"] == "isoflop"]
    variants = list(dict.fromkeys(iso["variant"]))
    fig, axes = _figure(1, max(1, len(variants)))
    for ax, variant in zip(axes[0], variants):
        cells = iso[iso["variant"] == variant]
        mf = fits.get((variant, metric))
        for i, (budget, at) in enumerate(cells.groupby("budget")):
            color = f"C{i % 10}"
            ax.scatter(at["num_params"], at[metric], color=color, s=14, label=f"C = {budget:.2g}")
            fit = mf.isoflop.get(budget) if mf else None
            if fit is not None:
                x = np.linspace(np.log(at["num_params"].min()) - 0.3, np.log(at["num_params"].max()) + 0.3, 60)
                ax.plot(np.exp(x), np.polyval(fit.coef, x), color=color, linewidth=1)
                ax.plot([fit.n_opt.value], [fit.y_opt.value], marker="*", color=color, markersize=10)
                ax.hlines(fit.y_opt.value, fit.n_opt.low, fit.n_opt.high, color=color, linewidth=2, alpha=0.5)
        ax.set_xscale("log")
        if (cells[metric].dropna() > 0).all():
            ax.set_yscale("log")  # a small budget's largest models sit orders of magnitude above the minimum
        ax.set_xlabel("parameters N")
        ax.set_ylabel(LABELS.get(metric, metric))
        ax.set_title(variant, fontsize="small")
        ax.grid(True, alpha=0.3)
        _legend(ax, "x-small")
    fig.suptitle(title)
    return _png(fig)


def plot_power_laws(fits: dict[tuple[str, str], MetricFits], metric: str, extrapolations: list[Extrapolation],
                    title: str) -> bytes:
    """N_opt, D_opt and the optimal ``metric`` against the budget, per formulation, with the fitted laws and
    the extrapolation prediction (interval) and measurement."""
    fig, axes = _figure(1, 3)
    names = {"n_opt": "N_opt (parameters)", "d_opt": "D_opt (images)", "y_opt": f"optimal {LABELS.get(metric, metric)}"}
    for i, ((variant, m), mf) in enumerate((k, v) for k, v in fits.items() if k[1] == metric):
        color = f"C{i % 10}"
        for ax, quantity in zip(axes[0], names):
            pts = mf.fitted
            if not pts:
                continue
            c = np.array([f.budget for f in pts])
            val = np.array([getattr(f, quantity).value for f in pts])
            low = np.array([getattr(f, quantity).low for f in pts])
            high = np.array([getattr(f, quantity).high for f in pts])
            ax.errorbar(c, val, yerr=[np.clip(val - low, 0, None), np.clip(high - val, 0, None)], fmt="o",
                        color=color, markersize=4, capsize=2, label=variant)
            law = mf.laws.get(quantity)
            ext = [e for e in extrapolations if e.variant == variant and e.metric == m]
            if law is not None:
                grid = np.geomspace(c.min(), max([c.max(), *(e.budget for e in ext)]), 40)
                ax.plot(grid, np.exp(law.log_k) * grid**law.exponent.value, color=color, linewidth=1,
                        label=f"exponent {law.exponent.value:.2f}")
            for e in ext if quantity == "y_opt" else []:
                ax.errorbar([e.budget], [e.y_opt.value], yerr=[[e.y_opt.value - e.y_opt.low], [e.y_opt.high - e.y_opt.value]],
                            fmt="s", mfc="none", color=color, capsize=3)
                if np.isfinite(e.measured):
                    ax.plot([e.budget], [e.measured], marker="x", color=color, markersize=9)
    for ax, quantity in zip(axes[0], names):
        if ax.has_data():
            ax.set_xscale("log")
            ax.set_yscale("log")
        else:
            ax.text(0.5, 0.5, "no budget with a fitted minimum", ha="center", va="center", transform=ax.transAxes)
        ax.set_xlabel("training FLOPs C")
        ax.set_ylabel(names[quantity])
        ax.grid(True, which="both", alpha=0.3)
        _legend(ax, "xx-small")
    fig.suptitle(title)
    return _png(fig)


def plot_quality(rows: pd.DataFrame, fidelity: str | None, alignment: str | None, title: str) -> bytes:
    """Fidelity and alignment at fixed training steps against forward GFLOPs, per formulation and patch size."""
    q = rows[rows["kind"] == "quality"]
    fig, axes = _figure(1, 2)
    styles = ["-", "--", ":", "-."]
    for i, variant in enumerate(dict.fromkeys(q["variant"])):
        for j, (patch, line) in enumerate(q[q["variant"] == variant].groupby("patch")):
            line = line.sort_values("forward_gflops")
            for ax, column in zip(axes[0], ("fidelity", "alignment")):
                ax.plot(line["forward_gflops"], line[column], marker="o", markersize=3, color=f"C{i % 10}",
                        linestyle=styles[j % len(styles)], label=f"{variant}, patch {patch}")
    for ax, name, better in ((axes[0][0], fidelity, "lower"), (axes[0][1], alignment, "higher")):
        if ax.has_data():
            ax.set_xscale("log")
        ax.set_xlabel("forward GFLOPs per image (DiT convention)")
        ax.set_ylabel(f"{name or 'no metric'} ({better} is better)")
        ax.grid(True, alpha=0.3)
        _legend(ax, "xx-small")
    fig.suptitle(title)
    return _png(fig)
