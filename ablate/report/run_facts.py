"""Facts about how the records were made, counted from the records themselves, so that a leaderboard's run
notes can quote them rather than recount them by hand: records from trees with uncommitted changes, cells
trained in more than one run, and the recorded cost (issue 26's errata: "twelve" resumed cells where 40 of 72
were; 684 of 864 records written from ``+dirty`` trees)."""

from __future__ import annotations

from typing import Any

import pandas as pd


def _number(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0


def facts(frame: pd.DataFrame) -> list[str]:
    """Header lines: dirty records, resumed cells (and those whose earlier runs are not recorded), recorded cost."""
    dirty = int(frame["git_commit"].astype(str).str.endswith("+dirty").sum())
    lines = [f"Clean code: {'all' if not dirty else len(frame) - dirty} of {len(frame)} records were written from "
             "a committed tree" + (f"; {dirty} from trees with uncommitted changes (+dirty): no commit reproduces "
                                   "them exactly." if dirty else ".")]
    cells = frame.drop_duplicates(["variant", "dataset", "seed"])
    trains = [(r or {}).get("train") or {} for r in cells["record"]]
    resumed = [t for t in trains if _number(t.get("resumed_from_step")) > 0 or _number(t.get("runs")) > 1]
    unrecorded = [t for t in resumed if "runs" not in t]
    train_hours = sum(_number(t.get("gpu_hours")) for t in trains)
    eval_hours = sum(_number(((r or {}).get("eval") or {}).get("gpu_hours")) for r in frame["record"])
    lines.append(f"Resumed cells: {len(resumed)} of {len(cells)} cells were trained in more than one run (cut and "
                 "resumed from a checkpoint)" + (f"; {len(unrecorded)} of them keep no record of their earlier runs, "
                                                  "so their recorded training time is their last run's only."
                                                  if unrecorded else "."))
    lines.append(f"Recorded cost: training {train_hours:.2f} GPU-hours over {len(cells)} cells and evaluation "
                 f"{eval_hours:.2f} GPU-hours over {len(frame)} records, as the records count them (each process's "
                 "share of its GPU x wall time); device time held by the runs is in their run notes.")
    return lines
