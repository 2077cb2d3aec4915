"""Training a pack of cells (:mod:`ablate.engine.pack`) the way :func:`ablate.engine.runner.train_cell`
trains one: each member resumes from, and writes, its own checkpoints, ``train-runs.json`` (its GPU-hours
are the pack's wall time x the worker's GPU share / K) and ``train.json`` (with ``pack``: K)."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch

from ablate.config.grid import Cell, Grid
from ablate.engine.accel import compile_for
from ablate.engine.checkpointing import AtomicCheckpointIO
from ablate.engine.pack import Failed, PackCallback, PackDataModule, PackModule, fit_pack
from ablate.engine.runner import (RunContext, cell_loggers, cell_module, keep_earlier_log, record_run,
                                  resume_checkpoint, say_to_cell, trainer_options, training_summary)
from ablate.engine.curve import curve_probe
from ablate.engine.stack import Mode, mode_for


class PackDidNotStart(RuntimeError):
    """The pack's shared step failed before any member took a step (e.g. a kernel the stacked model needs and one
    network alone does not): nothing of it was trained, and its cells can train alone."""


def resume_steps(directories: Sequence[Path], ctx: RunContext) -> list[tuple[Path | None, int]]:
    """Each cell's checkpoint to resume from (None: start) and its step (0 without one)."""
    out = []
    for directory in directories:
        path = resume_checkpoint(directory, say_to_cell(ctx))
        out.append((path, int(torch.load(path, map_location="cpu", weights_only=False)["global_step"]) if path else 0))
    return out


def train_pack(grid: Grid, cells: Sequence[Cell], ctx: RunContext, directories: Sequence[Path], on_failed: Failed,
               reporters: Sequence[L.Callback | None] = (), mode: Mode | None = None) -> dict[int, dict[str, Any]]:
    """Train ``cells`` (one dataset and training config, checkpoints all at one step or none) as one pack;
    returns the training summaries of the members that finished, by index. A member that fails is reported
    through ``on_failed(index, error)`` as it fails, and the others go on; a failure of the shared step is
    reported for every member still training, unless no member took a step: then :class:`PackDidNotStart`."""
    info, splits = ctx.dataset(grid, cells[0].dataset)
    compiled = compile_for(grid.train.compile, ctx.device)
    members = []
    for cell in cells:  # each network starts from its own seed, as alone
        L.seed_everything(cell.seed, workers=True, verbose=False)
        members.append(cell_module(grid, cell.variant, info, cell.seed, compiled, ctx.fused, cell.backbone))
        members[-1].curve = curve_probe(grid, cell, ctx, members[-1])
    mode = mode or mode_for(ctx.device, members[0].net)
    pack = PackModule(members, mode, compiled=compiled)
    data = PackDataModule(splits, grid.train.batch_size, grid.data.val_size, [c.seed for c in cells],
                          grid.data.conditioning, tokens=members[0].net_attends_tokens)
    failed: dict[int, BaseException] = {}

    def fail(k: int, err: BaseException) -> None:
        failed[k] = err
        on_failed(k, err)

    labels = [f"{c.variant} · seed {c.seed}" for c in cells]
    callback = PackCallback(list(directories), labels, [cell_loggers(d) for d in directories], fail, reporters,
                            console=None if ctx.progress else ctx.console)
    trainer = L.Trainer(callbacks=[callback, *ctx.callbacks], plugins=[AtomicCheckpointIO()], logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, **trainer_options(grid, ctx))
    resume = resume_steps(directories, ctx)
    steps = {step for _, step in resume}
    if len(steps) != 1:
        raise ValueError(f"a pack's cells resume from one step; these are at steps {sorted(steps)}")
    step = steps.pop()
    for directory in directories:
        keep_earlier_log(directory / "logs", step)
    start = time.perf_counter()
    share = dataclasses.replace(ctx, gpu_share=ctx.gpu_share / len(cells))
    try:
        fit_pack(trainer, pack, data, [path for path, _ in resume], callback)
    except SystemExit:  # Lightning's Ctrl-C handling shuts down gracefully, then calls sys.exit(1)
        if trainer.interrupted:
            raise KeyboardInterrupt from None
        raise
    except Exception as err:  # noqa: BLE001 -- the shared step failed: every member still training fails
        if trainer.global_step <= step and len(pack.living()) == len(cells):
            raise PackDidNotStart(f"{type(err).__name__}: {err}") from err
        for k in pack.living():
            pack.alive[k] = False
            fail(k, err)
    finally:
        wall = time.perf_counter() - start
        runs = [record_run(d, step, wall, trainer.world_size, share) for d in directories]
    summaries = {}
    for k in pack.living():
        try:
            summaries[k] = training_summary(grid, members[k], directories[k], Path(callback.checkpoints[k].best_model_path),
                                            wall, runs[k], callback.monitors[k].img_per_s, step, trainer.world_size,
                                            share, pack=len(cells))
        except Exception as err:  # noqa: BLE001 -- this member's summary failed: it fails alone
            fail(k, err)
    return summaries
