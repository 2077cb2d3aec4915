"""How far each formulation's Euler sampler is from the exact answer at few steps, with the exact
denoiser of Gaussian data (the oracle of tests/test_formulation_oracle.py): a report, not a test.

Error = max over dimensions of |mean - mean*| and |std - std*|, where (mean*, std*) is the
sampler's exact continuum limit; the ratio column divides by rf's error at the same step count.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from test_formulation_oracle import TRAJECTORIES, sampler_moments  # noqa: E402


def error(name: str, steps: int, grid: str) -> float:
    mean, std, want_mean, want_std = sampler_moments(name, steps, time_grid=grid)
    return float(torch.cat([mean - want_mean, std - want_std]).abs().max())


def main() -> None:
    steps_list = (5, 10, 25, 50)
    for grid in ("own", "rf"):
        table = Table(title=f"Euler error with the exact denoiser, time_grid={grid}")
        table.add_column("trajectory")
        for s in steps_list:
            table.add_column(f"{s} steps", justify="right")
        table.add_column("5-step / rf's", justify="right")
        rf = {s: error("rf", s, grid) for s in steps_list}
        for name in TRAJECTORIES:
            errs = {s: error(name, s, grid) for s in steps_list}
            table.add_row(name, *(f"{errs[s]:.4f}" for s in steps_list), f"{errs[5] / rf[5]:.2f}")
        Console().print(table)


if __name__ == "__main__":
    main()
