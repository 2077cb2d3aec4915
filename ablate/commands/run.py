"""``python -m ablate run GRID``: train, evaluate and score every cell of a grid, then rank them."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch
from rich.console import Console

from ablate.grid import add_override_arguments, load_grid, overrides_from_args


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="train, sample and score every cell of a grid, then print the leaderboard",
                       description="Run a grid: every variant x dataset x seed is trained, sampled at every "
                                   "setting with EMA and raw weights, scored, and ranked. Finished cells are skipped.")
    p.add_argument("grid", help="a grid file (grids/smoke.yaml) or the name of a shipped grid (smoke)")
    add_override_arguments(p)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="where to train (default: auto)")
    p.add_argument("--cache-dir", type=Path, default=Path(os.environ.get("ABLATE_CACHE_DIR", "cache")),
                   help="probe weights and reference statistics (default: cache/)")
    p.add_argument("--weights-dir", type=Path, default=None, help="pretrained scorer weights (CLIP, Inception)")
    p.add_argument("--no-leaderboard", action="store_true", help="do not print the leaderboard at the end")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from ablate.runner import RunContext, run_grid

    grid = load_grid(args.grid, overrides_from_args(args))
    device = torch.device("cuda" if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available()) else "cpu")
    console = Console()
    console.print(f"[bold]ablate run[/] {grid.name}: {len(grid.cells())} cells "
                  f"({len(grid.variants)} variants x {len(grid.datasets)} datasets x {len(grid.seeds)} seeds) "
                  f"on {device}, results in {grid.results_dir}", highlight=False)
    ctx = RunContext(device=device, cache_dir=args.cache_dir, weights_dir=args.weights_dir, console=console,
                     progress=sys.stdout.isatty())
    run_grid(grid, ctx)
    if not args.no_leaderboard:
        from ablate.cli import main as cli_main

        return cli_main(["leaderboard", "--results", str(grid.results_root), "--grid", grid.name])
    return 0
