"""Thread policy for shared CPUs: how many threads torch uses, and how idle OpenMP threads wait.

The policy (measured by ``benchmarks/contention.py``; the table is in the README):

1. Idle OpenMP threads sleep instead of spinning (``OMP_WAIT_POLICY=PASSIVE``), so a thread that
   waits for its siblings gives its core back to whatever else runs on the machine. OpenMP reads
   the variable once, when torch loads it: :func:`set_wait_policy` runs first thing in
   ``ablate/__init__.py``, before anything imports torch (it cannot help a process that imported
   torch before ablate).
2. A process gets the CPUs it may run on (``os.sched_getaffinity``, capped by a cgroup CPU quota)
   divided by the local processes sharing them (``--workers N``), at least one thread.
3. What the user set wins: ``OMP_NUM_THREADS`` (the thread count) and ``OMP_WAIT_POLICY``.
4. A plain ``run`` on the CPU starts one single-threaded worker process per CPU (:func:`plain_cpu_workers`):
   a small model's CPU step is a chain of small kernels, which one thread runs at about the speed of two
   (``benchmarks/cpu_quickstart.py``: ``grids/smoke.yaml`` at about 1,200 img/s per single-threaded worker
   against 600-780 img/s in all for one two-threaded process on 2 cores), so N processes do about N times the
   work. ``OMP_NUM_THREADS`` set is the user's choice of threads: the run stays one process, as before.

Every run applies it; the count is recorded in each cell's training
summary (``threads``). Imports nothing heavy, so it can run before torch is loaded.
"""

from __future__ import annotations

import math
import os
from pathlib import Path


def set_wait_policy() -> None:
    """``OMP_WAIT_POLICY=PASSIVE`` unless the user chose a policy; effective only before torch loads."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def available_cpus() -> int:
    """CPUs this process may use: its affinity mask, capped by a cgroup (v2 or v1) CPU quota."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    quota = _cgroup_quota()
    return max(1, min(cpus, math.ceil(quota)) if quota else cpus)


def _cgroup_quota() -> float | None:
    try:
        text = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if text[0] != "max":
            return int(text[0]) / int(text[1])
    except (OSError, ValueError, IndexError):
        pass
    try:
        quota = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read_text())
        period = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text())
        return quota / period if quota > 0 and period > 0 else None
    except (OSError, ValueError):
        return None


def threads_per_process(processes: int = 1) -> int:
    """Torch threads for one of ``processes`` local processes: ``OMP_NUM_THREADS`` if set, else an even
    share of :func:`available_cpus`, at least one."""
    explicit = os.environ.get("OMP_NUM_THREADS", "").strip()
    if explicit.isdigit() and int(explicit) > 0:
        return int(explicit)
    return max(1, available_cpus() // max(1, processes))


def plain_cpu_workers() -> int:
    """Worker processes a plain CPU ``run`` starts (rule 4 of the module doc): one per :func:`available_cpus`,
    or 1 when ``OMP_NUM_THREADS`` is set."""
    explicit = os.environ.get("OMP_NUM_THREADS", "").strip()
    return 1 if explicit else available_cpus()


def apply(processes: int = 1) -> int:
    """Set torch's thread count for one of ``processes`` local processes; returns it."""
    import torch

    threads = threads_per_process(processes)
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads
