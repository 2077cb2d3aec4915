"""What a pack's validation and sampling cost against its members' lone ones, timed in the same run on the same
modules (``ablate bench``'s packing table): one validation (the grid's ``val_size`` in batches of
``VAL_BATCH_SIZE``, raw and EMA weights) through :class:`~ablate.engine.pack_validation.PackValidation` against
K lone :meth:`~ablate.engine.train.DiffusionModule.validation_step` passes; and one setting (the grid's first, its
``num_samples``) through :class:`~ablate.engine.pack_sampling.PackSampler` against K lone
:func:`~ablate.engine.evaluate.generate` calls. Each path runs once untimed first (compiling and recording its
CUDA graphs for every shape; sampling's warm-up is a one-step run of the same shapes). Synthetic data and
random weights; seconds. On the GPU only (a CPU pack calls its networks in turn: the work of its members alone);
``tests/test_pack_sampling.py`` runs both on the CPU, where they must agree exactly."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

import torch

from ablate.config.grid import Grid
from ablate.data.base import DatasetInfo
from ablate.engine.accel import compile_for, synchronize
from ablate.engine.batches import VAL_BATCH_SIZE
from ablate.engine.evaluate import Prompts, generate, sampling_autocast
from ablate.engine.pack_sampling import PackSampler
from ablate.engine.pack_validation import PackValidation
from ablate.engine.stack import mode_for
from ablate.engine.train import DiffusionModule


def _timed(fn: Callable[[], Any], device: torch.device) -> tuple[float, Any]:
    synchronize(device)
    start = time.perf_counter()
    out = fn()
    synchronize(device)
    return time.perf_counter() - start, out


def _members(grid: Grid, info: DatasetInfo, device: torch.device, k: int) -> list[DiffusionModule]:
    from ablate.engine.runner import cell_module

    compiled = compile_for(grid.train.compile, device)
    members = [cell_module(grid, "rf", info, seed, compiled) for seed in range(k)]
    for seed, m in enumerate(members):  # DiT's output layers start at zero: every network would return exactly 0 and
        g = torch.Generator().manual_seed(1000 + seed)  # pack and lone would agree trivially; distinct weights instead
        with torch.no_grad():
            for p in [*m.net.parameters(), *m.ema.module.parameters()]:
                p.add_(torch.randn(p.shape, generator=g) * 0.02)  # DiT's init scale
    return [m.to(device).eval() for m in members]


def _failed(k: int, err: BaseException) -> None:
    raise err


def packed_validation_times(grid: Grid, info: DatasetInfo, device: torch.device, k: int) -> dict[str, float]:
    """Seconds of one validation of a pack of ``k`` (``pack_s``) and of its ``k`` members alone (``lone_s``), and the
    largest relative difference of their numbers (0 on the CPU: the same numbers)."""
    members = _members(grid, info, device, k)
    gen = torch.Generator().manual_seed(0)
    n, shape = grid.data.val_size, (info.channels, info.resolution, info.resolution)
    x0, y = torch.randn(n, *shape, generator=gen).to(device), torch.randint(0, info.num_classes, (n,), generator=gen).to(device)
    batches = [(x0[i:i + VAL_BATCH_SIZE], y[i:i + VAL_BATCH_SIZE]) for i in range(0, n, VAL_BATCH_SIZE)]
    pack = PackValidation(members, mode_for(device, members[0].net), members[0].compiled, members[0].graphs)

    def lone() -> list[dict[str, float]]:
        for m in members:
            m.on_validation_epoch_start()
            for i, batch in enumerate(batches):
                m.validation_step(batch, i)
        return [m.validation_numbers() for m in members]

    def packed() -> list[dict[str, float]]:
        for m in members:
            m.on_validation_epoch_start()
        for i, batch in enumerate(batches):
            pack.step(batch, i, range(k), _failed)
        return [m.validation_numbers() for m in members]

    with torch.inference_mode(), sampling_autocast(device):
        out = {}
        for name, fn in (("lone", lone), ("pack", packed)):
            warm, _ = _timed(fn, device)
            out[f"{name}_s"], out[name] = _timed(fn, device)
            out[f"{name}_warmup_s"] = warm
    diff = max(abs(a[key] - b[key]) / max(abs(b[key]), 1e-12) for a, b in zip(out["pack"], out["lone"]) for key in b)
    first = out["lone"][0]  # how far the members' own numbers differ: the scale a wrong member order would show
    spread = max(abs(a[key] - first[key]) / max(abs(first[key]), 1e-12) for a in out["lone"][1:] for key in first)
    return {"k": k, "batches": len(batches), "items": n, "lone_s": out["lone_s"], "pack_s": out["pack_s"],
            "lone_warmup_s": out["lone_warmup_s"], "pack_warmup_s": out["pack_warmup_s"], "max_rel_diff": diff,
            "member_rel_spread": spread}


def packed_sampling_times(grid: Grid, info: DatasetInfo, device: torch.device, k: int) -> dict[str, Any]:
    """Seconds of one setting (the grid's first) sampled by a pack of ``k`` (``pack_s``) and by its ``k`` members
    alone (``lone_s``), and the largest difference of their samples (0 on the CPU: the same samples)."""
    members = _members(grid, info, device, k)
    setting, n, batch = grid.eval.all_settings()[0], grid.eval.num_samples, grid.eval.batch_size
    prompts = {}
    for seed in range(k):
        gen = torch.Generator().manual_seed(seed)
        labels = torch.randint(0, info.num_classes, (n,), generator=gen)
        prompts[seed] = Prompts(labels, labels, [""] * n, torch.randn(n, info.channels, info.resolution, info.resolution,
                                                                      generator=gen))
    first = members[0]
    sampler = PackSampler(members, mode_for(device, first.net), first.compiled, first.graphs)

    def lone(s: Any) -> list[torch.Tensor]:
        return [generate(m.net if s.weights == "raw" else m.ema.module, m.formulation, info, prompts[j], s.steps, s.cfg,
                         s.time_grid, batch, device, compiled=m.compiled, graphs=m.graphs)[0]
                for j, m in enumerate(members)]

    def packed(s: Any) -> list[torch.Tensor]:
        out = sampler.generate(list(range(k)), s, prompts, info, batch, device, _failed)
        return [out[j][0] for j in range(k)]

    out: dict[str, Any] = {}
    for name, fn in (("lone", lone), ("pack", packed)):
        out[f"{name}_warmup_s"], _ = _timed(lambda: fn(dataclasses.replace(setting, steps=1)), device)
        out[f"{name}_s"], out[name] = _timed(lambda: fn(setting), device)
    diff = max(float((a - b).abs().max()) for a, b in zip(out["pack"], out["lone"]))
    return {"k": k, "setting": setting.key, "num_samples": n, "batch_size": batch, "lone_s": out["lone_s"],
            "pack_s": out["pack_s"], "lone_warmup_s": out["lone_warmup_s"], "pack_warmup_s": out["pack_warmup_s"],
            "max_abs_diff": diff, "sample_sd": float(torch.stack(out["lone"]).float().std())}
