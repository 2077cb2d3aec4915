"""Does a metric separate the variants of a grid by more than its training-seed noise (issue 24, item 3)?

For every setting and metric of a results directory's records: the SD of the variants' seed means, the seed
standard error of one variant's mean (pooled within-variant SD / sqrt(seeds)), their ratio, and a one-way ANOVA
over variants (F, p); also with the variants that miss every metric's bulk left out (``--drop``).

    python benchmarks/metric_separation.py RESULTS GRID [--metrics ckid_effnet,align_probe,...] [--drop V ...]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from scipy import stats


def load(results: Path, grid: str) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((results / grid).glob("*/*/seed*/records/*.json"))]


def separation(records: list[dict], metric: str, setting: tuple, drop: set[str]) -> dict | None:
    by_variant: dict[str, list[float]] = {}
    for r in records:
        if (r["steps"], r["cfg"], r["weights"]) == setting and r["variant"] not in drop and metric in r["metrics"]:
            by_variant.setdefault(r["variant"], []).append(float(r["metrics"][metric]))
    groups = [np.array(v) for v in by_variant.values() if len(v) >= 2]
    if len(groups) < 3:
        return None
    seeds = min(len(g) for g in groups)
    within = np.sqrt(np.mean([g.var(ddof=1) for g in groups]))
    means = np.array([g.mean() for g in groups])
    f, p = stats.f_oneway(*groups)
    se = within / np.sqrt(seeds)
    return {"variants": len(groups), "seeds": seeds, "spread": float(means.std(ddof=1)), "se": float(se),
            "ratio": float(means.std(ddof=1) / se), "F": float(f), "p": float(p)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", type=Path)
    ap.add_argument("grid")
    ap.add_argument("--metrics", default="ckid_effnet,align_probe,fd_effnet,kid_effnet,fd_probe")
    ap.add_argument("--drop", nargs="*", default=[])
    args = ap.parse_args()
    records = load(args.results, args.grid)
    settings = sorted({(r["steps"], r["cfg"], r["weights"]) for r in records}, key=lambda s: (-s[0], s[1], s[2]))
    print(f"{len(records)} records of {args.results / args.grid}; left out: {', '.join(args.drop) or 'none'}\n")
    print("| metric | setting | variants | seeds | SD of variant means | seed SE of a mean | ratio | ANOVA F | p |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for metric in args.metrics.split(","):
        for s in settings:
            out = separation(records, metric, s, set(args.drop))
            if out:
                print(f"| {metric} | {s[0]} steps, cfg {s[1]:g}, {s[2]} | {out['variants']} | {out['seeds']} | "
                      f"{out['spread']:.4g} | {out['se']:.4g} | {out['ratio']:.1f} | {out['F']:.1f} | {out['p']:.2g} |")


if __name__ == "__main__":
    main()
