"""What ``run`` does with a grid's model, timed against its ceiling: a pack of K cells through the real path
(:func:`ablate.engine.pack_train.train_pack`: Lightning, per-cell loss, clipping, EMA, validation and
checkpoints) against the plain stacked step of the same K networks (:class:`ablate.engine.stack.StackedForward`,
compiled on CUDA, one fused AdamW, per-network clipping, an EMA update every step, nothing else), and the
plain stacked step's own alternatives (lone and stacked, eager and compiled, with CUDA graphs or without).
Where ``run`` uses CUDA graphs (:func:`ablate.engine.accel.graphs_for`), the pack, the stacked step and the lone
step are also timed with graphs, in the same run: the graphs' effect. Synthetic data; img/s. Also the pack's validation and sampling against its members' lone ones
(:mod:`ablate.engine.pack_eval_bench`)."""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path
from typing import Any

import torch

from ablate.config.grid import Cell, Grid
from ablate.data.base import DatasetInfo
from ablate.engine.accel import compile_for, fused_adamw, graphs_for, precision_for, timed_steps
from ablate.engine.ema import EMA
from ablate.engine.pack_eval_bench import packed_sampling_times, packed_validation_times
from ablate.engine.stack import Mode, StackedForward, mode_for
from ablate.engine.train import network_config
from ablate.models.network import build_network


def stacked_step(grid: Grid, info: DatasetInfo, device: torch.device, k: int, steps: int, warmup: int,
                 mode: Mode, compiled: bool, graphs: bool = False) -> dict[str, float]:
    """img/s of the plain step of ``k`` networks of the grid's model stacked in ``mode`` (module doc); ``graphs``:
    the compiled stacked call replays CUDA graphs."""
    b = grid.train.batch_size
    nets = []
    for i in range(k):
        torch.manual_seed(i)
        nets.append(build_network(network_config(grid.model, info)).to(device))
    emas = [EMA(n, 0.99) for n in nets]
    fused = fused_adamw(precision_for(grid.train.precision, device), device)
    opt = torch.optim.AdamW([p for n in nets for p in n.parameters()], lr=1e-4, fused=fused)
    stack = StackedForward(nets, mode, compile=compiled, graphs=graphs)
    shape = (b, info.channels, info.resolution, info.resolution)
    data = [(torch.randn(shape, device=device), torch.rand(b, device=device),
             torch.randint(0, info.num_classes, (b,), device=device), torch.randn(shape, device=device)) for _ in nets]
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else torch.autocast("cpu", enabled=False)

    def step() -> None:
        with autocast:
            inputs = [(x * (1 - t[:, None, None, None]) + e * t[:, None, None, None], t, y) for x, t, y, e in data]
            outs = stack(inputs)
        torch.stack([((o.float() - (e - x)) ** 2).mean() for o, (x, _, _, e) in zip(outs, data)]).sum().backward()
        for n in nets:
            torch.nn.utils.clip_grad_norm_(n.parameters(), 1.0, foreach=True)
        opt.step()
        opt.zero_grad(set_to_none=True)
        for n, ema in zip(nets, emas):
            ema.update_parameters(n)

    warm, wall = timed_steps(step, warmup, steps, device)
    return {"img_s": k * b * steps / wall, "ms_step": 1e3 * wall / steps, "warmup_s": warm}


def pack_path(grid: Grid, info: DatasetInfo, device: torch.device, k: int, steps: int, warmup: int) -> dict[str, float]:
    """img/s of ``run``'s own pack of ``k`` cells of the grid's model (module doc), between steps ``warmup``
    and ``warmup + steps`` (the closing validation and checkpoints are not in it)."""
    from rich.console import Console

    from ablate.engine.benchmark import _Stopwatch, synthetic_splits
    from ablate.engine.pack_train import train_pack
    from ablate.engine.runner import RunContext

    total = warmup + steps
    g = dataclasses.replace(grid, train=dataclasses.replace(grid.train, max_steps=total, val_every=total),
                            data=dataclasses.replace(grid.data, val_size=min(grid.data.val_size, 8)))  # untimed
    watch = _Stopwatch(device, (1, warmup, total))
    ctx = RunContext(device=device, console=Console(quiet=True), progress=False, callbacks=[watch])
    ctx._datasets[("synthetic", g.data.resolution, g.data.conditioning)] = (info, synthetic_splits(info, g.train.batch_size * (total + 1),
                                                                             g.data.val_size))
    cells = [Cell(g.name, "rf", "synthetic", seed) for seed in range(k)]
    failed: list[Any] = []
    with tempfile.TemporaryDirectory() as tmp:
        train_pack(g, cells, ctx, [Path(tmp) / str(i) for i in range(k)], lambda i, err: failed.append(err))
    if failed:
        raise failed[0]
    wall = watch.at[total] - watch.at[warmup]
    return {"img_s": k * g.train.batch_size * steps / wall, "ms_step": 1e3 * wall / steps,
            "first_step_s": watch.at[1] - watch.at["start"]}


def packing_row(grid: Grid, info: DatasetInfo, device: torch.device, k: int, steps: int, warmup: int) -> dict[str, Any]:
    """``run``'s pack of ``k`` against the plain stacked step (the ceiling, compiled without graphs) and the plain
    lone step; where ``run`` uses CUDA graphs, also the pack without them and both plain steps with them."""
    compiled = compile_for(grid.train.compile, device)
    graphs = graphs_for(grid.train.cuda_graphs, compiled, device)
    net = build_network(network_config(grid.model, info))
    ceiling_mode: Mode = "flat" if mode_for(torch.device("cuda"), net) == "flat" else "vmap"
    run = pack_path(grid, info, device, k, steps, warmup)
    ceiling = stacked_step(grid, info, device, k, steps, warmup, ceiling_mode, compiled)
    lone = stacked_step(grid, info, device, 1, steps, warmup, ceiling_mode, compiled)
    row = {"k": k, "mode": mode_for(device, net), "ceiling_mode": ceiling_mode, "compiled": compiled, "graphs": graphs, "run": run,
           "ceiling": ceiling, "lone": lone, "run_vs_ceiling": run["img_s"] / ceiling["img_s"],
           "ceiling_vs_lone": ceiling["img_s"] / lone["img_s"]}
    if device.type == "cuda":  # the CPU's pack calls its networks in turn (the loop mode): the same work as alone
        row.update(validation=packed_validation_times(grid, info, device, k),
                   sampling=packed_sampling_times(grid, info, device, k))
    if graphs:
        plain = dataclasses.replace(grid, train=dataclasses.replace(grid.train, cuda_graphs=False))
        row.update(run_without_graphs=pack_path(plain, info, device, k, steps, warmup),
                   ceiling_graphs=stacked_step(grid, info, device, k, steps, warmup, ceiling_mode, compiled, True),
                   lone_graphs=stacked_step(grid, info, device, 1, steps, warmup, ceiling_mode, compiled, True))
    return row
