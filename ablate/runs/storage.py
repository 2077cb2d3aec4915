"""The grid's Optuna storage and study: where the queue of cells (:mod:`ablate.runs.queue`) lives.

One study per grid (named like the grid) in an Optuna RDB storage: by default
``sqlite:///<results>/<grid>/optuna.sqlite3``; ``postgresql://`` or ``mysql://`` URLs let workers on
several machines share a grid. Optuna's journal storage is not offered: it has no heartbeat, so a dead
worker's cell would never be reclaimed. The study stores the grid's configuration; every run that joins
must have the same (its cells may differ). ``ABLATE_HEARTBEAT_INTERVAL`` (s, default 20) and
``ABLATE_GRACE_PERIOD`` (s, default 120, at least 3 intervals) tune how fast a dead worker's cell is
reclaimed (:func:`heartbeat_settings`).

A heartbeat that fails (the storage locked past its timeout, a dropped connection) is noted in the cell's
log and sent again at the next interval, rather than ending Optuna's heartbeat thread. A SQLite queue file
that is damaged is named in one paragraph (:class:`QueueDamagedError`) with the command that rebuilds it
from the records (:mod:`ablate.runs.rebuild`); :func:`storage_errors` turns every other storage failure
into a paragraph too.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

try:
    import fcntl
except ImportError:  # not on Windows: there, only the retries below
    fcntl = None  # type: ignore[assignment]

import optuna
from optuna.exceptions import StorageInternalError
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from sqlalchemy.exc import SQLAlchemyError

from ablate.errors import ConfigError, ResultsError
from ablate.config.grid import Grid
from ablate.config.schema import plain
from ablate.runs.storage_urls import is_sqlite, sqlite_file

SCHEMES = ("sqlite", "postgresql", "mysql")
MAX_STALE_RETRIES = 3
SQLITE_TIMEOUT_S = 120  # how long a SQLite statement waits for another process's lock before it fails
optuna.logging.set_verbosity(optuna.logging.WARNING)
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # heartbeats, retry callback


HEARTBEAT_VARIABLES = (("ABLATE_HEARTBEAT_INTERVAL", 20), ("ABLATE_GRACE_PERIOD", 120))
GRACE_MARGIN = 3  # grace period >= this many heartbeat intervals
MAX_SECONDS = 1_000_000


def heartbeat_settings() -> tuple[int, int]:
    """(heartbeat interval, grace period) in seconds, from ``ABLATE_HEARTBEAT_INTERVAL`` (default 20) and
    ``ABLATE_GRACE_PERIOD`` (default 120): whole numbers from 1 to 1,000,000 (what Optuna's heartbeat takes),
    the grace period at least :data:`GRACE_MARGIN` intervals (a live worker that misses a beat or two under
    load must not lose its cell to a second worker). Anything else is a :class:`ConfigError` paragraph naming
    the variable. (All of it here, in one function: the one place that reads these two variables.)"""
    values = []
    for name, default in HEARTBEAT_VARIABLES:
        text = os.environ.get(name)
        if text is not None and not (text.strip().isdigit() and 1 <= int(text) <= MAX_SECONDS):
            raise ConfigError(f"Environment variable {name}={text[:40]!r} is not allowed: seconds, a whole number "
                              f"from 1 to {MAX_SECONDS:,}; unset it for the default ({default}).")
        values.append(default if text is None else int(text))
    interval, grace = values
    if grace < GRACE_MARGIN * interval:
        raise ConfigError(
            f"ABLATE_GRACE_PERIOD={grace} is too short for ABLATE_HEARTBEAT_INTERVAL={interval}: the grace period "
            f"must be at least {GRACE_MARGIN} heartbeat intervals ({GRACE_MARGIN * interval} s here), so that a live "
            "worker that misses a beat or two under load does not lose its cell to a second worker (both would then "
            "train it in one folder). Raise ABLATE_GRACE_PERIOD or lower ABLATE_HEARTBEAT_INTERVAL.")
    return interval, grace


def storage_log(text: str) -> None:
    """A note on the queue's storage for the log files (the running cell's log, else the run's), never the
    console: e.g. a heartbeat that the storage did not take."""
    logging.getLogger("ablate.queue").warning(text)


logging.getLogger("ablate").addHandler(logging.NullHandler())  # not on stderr where no log file is routed


class QueueDamagedError(ResultsError):
    """A SQLite queue file that SQLite cannot read (cut short, overwritten, a disk error)."""

    def __init__(self, path: Path, reason: str, command: str = "") -> None:
        self.path, self.reason = path, reason
        command = command or "python -m ablate run GRID_FILE --results DIR --rebuild-queue"
        super().__init__(
            f"The queue file {path} is damaged ({reason}). It holds the grid's queue only (which cells wait, run, "
            "are done or failed): the results (records, checkpoints, training summaries) live in the results "
            f"directory and are safe. Rebuild the queue from the records with `{command}` (with this run's options): "
            "it moves the damaged file aside, marks every cell whose records are all there as done and queues the "
            "others, which resume from their checkpoints.")


DAMAGE = ("file is not a database", "database disk image is malformed", "malformed database schema")


def _damage(url: str, err: BaseException) -> str | None:
    """For a SQLite URL, what SQLite says when ``err`` (or its cause) means the file is damaged; else None."""
    while err is not None:
        first = (str(getattr(err, "orig", None) or err).splitlines() or [""])[0]
        if is_sqlite(url) and any(d in first for d in DAMAGE):
            return first
        err = err.__cause__  # type: ignore[assignment]
    return None


def rebuild_command(grid: Grid, url: str) -> str:
    """The command that rebuilds the queue of ``grid`` in ``url`` from its records."""
    storage = "" if url == default_storage(grid) else f" --storage {url}"
    return f"python -m ablate run {grid.source or grid.name} --results {grid.results_root}{storage} --rebuild-queue"


@contextmanager
def storage_errors(grid: Grid, url: str) -> Iterator[None]:
    """Storage failures in the block as one paragraph (:class:`ResultsError`): a damaged SQLite file names
    the command that rebuilds it; anything else, where to look (finished cells are kept)."""
    try:
        yield
    except QueueDamagedError as err:
        raise QueueDamagedError(err.path, err.reason, rebuild_command(grid, url)) from None
    except (StorageInternalError, SQLAlchemyError) as err:
        if (reason := _damage(url, err)) is not None:
            raise QueueDamagedError(sqlite_file(url), reason, rebuild_command(grid, url)) from None
        cause = err.__cause__ if isinstance(err, StorageInternalError) and err.__cause__ else err
        where = ("Check that its disk has free space and that no other program holds the file" if is_sqlite(url)
                 else "Check that its database server runs and has free space")
        raise ResultsError(f"The grid's queue in the Optuna storage {url} cannot be read or written "
                           f"({type(cause).__name__}: {(str(getattr(cause, 'orig', None) or cause).splitlines() or [''])[0]}). "
                           f"{where}, then run the same command again: finished cells are kept.") from None


class _HeartbeatStorage(RDBStorage):
    """Optuna's RDB storage whose heartbeat outlives a storage that is briefly unavailable (see the module doc)."""

    def record_heartbeat(self, trial_id: int) -> None:
        try:
            super().record_heartbeat(trial_id)
        except (StorageInternalError, SQLAlchemyError) as err:
            cause = err.__cause__ or err
            storage_log(f"heartbeat of trial {trial_id} not recorded (sent again in {self.heartbeat_interval} s): "
                        f"{type(cause).__name__}: {(str(cause).splitlines() or [''])[0]}")


def default_storage(grid: Grid) -> str:
    """``sqlite:///<results>/<grid>/optuna.sqlite3`` (absolute)."""
    return f"sqlite:///{(grid.results_dir / 'optuna.sqlite3').resolve()}"


def check_url(url: str) -> str:
    """The URL's scheme, after checking that it is one ablate can queue cells in (a :class:`ConfigError`
    naming what is allowed if not; a SQLite URL must name a file)."""
    scheme = url.split(":", 1)[0].split("+", 1)[0]
    if scheme not in SCHEMES:
        raise ConfigError(f"--storage {url!r} is not a supported Optuna storage URL; allowed: sqlite:///PATH, "
                          "postgresql://USER:PASSWORD@HOST/DB or mysql://... (an RDB storage: Optuna's journal "
                          "storage has no heartbeat, so a dead worker's cell could never be reclaimed).")
    if scheme == "sqlite":
        sqlite_file(url)
    return scheme


def open_storage(url: str, heartbeat: bool = True) -> RDBStorage:
    """An RDB storage with Optuna's heartbeat (and stale-trial retry) unless ``heartbeat`` is False."""
    scheme = check_url(url)
    kwargs: dict[str, Any] = {}
    if scheme == "sqlite":
        sqlite_file(url).parent.mkdir(parents=True, exist_ok=True)
        kwargs["engine_kwargs"] = {"connect_args": {"timeout": SQLITE_TIMEOUT_S}}
    if heartbeat:
        interval, grace = heartbeat_settings()
        kwargs.update(heartbeat_interval=interval, grace_period=grace,
                      heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=MAX_STALE_RETRIES))
    for attempt in range(5):  # several processes creating the tables of a new database at once can race
        try:
            with _creating(url if scheme == "sqlite" else None):
                storage = (_HeartbeatStorage if heartbeat else RDBStorage)(url, **kwargs)
            if scheme == "sqlite":
                _serialise_sqlite(storage.engine)
            return storage
        except Exception as err:  # noqa: BLE001
            if (reason := _damage(url, err)) is not None:
                raise QueueDamagedError(sqlite_file(url), reason) from None
            if attempt == 4 or not any(s in str(err) for s in ("already exists", "locked", "UNIQUE", "duplicate")):
                first = (str(getattr(err, "orig", None) or err).splitlines() or [""])[0]
                if scheme == "sqlite":
                    raise ConfigError(f"Cannot open the SQLite queue file {sqlite_file(url)} ({first}). Check that "
                                      "its directory exists and is writable, and that it has free space.") from None
                raise ConfigError(f"Cannot open the Optuna storage {url!r}: {first}. Check the URL, that the "
                                  "database server runs and accepts this user, and that its driver is installed "
                                  "(psycopg[binary] for PostgreSQL).") from None
            time.sleep(0.5 + attempt)
    raise AssertionError("unreachable")


@contextmanager
def _creating(sqlite_url: str | None) -> Iterator[None]:
    """For a SQLite file: hold an exclusive ``flock`` on it while Optuna creates or upgrades its tables, so
    that runs started together do not race (``flock`` is independent of SQLite's own POSIX locks)."""
    if sqlite_url is None or fcntl is None:
        yield
        return
    with open(sqlite_url.split(":///", 1)[1], "ab") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def _serialise_sqlite(engine: Any) -> None:
    """pysqlite opens a transaction only at the first write, so two processes can both read a trial as
    waiting and both claim it (SQLite has no SELECT ... FOR UPDATE). SQLAlchemy's recipe: take the write
    lock when the transaction begins (BEGIN IMMEDIATE), which serialises every transaction on the file."""
    from sqlalchemy import event

    event.listen(engine, "connect", lambda dbapi_connection, record: setattr(dbapi_connection, "isolation_level", None))
    event.listen(engine, "begin", lambda connection: connection.exec_driver_sql("BEGIN IMMEDIATE"))
    engine.dispose()  # connections opened before the listeners would not take the lock


def shared_config(grid: Grid) -> dict[str, Any]:
    """What every worker of a grid must agree on: the grid minus its cell list and machine-local paths."""
    config = grid.to_dict()
    for key in ("variants", "datasets", "seeds", "description"):
        config.pop(key, None)
    config["data"].pop("data_dir", None)
    return config


def with_added_options(stored: dict[str, Any], mine: dict[str, Any], grid: Grid) -> dict[str, Any]:
    """A stored config read with the options the schema gained since it was stored at their defaults, so
    that adding an option (e.g. ``train.lr_by_variant``) does not orphan the studies already run."""
    out = dict(stored)
    for section in dataclasses.fields(grid):
        value = getattr(grid, section.name)
        if not (dataclasses.is_dataclass(value) and isinstance(out.get(section.name), dict)
                and isinstance(mine.get(section.name), dict)):
            continue
        fields = {f.name: f for f in dataclasses.fields(value)
                  if f.name in mine[section.name] and f.name not in out[section.name]}
        defaults = {name: f.default if f.default is not dataclasses.MISSING else f.default_factory()
                    for name, f in fields.items()
                    if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING}
        out[section.name] = {**out[section.name], **json.loads(json.dumps(plain(defaults)))}
    return out


def _differences(a: Any, b: Any, path: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(set(a) | set(b)) for d in _differences(a.get(k), b.get(k), f"{path}.{k}".lstrip("."))]
    return [] if a == b else [f"{path} ({b!r} in the storage, {a!r} here)"]


def open_study(grid: Grid, storage: RDBStorage) -> optuna.Study:
    """The grid's study, created on first use; its config must match this grid's."""
    study = optuna.create_study(study_name=grid.name, storage=storage, direction="minimize", load_if_exists=True,
                                sampler=optuna.samplers.RandomSampler(seed=0))
    mine = json.loads(json.dumps(shared_config(grid)))
    stored = study.user_attrs.get("config")
    if stored is None:
        study.set_user_attr("config", mine)
    elif (stored := with_added_options(stored, mine, grid)) != mine:
        diff = "; ".join(_differences(mine, stored))
        raise ConfigError(f"The storage already holds grid {grid.name!r} with a different configuration: {diff}. "
                          "Every run of a grid must use the same grid file and options; use another --results "
                          "directory (or --storage), or rename the grid, to start a separate study.")
    return study
