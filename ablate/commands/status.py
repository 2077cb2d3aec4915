"""``python -m ablate status GRID [--storage URL]``: every cell of a grid and where it stands.

One row per cell, from the grid's queue (see :mod:`ablate.runs.queue`) and its results store
(``records``: whole records / settings of the grid, from :class:`ablate.results.ResultsStore`): pending (not queued
yet, waiting, or re-queued after its worker was lost), running (where: host, pid, device; since
when, UTC; the last reported training step), done (the EMA validation loss) or failed (the step and
the reason). ``attempts`` counts the cell's trials (retries after lost workers or --retry-failed).
"""

from __future__ import annotations

import argparse
from datetime import datetime, timezone

from rich.console import Console
from rich.table import Table
from rich.text import Text

from ablate.config.grid import add_override_arguments, load_grid, overrides_from_args

STYLES = {"pending": "dim", "running": "cyan", "done": "green", "failed": "red"}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("status", help="show which cells of a grid are pending, running, done or failed",
                       description="Show every cell of a grid as its Optuna study records it: pending, running "
                                   "(where, since when, step), done, failed (with the reason).")
    p.add_argument("grid", help="a grid file (grids/smoke.yaml) or the name of a shipped grid (smoke)")
    p.add_argument("--storage", metavar="URL", help="the Optuna storage the grid runs in "
                   "(default: sqlite:///<results>/<grid>/optuna.sqlite3)")
    add_override_arguments(p)
    p.set_defaults(func=main)


def _utc(moment: datetime | None) -> str:
    if moment is None:
        return ""
    local = moment if moment.tzinfo else moment.astimezone()  # Optuna stores naive local times
    return local.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")


def _study_if_exists(name: str, url: str) -> "optuna.Study | None":
    """The grid's study; None if the storage (a missing SQLite file) or the study does not exist yet."""
    import optuna

    from ablate.runs.storage_urls import is_sqlite, sqlite_file
    from ablate.runs.storage import open_storage

    if is_sqlite(url) and not sqlite_file(url).exists():
        return None
    try:
        return optuna.load_study(study_name=name, storage=open_storage(url, heartbeat=False))
    except KeyError:
        return None


def status_table(grid_path: str, storage: str | None, overrides: object = None) -> tuple[Table, dict[str, int]]:
    """The status table of a grid, and its cell counts by state."""
    from ablate.runs.queue import cell_states
    from ablate.results import ResultsStore
    from ablate.runs.storage import default_storage, storage_errors

    grid = load_grid(grid_path, overrides)  # type: ignore[arg-type]
    with storage_errors(grid, storage or default_storage(grid)):
        study = _study_if_exists(grid.name, storage or default_storage(grid))
        states = cell_states(study, grid)
    store, settings = ResultsStore(grid.results_root), grid.eval.all_settings()
    cells = {c.id: c for c in grid.cells()}
    counts = {s: 0 for s in STYLES}
    table = Table(title=Text(f"grid {grid.name} in {storage or default_storage(grid)}"
                             + ("" if study is not None else " (no study yet: nothing queued)")))
    for col in ("dataset", "variant", "seed", "state", "attempts", "where", "since (UTC)", "step", "records", "detail"):
        table.add_column(col, justify="right" if col in ("seed", "attempts", "step", "records") else "left",
                         no_wrap=col != "detail")
    for cell_id, (state, trial, attempts) in states.items():
        counts[state] += 1
        attrs = trial.user_attrs if trial is not None else {}
        variant, dataset, seed = attrs.get("variant"), attrs.get("dataset"), attrs.get("seed")
        if trial is None:
            cell = cells[cell_id]
            variant, dataset, seed = cell.variant, cell.dataset, cell.seed
        records = len(settings) - len(store.faults(cells[cell_id], settings)) if cell_id in cells else 0
        where = attrs.get("where") or {}
        place = f"{where['host']}:{where['pid']} ({where['device']})" if where and state in ("running", "done") else ""
        step, detail = attrs.get("step"), ""
        if state == "failed":
            step = attrs.get("fail_step", step)
            reason = attrs.get("fail_reason") or ("interrupted (Ctrl-C); the next run resumes it"
                                                  if attrs.get("interrupted") else "worker lost (no heartbeat)")
            detail = reason
        elif state == "done":
            train = attrs.get("train") or {}
            detail = f"val loss {trial.value:.4f}" + (f", resumed at step {train['resumed_from_step']}"
                                                      if train.get("resumed_from_step") else "")
        elif state == "pending" and trial is not None and trial.system_attrs.get("failed_trial") is not None:
            detail = f"re-queued after trial {trial.system_attrs['failed_trial']} lost its worker"
        elif state == "pending" and trial is None:
            detail = "not queued yet"
        max_steps = grid.train.max_steps
        # plain text, never markup: a failure reason quotes user input (e.g. "[/<sampler>]")
        table.add_row(Text(str(dataset)), Text(str(variant)), Text(str(seed)), Text(state, style=STYLES[state]),
                      Text(str(attempts)), Text(place),
                      Text(_utc(trial.datetime_start) if trial is not None and state != "pending" else ""),
                      Text(f"{step}/{max_steps}" if step is not None and state != "pending" else ""),
                      Text(f"{records}/{len(settings)}"), Text(detail))
    table.caption = ", ".join(f"{n} {s}" for s, n in counts.items())
    return table, counts


def main(args: argparse.Namespace) -> int:
    table, _ = status_table(args.grid, args.storage, overrides_from_args(args))
    console = Console()
    Console(width=max(console.width, 160) if not console.is_terminal else None).print(table)
    return 0
