"""``run --rebuild-queue``: a new queue for a grid, rebuilt from its records (the results store is the truth
for what is done; the queue only says who runs what).

The old queue is set aside first: a SQLite file is renamed ``<name>.damaged-<UTC time>`` (kept for a
person to look at, never read again); on a database server, the grid's study is deleted. Then every cell
of the grid whose records are all whole is entered as done (its value, the EMA validation loss, from its
records' training summary), and :func:`ablate.runs.queue.queue_cells` queues the rest as usual: they
resume from their checkpoints. Cells that had failed are tried again. Stop every worker of the grid first:
a worker still running would go on with the old queue.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import optuna
from optuna.trial import TrialState, create_trial

from ablate.config.grid import Grid
from ablate.results import RecordError, ResultsStore, read_record
from ablate.runs.storage import open_storage, open_study
from ablate.runs.storage_urls import is_sqlite, sqlite_file


def set_aside(grid: Grid, url: str, say: Callable[[str], None]) -> None:
    """Move the grid's SQLite queue file aside, or delete its study on a database server."""
    if is_sqlite(url):
        path = sqlite_file(url)
        if path.exists():
            aside = path.with_name(f"{path.name}.damaged-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}")
            path.rename(aside)
            say(f"the old queue file is kept as {aside}")
        return
    try:
        optuna.delete_study(study_name=grid.name, storage=open_storage(url, heartbeat=False))
        say(f"deleted the study {grid.name!r} in {url}")
    except KeyError:
        pass


def rebuild_queue(grid: Grid, url: str, say: Callable[[str], None]) -> int:
    """Set the old queue aside and enter every cell whose records are all whole as done; returns how many."""
    set_aside(grid, url, say)
    study = open_study(grid, open_storage(url, heartbeat=False))
    store, settings = ResultsStore(grid.results_root), grid.eval.all_settings()
    done = 0
    for cell in grid.cells():
        if store.faults(cell, settings):
            continue
        try:
            summary = read_record(store.record_path(cell, settings[0]), store.root).get("train") or {}
        except RecordError:
            continue
        study.add_trial(create_trial(
            state=TrialState.COMPLETE, value=float(summary.get("val_loss", float("nan"))),
            user_attrs={"cell": cell.id, "variant": cell.variant, "dataset": cell.dataset, "seed": cell.seed,
                        "backbone": cell.backbone,
                        "train": summary, "step": summary.get("max_steps"), "rebuilt": True}))
        done += 1
    say(f"rebuilt the queue of grid {grid.name!r} from {store.root}: {done} of {len(grid.cells())} cells done "
        "(every record whole); the others are queued")
    return done
