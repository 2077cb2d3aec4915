"""Test-only helpers for the worker tests (imported by them and, through the scorer registry, by the
worker processes they start): a scorer that needs no weights, fault injection, a tiny grid.

Fault injection (read in every process that imports this module, so set it in the worker's env):
``ABLATE_TEST_NAN_VARIANT=<variant>`` feeds NaN inputs to that variant's training from step 3 on (the
real divergence check then fails the cell); ``ABLATE_TEST_STEP_SLEEP=<s>`` sleeps in every training
step (to give a test time to kill a worker mid-training; the numbers do not change). Pausing a process
at a given point (a claim, a record write) is ablate's own hook, :mod:`ablate.faults`.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

import ablate  # noqa: F401,I001  (first: its torchvision fix and OpenMP wait policy precede torch)
import torch
from ablate.scorers.base import Metric, Scorer, register_scorer
from ablate.engine.train import DiffusionModule


@register_scorer
class MomentScorer(Scorer):
    """Test-only: moments of the samples (cheap and deterministic; no model)."""

    name = "test-moments"
    metrics = (Metric("moment_align", "alignment", True, "test only: minus the |std - 0.5| of the samples"),
               Metric("moment_fd", "fidelity", False, "test only: |mean| + |std - 0.5| of the samples"))

    def provenance(self) -> dict[str, Any]:
        return {"model": "none (test-only sample moments)"}

    def score(self, samples: torch.Tensor, labels: torch.Tensor, captions: list[str]) -> dict[str, float]:
        spread = abs(float(samples.std()) - 0.5)
        return {"moment_align": -spread, "moment_fd": abs(float(samples.mean())) + spread}


_prepare = DiffusionModule.prepare_step


def _patched_prepare(self, batch):  # type: ignore[no-untyped-def]
    """Every cell's step, lone or in a pack, draws its inputs here."""
    time.sleep(float(os.environ.get("ABLATE_TEST_STEP_SLEEP", 0)))
    if os.environ.get("ABLATE_TEST_NAN_VARIANT") == self.hparams["variant"] and self.global_step >= 3:
        batch = (torch.full_like(batch[0], float("nan")), batch[1])
    return _prepare(self, batch)


DiffusionModule.prepare_step = _patched_prepare  # type: ignore[method-assign]

TINY_GRID = """\
name: {name}
variants: {variants}
datasets: [fashion-mnist]
seeds: [0]
data: {{resolution: 8, val_size: 32}}
model: {{patch_size: 4, hidden_size: 32, depth: 2, num_heads: 2}}
train: {{max_steps: {max_steps}, batch_size: 16, lr: 1.0e-3, warmup_steps: 2, val_every: 8, ema: {{every: 1, decay: 0.9}}}}
eval: {{num_samples: 16, batch_size: 16, weights: [ema], settings: {settings}, scorers: [test-moments]}}
"""
VARIANTS = ["rf", "eps/linear", "rf/lognorm(0.00, 1.00)"]


def write_grid(directory: Path, name: str = "tiny", variants: list[str] = VARIANTS, max_steps: int = 24,
               settings: str = "[{steps: 4, cfg: 2.0}]") -> Path:
    path = directory / f"{name}.yaml"
    path.write_text(TINY_GRID.format(name=name, variants="[" + ", ".join(f'"{v}"' for v in variants) + "]",
                                     max_steps=max_steps, settings=settings))
    return path


def worker_env(**extra: str) -> dict[str, str]:
    """Environment of a worker process: one OpenMP thread (the CPU is shared), quick heartbeats, this
    directory importable, no hub access, console lines unwrapped."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "ABLATE_HEARTBEAT_INTERVAL": "1",
            "ABLATE_GRACE_PERIOD": "3", "COLUMNS": "250", "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent),
                                                                        os.environ.get("PYTHONPATH", "")]), **extra}


def cli_command(*args: str) -> list[str]:
    """``python -m ablate ARGS`` with this module imported first (its scorer registered)."""
    import sys

    code = "import sys, workers_kit; from ablate.cli import main; sys.exit(main(sys.argv[1:]))"
    return [sys.executable, "-c", code, *args]


def pid_paused_at(marker: Path, proc: subprocess.Popen, timeout: float = 120) -> int:
    """The pid of the process that paused at an :mod:`ablate.faults` point (it wrote ``marker``)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if marker.exists() and marker.read_text().strip():
            return int(marker.read_text())
        time.sleep(0.05)
    raise AssertionError(f"no process paused (run exit code {proc.poll()})")


def stop_holding_no_lock(pid: int, database: Path, tries: int = 200) -> None:
    """SIGSTOP ``pid`` at a moment it holds no lock on the SQLite file ``database`` (rollback journal: a process
    stopped mid-read or mid-write, e.g. its heartbeat thread, would lock every other worker and the test out of the
    study, "database is locked", as in CI on 2026-12-07); between tries it runs on for a moment."""
    for _ in range(tries):
        os.kill(pid, signal.SIGSTOP)
        con = sqlite3.connect(database, timeout=0.2)
        try:
            con.execute("BEGIN EXCLUSIVE")  # granted only while no other connection holds any lock
            con.rollback()
            return
        except sqlite3.OperationalError:
            os.kill(pid, signal.SIGCONT)
            time.sleep(0.05)
        finally:
            con.close()
    raise AssertionError(f"process {pid} held a lock on {database} at each of {tries} tries")


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (from /proc)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.add(child)
            todo.append(child)
    return out


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not yet reaped, counts as gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
