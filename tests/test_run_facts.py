"""Counts the run notes quote, made from the records (issue 26's errata)."""

from __future__ import annotations

import pandas as pd

from ablate.report.run_facts import facts


def test_dirty_records_resumed_cells_and_cost_are_counted_from_the_records():
    trains = {0: {"gpu_hours": 0.5}, 1: {"gpu_hours": 0.25, "resumed_from_step": 3000},           # earlier run lost
              2: {"gpu_hours": 0.25, "resumed_from_step": 3000, "runs": 2}, 3: {"gpu_hours": 0.5, "runs": 1}}
    rows = [{"variant": "rf", "dataset": "d", "seed": seed, "git_commit": "abc+dirty" if seed < 2 and k == 0 else "abc",
             "record": {"train": train, "eval": {"gpu_hours": 0.01}}}
            for seed, train in trains.items() for k in range(3)]
    lines = facts(pd.DataFrame(rows))
    assert lines[0] == ("Clean code: 10 of 12 records were written from a committed tree; 2 from trees with "
                        "uncommitted changes (+dirty): no commit reproduces them exactly.")
    assert lines[1].startswith("Resumed cells: 2 of 4 cells were trained in more than one run")
    assert "; 1 of them keep no record of their earlier runs" in lines[1]
    assert lines[2].startswith("Recorded cost: training 1.50 GPU-hours over 4 cells and evaluation 0.12 GPU-hours")
    clean = facts(pd.DataFrame(rows).assign(git_commit="abc"))
    assert clean[0] == "Clean code: all of 12 records were written from a committed tree."
