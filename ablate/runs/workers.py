"""Running a grid: its cells go through the grid's Optuna queue (:mod:`ablate.runs.queue`), claimed by one
worker in this process (a plain ``run``, or ``--workers 1``) or by N worker processes on this machine.

- A plain run is a queue with one worker: the same claim, heartbeat, reclaim, complete or fail as
  worker runs, so a failed cell is marked and the grid goes on, and two runs started on one results
  directory share its cells instead of both training them.
- ``--workers N`` starts N processes (from a forkserver that imported ablate once), spread over the
  visible GPUs, each with an even share of the CPUs (:mod:`ablate.threads`). A worker killed by a
  signal is replaced (its cell is reclaimed after the grace period and resumes from its checkpoint).
- SIGINT or SIGTERM to the main process (:mod:`ablate.runs.signals`) sends SIGTERM to every worker, which
  marks its cell interrupted (re-queued by the next run) and exits; the main process waits for them
  (SIGKILL after ``STOP_TIMEOUT_S``) and then reports the signal. A worker whose main process died
  stops itself the same way, so no worker outlives its run.
- A multi-node run (``--num-nodes`` > 1) is started by the cluster on every node and each node must
  train the same cell at the same time, which a queue cannot promise: its cells run in grid order,
  a failed cell is reported and skipped.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import optuna
import torch
from rich.console import Console
from rich.markup import escape

from ablate import threads
from ablate.runs import logs
from ablate.errors import AblateError, ConfigError, ResultsError
from ablate.faults import pause_spec
from ablate.io import DISK_FULL, failure_reason
from ablate.config.grid import Grid
from ablate.runs.queue import Worker, cell_states, queue_cells
from ablate.runs.storage import (MAX_STALE_RETRIES, check_url, default_storage, heartbeat_settings, open_storage,
                                 open_study, storage_errors)
from ablate.engine.checkpointing import checkpoint_interval
from ablate.engine.runner import RunContext, check_results_writable, run_cell
from ablate.runs.pack_size import pack_size
from ablate.runs.packs import claim_rounds
from ablate.runs.profiling import host_profile
from ablate.runs.preflight import preflight
from ablate.runs.signals import stop_on_signals

STOP_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class WorkerOptions:
    """How ``run`` spreads a grid: ``storage`` None means the default SQLite file of the grid."""

    storage: str | None = None
    workers: int | None = None          # None: one per GPU group x workers_per_gpu on GPUs, else 1
    workers_per_gpu: int = 1
    pack: int | None = None             # cells per pack (ablate.runs.packs); None: ablate.runs.pack_size decides
    retry_failed: bool = False
    rebuild_queue: bool = False         # set the old queue aside and rebuild it from the records first
    verbose: bool = False               # third-party output on the console too (see ablate.runs.logs)
    claim_until: float | None = None    # time.time() after which no worker claims a new cell (a time limit)


def run_grid(grid: Grid, ctx: RunContext, options: WorkerOptions = WorkerOptions()) -> Counter[str]:
    """Queue the grid's cells and run them until none is waiting or running; returns the grid's cell
    counts by state (done, failed, ...) and prints them, with every failed cell and its reason."""
    checkpoint_interval()  # a bad ABLATE_CHECKPOINT_EVERY_S stops the run before anything is written
    heartbeat_settings()  # so do bad ABLATE_HEARTBEAT_INTERVAL / ABLATE_GRACE_PERIOD
    pause_spec()  # and so does a bad fault-injection variable (tests)
    check_results_writable(grid)
    logs.route_output(grid.results_dir / "run.log", options.verbose)
    if grid.train.num_nodes > 1:
        return _run_in_order(grid, ctx, options)
    url = options.storage or default_storage(grid)
    check_url(url)  # before anything is trained or written
    preflight(grid, ctx)  # fail before any cell runs for what the data, the scorers or the cache can tell now
    with storage_errors(grid, url):
        return _queue_and_run(grid, ctx, options, url)


def _queue_and_run(grid: Grid, ctx: RunContext, options: WorkerOptions, url: str) -> Counter[str]:
    def say(text: str) -> None:
        ctx.console.print(f"[yellow]{escape(text)}[/]", highlight=False)

    if options.rebuild_queue:
        from ablate.runs.rebuild import rebuild_queue

        rebuild_queue(grid, url, say)
    study = open_study(grid, open_storage(url))
    queued = queue_cells(study, grid, options.retry_failed, say)
    ctx.console.print(f"queue {url}: study {grid.name!r}, {queued} cells queued", highlight=False)
    workers, visible = options.workers or 1, []
    if ctx.device.type == "cuda":
        env = os.environ.get("CUDA_VISIBLE_DEVICES")
        visible = env.split(",") if env else [str(i) for i in range(torch.cuda.device_count())]
        workers = options.workers or max(len(visible) // grid.train.devices, 1) * options.workers_per_gpu
    states = cell_states(study, grid)
    unfinished = sum(states[cell.id][0] not in ("done", "failed") for cell in grid.cells())
    workers = min(workers, max(unfinished, 1))  # a worker with no cell to claim would only start and wait
    gpus = gpu_assignment(workers, grid.train.devices, visible) if visible else [None] * workers
    size = pack_size(grid, ctx, options.pack, workers, unfinished,
                     spread=options.workers is not None or options.workers_per_gpu > 1)
    if size > 1 and options.pack is None:
        ctx.console.print(f"each worker trains one cell alone, then {size} at once as one stacked model, and goes on "
                          "the faster way (--pack K to choose)", highlight=False)
    elif size > 1:
        ctx.console.print(f"each worker trains up to {size} cells at once as one stacked model (--pack)", highlight=False)
    if workers <= 1:
        threads.apply(options.workers or 1)  # the threads of one of the workers asked for, when fewer cells are left
        with host_profile("worker"):
            Worker(grid, ctx, url, claim_until=options.claim_until,
                   claim_round=claim_rounds(size, measure=options.pack is None)).run()
    else:
        _supervise(grid, ctx, url, options, gpus, size)
    counts = _report(grid, ctx, study)
    unwritten = [t.user_attrs["fail_reason"] for state, t, _ in cell_states(study, grid).values()
                 if state == "failed" and t is not None and DISK_FULL in (t.user_attrs.get("fail_reason") or "")]
    if unwritten:  # not a property of the cells: every later one would fail alike, and no report can be written
        where = unwritten[0][unwritten[0].index(DISK_FULL):].split(" (")[0]
        raise ResultsError(f"{len(unwritten)} cell(s) of grid {grid.name} could not be written: {where}. Free space "
                           "there (or point --results at another disk) and run the same command with --retry-failed "
                           "to run them again; finished results are kept.")
    return counts


def _report(grid: Grid, ctx: RunContext, study: optuna.Study) -> Counter[str]:
    """Print the grid's cell counts by state, and every failed cell with its step and reason."""
    states = cell_states(study, grid)
    counts = Counter(state for state, *_ in states.values())
    ctx.console.print("grid " + grid.name + ": " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())),
                      highlight=False)
    failed = [trial.user_attrs for state, trial, _ in states.values() if state == "failed" and trial is not None]
    if failed:
        ctx.console.print(f"[red]failed cells[/] (tracebacks in each cell's {logs.CELL_LOG}; --retry-failed runs "
                          "them again):", highlight=False)
    for attrs in failed:
        reason = attrs.get("fail_reason") or "worker lost (no heartbeat)"
        ctx.console.print(f"  {attrs['dataset']} · {attrs['variant']} · seed {attrs['seed']} at step "
                          f"{attrs.get('fail_step')}: {reason}", highlight=False, markup=False)
    return counts


def _run_in_order(grid: Grid, ctx: RunContext, options: WorkerOptions) -> Counter[str]:
    if options.storage or options.workers or options.workers_per_gpu > 1 or options.retry_failed:
        raise ConfigError(f"--num-nodes {grid.train.num_nodes} cannot be combined with workers (--workers, "
                          "--storage, --retry-failed): a multi-node run is started by the cluster on every node at "
                          "once (Lightning's NODE_RANK/MASTER_ADDR), while a worker claims cells for itself. Use "
                          "--devices N for several GPUs of one machine per run.")
    threads.apply(1)
    counts: Counter[str] = Counter()
    for cell in grid.cells():
        try:
            counts[run_cell(grid, cell, ctx)] += 1
        except Exception as err:  # noqa: BLE001 -- any failure of a cell: report it, go on
            counts["failed"] += 1
            ctx.console.print(f"{cell.id} failed: {failure_reason(err)}", highlight=False, markup=False)
    ctx.console.print(f"grid {grid.name}: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())),
                      highlight=False)
    return counts


def gpu_assignment(workers: int, devices: int, visible: list[str]) -> list[str]:
    """CUDA_VISIBLE_DEVICES for each worker: the groups of ``devices`` GPUs taken in turn, so that workers
    spread evenly over the GPUs whatever their number (``--workers-per-gpu`` sets how many there are)."""
    groups = [visible[i:i + devices] for i in range(0, len(visible) - devices + 1, devices)] or [visible]
    return [",".join(groups[i % len(groups)]) for i in range(workers)]


def _supervise(grid: Grid, ctx: RunContext, url: str, options: WorkerOptions, gpus: list[str | None],
               pack: int = 1) -> None:
    """Run one worker process per entry of ``gpus``, replacing any killed by a signal, until all are done."""
    from ablate.scorers.base import _REGISTRY, _load_builtin

    _load_builtin()
    modules = sorted({_REGISTRY[s].__module__ for s in grid.eval.scorers if s in _REGISTRY})
    spawn = mp.get_context("forkserver")  # workers fork from a server that imported ablate once: fast starts
    spawn.set_forkserver_preload(["ablate.runs.workers", *modules])
    count = len(gpus)

    def start(i: int) -> mp.process.BaseProcess:
        proc = spawn.Process(target=_worker_process, name=f"ablate-w{i}", args=(
            grid, ctx.device.type, ctx.cache_dir, ctx.weights_dir, url, f"w{i}", gpus[i], modules, count,
            options.verbose, os.getpid(), gpu_shares(gpus)[i], options.claim_until, pack, options.pack is None))
        proc.start()
        return proc

    procs = {i: start(i) for i in range(count)}
    restarts: Counter[int] = Counter()
    errors = []
    try:
        while procs:
            for i, p in list(procs.items()):
                p.join(timeout=0.5)
                if p.exitcode is None:
                    continue
                del procs[i]
                by_signal = p.exitcode < 0 or p.exitcode - 128 in (signal.SIGINT, signal.SIGTERM)
                if by_signal and restarts[i] < MAX_STALE_RETRIES:  # killed or stopped from outside: replace it
                    restarts[i] += 1
                    how = f"signal {-p.exitcode}" if p.exitcode < 0 else f"exit code {p.exitcode}"
                    ctx.console.print(f"[yellow]worker w{i} died ({how}); starting a replacement[/]")
                    queue_cells(open_study(grid, open_storage(url, heartbeat=False)), grid)  # re-queue interrupted
                    procs[i] = start(i)
                elif p.exitcode != 0:
                    errors.append(f"w{i} (exit code {p.exitcode})")
    except KeyboardInterrupt:
        _stop(procs, ctx.console)
        raise
    if errors:
        raise AblateError(f"Workers {', '.join(errors)} stopped on an error (printed above); the cells they did "
                          f"not finish stay in the storage {url}: see `python -m ablate status {grid.name} "
                          f"--storage {url}`, and run the same command again once the cause is fixed.")


def _stop(procs: dict[int, mp.process.BaseProcess], console: Console) -> None:
    """SIGTERM to every worker, then wait for them (SIGKILL after STOP_TIMEOUT_S)."""
    live = [p for p in procs.values() if p.exitcode is None]
    for p in live:
        p.terminate()
    deadline, killed = time.monotonic() + STOP_TIMEOUT_S, []
    for p in live:
        p.join(timeout=max(deadline - time.monotonic(), 0.1))
        if p.exitcode is None:
            p.kill()
            p.join(timeout=10)
            killed.append(p.name)
    if killed:
        console.print(f"[yellow]{', '.join(killed)} did not stop within {STOP_TIMEOUT_S:.0f} s of SIGTERM: killed "
                      "(SIGKILL)[/]", highlight=False)
    console.print(f"stopped {len(live)} worker{'s' if len(live) != 1 else ''}; the next run resumes their cells",
                  highlight=False)


def gpu_shares(gpus: list[str | None]) -> list[float]:
    """Each worker's share of its GPUs: 1 / the workers given the same GPUs (1 for a CPU worker)."""
    return [1.0 if g is None else 1 / gpus.count(g) for g in gpus]


def _stop_with_parent(parent: int) -> None:
    """SIGTERM to this process once ``parent`` (the run's main process) is gone."""
    while True:
        time.sleep(1.0)
        try:
            os.kill(parent, 0)
        except ProcessLookupError:
            os.kill(os.getpid(), signal.SIGTERM)
            return
        except PermissionError:
            pass


def _worker_process(grid: Grid, device: str, cache_dir: Path, weights_dir: Path | None, url: str, name: str,
                    gpus: str | None, modules: list[str], processes: int, verbose: bool, parent: int,
                    gpu_share: float = 1.0, claim_until: float | None = None, pack: int = 1,
                    measure: bool = False) -> None:
    """Entry point of a local worker process (forked from the forkserver, which never touches CUDA);
    ``gpu_share``: 1 / the workers sharing its GPUs (for the records' GPU-hours); ``pack``, ``measure``: see
    :func:`ablate.runs.packs.claim_rounds`."""
    import importlib

    from ablate.runs import signals

    if gpus is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpus
    threads.apply(processes)
    for module in modules:  # scorers registered outside ablate (e.g. by tests) must exist here too
        importlib.import_module(module)
    logs.route_output(grid.results_dir / "run.log", verbose)
    threading.Thread(target=_stop_with_parent, args=(parent,), daemon=True).start()
    ctx = RunContext(device=torch.device(device), cache_dir=cache_dir, weights_dir=weights_dir, progress=False,
                     gpu_share=gpu_share)
    try:
        with stop_on_signals(), host_profile(name):
            Worker(grid, ctx, url, name, claim_until, claim_rounds(pack, measure)).run()
    except AblateError as err:
        Console(stderr=True).print(f"[bold red]\\[{name}] error:[/] {err}", highlight=False)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        raise SystemExit(128 + (signals.received() or signal.SIGINT)) from None
