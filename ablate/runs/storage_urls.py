"""Optuna storage URLs given with ``--storage``: the SQLite database file they name, checked in one place.

``sqlite:///PATH`` names a file (relative ``sqlite:///results/g.sqlite3`` or absolute
``sqlite:////srv/g.sqlite3``). A SQLite URL without a file (``sqlite:///``, ``sqlite://``,
``sqlite:///:memory:``) would be an in-memory database that no other worker or later command can
see; it is refused.
"""

from __future__ import annotations

from pathlib import Path

from ablate.errors import ConfigError


def is_sqlite(url: str) -> bool:
    """Whether ``url`` is a SQLite URL (``sqlite:`` or ``sqlite+driver:``)."""
    return url.split(":", 1)[0].split("+", 1)[0] == "sqlite"


def sqlite_file(url: str) -> Path:
    """The database file of a SQLite storage URL; a :class:`ConfigError` if it names none."""
    _, sep, path = url.partition(":///")
    if not sep or not path.strip() or path.strip() == ":memory:":
        raise ConfigError(
            f"--storage {url!r} names no database file. Allowed: sqlite:///PATH with the file's path (e.g. "
            "sqlite:///results/smoke/optuna.sqlite3, or sqlite:////srv/ablate/smoke.sqlite3 for an absolute path), "
            "postgresql://USER:PASSWORD@HOST/DB or mysql://...; an in-memory database cannot be shared by workers "
            "or read by a later command."
        )
    return Path(path)
