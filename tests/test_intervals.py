"""Coverage of the leaderboard's intervals at 3 and 5 training seeds, by simulation (issue 26, part 3).

A generative model of per-seed metric values with known truth: 8 variants of evenly spaced quality over 6
settings; each training seed adds a seed effect shared by the variant's settings (alignment up, fidelity
down together) and an independent per-setting noise, which stands for the sample noise within a setting (a
metric computed from the seed's own samples). Truths:

- the t-interval of the per-seed average rank targets the expected average rank of one training run, T2
  (estimated from 2,000 simulated seeds);
- the old percentile bootstrap of the rank of the seed means targets the rank of the true means, T1.

Measured while writing this test (150 simulations per case), coverage (nominal 95%), mean over the 8 variants
and the lowest variant's:

| noise (seed, setting) | seeds | moderated t (T2) | plain t (T2) | percentile bootstrap (T1) |
|---|---:|---:|---:|---:|
| 0.3, 0.3 | 3 | 0.97, lowest 0.95 | 0.93, lowest 0.73 | 0.73 |
| 0.3, 0.3 | 5 | 0.98, lowest 0.95 | 0.97, lowest 0.96 | 0.75 |
| 0.6, 0.6 | 3 | 0.97, lowest 0.95 | 0.95, lowest 0.92 | |
| 0.6, 0.6 | 5 | 0.98, lowest 0.96 | 0.97, lowest 0.94 | |
| 0.5, 0.1 | 3 | 0.97, lowest 0.94 | 0.93, lowest 0.68 | |
| 0.5, 0.1 | 5 | 0.97, lowest 0.93 | 0.96, lowest 0.91 | |

The plain t-interval's lowest coverage is the best variant's: first in most runs, now and then much worse, so
three runs often agree exactly and give a zero-width interval. Moderating each variant's seed variance toward
the median over variants (:func:`ablate.report.intervals.moderated_t_interval`) removes that failure and
narrows the mean interval (0.68 against 0.99 rank units at 3 seeds, 0.3/0.3).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ablate.report import intervals, statistics
from ablate.report.statistics import SeedArray

V, S = 8, 6
SETTINGS = pd.DataFrame({"dataset": ["d"] * S, "setting": list("abcdef"), "steps": [5] * S, "cfg": [5.0] * S,
                         "time_grid": ["own"] * S, "weights": ["ema"] * S})
MASKS = {"all": np.ones(S, bool)}


class Model:
    def __init__(self, seed_sd: float, setting_sd: float, rng: np.random.Generator) -> None:
        quality = np.linspace(0, 3.5, V)
        self.a = quality[:, None] + 0.3 * rng.normal(size=(V, S))
        self.f = -0.8 * quality[:, None] + 0.3 * rng.normal(size=(V, S))
        self.seed_sd, self.setting_sd, self.rng = seed_sd, setting_sd, rng

    def draw(self, seeds: int) -> SeedArray:
        effect = self.rng.normal(0, self.seed_sd, (V, 1, seeds))
        a = self.a[..., None] + effect + self.rng.normal(0, self.setting_sd, (V, S, seeds))
        f = self.f[..., None] - effect + self.rng.normal(0, self.setting_sd, (V, S, seeds))
        return SeedArray([str(i) for i in range(V)], SETTINGS, list(range(seeds)), a, f, np.ones((V, S, seeds), bool))

    def truths(self) -> tuple[np.ndarray, np.ndarray]:
        means = SeedArray([str(i) for i in range(V)], SETTINGS, [0], self.a[..., None], self.f[..., None],
                          np.ones((V, S, 1), bool))
        t1 = statistics.average_ranks(means, np.ones((1, 1), int), MASKS)["all"][0]
        t2 = intervals.per_seed_average_ranks(self.draw(2000), MASKS)["all"].mean(0)
        return t1, t2


def _coverage(model: Model, seeds: int, runs: int, bootstrap: bool) -> tuple[np.ndarray, float]:
    """Per variant, the share of runs whose rank interval covers T2; and the bootstrap's mean coverage of T1."""
    t1, t2 = model.truths()
    t_hits, boot_hits = [], []
    for _ in range(runs):
        data = model.draw(seeds)
        per_seed = intervals.per_seed_average_ranks(data, MASKS)["all"]
        _, low, high = intervals.moderated_t_interval(per_seed, resolution=intervals.rank_resolution(MASKS["all"]))
        t_hits.append((low <= t2) & (t2 <= high))
        if bootstrap:
            boot = statistics.average_ranks(data, statistics.seed_counts(seeds, 200, model.rng), MASKS)["all"]
            lo, hi = statistics.percentile_interval(boot)
            boot_hits.append((lo <= t1) & (t1 <= hi))
    return np.mean(t_hits, axis=0), float(np.mean(boot_hits)) if boot_hits else float("nan")


@pytest.mark.parametrize("seeds", [3, 5])
def test_rank_intervals_cover_at_3_and_5_seeds_where_the_percentile_bootstrap_did_not(seeds):
    cover, boot_cover = _coverage(Model(0.3, 0.3, np.random.default_rng(seeds)), seeds, runs=150, bootstrap=True)
    assert 0.93 <= cover.mean() <= 0.995 and cover.min() >= 0.87, cover
    assert boot_cover < cover.mean() - 0.1, (boot_cover, cover.mean())  # the old method, against its own target


@pytest.mark.parametrize("seed_sd, setting_sd", [(0.6, 0.6), (0.5, 0.1)])
@pytest.mark.parametrize("seeds", [3, 5])
def test_rank_intervals_cover_every_variant_with_large_noise_or_a_large_seed_effect(seeds, seed_sd, setting_sd):
    """(0.5, 0.1): the best variant is first in most runs and much worse in a few; a plain t-interval over three
    seeds covers it only ~70% of the time (three agreeing seeds give it zero width)."""
    offset = 10 if setting_sd == 0.6 else 20  # 23: a model whose best variant a plain t-interval covers 68%
    cover, _ = _coverage(Model(seed_sd, setting_sd, np.random.default_rng(offset + seeds)), seeds, runs=150,
                         bootstrap=False)
    assert 0.93 <= cover.mean() <= 0.995 and cover.min() >= 0.87, cover


@pytest.mark.parametrize("seeds", [3, 5])
def test_metric_mean_intervals_cover_where_a_percentile_bootstrap_of_the_mean_does_not(seeds):
    """Per-seed values = truth + a training-seed effect + the sample noise of the seed's own samples."""
    rng = np.random.default_rng(seeds)
    runs, truth = 4000, 10.0
    values = truth + rng.normal(0, 1.0, (runs, seeds)) + rng.normal(0, 0.5, (runs, seeds))
    _, low, high = intervals.t_interval(values, axis=1)
    cover = np.mean((low <= truth) & (truth <= high))
    assert 0.93 <= cover <= 0.97, cover
    boot = np.stack([values[:, rng.integers(0, seeds, seeds)].mean(1) for _ in range(200)])  # (B, runs)
    lo, hi = statistics.percentile_interval(boot)
    assert np.mean((lo <= truth) & (truth <= hi)) < cover - 0.08


def test_t_interval_and_half_widths_by_hand():
    mean, low, high = intervals.t_interval(np.array([1.0, 2.0, 3.0]))
    assert mean == 2.0 and high - mean == pytest.approx(4.302653 * 1.0 / np.sqrt(3), rel=1e-6)
    mean, low, high = intervals.t_interval(np.array([2.0, 2.0, 2.0]), resolution=0.25)  # all seeds agree
    assert (low, high) == (1.875, 2.125)
    assert np.isnan(intervals.t_interval(np.array([1.0, np.nan]))[1])  # one value: no interval
    means = pd.DataFrame({"fd": [1.0, 2.0], "fd_se": [0.5, 0.5], "seeds": [3, 1]})
    shown = intervals.with_t_half_widths(means, ["fd"])
    assert shown["fd_ci95"].iloc[0] == pytest.approx(4.302653 * 0.5, rel=1e-6) and np.isnan(shown["fd_ci95"].iloc[1])


def test_moderated_variance_by_hand():
    values = np.array([[1.0, 1.0, 2.0], [1.0, 3.0, 4.0], [1.0, 5.0, 6.0]])  # variances 0, 4, 4: median 4
    mean, low, high = intervals.moderated_t_interval(values, resolution=0.1)
    half = 2.776445 * np.sqrt(np.array([2.0, 4.0, 4.0]) / 3) + 0.05  # (2 * 4 + 2 * s^2) / 4; t with 4 df
    assert mean.tolist() == [1.0, 3.0, 4.0] and np.allclose(high - mean, half, rtol=1e-6)
    assert np.isnan(intervals.moderated_t_interval(values[:1])[1]).all()  # one seed: no interval


def test_each_seed_is_ranked_with_its_own_cells_only():
    a = np.zeros((2, 1, 2))
    f = np.array([[[1.0, 3.0]], [[2.0, 2.0]]])  # seed 0: variant 0 better; seed 1: variant 1 better
    data = SeedArray(["x", "y"], SETTINGS.iloc[:1], [0, 1], a, f, np.ones_like(a, bool))
    per_seed = intervals.per_seed_average_ranks(data, {"all": np.ones(1, bool)})["all"]
    assert per_seed.tolist() == [[1.0, 2.0], [2.0, 1.0]]
