"""Agreement with the paper measured honestly (issue 26, part 4): the permutation p-value of rho, on Table 1
against itself and against permuted copies of it, and the readings of the sensitivity table."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import kstest, spearmanr

from ablate.report import agreement, paper

TABLE1 = np.array([paper.paper_column("all")[v] for v in paper.TABLE1])


def test_table1_against_itself_is_as_significant_as_the_permutations_can_say():
    assert agreement.permutation_p(TABLE1, TABLE1) == pytest.approx(1 / (1 + agreement.PERMUTATIONS))
    assert agreement.permutation_p(TABLE1, -TABLE1) == 1.0  # the reverse order: no evidence of agreement
    assert agreement.permutation_p(TABLE1, -TABLE1, two_sided=True) < 1e-3


def test_p_values_against_permuted_copies_of_table1_are_uniform():
    """H0 true by construction: 300 random permutations of Table 1's 'all' column. Their p-values must be
    uniform: a Kolmogorov-Smirnov test does not reject, and 5% +- 3.8% (3 SD) of them fall below 0.05."""
    rng = np.random.default_rng(2026)
    ps = np.array([agreement.permutation_p(rng.permutation(TABLE1), TABLE1, permutations=2000, seed=i)
                   for i in range(300)])
    assert kstest(ps, "uniform").pvalue > 0.01
    assert abs(np.mean(ps < 0.05) - 0.05) < 0.038 and abs(np.mean(ps < 0.5) - 0.5) < 0.09


def test_the_monte_carlo_p_matches_the_exact_one_and_small_samples_are_exact():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=7), rng.normal(size=7)
    exact = agreement.permutation_p(x, y)  # 7! = 5040 <= PERMUTATIONS: every permutation
    rho = spearmanr(x, y).statistic
    rx, ry = np.argsort(np.argsort(x)), np.argsort(np.argsort(y))  # no ties: rho = 1 - 6 sum d^2 / (n (n^2 - 1))
    perms = np.array(list(itertools.permutations(range(7))))
    brute = np.mean(1 - 6 * ((rx - ry[perms]) ** 2).sum(1) / (7 * 48) >= rho - 1e-12)
    assert exact == pytest.approx(brute)
    x = rng.normal(size=16)
    y = x + 2 * rng.normal(size=16)
    sampled = agreement.permutation_p(x, y)
    # the t approximation of Spearman's null distribution is close at n = 16
    r = spearmanr(x, y).statistic
    from scipy.stats import t

    approx = t.sf(r * math.sqrt(14 / (1 - r * r)), 14)
    assert sampled == pytest.approx(approx, abs=0.02)


def _frame() -> pd.DataFrame:
    """The paper's 16 variants with metrics from their Table 1 rank; at 50 steps cfg 1 the order is reversed and at
    cfg 2.5 only the fidelity carries it; raw weights carry no signal (constant metrics)."""
    rows = []
    for variant, (all_, five, fifty) in paper.TABLE1.items():
        for steps, cfg, weights in itertools.product((5, 50), (1.0, 2.5, 5.0), ("ema", "raw")):
            if steps == 5 and cfg != 5.0:
                continue
            q = -(five if steps == 5 else fifty)
            a, f = (q, -q) if cfg != 1.0 else (-q, q)
            if cfg == 2.5:
                a = 0.0
            if weights == "raw":
                a, f = 0.0, 0.0
            rows.append({"variant": variant, "dataset": "d", "seed": 0, "steps": steps, "cfg": cfg,
                         "time_grid": "own", "weights": weights, "setting": f"{steps}-{cfg}-{weights}",
                         "align": a, "fd": f})
    return pd.DataFrame(rows)


def test_every_reading_is_shown_with_the_headline_first():
    headline, others, note = agreement.agreement(_frame(), "align", "fd", permutations=2000)
    assert headline["reading"].tolist() == ["all settings, all weights, both metrics", "5 steps, all weights, both metrics",
                                            "50 steps cfg 5, all weights, both metrics"]
    rho = dict(zip(others["reading"], others["rho"]))
    assert rho["50 steps cfg 1, all weights, both metrics"] == pytest.approx(-1.0)
    assert rho["50 steps cfg 2.5, all weights, both metrics"] == pytest.approx(1.0)  # fidelity alone carries it
    assert rho["50 steps cfg 5, EMA only, both metrics"] == pytest.approx(1.0)
    assert math.isnan(rho["50 steps cfg 5, raw only, both metrics"])  # constant: no correlation
    assert rho["5 steps, all weights, alignment alone"] == pytest.approx(1.0)
    assert headline.loc[1, "rho"] == pytest.approx(1.0) and headline.loc[1, "p (one-sided)"] == "< 0.0005"
    p = dict(zip(others["reading"], others["p (one-sided)"]))
    assert p["50 steps cfg 1, all weights, both metrics"] == "1.000"
    assert "cfg 5" in note and "16 variants" in note and "one-sided" in note


def test_a_backbone_grid_draws_no_rank_correlation_with_table1():
    """(variant @ backbone) pairs are not Table 1's formulations on one backbone: no rho, and the note says where the
    backbone comparison is (the same frame without the axis gets its rho)."""
    frame = _frame()
    headline, others, note = agreement.agreement(frame.assign(formulation_variant=frame["variant"]), "align", "fd",
                                                 permutations=200)
    assert headline.empty and others.empty and "(variant @ backbone) pairs" in note and "Figure 4" in note
    assert not agreement.agreement(frame, "align", "fd", permutations=200)[0].empty


def test_positions_are_quoted_from_the_paper_pool():
    frame = _frame()
    extra = frame[frame["variant"] == "rf"].assign(variant="rf/mode(1.00)")  # a variant the paper never ran
    extra["fd"] -= 100.0  # far better than all: first of the grid's pool, absent from the paper's
    frame = pd.concat([frame, extra])
    grid_ranks = pd.Series({v: float(i) for i, v in enumerate(["rf/mode(1.00)", *paper.TABLE1])})
    table = agreement.pool_positions(frame, grid_ranks, "align", "fd").set_index("variant")
    assert "rf/mode(1.00)" not in table.index and len(table) == 16
    assert table.loc["rf/lognorm(0.00, 1.00)", "paper position"] == "1"
    assert table.loc["rf/lognorm(0.00, 1.00)", "position (all variants)"] == "2"  # one variant outside the pool ahead
