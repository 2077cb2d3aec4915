"""Where a cell's training step spends its time beyond the plain step (issue 25's "say what limits it, measured
with a profile"). On an H100 the bench's plain graphed step of the protocol model ran 46,186 img/s and the cell's
step 23,050 (``benchmarks/gpu-runs/2026-12-07e/README.md``); this script's first run (2026-12-07f) found the cell path
at the plain step's rate (45-48k against 47k) in all but the first row of its process, which held a full garbage
collection (since run before every timed window, ``ablate.engine.accel.settle``). It says which part of the cell's
step costs what, two ways, in one process on one device:

1. an ablation table: the plain step (``ablate.engine.benchmark.plain_step``, graphs as the grid's cell uses them),
   the cell path (``cell_path``: the real LightningModule, clipping, on-device loss tracking, EMA, the schedule),
   then the cell path with one part switched off by its config (clipping: ``train.grad_clip`` 0; EMA:
   ``train.ema.every`` past the last step);
   and the cell path once more, last (a first-run cost in the timed window shows as a difference between the two);
2. a cProfile of the host over ``--cprofile`` steps of the cell path (after its warm-up), the functions with the
   most cumulative time: with graphs a small model's step is bound by the host, so host time is the step's time.

    python benchmarks/cell_step_profile.py [--grid fashion-mnist] [--steps 300] [--warmup 60] [--cprofile 200]

On the CPU it runs too (the smoke model by default there), to check the script; its numbers are not GPU numbers.
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import io
import json
import pstats
import sys
from typing import Any

import ablate  # noqa: F401  (torchvision fix first)
import lightning as L
import torch

from ablate.commands.bench import grid_channels
from ablate.config.grid import EMAConfig, load_grid
from ablate.engine.accel import compile_for, graphs_for
from ablate.engine.benchmark import cell_path, plain_step, synthetic_info


class HostProfile(L.Callback):
    """cProfile of the host from the start of step ``first`` to the end of step ``first + steps - 1``."""

    def __init__(self, first: int, steps: int) -> None:
        self.first, self.last, self.profile = first, first + steps - 1, cProfile.Profile()

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: Any, batch: Any, batch_idx: int) -> None:
        if trainer.global_step == self.first:
            self.profile.enable()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: Any, *args: Any) -> None:
        if trainer.global_step == self.last + 1:  # global_step counts the optimizer step just made
            self.profile.disable()

    def table(self, rows: int) -> str:
        out = io.StringIO()
        pstats.Stats(self.profile, stream=out).sort_stats("cumulative").print_stats(rows)
        return out.getvalue()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--grid", default=None, help="default: fashion-mnist on CUDA, smoke on the CPU")
    ap.add_argument("--steps", type=int, default=300, help="timed steps a row")
    ap.add_argument("--warmup", type=int, default=60, help="untimed steps first (compile, graph recording)")
    ap.add_argument("--cprofile", type=int, default=200, help="steps under cProfile (0: none)")
    ap.add_argument("--rows", type=int, default=60, help="functions shown of the profile")
    ap.add_argument("--json", default=None, help="also write the table here")
    args = ap.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.set_float32_matmul_precision("high")
    grid = load_grid(args.grid or ("fashion-mnist" if device.type == "cuda" else "smoke"))
    info = synthetic_info(grid, grid_channels(grid))
    graphs = graphs_for(grid.train.cuda_graphs, compile_for(grid.train.compile, device), device)
    total = args.warmup + args.steps
    b = grid.train.batch_size
    rows = [{"what": "plain step" + (" + graphs" if graphs else ""),
             **plain_step(grid, info, device, args.steps, args.warmup, graphs=graphs)}]
    print(rows[-1], flush=True)
    # EMA starts inside the warm-up, so that its updates fall in the timed steps (the grid's start, 500, is after them)
    base = dataclasses.replace(grid.train, ema=dataclasses.replace(grid.train.ema, start=min(grid.train.ema.start,
                                                                                                args.warmup // 2)))
    parts = [("cell path", base),
             ("cell path, no clipping", dataclasses.replace(base, grad_clip=0.0)),
             ("cell path, no EMA", dataclasses.replace(base, ema=EMAConfig(every=total + 1, decay=0.99))),
             # again, last: on an H100 (2026-12-07f) the first cell path of a process ran 30.8k img/s and the later
             # rows 45-48k: a full garbage collection in its window, since run before every window (accel.settle);
             # the repeat shows whether any first-run cost is left
             ("cell path, again", base)]
    for what, train in parts:
        numbers, _ = cell_path(dataclasses.replace(grid, train=train), info, device, args.steps, args.warmup)
        rows.append({"what": what, **{k: numbers[k] for k in ("img_s", "ms_step", "first_step_s", "cuda_graphs")}})
        print(rows[-1], flush=True)
    print(f"\n{grid.name} on {torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}, batch {b}, "
          f"{args.steps} timed steps after {args.warmup}; graphs: {graphs}")
    print(f"| what | img/s | ms/step | x the plain step's time |\n|---|---:|---:|---:|")
    for row in rows:
        print(f"| {row['what']} | {row['img_s']:,.0f} | {row['ms_step']:.2f} | {row['ms_step'] / rows[0]['ms_step']:.2f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    if args.cprofile:
        profile = HostProfile(args.warmup, args.cprofile)
        cell_path(grid, info, device, args.cprofile, args.warmup, callbacks=(profile,))
        print(f"\ncProfile of the host over {args.cprofile} steps of the cell path (cumulative time):")
        print(profile.table(args.rows))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
