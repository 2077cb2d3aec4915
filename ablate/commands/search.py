"""``python -m ablate search FILE``: a multi-objective search over a formulation's numbers (see :mod:`ablate.search`).

Warm-starts from other grids' records, runs the points to run first (``search.enqueue``, the paper's
lattice), then rounds of points from Optuna's sampler, each round an ordinary grid run through the
queue; re-trains the best points with extra seeds; writes ``<out>/search-<name>.md``. A rerun goes on
where the last one stopped (finished trials are not retrained).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from ablate.commands.run import _positive, add_device_arguments
from ablate.devices import resolve_device
from ablate.outputs import cache_dir, checked_option, report_dir


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("search", help="search a formulation's numbers (timestep density, shift, lr) with Optuna",
                       description="Multi-objective search (alignment up, fidelity down) over the numbers of a variant "
                                   "template such as rf/lognorm({m}, {s}); every trial is a grid cell trained, "
                                   "evaluated and stored like any other. Writes <out>/search-<name>.md.")
    p.add_argument("file", help="a search file (grids/search-smoke.yaml) or the name of a shipped one")
    p.add_argument("--trials", type=_positive, metavar="N", help="trials in all, the points run first included "
                   "(default: search.trials of the file); a rerun with a larger N goes on")
    p.add_argument("--results", metavar="DIR", help="results root; trials go to DIR/<name>/ (default: results/)")
    p.add_argument("--out", metavar="DIR", help="where the report goes (default: <results>/<name>/leaderboard)")
    add_device_arguments(p)
    p.add_argument("--storage", metavar="URL", help="Optuna RDB storage of the queue and the search study "
                   "(default: sqlite:///<results>/<name>/optuna.sqlite3)")
    p.add_argument("--workers", type=_positive, metavar="N", help="worker processes training a round's cells")
    p.add_argument("--pack", type=_positive, metavar="K", help="cells a worker trains at once as one stacked model "
                   "(1: one at a time; default: chosen from the model's size, see ablate/runs/pack_size.py)")
    p.add_argument("--report-only", action="store_true", help="write the report of the told trials; train nothing")
    p.add_argument("--verbose", action="store_true", help="also show third-party messages on the console")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from ablate.engine.runner import RunContext
    from ablate.runs.signals import stop_on_signals
    from ablate.runs.storage import default_storage
    from ablate.runs.workers import WorkerOptions
    from ablate.search.report import write_report
    from ablate.search.spec import load_search
    from ablate.search.trials import confirm, open_search_study, run_search

    for flag, value in (("--results", args.results), ("--out", args.out)):
        if value is not None:
            checked_option(flag, value)
    search = load_search(args.file, Path(args.results) if args.results else None)
    trials = args.trials or search.search.trials
    device = resolve_device(args.device)
    console = Console(soft_wrap=True)  # one line per event, also in log files
    console.print(f"[bold]ablate search[/] {search.name}: {escape(search.search.variant)}, {trials} trials "
                  f"({search.search.batch} per round, {search.search.sampler}) on {device}, results in "
                  f"{escape(str(search.base.results_dir))}", highlight=False, soft_wrap=True)
    ctx = RunContext(device=device, cache_dir=cache_dir(search.base.results_root, args.cache_dir),
                     weights_dir=args.weights_dir, console=console, progress=sys.stdout.isatty())
    options = WorkerOptions(storage=args.storage, workers=args.workers, pack=args.pack, verbose=args.verbose)
    if args.report_only:
        study = open_search_study(search, args.storage or default_storage(search.base))
    else:
        with stop_on_signals():
            study = run_search(search, ctx, options, trials)
            confirm(search, study, ctx, options)
    written = write_report(report_dir(search.base.results_dir, args.out), search, study, trials)
    console.print("report: " + ", ".join(escape(str(p)) for p in written), highlight=False, soft_wrap=True)
    return 0
