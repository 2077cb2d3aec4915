"""``python -m ablate run GRID``: train, evaluate and score every cell of a grid, then rank them."""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape

from ablate import threads
from ablate.devices import resolve_device
from ablate.errors import AblateError
from ablate.outputs import cache_dir
from ablate.config.grid import add_override_arguments, load_grid, overrides_from_args

if TYPE_CHECKING:
    import torch

    from ablate.config.grid import Grid
    from ablate.engine.runner import RunContext
    from ablate.runs.workers import WorkerOptions


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="train, sample and score every cell of a grid, then print the leaderboard",
                       description="Run a grid: every variant x dataset x seed is trained, sampled at every "
                                   "setting with EMA and raw weights, scored, and ranked. Finished cells are skipped.")
    p.add_argument("grid", help="a grid file (grids/smoke.yaml) or the name of a shipped grid (smoke)")
    add_override_arguments(p)
    add_device_arguments(p)
    p.add_argument("--no-leaderboard", action="store_true", help="do not print the leaderboard at the end")
    p.add_argument("--verbose", action="store_true", help="also show third-party messages, warnings and the "
                   "tracebacks of failed cells on the console (they always go to the log files, see ablate/runs/logs.py)")
    w = p.add_argument_group("workers", "the grid's cells are a queue in an Optuna storage (see ablate/runs/queue.py)")
    w.add_argument("--storage", metavar="URL", help="Optuna RDB storage; the same URL on several machines joins "
                   "one grid (default: sqlite:///<results>/<grid>/optuna.sqlite3)")
    w.add_argument("--workers", type=_positive, metavar="N", help="worker processes on this machine, spread over "
                   "the visible GPUs, each with an even share of the CPUs (default: one per GPU x --workers-per-gpu; "
                   "on the CPU one single-threaded worker per CPU, or 1 with OMP_NUM_THREADS, --pack or --devices "
                   "set; see ablate/threads.py)")
    w.add_argument("--workers-per-gpu", type=_positive, default=1, metavar="K", help="workers sharing one GPU")
    w.add_argument("--pack", type=_positive, metavar="K", help="cells a worker trains at once as one stacked model "
                   "(1: one at a time; default: chosen from the model's size and the device, see ablate/runs/pack_size.py)")
    w.add_argument("--retry-failed", action="store_true", help="re-queue the cells that failed (diverged or crashed)")
    w.add_argument("--rebuild-queue", action="store_true", help="set the grid's queue aside (a damaged SQLite file is "
                   "renamed *.damaged-TIME) and rebuild it from the records: cells whose records are all whole are "
                   "done, the others queued (stop the grid's other workers first)")
    w.add_argument("--stop-claiming-after", type=_positive, metavar="SECONDS", help="workers claim no new cell after "
                   "SECONDS from the start and stop once their cell is done; the rest stays queued for the next run "
                   "(a batch job's or a device call's time limit: no cell is started that cannot finish)")
    d = p.add_argument_group("one run on several devices (Lightning DDP)")
    d.add_argument("--devices", type=_positive, metavar="N", help="GPUs (or CPU processes) per run (train.devices)")
    d.add_argument("--num-nodes", type=_positive, metavar="M", help="machines per run (train.num_nodes)")
    p.set_defaults(func=main)


def add_device_arguments(p: argparse.ArgumentParser) -> None:
    """--device, --cache-dir and --weights-dir: where cells train and where their scorers' files are."""
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="where to train (default: auto)")
    p.add_argument("--cache-dir", default=None, help="probe weights and reference statistics "
                   "(default: $ABLATE_CACHE_DIR, else <results>/cache)")
    p.add_argument("--weights-dir", type=Path, default=None, help="pretrained scorer weights (CLIP, Inception)")


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer")
    return int(text)


def main(args: argparse.Namespace) -> int:
    from ablate.engine.runner import RunContext
    from ablate.runs.signals import stop_on_signals
    from ablate.runs.workers import WorkerOptions, run_grid

    grid = load_grid(args.grid, overrides_from_args(args))
    if args.devices or args.num_nodes:
        train = dataclasses.replace(grid.train, devices=args.devices or grid.train.devices,
                                    num_nodes=args.num_nodes or grid.train.num_nodes)
        grid = dataclasses.replace(grid, train=train)
    device = resolve_device(args.device)
    console = Console(soft_wrap=True)  # a line per event, also in log files (no wrapping at 80 columns)
    console.print(f"[bold]ablate run[/] {grid.name}: {len(grid.cells())} cells "
                  f"({len(grid.variants)} variants x "
                  f"{f'{len(grid.backbones)} backbones x ' if len(grid.backbones) > 1 else ''}"
                  f"{len(grid.datasets)} datasets x {len(grid.seeds)} seeds) "
                  f"on {device}, results in {escape(str(grid.results_dir))}", highlight=False)
    ctx = RunContext(device=device, cache_dir=cache_dir(grid.results_root, args.cache_dir),
                     weights_dir=args.weights_dir, console=console, progress=sys.stdout.isatty())
    workers = default_workers(args, grid, device)
    if workers != args.workers:
        console.print(f"{workers} worker processes on the CPU, one thread each (--workers N to choose)", highlight=False)
    options = WorkerOptions(storage=args.storage, workers=workers, workers_per_gpu=args.workers_per_gpu,
                            pack=args.pack, retry_failed=args.retry_failed, rebuild_queue=args.rebuild_queue,
                            verbose=args.verbose,
                            claim_until=time.time() + args.stop_claiming_after if args.stop_claiming_after else None)
    with stop_on_signals():
        if grid.train.lr_search is not None:
            grid = tune_learning_rates(grid, ctx, options)
        counts = run_grid(grid, ctx, options)
    if not args.no_leaderboard:
        from ablate.commands.leaderboard import show
        from ablate.results import ResultsStore

        if ResultsStore(grid.results_root).frame(grid.name).empty:
            raise AblateError(f"No cell of grid {grid.name} has a result record in {grid.results_dir} "
                              f"({', '.join(f'{n} {s}' for s, n in sorted(counts.items())) or 'no cells'}), so there is "
                              f"nothing to rank. The failed cells and their reasons are listed above (tracebacks in each "
                              f"cell's logs/output.log); fix the cause and run the same command with --retry-failed.")
        return show(grid.results_root, [grid.name])  # the records this machine's results directory holds
    return 0


def default_workers(args: argparse.Namespace, grid: Grid, device: torch.device) -> int | None:
    """``--workers``, else (on the CPU, for a grid whose cells train on one device, without ``--pack``) one
    worker per CPU (:func:`ablate.threads.plain_cpu_workers`); None (the GPU rule of
    :mod:`ablate.runs.workers`) on CUDA. A single worker is None, as a plain run always was."""
    if args.workers or device.type != "cpu" or args.pack or grid.train.devices * grid.train.num_nodes > 1:
        return args.workers
    workers = threads.plain_cpu_workers()
    return workers if workers > 1 else None


def tune_learning_rates(grid: Grid, ctx: RunContext, options: WorkerOptions) -> Grid:
    """Run the grid's learning-rate tuning (:mod:`ablate.runs.lr_tuning`) and return the grid at the tuned
    rates, after printing each variant's validation loss per rate."""
    from ablate.runs.lr_tuning import best_rates, tuned_grid, tuning_grids, validation_losses
    from ablate.runs.workers import run_grid

    grids = tuning_grids(grid)
    ctx.console.print(f"learning-rate tuning: {len(grids)} rates x {len(grid.variants)} variants, seed "
                      f"{grid.seeds[0]}: grids {', '.join(g.name for g in grids)}", highlight=False)
    for g in grids:
        run_grid(g, ctx, options)
    losses = validation_losses(grids)
    best = best_rates(grid, losses)
    for variant in grid.variants:
        tried = "  ".join(f"{rate:.1e}: {loss:.4g}" for rate, loss in sorted(losses[variant].items()))
        ctx.console.print(f"  {escape(variant)}: lr {best[variant]:.1e} (EMA val loss by rate: {tried})", highlight=False)
    return tuned_grid(grid, best)
