"""The bench's timed windows hold the steps only: the full garbage collection that comes soon after a compile or a
fit's set-up (~0.2 s) is run before them, untimed (``ablate.engine.accel.settle``). Without it, on an H100 a cell's
graphed step read 8.3 ms against the plain step's 5.4 (2026-12-07f): a window of 100 steps held one collection."""

from __future__ import annotations

from typing import Any

import lightning as L
import pytest
import torch

import ablate.engine.accel as accel
import ablate.engine.benchmark as benchmark
from ablate.commands.bench import cpu_num_samples
from ablate.config.grid import load_grid


def test_timed_steps_settles_between_the_warm_up_and_the_timed_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    events: list[str] = []
    monkeypatch.setattr(accel, "settle", lambda: events.append("settle"))
    accel.timed_steps(lambda: events.append("step"), warmup=2, steps=3, device=torch.device("cpu"))
    assert events == ["step", "step", "settle", "step", "step", "step"]


class _Steps(L.Callback):
    def __init__(self, events: list[Any]) -> None:
        self.events = events

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: Any, *args: Any) -> None:
        self.events.append(("step", trainer.global_step))


def test_the_real_paths_window_starts_after_a_settle_and_holds_none(monkeypatch: pytest.MonkeyPatch) -> None:
    """cell_path's stopwatch (the pack path's too) settles at the end of the first and the last warm-up step, before
    its marks, and never inside the window (steps 3 and 4 here)."""
    events: list[Any] = []
    monkeypatch.setattr(benchmark, "settle", lambda: events.append("settle"))
    grid = load_grid("smoke")
    info = benchmark.synthetic_info(grid, 4)
    numbers, _ = benchmark.cell_path(grid, info, torch.device("cpu"), steps=2, warmup=2, callbacks=(_Steps(events),))
    assert events == ["settle", ("step", 1), "settle", ("step", 2), ("step", 3), ("step", 4)]
    assert numbers["img_s"] > 0


def test_a_default_cpu_bench_samples_as_few_as_its_scorers_accept() -> None:
    """effnet's precision/recall needs 4 samples: the default CPU bench of the protocol grid (effnet and the probe)
    asked 2 and failed in its evaluation table."""
    assert cpu_num_samples(load_grid("fashion-mnist")) == 4
    assert cpu_num_samples(load_grid("smoke")) == 4


def test_the_bench_says_whether_the_pack_or_a_lone_cell_is_faster_here() -> None:
    """The verdict line under the packing table, from the two real paths' numbers of one bench (2026-12-07g's H100:
    one cell alone 45,131 img/s, the pack of 8 39,748 in all; 2026-12-07e's slower host: the other way round)."""
    from ablate.commands.bench import pack_verdict

    fast_host = pack_verdict(45_131.0, 39_748.0, 8)
    assert "0.88x" in fast_host and "1.14x faster" in fast_host and "--pack 1" in fast_host
    slow_host = pack_verdict(20_000.0, 29_700.0, 8)
    assert "1.49x" in slow_host and "--pack 1" not in slow_host and "packs are the faster" in slow_host
