"""Issue 26's convergence and stability criteria on the records of sizing runs (or any results directory).

    python benchmarks/sizing/criteria.py /tmp/sizing-v2            # every grid found there
    python benchmarks/sizing/criteria.py leaderboard/archive/fashion-mnist-v1/results   # leaderboard v1: the baseline

Prints, per grid (one (peak lr, schedule, steps) point of the sizing), the peak rate, schedule and steps its
records carry, how many variants meet the criteria (no validation-loss jump above 3% in any cell, last-quarter
EMA validation gain below 0.5% in every cell: :mod:`ablate.report.convergence`) and the per-variant numbers
the leaderboard shows.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ablate.report import convergence, ranking
from ablate.report.leaderboard import markdown_table
from ablate.results import ResultsStore


def main(root: Path) -> None:
    store = ResultsStore(root)
    for grid in store.grids():
        frame = store.frame(grid)
        if frame.empty:
            continue
        train = (frame["config"].iloc[-1] or {}).get("train") or {}
        schedule = train.get("lr_schedule") or {"kind": "constant (before the option)"}
        table = convergence.variant_table(frame, ranking.choose_metric(frame, "alignment"),
                                          ranking.choose_metric(frame, "fidelity"))
        meets = int(table["meets"].eq(True).sum()) if not table.empty else 0
        print(f"## {grid}: lr {train.get('lr')}, {schedule.get('kind')} (min ratio {schedule.get('min_lr_ratio', 'n/a')}), "
              f"{train.get('max_steps')} steps, {frame.drop_duplicates(['variant', 'seed']).shape[0]} cells\n")
        print(f"{meets} of {len(table)} variants meet the criteria. {convergence.warning_line(table)}\n")
        if not table.empty:
            print(markdown_table(convergence.shown(table, sorted(table["variant"]))) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "leaderboard/archive/fashion-mnist-v1/results"))
