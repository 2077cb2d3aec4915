"""Grid throughput with 1 worker against N workers on N GPUs; prints a table.

    python benchmarks/workers_scaling.py [--workers 2] [--cells 6] [--max-steps 300] [--num-samples 250]
                                         [--data-dir DIR] [--grid grids/fashion-mnist.yaml]

Runs the same small grid (the first ``--cells`` variants of the grid file) twice through
``python -m ablate run --workers K``, each time with fresh results, Optuna storage and compile
cache (``TORCHINDUCTOR_CACHE_DIR``), so neither run inherits the other's compiled graphs. Reports
the end-to-end wall clock of each (every once-per-worker cost included: start-up, data, scorer,
compiling) and the steady state: the median seconds a cell takes (training + evaluation, from its
records), from which the throughput of a long grid follows (K workers / median cell seconds).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def cell_seconds(results: Path) -> list[float]:
    """Per cell: training wall (train.json) + every record's evaluation wall."""
    out = []
    for train in results.rglob("train.json"):
        records = list((train.parent / "records").glob("*.json"))
        out.append(json.loads(train.read_text())["wall_s"]
                   + sum(json.loads(r.read_text())["eval"]["wall_s"] for r in records))
    return out


def run(grid: str, variants: list[str], workers: int, args: argparse.Namespace, root: Path) -> dict:
    results, cache = root / f"results-{workers}", root / f"inductor-{workers}"
    command = [sys.executable, "-m", "ablate", "run", grid, *[a for v in variants for a in ("--variant", v)],
               "--max-steps", str(args.max_steps), "--num-samples", str(args.num_samples), "--results", str(results),
               "--workers", str(workers), "--no-leaderboard", *(["--data-dir", args.data_dir] if args.data_dir else [])]
    start = time.time()
    code = subprocess.call(command, env={**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(cache)})
    wall = time.time() - start
    cells = cell_seconds(results)
    if code or len(cells) != len(variants):
        raise SystemExit(f"run with {workers} worker(s) failed (exit {code}, {len(cells)} cells finished)")
    return {"workers": workers, "wall_s": wall, "cells": len(cells), "median_cell_s": statistics.median(cells)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", default="grids/fashion-mnist.yaml")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--cells", type=int, default=6)
    parser.add_argument("--max-steps", type=int, default=300)
    parser.add_argument("--num-samples", type=int, default=250)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from ablate.config.grid import load_grid

    variants = list(load_grid(args.grid).variants[: args.cells])
    with tempfile.TemporaryDirectory() as tmp:
        rows = [run(args.grid, variants, k, args, Path(tmp)) for k in (1, args.workers)]
    one, many = rows
    print(f"\n{len(variants)} cells of {args.grid} ({args.max_steps} steps, {args.num_samples} samples per setting):")
    print("| workers | wall s | cells/hour end to end | median cell s | steady cells/hour |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['workers']} | {r['wall_s']:.0f} | {3600 * r['cells'] / r['wall_s']:.0f} | {r['median_cell_s']:.1f} | "
              f"{3600 * r['workers'] / r['median_cell_s']:.0f} |")
    end_to_end = one["wall_s"] / many["wall_s"]
    steady = (many["workers"] / many["median_cell_s"]) / (1 / one["median_cell_s"])
    print(f"\n{args.workers} workers vs 1: {end_to_end:.2f}x end to end (this small grid, once-per-worker costs "
          f"included), {steady:.2f}x steady state (a long grid)")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "end_to_end": end_to_end, "steady": steady}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
