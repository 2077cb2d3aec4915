"""Where a command writes: under the results root the user named, or where an explicit option says.

Every command that writes reports, caches or queues takes its locations from here, so that a run with a
scratch ``--results DIR`` writes nothing outside DIR (no published ``leaderboard/``, no ``./cache/``):

- a report (leaderboard, scaling, search) goes to ``--out DIR`` when given, else ``<results>/<name>/leaderboard``;
  the repository's published ``leaderboard/`` is written only when named (``--out leaderboard``);
- the scorers' cache (probe weights, reference statistics) is ``--cache-dir DIR`` when given, else
  ``$ABLATE_CACHE_DIR``, else ``<results>/cache``;
- the queue is ``<results>/<name>/optuna.sqlite3`` unless ``--storage URL`` (:mod:`ablate.runs.storage`).
"""

from __future__ import annotations

from pathlib import Path

from ablate.env import env_path
from ablate.errors import ConfigError

DEFAULT_RESULTS = Path("results")
CACHE_VARIABLE = "ABLATE_CACHE_DIR"


def report_dir(results_dir: Path, out: str | Path | None) -> Path:
    """Where a report of the results in ``results_dir`` (``<results>/<name>``) goes: ``out`` if given."""
    return Path(checked_option("--out", out)) if out is not None else Path(results_dir) / "leaderboard"


def cache_dir(results_root: Path | None, explicit: str | Path | None) -> Path:
    """The scorers' cache: ``explicit`` (``--cache-dir``), else ``$ABLATE_CACHE_DIR``, else ``<results root>/cache``
    (``results/cache`` for a command without results)."""
    if explicit is not None:
        return Path(checked_option("--cache-dir", explicit))
    root = Path(results_root) if results_root is not None else DEFAULT_RESULTS
    chosen = env_path(CACHE_VARIABLE, root / "cache", what="where the scorers' cache (probe weights, reference "
                                                            "statistics) goes")
    assert chosen is not None
    return chosen


def checked_option(flag: str, value: str | Path) -> str | Path:
    """A directory option's value, refused when empty (an unset shell variable expanded to nothing)."""
    if not str(value).strip():
        raise ConfigError(f"Command-line option {flag} is empty (an unset shell variable?); allowed: a directory "
                          "path, or leave the option out for its default.")
    return value
