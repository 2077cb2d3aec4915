"""ABLATE_PROFILE=DIR: a run's worker profiles its host time and writes it (issue 25: what limits a run, measured),
in process (one worker) and in worker processes alike."""

from __future__ import annotations

import pstats

import ablate  # noqa: F401  (torchvision fix first)
import pytest
import torch
import workers_kit
from rich.console import Console

from ablate.config.grid import GridOverrides, load_grid
from ablate.engine.runner import RunContext
from ablate.runs.workers import WorkerOptions, run_grid


@pytest.mark.parametrize("workers, names", [(1, ["worker"]), (2, ["w0", "w1"])])
def test_a_profiled_run_writes_each_workers_host_profile(tmp_path, one_thread, monkeypatch, workers, names) -> None:
    for key, value in workers_kit.worker_env().items():
        if key.startswith("ABLATE_"):
            monkeypatch.setenv(key, value)
    monkeypatch.setenv("ABLATE_PROFILE", str(tmp_path / "profile"))
    grid = load_grid(workers_kit.write_grid(tmp_path, "profiled", ["rf", "eps/linear"], max_steps=8),
                     GridOverrides(results=tmp_path))
    ctx = RunContext(device=torch.device("cpu"), console=Console(width=250), progress=False)
    assert run_grid(grid, ctx, WorkerOptions(workers=workers)) == {"done": 2}
    for name in names:
        text = (tmp_path / "profile" / f"{name}.txt").read_text()
        assert "train_cell" in text and "cumulative" in text
        assert pstats.Stats(str(tmp_path / "profile" / f"{name}.prof")).total_tt > 0

