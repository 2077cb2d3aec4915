"""Convergence and stability as numbers (issue 26, part 2): last-quarter gain, largest jumps, EMA against raw,
and the warning that names exactly the variants missing the criterion."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest

from ablate.report import convergence


def _train(ema: list[float], raw: list[float] | None = None, every: int = 1000, val_loss: float | None = None,
           val_loss_raw: float | None = None) -> dict:
    raw = raw if raw is not None else [v * 1.03 for v in ema]
    curve = [{"step": every * (i + 1), "val/ema_loss": e, "val/raw_loss": r} for i, (e, r) in enumerate(zip(ema, raw))]
    return {"val_curve": curve, "val_loss": val_loss if val_loss is not None else min(ema),
            "val_loss_raw": val_loss_raw if val_loss_raw is not None else raw[int(np.argmin(ema))]}


FLAT = [0.20, 0.17, 0.160, 0.155, 0.1510, 0.1505, 0.1503, 0.1502]  # 0.2% over the last quarter (6k -> 8k)
CREEPING = [0.20, 0.17, 0.160, 0.155, 0.150, 0.148, 0.146, 0.144]   # 2.7%


def test_last_quarter_gain_compares_the_last_validation_with_the_one_at_three_quarters():
    assert convergence.cell_numbers(_train(FLAT))["gain"] == pytest.approx(1 - 0.1502 / 0.1505)
    assert convergence.cell_numbers(_train(CREEPING))["gain"] == pytest.approx(1 - 0.144 / 0.148)
    assert math.isnan(convergence.cell_numbers(_train([0.2]))["gain"])  # one validation: no earlier point
    assert math.isnan(convergence.cell_numbers({})["gain"])              # no curve


def test_largest_jump_is_the_rise_above_the_lowest_earlier_validation():
    raw = [0.30, 0.25, 0.26, 0.24, 0.23, 0.40, 0.24, 0.23]  # +4% at 3k, then +73.9% at 6k over the best (0.23)
    numbers = convergence.cell_numbers(_train(FLAT, raw))
    assert numbers["jump_raw"] == pytest.approx(0.40 / 0.23 - 1) and numbers["jump_raw_step"] == 6000
    assert numbers["jump_ema"] < 0 and numbers["jump_ema_step"] == 8000  # never rose: its smallest fall (8k)
    drift = [0.20, 0.19, 0.192, 0.194, 0.196]  # each step +1%, above the best +3.2% at the end
    assert convergence.cell_numbers(_train(drift))["jump_ema"] == pytest.approx(0.196 / 0.19 - 1)
    assert convergence.largest_jump([(1, 0.2), (2, float("nan"))])[0] == math.inf  # a non-finite loss


def _frame(trains: dict[tuple[str, int], dict], ema_worse: set[str] = frozenset()) -> pd.DataFrame:
    rows = []
    for (variant, seed), train in trains.items():
        for steps, weights in itertools.product((5, 50), ("ema", "raw")):
            bad = weights == "ema" and variant in ema_worse
            rows.append({"variant": variant, "dataset": "d", "seed": seed, "steps": steps, "cfg": 5.0,
                         "time_grid": "own", "weights": weights, "fd": 10.0 + bad, "align": 0.9 - 0.1 * bad,
                         "record": {"train": train}})
    return pd.DataFrame(rows)


def test_the_warning_names_exactly_the_variants_that_miss_the_criterion():
    spike = [0.20, 0.17, 0.160, 0.155, 0.1510, 0.1505, 0.1600, 0.1502]  # +6.3% at 7k in one seed
    trains = {("rf", 0): _train(FLAT), ("rf", 1): _train(FLAT),
              ("v/cos", 0): _train(FLAT), ("v/cos", 1): _train(CREEPING),            # one seed still gains
              ("eps/linear", 0): _train(FLAT), ("eps/linear", 1): _train(spike),    # one seed jumps
              ("edm/rf", 0): {}, ("edm/rf", 1): {}}                                 # no curve: not checked
    table = convergence.variant_table(_frame(trains, ema_worse={"rf"}), "align", "fd").set_index("variant")
    assert table.loc["rf", "meets"] is True and table.loc["v/cos", "meets"] is False
    assert table.loc["eps/linear", "meets"] is False and table.loc["edm/rf", "meets"] is None
    assert table.loc["eps/linear", "jump_ema"] == pytest.approx(0.16 / 0.1505 - 1)
    assert table.loc["eps/linear", "jump_ema_seed"] == 1 and table.loc["eps/linear", "jump_ema_step"] == 7000
    assert table.loc["v/cos", "gain_max"] == pytest.approx(1 - 0.144 / 0.148)
    assert table.loc["rf", "ema_fidelity_worse"] == 1.0 and table.loc["rf", "ema_alignment_worse"] == 1.0
    assert table.loc["v/cos", "ema_fidelity_worse"] == 0.0
    assert table.loc["rf", "ema_vs_raw"] == pytest.approx(1 / 1.03 - 1)
    line = convergence.warning_line(table.reset_index())
    assert line.startswith("Convergence WARNING: 2 of 4 variants miss the criterion")
    assert line.count("eps/linear") == 1 and line.count("v/cos") == 1 and ", rf" not in line
    assert "1 variant(s) have no validation curve in their records and are not checked: edm/rf." in line
    shown = convergence.shown(table.reset_index(), ["rf", "eps/linear", "v/cos", "edm/rf"]).set_index("variant")
    assert shown.loc["eps/linear", "largest jump EMA"] == "+6.3% (7k, seed 1)"
    assert shown.loc["rf", "largest jump EMA"] == "none" and shown.loc["rf", "criterion"] == "meets"
    assert shown.loc["v/cos", "last-quarter gain [seeds]"] == "+1.45% [+0.20%, +2.70%]"
    assert shown.loc["edm/rf", "criterion"] == "n/a" and shown.index.tolist()[0] == "rf"
    clean = convergence.variant_table(_frame({("rf", 0): _train(FLAT)}), "align", "fd")
    assert convergence.warning_line(clean).startswith("Convergence: all 1 checked variants meet the criterion")
