"""Evaluating a pack of trained cells the way :func:`ablate.engine.runner.evaluate_cell` evaluates one: each
member's missing or damaged settings, sampled together setting by setting (:class:`~ablate.engine.pack_sampling.PackSampler`),
then scored and written as the member's own records (the same files and content as alone; ``eval.pack``: the
cells that sampled together, whose shared sampling time each counts a share of) and its ``done.json``."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ablate.config.grid import Cell, Grid
from ablate.config.setting import Setting
from ablate.engine.evaluate import setting_result
from ablate.engine.pack import Failed
from ablate.engine.pack_sampling import PackSampler
from ablate.engine.runner import RunContext, evaluation_inputs, write_setting_record
from ablate.engine.stack import EVAL_MODE, Mode
from ablate.io import check_fence
from ablate.results import ResultsStore, provenance_stamp, write_json_atomic


def evaluate_pack(grid: Grid, cells: Sequence[Cell], ctx: RunContext, directories: Sequence[Path],
                  summaries: Sequence[dict[str, Any]], settings: Sequence[list[Setting]], on_failed: Failed,
                  mode: Mode | None = None) -> list[int]:
    """Evaluate member k's ``settings[k]`` from its best checkpoint (``summaries[k]``: its training summary) and
    mark it done; returns the members done. A member that fails is reported through ``on_failed(k, error)`` as it
    fails, and the others go on; a failure of a setting's shared sampling fails every member sampling it."""
    info, _ = ctx.dataset(grid, cells[0].dataset)
    scorers, store = ctx.scorers(grid, cells[0].dataset), ResultsStore(grid.results_root)
    stamp = provenance_stamp(str(ctx.device))
    loaded: dict[int, Any] = {}
    alive: list[int] = []

    def fail(k: int, err: BaseException) -> None:
        if k in alive:
            alive.remove(k)
            on_failed(k, err)

    for k, cell in enumerate(cells):
        alive.append(k)
        try:
            loaded[k] = evaluation_inputs(grid, cell, ctx, directories[k], summaries[k])
        except Exception as err:  # noqa: BLE001 -- this member fails; the pack goes on
            fail(k, err)
    if not alive:
        return []
    modules = {k: module for k, (module, _, _) in loaded.items()}
    first = modules[alive[0]]
    sampler = PackSampler([modules.get(k, first) for k in range(len(cells))],
                          mode or EVAL_MODE, compiled=first.compiled, graphs=first.graphs)
    for setting in grid.eval.all_settings():
        members = [k for k in alive if setting in settings[k]]
        for k in members:
            try:
                check_fence(store.record_path(cells[k], setting))  # a member taken over stops here
            except Exception as err:  # noqa: BLE001 -- this member fails (or is lost); the pack goes on
                fail(k, err)
        members = [k for k in members if k in alive]
        if not members:
            continue
        start = time.perf_counter()
        try:
            samples = sampler.generate(members, setting, {k: loaded[k][1] for k in members}, info,
                                       grid.eval.batch_size, ctx.device, fail)
        except Exception as err:  # noqa: BLE001 -- the shared sampling failed: every member sampling it fails
            for k in members:
                fail(k, err)
            continue
        share = (time.perf_counter() - start) / max(len(samples), 1)  # the members that got samples bear its cost
        for k, (x, nfe) in samples.items():
            module, prompts, summary = loaded[k]
            try:
                result = setting_result(x, nfe, share, module.formulation, info, prompts, scorers, setting, ctx.device,
                                        store.preview_path(cells[k], setting), ctx.gpu_share, pack=len(samples))
                write_setting_record(grid, cells[k], module, summary, setting, result, scorers, info, stamp)
            except Exception as err:  # noqa: BLE001 -- this member fails; the pack goes on
                fail(k, err)
    done = []
    for k in list(alive):
        try:
            write_json_atomic(directories[k] / "done.json", {"cell": dataclasses.asdict(cells[k]), **stamp})
            done.append(k)
        except Exception as err:  # noqa: BLE001 -- this member fails; the pack goes on
            fail(k, err)
    return done
