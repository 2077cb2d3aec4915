"""One cell on two CPU processes (Lightning ddp_spawn, gloo): it trains, evaluates, and records world
size 2 and the effective batch size."""

from __future__ import annotations

import dataclasses
import json

import torch
import workers_kit
from rich.console import Console

from ablate.config.grid import GridOverrides, load_grid
from ablate.results import cell_dir
from ablate.engine.runner import RunContext, run_cell


def test_two_process_ddp_run_records_world_size(tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # inherited by the spawned ranks
    grid = load_grid(workers_kit.write_grid(tmp_path, "ddp", ["rf"], max_steps=16), GridOverrides(results=tmp_path))
    grid = dataclasses.replace(grid, train=dataclasses.replace(grid.train, devices=2))
    cell = grid.cells()[0]
    assert run_cell(grid, cell, RunContext(device=torch.device("cpu"), console=Console(quiet=True),
                                           progress=False)) == "done"
    directory = cell_dir(tmp_path, "ddp", "fashion-mnist", "rf", 0)
    summary = json.loads((directory / "train.json").read_text())
    assert summary["world_size"] == 2 and summary["strategy"] == "ddp_spawn"
    assert summary["effective_batch_size"] == 2 * grid.train.batch_size
    assert summary["best_step"] == 16 and summary["wall_s"] > 0
    assert torch.load(directory / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 16
    (record,) = [json.loads(p.read_text()) for p in (directory / "records").glob("*.json")]
    assert record["train"]["world_size"] == 2 and set(record["metrics"]) == {"moment_align", "moment_fd"}
