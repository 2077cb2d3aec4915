"""What in a grid's results store cannot be ranked as it is: damaged records, stray files, records away from
their place, and settings some cells lack. Read by ``leaderboard`` (torch-free, like :mod:`ablate.results`).

- :func:`problems`: every file under the grid's ``records/`` folders that is no valid record at its own
  place (:func:`ablate.results.read_record`: unreadable, binary, not a JSON object, metrics that are not
  numbers, an identity that names another path, e.g. ``... (copy).json``), and every other file there.
  ``leaderboard`` refuses to rank such a store (:func:`refusal`): a wrong number in a published table is
  worse than no table.
- :func:`missing_settings`: the cells ranked on fewer settings than their dataset's others, with the
  record files they lack; ``leaderboard`` ranks them and flags them at the top.
"""

from __future__ import annotations

from pathlib import Path

from ablate.config.setting import Setting
from ablate.errors import AblateError
from ablate.results import RecordError, ResultsStore, CellKey, read_record

SHOWN = 8  # files named in one message; the rest are counted


def problems(store: ResultsStore, grid: str) -> list[tuple[Path, str]]:
    """(file, what is wrong with it) for every file of ``grid``'s records folders that is no valid record."""
    out = [(path, "not a record file (*.json)") for path in store.stray_files(grid)]
    for path in store.record_files(grid):
        try:
            read_record(path, store.root)
        except RecordError as err:
            out.append((path, err.reason))
    return sorted(out)


def refusal(found: list[tuple[Path, str]], results: Path, grid: str) -> AblateError:
    """The one-paragraph error of a store with :func:`problems`."""
    named = "; ".join(f"{path} ({reason})" for path, reason in found[:SHOWN])
    more = f"; and {len(found) - SHOWN} more" if len(found) > SHOWN else ""
    return AblateError(
        f"The results of grid {grid!r} in {str(results)!r} hold {len(found)} file{'s' if len(found) > 1 else ''} "
        f"that {'are' if len(found) > 1 else 'is'} no valid record at its place, so no leaderboard is drawn: "
        f"{named}{more}. A damaged record is re-evaluated from its cell's checkpoint (the cell is trained again if "
        f"that is gone) by running the grid again: `python -m ablate run GRID_FILE --results {results}` (or delete it "
        "to rank without that setting); move a copy, a record away from its place or any other file out of the "
        "records/ folders.")


def missing_settings(store: ResultsStore, grid: str) -> list[str]:
    """One line per variant whose cells lack settings that other cells of their dataset have (so it is ranked
    on fewer settings), naming the missing record files (the first few); empty when every cell is whole."""
    have: dict[tuple[str, str, int, str], set[Setting]] = {}
    for record in store.records(grid):
        cell = (str(record["variant"]), str(record["dataset"]), int(record["seed"]), str(record.get("backbone", "dit")))
        have.setdefault(cell, set()).add(Setting.from_fields(record))
    wanted: dict[str, set[Setting]] = {}
    for (_, dataset, _, _), settings in have.items():
        wanted.setdefault(dataset, set()).update(settings)
    lacking: dict[str, list[Path]] = {}
    for (variant, dataset, seed, backbone), settings in sorted(have.items()):
        name = variant if backbone == "dit" else f"{variant} @ {backbone}"
        for setting in sorted(wanted[dataset] - settings):
            lacking.setdefault(name, []).append(store.record_path(CellKey(grid, variant, dataset, seed, backbone), setting))
    lines = []
    for variant, paths in lacking.items():
        shown = ", ".join(str(p) for p in paths[:SHOWN]) + (f" and {len(paths) - SHOWN} more" if len(paths) > SHOWN else "")
        lines.append(f"MISSING RECORDS: {variant} lacks {len(paths)} record{'s' if len(paths) > 1 else ''} that other "
                     f"cells of its dataset have, so it is ranked on fewer settings: {shown}. Run the grid again to "
                     "evaluate them (from the cell's checkpoint).")
    return lines
