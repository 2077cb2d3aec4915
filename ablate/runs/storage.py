"""The grid's Optuna storage and study: where the queue of cells (:mod:`ablate.runs.queue`) lives.

One study per grid (named like the grid) in an Optuna RDB storage: by default
``sqlite:///<results>/<grid>/optuna.sqlite3``; ``postgresql://`` or ``mysql://`` URLs let workers on
several machines share a grid. Optuna's journal storage is not offered: it has no heartbeat, so a dead
worker's cell would never be reclaimed. The study stores the grid's configuration; every run that joins
must have the same (its cells may differ). ``ABLATE_HEARTBEAT_INTERVAL`` (s, default 20) and
``ABLATE_GRACE_PERIOD`` (s, default 120) tune how fast a dead worker's cell is reclaimed.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

try:
    import fcntl
except ImportError:  # not on Windows: there, only the retries below
    fcntl = None  # type: ignore[assignment]

import optuna
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

from ablate.errors import ConfigError
from ablate.config.grid import Grid
from ablate.config.schema import plain
from ablate.runs.storage_urls import sqlite_file

SCHEMES = ("sqlite", "postgresql", "mysql")
MAX_STALE_RETRIES = 3
optuna.logging.set_verbosity(optuna.logging.WARNING)
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # heartbeats, retry callback


def heartbeat_settings() -> tuple[int, int]:
    return int(os.environ.get("ABLATE_HEARTBEAT_INTERVAL", 20)), int(os.environ.get("ABLATE_GRACE_PERIOD", 120))


def default_storage(grid: Grid) -> str:
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
        kwargs["engine_kwargs"] = {"connect_args": {"timeout": 120}}
    if heartbeat:
        interval, grace = heartbeat_settings()
        kwargs.update(heartbeat_interval=interval, grace_period=grace,
                      heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=MAX_STALE_RETRIES))
    for attempt in range(5):  # several processes creating the tables of a new database at once can race
        try:
            with _creating(url if scheme == "sqlite" else None):
                storage = RDBStorage(url, **kwargs)
            if scheme == "sqlite":
                _serialise_sqlite(storage.engine)
            return storage
        except Exception as err:  # noqa: BLE001
            if attempt == 4 or not any(s in str(err) for s in ("already exists", "locked", "UNIQUE", "duplicate")):
                raise ConfigError(f"Cannot open the Optuna storage {url!r}: {err}. Check the URL, that the "
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
