"""How many cells a worker trains at once as one stacked model (``--pack``), when the user does not say.

The rule, from measurements (``benchmarks/gpu-runs/*-speed/``, issue 25's table):

- On CUDA a small model's step costs its launches, not its arithmetic: the protocol's model (d8, w256,
  patch 4, batch 256, about 320 GFLOP a training step) ran 25 ms a step alone at any batch up to 2048,
  and 8 stacked ran 36 ms (56k img/s against 10k). A pack is sized so that one stacked step does about
  :data:`STEP_GFLOP` of training arithmetic (8 protocol cells), at most :data:`MAX_PACK`; a model whose
  own step already does that much (S/2 and up at batch 256) trains alone.
- On the CPU a worker trains one cell at a time: packing measured neutral there (``benchmarks/packing-cpu.md``:
  a small model's CPU step is arithmetic-bound), and a plain run of ``grids/smoke.yaml`` in packs of 8 trained
  at about 700 img/s in all against about 1,150 for one cell alone (2026-12-07, this project's 2-core VM).
  ``--pack K`` still packs on the CPU (the tests do, to check a pack against its cells trained alone).
- Whether a pack of that size beats one cell alone depends on the host once CUDA graphs are on (two H100
  hosts went opposite ways, ``benchmarks/gpu-runs/2026-12-07e`` and ``-07g``): where this rule chose the size,
  the worker measures both ways on its first cells and keeps the faster (:class:`ablate.runs.packs.MeasuredPacks`).
- Never more than the worker's share of the unfinished cells, and 1 for a cell trained over several
  devices (``ddp_spawn`` runs one cell per process group).
"""

from __future__ import annotations

import math

import torch

from ablate.config.grid import Grid
from ablate.engine.runner import RunContext
from ablate.engine.train import network_config

STEP_GFLOP = 2700.0  # training GFLOP of one stacked CUDA step worth packing up to (8 protocol cells of ~325)
MAX_PACK = 8


def step_gflop(grid: Grid, ctx: RunContext) -> float:
    """Training GFLOP of one cell's step (3 x forward, the DiT paper's convention) on the grid's first dataset."""
    info, _ = ctx.dataset(grid, grid.datasets[0])
    return 3 * network_config(grid.model, info, grid.data.conditioning).gflops_per_image() * grid.train.batch_size


def pack_size(grid: Grid, ctx: RunContext, requested: int | None, workers: int, unfinished: int,
              spread: bool = False) -> int:
    """Cells per pack: ``requested`` (``--pack``) if given; 1 if the user ``spread`` the cells over worker
    processes himself (``--workers``, ``--workers-per-gpu`` > 1: his launch stays as it was); else the rule of
    the module doc."""
    if requested:
        return requested
    if spread or grid.train.devices * grid.train.num_nodes > 1:
        return 1
    share = max(1, math.ceil(unfinished / max(workers, 1)))
    return size_for(ctx.device, step_gflop(grid, ctx) if ctx.device.type == "cuda" else 0.0, share)


def size_for(device: torch.device, gflop: float, share: int = MAX_PACK) -> int:
    """The rule (module doc) for a cell step of ``gflop`` training GFLOP and ``share`` cells to run."""
    if device.type == "cuda":
        return max(1, min(MAX_PACK, share, int(STEP_GFLOP // max(gflop, 1e-9))))
    return 1
