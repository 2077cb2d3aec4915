"""How many worker processes a plain ``run`` starts (ablate/threads.py rule 4, ablate/commands/run.py
``default_workers``): one single-threaded worker per CPU on the CPU, what the user said where he said it
(--workers, --pack, --devices, OMP_NUM_THREADS), and the GPU rule left alone."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from ablate import threads
from ablate.cli import build_parser
from ablate.commands.run import default_workers
from ablate.config.grid import load_grid

SMOKE = load_grid(Path(__file__).resolve().parent.parent / "grids" / "smoke.yaml")
CPU, CUDA = torch.device("cpu"), torch.device("cuda")


def workers(*flags: str, device: torch.device = CPU, devices: int = 1) -> int | None:
    args = build_parser("run").parse_args(["run", "smoke", *flags])
    grid = dataclasses.replace(SMOKE, train=dataclasses.replace(SMOKE.train, devices=devices))
    return default_workers(args, grid, device)


@pytest.fixture()
def cpus(monkeypatch: pytest.MonkeyPatch):
    """Set the CPUs this process may use; OMP_NUM_THREADS unset, as on a newcomer's machine."""
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)

    def set_cpus(n: int) -> None:
        monkeypatch.setattr(threads, "available_cpus", lambda: n)

    return set_cpus


def test_a_plain_cpu_run_starts_one_single_threaded_worker_per_cpu(cpus) -> None:
    cpus(2)
    assert threads.plain_cpu_workers() == 2 and workers() == 2
    assert threads.threads_per_process(workers()) == 1  # what each worker then applies
    cpus(6)
    assert workers() == 6 and threads.threads_per_process(6) == 1
    cpus(1)
    assert workers() is None  # one CPU: one worker in this process, as a plain run always was


def test_what_the_user_said_wins_on_the_cpu(cpus, monkeypatch: pytest.MonkeyPatch) -> None:
    cpus(4)
    assert workers("--workers", "1") == 1 and workers("--workers", "3") == 3
    assert workers("--pack", "4") is None  # a pack is trained by one worker, as before
    assert workers(devices=2) is None  # a cell over several CPU processes (ddp_spawn) runs one at a time
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # threads chosen: one process with them, as before
    assert threads.plain_cpu_workers() == 1 and workers() is None
    assert workers("--workers", "2") == 2


def test_the_gpu_rule_is_unchanged(cpus) -> None:
    cpus(16)
    assert workers(device=CUDA) is None  # ablate.runs.workers: one per GPU x --workers-per-gpu
    assert workers("--workers-per-gpu", "4", device=CUDA) is None
    assert workers("--workers", "3", device=CUDA) == 3
