"""``python -m ablate bench``: training images/s and sampling NFE/s of a grid's model on this device.

A benchmark, not a test: it prints a table. Absolute numbers depend on the machine; quote ratios
from one run, absolute times only from the GPU.
"""

from __future__ import annotations

import argparse
import time

import torch
from rich.console import Console
from rich.table import Table

from ablate.devices import resolve_device


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="training images/s and sampling NFE/s of grid models on this device")
    p.add_argument("grids", nargs="*", default=["smoke", "fashion-mnist"], help="grids whose model to measure")
    p.add_argument("--variant", default="rf", help="variant to train (default rf)")
    p.add_argument("--steps", type=int, default=20, help="timed training steps (after 3 warm-up steps)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--compile", action="store_true", help="also measure with torch.compile")
    p.set_defaults(func=main)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def measure(grid_name: str, variant: str, steps: int, device: torch.device, compile_: bool) -> dict:
    """Images/s of optimizer steps at the grid's batch size, and NFE/s of guided Euler sampling."""
    import dataclasses

    from ablate.data.base import DatasetInfo
    from ablate.evaluate import Prompts, generate
    from ablate.grid import load_grid
    from ablate.train import DiffusionModule

    grid = load_grid(grid_name)
    grid = dataclasses.replace(grid, train=dataclasses.replace(grid.train, compile=compile_))
    info = DatasetInfo(name="bench", channels=1, resolution=grid.data.resolution, num_classes=10,
                       class_names=[str(i) for i in range(10)], autoencoder="identity", caption=lambda y, g: str(y))
    module = DiffusionModule(grid, variant, info).to(device)
    opt = torch.optim.AdamW(module.net.parameters(), lr=1e-4)
    b, r = grid.train.batch_size, grid.data.resolution
    batch = (torch.randn(b, 1, r, r, device=device), torch.randint(0, 10, (b,), device=device))
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")
    module.log = lambda *a, **k: None  # no trainer attached

    def step() -> None:
        with autocast:
            loss = module.training_step(batch, 0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(3):
        step()
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    train_ips = steps * b / (time.perf_counter() - start)
    n, sample_steps = min(grid.eval.batch_size, 256), 10
    prompts = Prompts(cond=torch.randint(0, 10, (n,)), labels=torch.zeros(n, dtype=torch.long), captions=[""] * n,
                      noise=torch.randn(n, 1, r, r))
    generate(module.ema.module, module.formulation, info, prompts, 2, 5.0, "own", n, device)  # warm-up
    _sync(device)
    start = time.perf_counter()
    _, nfe = generate(module.ema.module, module.formulation, info, prompts, sample_steps, 5.0, "own", n, device)
    _sync(device)
    nfe_s = n * nfe / (time.perf_counter() - start)
    return {"grid": grid.name, "params": module.net.num_params(), "gflops": module.net.gflops_per_image(),
            "tokens": module.net.config.num_patches, "batch": b, "train_img_s": train_ips, "sample_nfe_s": nfe_s,
            "compile": compile_}


def main(args: argparse.Namespace) -> int:
    device = resolve_device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu, {torch.get_num_threads()} threads"
    table = Table(title=f"ablate bench on {name} (variant {args.variant}, torch {torch.__version__})")
    for col in ("grid", "params", "GFLOPs/img", "tokens", "batch", "compile", "train img/s", "sampling NFE/s"):
        table.add_column(col, justify="right")
    for grid in args.grids:
        for compile_ in ([False, True] if args.compile else [False]):
            row = measure(grid, args.variant, args.steps, device, compile_)
            table.add_row(row["grid"], f"{row['params'] / 1e6:.2f}M", f"{row['gflops']:.3f}", str(row["tokens"]),
                          str(row["batch"]), "yes" if compile_ else "no", f"{row['train_img_s']:,.0f}",
                          f"{row['sample_nfe_s']:,.0f}")
    Console().print(table)
    return 0
