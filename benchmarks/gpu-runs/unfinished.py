"""The `ablate run` arguments that select a grid's unfinished cells of some seeds, for a device call that cannot
carry the finished ones.

    python benchmarks/gpu-runs/unfinished.py grids/fashion-mnist.yaml leaderboard/results --seeds 0

Prints `--seeds 0 --variant '<name>' ...` for the cells of those seeds with no `done.json` or a missing or damaged
record under the results root (what `run` itself would train or evaluate again), or nothing when all are finished.
Why: a device call takes a tree of at most 64 MiB with the wheels carried; the embedded dataset and the wheels leave
~2.5 MB, and leaderboard v2's finished records (~0.25 MB a cell, 120 cells) do not fit. So the calls run with
`leaderboard/results/fashion-mnist` moved out of the tree, `chunk.sh plain` given these arguments
(`PLAIN_ARGS="$(python benchmarks/gpu-runs/unfinished.py ...)"`), and `unpack.sh` adds what each call finished.
"""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from ablate.config.grid import GridOverrides, load_grid
from ablate.results import ResultsStore


def unfinished_variants(grid_file: str, results: Path, seeds: tuple[int, ...]) -> list[str]:
    grid = load_grid(grid_file, GridOverrides(seeds=seeds, results=results))
    store, settings = ResultsStore(results), grid.eval.all_settings()
    return list(dict.fromkeys(cell.variant for cell in grid.cells()
                              if store.faults(cell, settings) or not (store.cell_dir(cell) / "done.json").exists()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("grid")
    ap.add_argument("results", type=Path)
    ap.add_argument("--seeds", required=True, type=int,
                    help="one seed: with several, a variant unfinished in one would be trained again in all")
    args = ap.parse_args()
    variants = unfinished_variants(args.grid, args.results, (args.seeds,))
    if variants:
        print(" ".join(["--seeds", str(args.seeds)] + [f"--variant {shlex.quote(v)}" for v in variants]))


if __name__ == "__main__":
    main()
