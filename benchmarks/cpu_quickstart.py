"""The README's quick start (command 1: ``python -m ablate run grids/smoke.yaml``) timed end to end on
this CPU, in one or more configurations; prints a table.

    python benchmarks/cpu_quickstart.py [--configs plain,one-process,workers-2] [--cells 24] [--json FILE]

Configurations (each in fresh results, so each pays its once-per-run costs: start-up, the effnet
reference statistics, the leaderboard):

- ``plain``: the command as the README gives it, no flags (on the CPU: one single-threaded worker per
  CPU, ablate/threads.py rule 4);
- ``one-process``: one process with a thread per CPU (``OMP_NUM_THREADS`` = CPUs: what a plain run did
  before rule 4);
- ``workers-N``: ``--workers N`` with ``OMP_NUM_THREADS=1`` (CI's smoke run).

``--cells K`` runs the first K variants only (the whole grid is 24). The table: wall seconds of the whole
command (leaderboard included), training images per second over that wall (all cells' training images /
wall), and the median of the cells' own training img/s (``train.json``) with the threads each had.
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

REPO = Path(__file__).resolve().parent.parent
GRID = "grids/smoke.yaml"


def configuration(name: str, cpus: int) -> tuple[list[str], dict[str, str]]:
    """Extra command-line flags and environment of a configuration's run."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    if name == "plain":
        return [], env
    if name == "one-process":
        return [], {**env, "OMP_NUM_THREADS": str(cpus)}
    if name.startswith("workers-") and name[8:].isdigit():
        return ["--workers", name[8:]], {**env, "OMP_NUM_THREADS": "1"}
    raise SystemExit(f"unknown configuration {name!r}: plain, one-process or workers-N")


def run(name: str, variants: list[str], root: Path, cpus: int) -> dict:
    flags, env = configuration(name, cpus)
    results = root / name
    command = [sys.executable, "-m", "ablate", "run", GRID, "--results", str(results), *flags,
               *[a for v in variants for a in ("--variant", v)]]
    start = time.time()
    proc = subprocess.run(command, env={**env, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}, cwd=REPO,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wall = time.time() - start
    trains = [json.loads(p.read_text()) for p in results.rglob("train.json")]
    if proc.returncode or len(trains) != len(variants):
        raise SystemExit(f"{name}: exit {proc.returncode}, {len(trains)} of {len(variants)} cells trained\n"
                         + proc.stdout[-3000:])
    images = sum(t["batch_size"] * t["max_steps"] for t in trains)
    return {"configuration": name, "cells": len(trains), "wall_s": wall, "img_per_s": images / wall,
            "cell_img_per_s": statistics.median(t["train_img_per_s"] for t in trains),
            "threads": sorted({t["threads"] for t in trains})}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default="plain", help="comma-separated: plain, one-process, workers-N")
    parser.add_argument("--cells", type=int, default=24, help="the first K variants of the grid (default: all 24)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    from ablate.config.grid import load_grid
    from ablate.threads import available_cpus

    variants = list(load_grid(REPO / GRID).variants[: args.cells])
    cpus, load = available_cpus(), os.getloadavg()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.configs.split(","):
            rows.append(run(name, variants, Path(tmp), cpus))
            print(f"{name}: {rows[-1]['wall_s']:.0f} s", flush=True)
    print(f"\n`python -m ablate run {GRID}` ({len(variants)} cells, seed 0), {cpus} CPUs, "
          f"load average before {load[0]:.2f}, after {os.getloadavg()[0]:.2f}:")
    print("| configuration | cells | wall s | img/s (all cells' training images / wall) | a cell's img/s (median) | threads |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['configuration']} | {r['cells']} | {r['wall_s']:.0f} | {r['img_per_s']:,.0f} | "
              f"{r['cell_img_per_s']:,.0f} | {','.join(map(str, r['threads']))} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "cpus": cpus, "load_before": load[0]}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
