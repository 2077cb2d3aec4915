"""What ``python -m ablate bench`` measures: the paths users run, against the device's own ceilings.

- **peak**: a large bf16 matrix product (8192^3, on random data), the device's practical ceiling.
- **plain step**: a minimal compiled bf16 training step of the same DiT (``torch.compile`` of the
  network, bf16 autocast with the fp32 residual stream every reference DiT keeps, fused AdamW, an
  rf loss on random data already on the device): the standard recipe, no Lightning, no EMA. On CUDA also
  with CUDA graphs (``torch.compile(mode="reduce-overhead")``), as the cell path runs by default there.
- **cell path**: ablate's own training of a cell, through :func:`ablate.engine.runner.make_trainer` and
  :class:`ablate.engine.train.DiffusionModule` (the Lightning trainer, EMA, clipping, warm-up schedule,
  loss monitor, data loader); timed over ``steps`` optimizer steps after ``warmup`` steps; then a
  validation (after the one that ended training, which paid its compile) and the two checkpoints
  of a validation, timed on their own and amortised at the grid's ``val_every``.
- **evaluation**: every setting x weights of the grid on ``num_samples`` prompts, through
  :func:`ablate.engine.evaluate.evaluate_setting` (sampling and scoring), after one warm-up per batch
  shape (the compile a worker pays once).

MFU counts 2 FLOPs per multiply-add: training 3 x 2 x the DiT-paper forward MACs per image.
Everything runs on synthetic data of the dataset's shape except evaluation, which scores with the
grid's scorers and so needs its dataset. Times are from the host clock after a device synchronise.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F

from ablate.engine.accel import compile_for, precision_for, settle, synchronize, timed_steps
from ablate.data.base import DatasetInfo, LatentSplit
from ablate.config.grid import Grid
from ablate.models.dit import DIT_PRESETS, DiT, DiTConfig


def peak_tflops(device: torch.device, n: int = 8192, repeats: int = 10) -> float:
    """bf16 matmul TFLOP/s (2 FLOPs per multiply-add) on random data; fp32 on the CPU, smaller."""
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    n = n if device.type == "cuda" else 1024
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    for _ in range(3):
        a @ b
    synchronize(device)
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    synchronize(device)
    return 2 * n**3 * repeats / (time.perf_counter() - start) / 1e12


def with_model(grid: Grid, preset: str | None, batch_size: int | None) -> Grid:
    """``grid`` with a DiT preset (``S/2``, ``B/2``, ...) and batch size swapped in, if given."""
    model, train = grid.model, grid.train
    if preset:
        shape = DIT_PRESETS[preset]
        model = dataclasses.replace(model, patch_size=shape["patch_size"], hidden_size=shape["hidden_size"],
                                    depth=shape["depth"], num_heads=shape["num_heads"])
    if batch_size:
        train = dataclasses.replace(train, batch_size=batch_size)
    return dataclasses.replace(grid, model=model, train=train)


def synthetic_info(grid: Grid, channels: int) -> DatasetInfo:
    r = grid.data.resolution
    return DatasetInfo(name="synthetic", channels=channels, resolution=r, num_classes=10,
                       class_names=[str(i) for i in range(10)], autoencoder="identity", caption=lambda y, g: str(y))


def synthetic_splits(info: DatasetInfo, n_train: int, n_test: int) -> dict[str, LatentSplit]:
    gen = torch.Generator().manual_seed(0)
    shape = (info.channels, info.resolution, info.resolution)
    return {name: LatentSplit(latents=torch.randn(n, *shape, generator=gen), labels=torch.randint(0, 10, (n,), generator=gen))
            for name, n in (("train", n_train), ("test", n_test))}


def _mfu(img_per_s: float, gmacs_per_image: float, peak: float) -> float:
    return img_per_s * 3 * 2 * gmacs_per_image * 1e9 / (peak * 1e12)


def plain_step(grid: Grid, info: DatasetInfo, device: torch.device, steps: int, warmup: int,
               graphs: bool = False) -> dict[str, float]:
    """Images/s of the minimal compiled bf16 step (module doc), with CUDA graphs where ``graphs``; compile time of
    its first steps."""
    m, b, r = grid.model, grid.train.batch_size, info.resolution
    net = DiT(DiTConfig(input_size=r, in_channels=info.channels, patch_size=m.patch_size, hidden_size=m.hidden_size,
                        depth=m.depth, num_heads=m.num_heads, mlp_ratio=m.mlp_ratio, num_classes=info.num_classes,
                        autocast_stream=False)).to(device)
    fwd = torch.compile(net, mode="reduce-overhead" if graphs else None) if device.type == "cuda" else net
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4, fused=device.type == "cuda")
    x0 = torch.randn(b, info.channels, r, r, device=device)
    y = torch.randint(0, info.num_classes, (b,), device=device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")

    def step() -> None:
        t = torch.rand(b, device=device)
        eps = torch.randn_like(x0)
        z = (1 - t.view(-1, 1, 1, 1)) * x0 + t.view(-1, 1, 1, 1) * eps
        with autocast:
            out = fwd(z, t, y)
        loss = F.mse_loss(out.float(), eps - x0)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    compile_s, wall = timed_steps(step, warmup, steps, device)
    return {"img_s": steps * b / wall, "ms_step": 1e3 * wall / steps, "compile_s": compile_s}


class _Stopwatch(L.Callback):
    """Host times (after a device synchronise) at chosen optimizer steps (the last one ends the timed window,
    :func:`~ablate.engine.accel.settle` runs before the others) and around the validation."""

    def __init__(self, device: torch.device, marks: tuple[int, ...]) -> None:
        self.device, self.marks, self.at = device, marks, {}

    def _mark(self, key: Any) -> None:
        synchronize(self.device)
        self.at[key] = time.perf_counter()

    def on_train_start(self, trainer: L.Trainer, pl_module: Any) -> None:
        self._mark("start")

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: Any, *args: Any) -> None:
        if trainer.global_step in self.marks:
            if trainer.global_step != self.marks[-1]:
                settle()  # no full collection inside the timed window (accel.settle); this one is untimed
            self._mark(trainer.global_step)

    def on_train_end(self, trainer: L.Trainer, pl_module: Any) -> None:
        self._mark("end")


def cell_path(grid: Grid, info: DatasetInfo, device: torch.device, steps: int, warmup: int,
              variant: str = "rf", callbacks: Sequence[L.Callback] = ()) -> tuple[dict[str, float], Any]:
    """Images/s of ablate's real training path (module doc); returns the numbers and the trained module.
    ``callbacks``: more trainer callbacks (a profiler's, ``benchmarks/cell_step_profile.py``)."""
    from rich.console import Console

    from ablate.engine.batches import LatentDataModule
    from ablate.engine.runner import RunContext, cell_module, make_trainer

    total = warmup + steps
    train = dataclasses.replace(grid.train, max_steps=total, val_every=total)
    run_grid = dataclasses.replace(grid, train=train)
    splits = synthetic_splits(info, n_train=grid.train.batch_size * (total + 1), n_test=grid.data.val_size)
    ctx = RunContext(device=device, console=Console(quiet=True), progress=False)
    watch = _Stopwatch(device, (1, warmup, total))
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    with tempfile.TemporaryDirectory() as tmp:
        trainer, _, _ = make_trainer(run_grid, ctx, Path(tmp), "bench", extra_callbacks=(watch, *callbacks))
        module = cell_module(run_grid, variant, info, seed=0, compiled=compile_for(grid.train.compile, device))
        data = LatentDataModule(splits, grid.train.batch_size, grid.data.val_size, 0, "class")
        trainer.fit(module, datamodule=data)  # ends with one validation (its compile included) + checkpoints
        start = time.perf_counter()
        trainer.validate(module, datamodule=data, verbose=False)  # a validation as every later one costs
        synchronize(device)
        val_s = time.perf_counter() - start
        start = time.perf_counter()
        for name in ("best", "last"):  # what ModelCheckpoint writes at each validation
            trainer.save_checkpoint(Path(tmp) / f"{name}-bench.ckpt")
        ckpt_s = time.perf_counter() - start
    at = watch.at
    wall = at[total] - at[warmup]
    step_s = wall / steps
    b = grid.train.batch_size
    every = min(grid.train.val_every, grid.train.max_steps)
    return {
        "img_s": steps * b / wall, "ms_step": 1e3 * step_s, "first_step_s": at[1] - at["start"],
        "val_s": val_s, "ckpt_s": ckpt_s, "val_every": every,
        "img_s_with_val": every * b / (every * step_s + val_s + ckpt_s),
        "peak_mem_gib": torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan"),
        "precision": precision_for(grid.train.precision, device), "compiled": module.compiled,
        "fused": module.fused_used, "cuda_graphs": module.graphs and device.type == "cuda",
    }, module


def training_row(grid: Grid, info: DatasetInfo, device: torch.device, steps: int, warmup: int, peak: float) -> dict:
    """One row of the training table: the cell path against the plain step, as MFU and ratio."""
    cell, _ = cell_path(grid, info, device, steps, warmup)
    plain = plain_step(grid, info, device, steps, warmup)
    graphs = plain_step(grid, info, device, steps, warmup, graphs=True) if device.type == "cuda" else None
    gmacs = DiT(DiTConfig(input_size=info.resolution, in_channels=info.channels, patch_size=grid.model.patch_size,
                          hidden_size=grid.model.hidden_size, depth=grid.model.depth,
                          num_heads=grid.model.num_heads, mlp_ratio=grid.model.mlp_ratio)).gflops_per_image()
    return {"cell": cell, "plain": plain, "plain_graphs": graphs, "gmacs": gmacs, "mfu": _mfu(cell["img_s"], gmacs, peak),
            "plain_mfu": _mfu(plain["img_s"], gmacs, peak), "ratio": cell["img_s"] / plain["img_s"]}


def evaluation_row(grid: Grid, device: torch.device, ctx_cache: Path, variant: str = "rf") -> dict[str, float]:
    """Seconds to evaluate one variant: every setting x weights on ``eval.num_samples`` prompts,
    sampling and scoring, after a warm-up of each batch shape (the once-per-worker compile)."""
    from rich.console import Console

    from ablate.engine.evaluate import draw_prompts, evaluate_setting, generate
    from ablate.engine.runner import RunContext, cell_module

    ctx = RunContext(device=device, cache_dir=ctx_cache, console=Console(quiet=True), progress=False)
    info, splits = ctx.dataset(grid, grid.datasets[0])
    scorers = ctx.scorers(grid, grid.datasets[0])
    compiled = compile_for(grid.train.compile, device)
    module = cell_module(grid, variant, info, compiled=compiled).to(device)
    nets = {"ema": module.ema.module, "raw": module.net}
    prompts = draw_prompts(info, splits["test"], grid.eval.num_samples, 0, grid.data.conditioning)
    e = grid.eval
    start = time.perf_counter()
    for unguided in sorted({s.cfg == 1.0 for s in e.settings}):  # one batch shape with guidance, one without
        for weights in e.weights:  # raw and EMA weights differ in requires_grad: a graph each
            generate(nets[weights], module.formulation, info, prompts, 1, 1.0 if unguided else 2.0, e.time_grid,
                     e.batch_size, device, compiled=compiled, graphs=module.graphs)
    synchronize(device)
    warm_s = time.perf_counter() - start
    sample_s = total_s = 0.0
    nfe = 0
    for setting in e.all_settings():
        out = evaluate_setting(nets[setting.weights], module.formulation, info, prompts, scorers, setting,
                               e.batch_size, device, compiled=compiled, graphs=module.graphs)
        sample_s += out["eval"]["sample_s"]
        total_s += out["eval"]["wall_s"]
        nfe += out["nfe"] * out["num_samples"]
    return {"variant_eval_s": total_s, "sample_s": sample_s, "score_s": total_s - sample_s, "nfe": nfe,
            "nfe_s": nfe / sample_s, "warmup_s": warm_s, "settings": len(e.all_settings()),
            "num_samples": e.num_samples, "batch_size": e.batch_size, "compiled": compiled,
            "cuda_graphs": module.graphs and device.type == "cuda"}


KERNEL_KINDS = (("matmul", ("gemm", "cutlass", "nvjet", "sm90_xmma", "cublas", "wgmma")),
                ("attention", ("flash", "fmha", "attention", "sdpa")),
                ("fused elementwise / norms (Triton)", ("triton",)),
                ("optimizer / other elementwise", ("elementwise", "foreach", "multi_tensor", "reduce", "adam")))


def kernel_profile(grid: Grid, info: DatasetInfo, device: torch.device, batch: int, train: bool,
                   repeats: int = 5) -> list[tuple[str, float]]:
    """Share of GPU kernel time by kind (matmul, attention, Triton-fused elementwise, other) over
    ``repeats`` compiled forward passes (``train`` False, inference at the sampling batch) or training
    steps of the plain recipe (``train`` True), from torch.profiler; the measured answer to "what
    limits it"."""
    from torch.profiler import ProfilerActivity, profile

    from ablate.engine.accel import compiled_call

    m = grid.model
    net = DiT(DiTConfig(input_size=info.resolution, in_channels=info.channels, patch_size=m.patch_size,
                        hidden_size=m.hidden_size, depth=m.depth, num_heads=m.num_heads, mlp_ratio=m.mlp_ratio,
                        num_classes=info.num_classes)).to(device)
    x = torch.randn(batch, info.channels, info.resolution, info.resolution, device=device)
    t, y = torch.rand(batch, device=device), torch.randint(0, info.num_classes, (batch,), device=device)

    def once() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            if train:
                compiled_call(net, x, t, y).float().square().mean().backward()
            else:
                with torch.no_grad():
                    compiled_call(net, x, t, y)

    for _ in range(3):
        once()
    synchronize(device)
    with profile(activities=[ProfilerActivity.CUDA] if device.type == "cuda" else [ProfilerActivity.CPU]) as prof:
        for _ in range(repeats):
            once()
        synchronize(device)
    totals: dict[str, float] = {}
    for event in prof.key_averages():
        us = getattr(event, "device_time_total", 0.0) if device.type == "cuda" else event.self_cpu_time_total
        if not us or (device.type == "cuda" and event.device_type.name != "CUDA"):
            continue
        name = event.key.lower()
        kind = next((k for k, words in KERNEL_KINDS if any(w in name for w in words)), "other")
        totals[kind] = totals.get(kind, 0.0) + us
    whole = sum(totals.values()) or 1.0
    return sorted(((k, v / whole) for k, v in totals.items()), key=lambda kv: -kv[1])
