"""The results store: one JSON record per (grid, dataset, variant, seed, setting).

:class:`ResultsStore` is the one reader and writer; evaluation writes through it, status and the
leaderboard read through it (it imports neither torch nor Lightning). Layout::

    <results_dir>/<grid>/<dataset>/<variant-slug>/seed<k>/records/<setting key>.json

where the setting key is :attr:`ablate.config.setting.Setting.key` (``50steps-cfg5.0-own-ema``). A record holds the
setting's fields (solver, steps, cfg, time_grid, weights; records without ``solver`` are Euler), the metrics (named
as the scorers name them, e.g. ``fd_probe``), the training summary of its cell (``train``, with the validation
curve when the cell recorded one), what resamples the samples behind a metric where its scorer keeps it
(:mod:`ablate.resampling`: ``metric_resamples``, KID's sample blocks; ``metric_replicates``, fd_effnet on random
halves), the evaluation cost (``eval``), how the solver ran (``solver_details``; ``sampler`` in records written
before it had that name), the formulation's metadata with its "our choice" notes, every scorer's provenance, the
resolved grid config of the cell and a provenance stamp (version, git commit, device, UTC time).

Why JSON files rather than Parquet: a record is written once, by one worker, the moment its
setting is scored, so one small file per record makes the store resumable per setting (a finished
setting is a file that exists) and safe under many concurrent workers without a database or
locks; each file is written atomically (temp file + fsync + ``os.replace``), so a crash never
leaves a half-written record; a person can read or diff any number with a text editor; and it
needs no extra dependency (pyarrow). The store is small (24 settings x variants x seeds), so
reading it into one :class:`pandas.DataFrame` with :meth:`ResultsStore.frame` is instant.

NaN and infinite metric values are written as JSON's common extensions ``NaN``/``Infinity``
(Python's :mod:`json` reads them back exactly).

Reading is strict (:func:`read_record`): a file that does not parse, is not a JSON object with the
required keys, has metrics that are not numbers, or whose identity (grid, dataset, variant, seed,
setting) names another path (a copy, a moved file) raises :class:`RecordError` naming it. The store,
not the queue, says what is done: :meth:`ResultsStore.faults` lists a cell's missing or damaged
records, which ``run`` evaluates again (:mod:`ablate.runs.queue`, :func:`ablate.engine.runner.run_cell`).
"""

from __future__ import annotations

import functools
import json
import math
import re
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ablate import __version__, resampling
from ablate.errors import AblateError, ResultsError
from ablate.env import env_commit
from ablate.io import write_bytes_atomic, write_json_atomic, write_text_atomic  # noqa: F401 (re-exported)
from ablate.config.setting import FIELDS as SETTING_FIELDS
from ablate.config.setting import Setting

if TYPE_CHECKING:
    import pandas as pd

CELL_FIELDS = ("grid", "variant", "dataset", "seed")
REQUIRED_KEYS = CELL_FIELDS + ("steps", "cfg", "time_grid", "weights", "metrics")
# Top-level scalar fields that become DataFrame columns as they are; "setting" is the setting's key.
SCALAR_KEYS = CELL_FIELDS + SETTING_FIELDS + ("setting", "nfe", "num_samples", "version", "git_commit", "device",
                                              "created", "backbone")
DICT_KEYS = ("formulation", "scorers", "config")
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


class CellLike(Protocol):
    """What names a cell (:class:`ablate.config.grid.Cell` is one)."""

    grid_name: str
    variant: str
    dataset: str
    seed: int


# ---------------------------------------------------------------------------------------- layout

_SLUG_IDENT = r"[A-Za-z][A-Za-z0-9]*"
_SLUG_NUM = r"-?[0-9]+(?:\.[0-9]+)?(?:e[-+]?[0-9]+)?"
_SLUG_SEGMENT = rf"{_SLUG_IDENT}(?:\({_SLUG_NUM}(?:, {_SLUG_NUM})*\))?"
_CANONICAL = re.compile(rf"{_SLUG_SEGMENT}(?:/{_SLUG_SEGMENT})*")
_MAX_NAME = 200


def variant_slug(variant: str) -> str:
    """A filesystem-safe, injective directory name for a variant name.

    Canonical names (segments ``name`` or ``name(num, num, ...)`` joined by ``/``) map readably:
    ``/`` -> ``__``, ``(`` -> ``_``, ``, `` -> ``_``, ``)`` -> ``_``, so
    ``"rf/lognorm(0.00, 1.00)"`` -> ``"rf__lognorm_0.00_1.00_"``. This is injective because the
    slug parses back uniquely: after a name, ``__`` is a ``/`` and ``_`` opens the arguments (a
    number never starts with ``_``); after a number, ``_`` followed by a number is ``, `` and
    otherwise ``)``. Any other string gets ``x-`` followed by an escaped form (``[A-Za-z0-9.]``
    kept, every other character as ``-<hex code point>-``), which decodes uniquely too and never
    collides with a readable slug (those never have ``-`` right after their first name).
    """
    if _CANONICAL.fullmatch(variant):
        slug = variant.replace("/", "__").replace(", ", "_").replace("(", "_").replace(")", "_")
    else:
        slug = "x-" + "".join(c if (c.isascii() and (c.isalnum() or c == ".")) else f"-{ord(c):x}-" for c in variant)
    if not variant or len(slug) > _MAX_NAME:
        raise ResultsError(
            f"The variant name {variant!r} cannot be a results directory name: it is empty or its "
            f"directory form is longer than {_MAX_NAME} characters. Use the canonical variant name "
            "(e.g. 'rf/lognorm(0.00, 1.00)')."
        )
    return slug


def _check_name(kind: str, value: Any) -> str:
    text = str(value)
    if not _SAFE_NAME.fullmatch(text) or len(text) > _MAX_NAME:
        raise ResultsError(
            f"The {kind} {text!r} cannot be used in a results path: it must start with a letter or "
            "digit and contain only letters, digits, '.', '_' and '-'."
        )
    return text


def cell_dir(results_dir: Path, grid: str, dataset: str, variant: str, seed: int, backbone: str = "dit") -> Path:
    """The directory of one training cell: ``results_dir/<grid>/<dataset>/<variant-slug>/seed<k>``, the slug
    followed by ``@<backbone>`` for a backbone other than DiT."""
    tail = "" if backbone == "dit" else f"@{_check_name('backbone name', backbone)}"
    return (
        Path(results_dir) / _check_name("grid name", grid) / _check_name("dataset name", dataset)
        / f"{variant_slug(variant)}{tail}" / f"seed{int(seed)}"
    )


def preview_path(record_path: Path) -> Path:
    """The sample preview (an 8-wide PNG grid of the first 64 samples) written beside a record:
    ``<cell>/samples/<setting key>.png`` for ``<cell>/records/<setting key>.json``."""
    record_path = Path(record_path)
    return record_path.parent.parent / "samples" / f"{record_path.stem}.png"


def new_record(cell: CellLike, setting: Setting, metrics: dict[str, float], **parts: Any) -> dict[str, Any]:
    """A record of ``cell`` sampled with ``setting``: its names, the setting's fields, ``metrics`` and any
    further ``parts`` (nfe, num_samples, train, eval, solver_details, formulation, scorers, config, stamp)."""
    return {"grid": cell.grid_name, "variant": cell.variant, "dataset": cell.dataset, "seed": int(cell.seed),
            "backbone": getattr(cell, "backbone", "dit"), **setting.fields(), "metrics": metrics, **parts}


# ------------------------------------------------------------------------------------------ store

class ResultsStore:
    """The JSON record files under ``results_dir``: the one reader and writer of results."""

    def __init__(self, results_dir: Path | str) -> None:
        self.root = Path(results_dir)

    def cell_dir(self, cell: CellLike) -> Path:
        return cell_dir(self.root, cell.grid_name, cell.dataset, cell.variant, cell.seed,
                        getattr(cell, "backbone", "dit"))

    def record_path(self, cell: CellLike, setting: Setting) -> Path:
        """Where the record of ``cell`` sampled with ``setting`` lives."""
        return self.cell_dir(cell) / "records" / f"{setting.key}.json"

    def preview_path(self, cell: CellLike, setting: Setting) -> Path:
        return preview_path(self.record_path(cell, setting))

    def has_record(self, cell: CellLike, setting: Setting) -> bool:
        return self.record_path(cell, setting).exists()

    def record_fault(self, cell: CellLike, setting: Setting) -> str | None:
        """None if the record of ``cell`` at ``setting`` exists and reads back whole and as its own
        (:func:`read_record`); else why not (``missing``, or the reader's short reason)."""
        path = self.record_path(cell, setting)
        if not path.exists():
            return "missing"
        try:
            read_record(path, self.root)
        except RecordError as err:
            return err.reason
        return None

    def faults(self, cell: CellLike, settings: list[Setting]) -> dict[Setting, str]:
        """The ``settings`` of ``cell`` whose record is missing or damaged, with why (:meth:`record_fault`)."""
        return {s: fault for s in settings if (fault := self.record_fault(cell, s)) is not None}

    def setting_keys(self, cell: CellLike) -> set[str]:
        """The keys of the settings of ``cell`` that have a record."""
        return {p.stem for p in (self.cell_dir(cell) / "records").glob("*.json")}

    def write_record(self, record: dict[str, Any]) -> Path:
        """Validate the record's keys and write it atomically at its path; returns the path.

        Writing a record again (the same grid/dataset/variant/seed/setting) replaces it.
        """
        missing = [k for k in REQUIRED_KEYS if k not in record]
        if missing:
            raise ResultsError(
                f"A result record for variant {record.get('variant')!r} lacks the keys {missing}; every "
                f"record needs {list(REQUIRED_KEYS)} (see ablate/results.py)."
            )
        if not isinstance(record["metrics"], dict):
            raise ResultsError(
                f"The record for variant {record['variant']!r} has 'metrics' of type "
                f"{type(record['metrics']).__name__}; it must be a dict of metric name -> number."
            )
        clash = sorted(set(record["metrics"]) & set(_reserved_columns()))
        if clash:
            raise ResultsError(
                f"The metric names {clash} of variant {record['variant']!r} clash with record columns; "
                "rename the metrics (e.g. 'fd_probe')."
            )
        try:
            seed = int(record["seed"])
            setting = Setting.from_fields(record)
        except (TypeError, ValueError, AblateError) as err:
            raise ResultsError(f"The record of variant {record['variant']!r} has an invalid seed or setting "
                               f"(seed={record['seed']!r}): {err} Seed must be an integer.") from None
        cell = CellKey(str(record["grid"]), str(record["variant"]), str(record["dataset"]), seed,
                       str(record.get("backbone", "dit")))
        path = self.record_path(cell, setting)
        write_json_atomic(path, {**record, **setting.fields()})
        return path

    def record_files(self, grid: str | None = None) -> list[Path]:
        """Every record file of one grid (or of all grids), sorted."""
        pattern = f"{_check_name('grid name', grid) if grid else '*'}/*/*/seed*/records/*.json"
        return sorted(self.root.glob(pattern))

    def stray_files(self, grid: str) -> list[Path]:
        """Files in the grid's ``records/`` folders that are no record file (``*.json``), the atomic writer's
        temp files left by a killed writer excepted (the cell's next run removes them)."""
        pattern = f"{_check_name('grid name', grid)}/*/*/seed*/records/*"
        return sorted(p for p in self.root.glob(pattern)
                      if p.suffix != ".json" and not (p.name.startswith(".") and p.name.endswith(".tmp")))

    def grids(self) -> list[str]:
        """Names of the grids that have at least one record."""
        return sorted({p.relative_to(self.root).parts[0] for p in self.record_files()})

    def records(self, grid: str | None = None) -> list[dict[str, Any]]:
        """Every record (as written) of one grid or of all; a file that is no valid record at its place
        raises :class:`ResultsError` naming it (:func:`read_record`)."""
        return [read_record(p, self.root) for p in self.record_files(grid)]

    def frame(self, grid: str | None = None) -> "pd.DataFrame":
        """Every record as one DataFrame row.

        Columns: the scalar keys (grid, variant, dataset, seed, solver, steps, cfg, time_grid, weights,
        setting (the key), nfe, num_samples, version, git_commit, device, created); one column per
        metric named as the metric (missing metrics are NaN); ``train_<key>`` and ``eval_<key>`` for
        the train/eval summaries (``train_val_x0_mse_by_t`` holds a list); ``formulation``,
        ``scorers``, ``config`` as dicts; ``record`` (the whole nested record) and ``path``. An empty
        store gives an empty frame with the scalar columns.
        """
        import pandas as pd

        rows = [_flatten(read_record(p, self.root), p) for p in self.record_files(grid)]
        if not rows:
            return pd.DataFrame(columns=list(SCALAR_KEYS))
        frame = pd.DataFrame(rows)
        for key in SCALAR_KEYS:
            if key not in frame:
                frame[key] = None
        return frame


class RecordError(ResultsError):
    """A file in the store that is no valid record at its place: ``path`` and a short ``reason``."""

    def __init__(self, path: Path, reason: str, message: str) -> None:
        super().__init__(message)
        self.path, self.reason = path, reason


class CellKey:
    """A cell named by its four fields (what :class:`CellLike` asks), for code that has no grid."""

    def __init__(self, grid_name: str, variant: str, dataset: str, seed: int, backbone: str = "dit") -> None:
        self.grid_name, self.variant, self.dataset, self.seed = grid_name, variant, dataset, seed
        self.backbone = backbone


def read_record(path: Path, root: Path | None = None) -> dict[str, Any]:
    """The record at ``path``, checked: a JSON object with the required keys, a valid setting, metrics that
    are numbers (or null) and, given the store's ``root``, an identity (grid, dataset, variant, seed,
    setting) that names exactly this path. Anything else raises :class:`ResultsError` naming the file."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        reason = f"cannot be read ({type(err).__name__}: {_short(str(err))})"
        raise RecordError(path, reason, f"The result record {str(path)!r} {reason}. {DAMAGED_ADVICE}") from None
    if not isinstance(record, dict) or any(k not in record for k in REQUIRED_KEYS):
        reason = (f"a JSON {type(record).__name__}, not an object" if not isinstance(record, dict)
                  else f"lacks the keys {[k for k in REQUIRED_KEYS if k not in record]}")
        raise RecordError(path, reason, f"The file {str(path)!r} is not a result record ({reason}): it must be a "
                          f"JSON object with the keys {list(REQUIRED_KEYS)}. {DAMAGED_ADVICE}")
    try:
        setting = Setting.from_fields(record)
    except AblateError as err:
        raise RecordError(path, "an invalid setting", f"The result record {str(path)!r} has an invalid setting: "
                          f"{err} {DAMAGED_ADVICE}") from None
    metrics = record["metrics"]
    bad = {k: v for k, v in metrics.items() if not _is_number(v)} if isinstance(metrics, dict) else metrics
    if not isinstance(metrics, dict) or bad:
        reason = f"metrics that are not numbers ({_short(bad)})"
        raise RecordError(path, reason, f"The result record {str(path)!r} has {reason}; every metric must be a "
                          f"number or null. {DAMAGED_ADVICE}")
    if (reason := resampling.problem(record)) is not None:
        raise RecordError(path, reason, f"The result record {str(path)!r} has {reason}. {DAMAGED_ADVICE}")
    if root is not None:
        try:
            where = ResultsStore(root).record_path(
                CellKey(str(record["grid"]), str(record["variant"]), str(record["dataset"]), int(record["seed"]),
                        str(record.get("backbone", "dit"))), setting)
        except (TypeError, ValueError, AblateError):
            where = None
        if where != path:
            raise RecordError(
                path, f"holds the record of {record['variant']!r}, seed {record['seed']!r}, setting {setting.key!r}: "
                "a copy or a moved file", f"The file {str(path)!r} holds the record of grid {record['grid']!r}, dataset {record['dataset']!r}, "
                f"variant {record['variant']!r}, seed {record['seed']!r}, setting {setting.key!r}, whose place is "
                f"{str(where)!r}: a copy or a moved file. Move it out of the results directory (the record at its "
                "own place, if any, is the one that counts).")
    record.update(setting.fields())
    if "solver_details" not in record and "sampler" in record:
        record["solver_details"] = record["sampler"]  # its name before the rename
    return record


DAMAGED_ADVICE = ("Records are written atomically, so this file was changed by something else: run its grid again "
                  "(`python -m ablate run GRID_FILE --results DIR`), which re-evaluates exactly the damaged or missing "
                  "records from the cell's checkpoint (or trains the cell again if that is gone), or delete the file "
                  "to leave that setting out.")


def _is_number(value: Any) -> bool:
    return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool))


def _short(value: Any, limit: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _reserved_columns() -> tuple[str, ...]:
    return SCALAR_KEYS + DICT_KEYS + ("record", "path")


def _flatten(record: dict[str, Any], path: Path) -> dict[str, Any]:
    row: dict[str, Any] = {k: record.get(k) for k in SCALAR_KEYS}
    row["setting"] = Setting.from_fields(record).key
    row["backbone"] = record.get("backbone") or "dit"  # records from before the backbone axis are DiT's
    for name, value in record["metrics"].items():
        row[name] = math.nan if value is None else value
    for prefix in ("train", "eval"):
        for key, value in (record.get(prefix) or {}).items():
            row[f"{prefix}_{key}"] = value
    for key in DICT_KEYS:
        row[key] = record.get(key) or {}
    row["record"] = record
    row["path"] = str(path)
    return row


# ------------------------------------------------------------------------------------ provenance

@functools.lru_cache(maxsize=1)
def git_commit() -> str | None:
    """The commit of the checkout this package runs from (``+dirty`` if it has local changes); None outside git.

    ``ABLATE_GIT_COMMIT`` names it instead, for a tree copied without its own ``.git`` (the device machine's
    copy of a working tree carries another commit's ``.git``): the one who sent the tree says which it was."""
    named = env_commit("ABLATE_GIT_COMMIT")
    if named is not None:
        return named
    here = Path(__file__).resolve().parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{head}+dirty" if dirty else head or None


def provenance_stamp(device: str | None = None) -> dict[str, Any]:
    """``{version, git_commit, device, created}`` for a record; ``device`` defaults to the torch device in use.

    ``created`` is UTC in ISO 8601 with a ``Z`` (e.g. ``2026-11-22T18:00:00Z``).
    """
    if device is None:
        device = _default_device()
    created = datetime.now(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    return {"version": __version__, "git_commit": git_commit(), "device": device, "created": created}


def _default_device() -> str:
    import torch  # only the writer needs torch; the leaderboard does not

    if torch.cuda.is_available():
        return f"cuda ({torch.cuda.get_device_name(0)})"
    return "cpu"
