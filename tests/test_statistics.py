"""The leaderboard's statistics on synthetic records whose truth is known: rank correlation with the paper,
Figure 3's bootstrap test, and the EMA start option (interval coverage: tests/test_intervals.py)."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from ablate.report import agreement
from ablate.report import intervals
from ablate.report import paper
from ablate.report import rank_stats
from ablate.report import statistics
from ablate.report.ranking import non_dominated_ranks
from ablate.report.statistics import SeedArray

PAPER_VARIANTS = list(paper.TABLE1)


def _frame(quality: dict[str, float], seeds=(0, 1), settings=((5, 5.0), (50, 5.0)), noise=0.0, seed=0,
           train=None) -> pd.DataFrame:
    """Records as ResultsStore.frame gives them: higher quality = higher alignment and lower fidelity."""
    rng = np.random.default_rng(seed)
    rows = []
    for (variant, q), s, (steps, cfg), weights in itertools.product(quality.items(), seeds, settings, ("ema", "raw")):
        key = f"{steps}steps-cfg{cfg!r}-own-{weights}"
        eps = rng.normal(0, noise)
        record = {"variant": variant, "steps": steps, "time_grid": "own", "solver_details": {},
                  "train": (train or {}).get(variant, {})}
        rows.append({"grid": "g", "variant": variant, "dataset": "d", "seed": s, "solver": "euler", "steps": steps,
                     "cfg": cfg, "time_grid": "own", "weights": weights, "setting": key,
                     "align": q + eps, "fd": 100.0 - q + eps, "record": record, "config": {}, "scorers": {}})
    return pd.DataFrame(rows)


def test_batch_ranks_match_the_reference_sorting():
    rng = np.random.default_rng(0)
    for _ in range(200):
        n = int(rng.integers(1, 12))
        a, f = rng.integers(0, 4, (3, n)).astype(float), rng.integers(0, 4, (3, n)).astype(float)
        a[rng.random((3, n)) < 0.1] = np.nan
        got = statistics.batch_ranks(a, f, np.ones((3, n), bool))
        for row in range(3):
            assert got[row].tolist() == non_dominated_ranks(a[row], f[row]).tolist()
    inactive = statistics.batch_ranks(np.array([[1.0, 2.0, 3.0]]), np.array([[1.0, 1.0, 1.0]]),
                                      np.array([[True, False, True]]))
    assert inactive[0, 0] == 2 and np.isnan(inactive[0, 1]) and inactive[0, 2] == 1


@pytest.mark.parametrize("direction", [1, -1])
def test_rho_is_exact_on_the_paper_order_and_its_reverse(direction):
    """Records whose every setting ranks the variants in Table 1's 'all' order (or its reverse) give rho = +-1
    for 'all', whatever variants outside the paper do (they are ranked separately)."""
    truth = paper.paper_column("all")
    quality = {v: -direction * truth[v] for v in PAPER_VARIANTS}
    quality["rf/lognorm(0.00, 0.20)"] = 1e3  # not in the paper: best everywhere, must not move rho
    table = agreement.agreement(_frame(quality), "align", "fd", permutations=200)[0]
    row = table.set_index("paper column").loc["all"]
    assert row["rho"] == direction and row["variants"] == len(PAPER_VARIANTS)


def test_rho_on_a_permuted_table_matches_scipy():
    rng = np.random.default_rng(3)
    truth = paper.paper_column("5 steps")
    for _ in range(3):
        shuffled = dict(zip(PAPER_VARIANTS, rng.permutation([truth[v] for v in PAPER_VARIANTS])))
        table = agreement.agreement(_frame({v: -shuffled[v] for v in PAPER_VARIANTS}), "align", "fd",
                                    permutations=200)[0]
        got = table.set_index("paper column").loc["5 steps", "rho"]
        expected = spearmanr([shuffled[v] for v in PAPER_VARIANTS], [truth[v] for v in PAPER_VARIANTS]).statistic
        assert got == pytest.approx(expected, abs=1e-12)


def _figure3_array(rng: np.random.Generator, log_loss: dict[str, float], seeds: int, sigma: float) -> SeedArray:
    """Fidelity f50 = 10, f5 = 10 exp(log_loss); per-seed multiplicative noise exp(N(0, sigma))."""
    variants = list(log_loss)
    settings = pd.DataFrame({"dataset": ["d", "d"], "setting": ["a", "b"], "steps": [5, 50], "cfg": [5.0, 5.0],
                             "time_grid": ["own", "own"], "weights": ["ema", "ema"]})
    base = np.array([[10.0 * np.exp(log_loss[v]), 10.0] for v in variants])[..., None]
    fidelity = base * np.exp(rng.normal(0, sigma, (len(variants), 2, seeds)))
    return SeedArray(variants, settings, list(range(seeds)), np.zeros_like(fidelity), fidelity,
                     np.ones_like(fidelity, bool))


def test_figure3_interval_covers_at_the_nominal_rate():
    """Truth D = 0.6 - 0.2 = 0.4. Over 200 simulated grids of 20 seeds each the 95% percentile interval must
    cover D in 89-99% of them: the binomial SD of a 95% rate over 200 trials is 1.5%, so +-3 SD is +-4.6%, and a
    percentile bootstrap of a mean over 20 draws under-covers by about 1-2% (its intervals are too narrow by
    sqrt((n-1)/n) and ignore the t tails); 0.95 - 0.046 - 0.015 = 0.89. The log of a seed mean of lognormal
    noise is biased by the same sigma^2/2 at 5 and 50 steps, so D is unbiased."""
    rng = np.random.default_rng(11)
    log_loss = {"rf": 0.2, "rf/cosmap": 0.2, "eps/linear": 0.6, "v/cos": 0.6}
    hits = 0
    for _ in range(200):
        data = _figure3_array(rng, log_loss, seeds=20, sigma=0.3)
        result = rank_stats.figure3_test(data, statistics.seed_counts(20, 400, rng))
        hits += result["low"] <= 0.4 <= result["high"]
    assert 0.89 <= hits / 200 <= 0.99, hits


def test_ema_start_restarts_the_average_until_then():
    import torch

    from ablate.engine.train import EMA

    net = torch.nn.Linear(3, 2)
    ema = EMA(net, 0.5)
    for value in (1.0, 2.0):
        torch.nn.init.constant_(net.weight, value)
        ema.update_parameters(net, restart=True)  # before ema.start: a copy
        assert torch.equal(ema.module.weight, net.weight)
    torch.nn.init.constant_(net.weight, 4.0)
    ema.update_parameters(net)  # from ema.start: averaging, starting from the last copy
    assert torch.allclose(ema.module.weight, torch.full((2, 3), 3.0))


def test_a_variant_with_fewer_seeds_is_not_ranked_missing_in_replicates_without_them():
    """A grid part-way through its seeds: 'best' has seed 0 only, the others seeds 0-2. A replicate that draws
    no seed 0 must not rank 'best' as missing (last): it takes the mean of the seeds it has, so it stays first
    in every replicate and its interval is its point."""
    frame = _frame({"best": 10.0, "mid": 5.0, "low": 0.0}, seeds=(0, 1, 2), noise=0.1)
    frame = frame[(frame["variant"] != "best") | (frame["seed"] == 0)]
    data = statistics.seed_array(frame, "align", "fd")
    masks = {"all": np.ones(len(data.settings), bool)}
    counts = statistics.seed_counts(len(data.seeds), 200, np.random.default_rng(0))
    assert (counts[:, 0] == 0).sum() > 10  # replicates without seed 0 are drawn
    boot = statistics.average_ranks(data, counts, masks)["all"]
    assert np.all(boot[:, data.variants.index("best")] == 1.0)
    means = statistics.weighted_means(data.fidelity, data.present, counts)
    assert np.all(np.isfinite(means))
    line = intervals.uncertainty_line(len(data.seeds), "fd", fewest=1, bootstrap_replicates=200)
    assert "only 1 of the 3" in line and "Unequal" not in intervals.uncertainty_line(3, "fd", 3, 200)
    assert "4.30 x SE at 3 seeds" in line


def test_rank_intervals_are_moderated_t_intervals_of_the_per_seed_ranks_within_the_possible_range():
    frame = _frame({"a": 3.0, "b": 2.0, "c": 1.0}, seeds=(0, 1, 2), noise=2.0, seed=4)
    table = rank_stats.rank_stats(frame, "align", "fd", replicates=20).table.set_index("variant")
    data = statistics.seed_array(frame, "align", "fd")
    per_seed = intervals.per_seed_average_ranks(data, {"all": np.ones(len(data.settings), bool)})["all"]
    means, lows, highs = intervals.moderated_t_interval(per_seed, resolution=1 / len(data.settings))
    for i, variant in enumerate(data.variants):
        mean, low, high = means[i], lows[i], highs[i]
        assert table.loc[variant, "per seed"] == pytest.approx(mean)
        assert table.loc[variant, "per seed low"] == pytest.approx(max(low, 1.0))
        assert table.loc[variant, "per seed high"] == pytest.approx(min(high, 3.0))
    assert (table["per seed low"] >= 1).all() and (table["per seed high"] <= 3).all()
    assert (table["per seed low"] == 1).any()  # noise this large: some interval reaches the best possible rank
