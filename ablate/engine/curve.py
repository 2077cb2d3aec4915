"""Fidelity and alignment through training (``eval.curve_every``; the shape of SD3's Figure 4, issue 28).

At every validation whose step is a multiple of ``eval.curve_every``, a cell's EMA weights sample the first of the
grid's ``eval.settings`` on the cell's own evaluation prompts (the same prompts and initial noise as its final
records: :func:`~ablate.engine.evaluate.draw_prompts`) and the grid's scorers score them. The numbers join that
validation's numbers as ``val/curve_<metric>`` (e.g. ``val/curve_fd_effnet``), so they are logged, kept in the
checkpoints' validation curve and carried by every record's ``train.val_curve``, lone or in a pack, and a resumed
cell keeps the points it had. Training does not move: its random draws depend on (seed, step) alone
(:mod:`ablate.engine.train`), and sampling draws nothing (the prompts carry their noise).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

from ablate.config.grid import Cell, Grid
from ablate.engine.evaluate import draw_prompts, evaluate_setting
from ablate.engine.metric_keys import curve_key
from ablate.engine.train import DiffusionModule


def curve_probe(grid: Grid, cell: Cell, ctx: Any, module: DiffusionModule) -> Callable[[int], dict[str, float]] | None:
    """``probe(step)``: the ``val/curve_*`` numbers of ``module``'s EMA weights at ``step`` when it is a positive
    multiple of ``eval.curve_every`` (else nothing); None when the grid draws no curve. ``ctx``: the run's
    :class:`~ablate.engine.runner.RunContext` (its dataset, scorers and device)."""
    every = grid.eval.curve_every
    if not every:
        return None
    info, splits = ctx.dataset(grid, cell.dataset)
    setting = dataclasses.replace(grid.eval.settings[0], time_grid=grid.eval.time_grid, weights="ema")
    prompts = draw_prompts(info, splits["test"], grid.eval.num_samples, cell.seed, grid.data.conditioning,
                           tokens=module.net_attends_tokens)

    def probe(step: int) -> dict[str, float]:
        if step <= 0 or step % every:
            return {}
        result = evaluate_setting(module.ema.module, module.formulation, info, prompts, ctx.scorers(grid, cell.dataset),
                                  setting, grid.eval.batch_size, ctx.device, compiled=module.compiled,
                                  graphs=module.graphs)
        return {curve_key(name): value for name, value in result["metrics"].items() if math.isfinite(value)}

    return probe
