"""Does a metric separate the variants of a grid by more than its training-seed noise (issue 24, item 3)?

For every setting and metric of a results directory's records: the SD of the variants' seed means, the seed
standard error of one variant's mean (pooled within-variant SD / sqrt(seeds)), their ratio, and a one-way ANOVA
over variants (F, p); ``--drop`` leaves variants out. Records are read by :class:`ablate.results.ResultsStore`.

    python benchmarks/metric_separation.py RESULTS GRID [--metrics ckid_effnet,align_probe,...] [--drop V ...]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from ablate.results import ResultsStore


def separation(frame: pd.DataFrame, metric: str) -> dict | None:
    """The separation of ``metric`` over the variants of one setting's rows (variants with at least 2 seeds)."""
    groups = [g.to_numpy(float) for _, g in frame.dropna(subset=[metric]).groupby("variant")[metric] if len(g) >= 2]
    if len(groups) < 3:
        return None
    seeds = min(len(g) for g in groups)
    se = np.sqrt(np.mean([g.var(ddof=1) for g in groups])) / np.sqrt(seeds)
    spread = float(np.std([g.mean() for g in groups], ddof=1))
    f, p = stats.f_oneway(*groups)
    return {"variants": len(groups), "seeds": seeds, "spread": spread, "se": float(se), "ratio": spread / float(se),
            "F": float(f), "p": float(p)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", type=Path)
    ap.add_argument("grid")
    ap.add_argument("--metrics", default="ckid_effnet,align_probe,fd_effnet,kid_effnet,fd_probe")
    ap.add_argument("--drop", nargs="*", default=[])
    args = ap.parse_args()
    frame = ResultsStore(args.results).frame(args.grid)
    frame = frame[~frame["variant"].isin(args.drop)]
    print(f"{len(frame)} records of {args.results / args.grid}; left out: {', '.join(args.drop) or 'none'}\n")
    print("| metric | setting | variants | seeds | SD of variant means | seed SE of a mean | ratio | ANOVA F | p |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    settings = frame.groupby(["steps", "cfg", "weights"])
    keys = sorted(settings.groups, key=lambda k: (-k[0], k[1], k[2]))
    for metric in args.metrics.split(","):
        for steps, cfg, weights in keys:
            out = separation(settings.get_group((steps, cfg, weights)), metric) if metric in frame else None
            if out:
                print(f"| {metric} | {steps} steps, cfg {cfg:g}, {weights} | {out['variants']} | {out['seeds']} | "
                      f"{out['spread']:.4g} | {out['se']:.4g} | {out['ratio']:.1f} | {out['F']:.1f} | {out['p']:.2g} |")


if __name__ == "__main__":
    main()
