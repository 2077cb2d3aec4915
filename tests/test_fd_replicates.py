"""fd_effnet's replicates on random halves of the samples (ablate.scorers.frechet): exact on degenerate and
weighted sets, biased the way a Frechet distance is, shrinking as 1/sqrt(n), and calibrated against fresh sample
sets where the bootstrap is not; the effnet scorer's option and provenance (no weights needed)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ablate.data.base import DatasetInfo
from ablate.errors import ConfigError
from ablate.scorers import effnet
from ablate.scorers.base import ScoreContext
from ablate.scorers.frechet import (FeatureStats, frechet_distance, frechet_distance_of_features, half_sample_weights,
                                    psd_sqrt, weighted_frechet_distances)


def _population(d: int, seed: int = 0):
    """(draw(n), reference stats, its root): correlated Gaussian features; samples are shifted and wider."""
    rng = np.random.default_rng(seed)
    mix = rng.standard_normal((d, d)) / np.sqrt(d)
    reference = FeatureStats().update(rng.standard_normal((20 * max(d, 100), d)) @ mix)
    return (lambda n: 1.1 * rng.standard_normal((n, d)) @ mix + 0.2), reference, psd_sqrt(reference.cov)


def _replicates(x: np.ndarray, reference: FeatureStats, root: np.ndarray, count: int = 40, seed: int = 0) -> np.ndarray:
    return weighted_frechet_distances(x, reference, root, half_sample_weights(len(x), count, seed))


def test_replicates_of_a_set_of_one_repeated_point_have_no_spread():
    _, reference, root = _population(6)
    x = np.tile(np.linspace(-1, 1, 6), (50, 1))
    reps = _replicates(x, reference, root)
    plug_in = frechet_distance_of_features(x, reference, root)
    assert plug_in == pytest.approx(float(((x[0] - reference.mean) ** 2).sum() + np.trace(reference.cov)), rel=1e-9)
    assert reps.std() < 1e-9 * plug_in and reps == pytest.approx(np.full(40, plug_in), rel=1e-9)


@pytest.mark.parametrize("n, d", [(30, 12), (11, 24)])   # more samples than dimensions, and fewer (the Gram path)
def test_a_weighted_distance_is_the_distance_of_the_samples_it_keeps(n, d):
    """Weights as counts: a half equals the FD of that subset, counts of 2 that of the duplicated set."""
    draw, reference, root = _population(d, seed=1)
    x = draw(n)
    weights = half_sample_weights(n, 3, seed=4)
    counts = np.array([[2.0] * 5 + [1.0] * (n - 5)])
    got = weighted_frechet_distances(x, reference, root, np.concatenate([weights, counts]))
    subsets = [x[w > 0] for w in weights] + [np.concatenate([x[:5], x])]
    want = [frechet_distance(FeatureStats().update(s), reference) for s in subsets]
    assert got == pytest.approx(want, rel=1e-6)  # the D x D path: sqrt of round-off eigenvalues, ~1e-8 each
    assert (weights.sum(1) == n // 2).all() and set(np.unique(weights)) == {0.0, 1.0}


def test_replicates_sit_above_the_plug_in_and_close_to_it():
    """A Frechet distance is biased upward, more so on fewer samples: a half's is larger on average, but near."""
    draw, reference, root = _population(8, seed=2)
    above = []
    for trial in range(5):
        x = draw(400)
        plug_in, reps = frechet_distance_of_features(x, reference, root), _replicates(x, reference, root, seed=trial)
        above.append(reps.mean() - plug_in)
        assert abs(reps.mean() - plug_in) < 0.25 * plug_in
    assert min(above) > 0


def test_the_replicates_spread_shrinks_as_one_over_root_n():
    """Four times the samples, about half the spread (a little faster: FD's variance has a 1/n^2 part too, which
    halves overstate at small n; over fresh sets the ratio here is ~2.3, the halves' ~3)."""
    draw, reference, root = _population(4, seed=3)
    sd = {n: np.mean([_replicates(draw(n), reference, root, 30, seed=t).std(ddof=1) for t in range(20)])
          for n in (100, 400)}
    assert 1.5 < sd[100] / sd[400] < 4.0, sd


def test_half_sampling_estimates_the_spread_over_fresh_sample_sets_where_the_bootstrap_does_not():
    """Fewer samples than dimensions (as effnet's 1000 of 1280): the SD of the halves' FD matches the SD of the FD
    over fresh sets of n samples; the bootstrap (n draws with replacement) overstates it several times."""
    draw, reference, root = _population(64, seed=5)
    n = 48
    fresh = np.std([frechet_distance_of_features(draw(n), reference, root) for _ in range(80)], ddof=1)
    sets = [draw(n) for _ in range(8)]
    halves = np.mean([_replicates(x, reference, root, 30, seed=i).std(ddof=1) for i, x in enumerate(sets)])
    rng = np.random.default_rng(0)
    counts = np.stack([np.bincount(rng.integers(0, n, n), minlength=n) for _ in range(30)]).astype(float)
    bootstrap = np.mean([weighted_frechet_distances(x, reference, root, counts).std(ddof=1) for x in sets])
    assert 0.7 < halves / fresh < 1.6 and bootstrap / fresh > 2.0, (fresh, halves, bootstrap)


def test_the_halves_are_the_same_for_every_set_of_n_samples():
    """Paired across records: the variants of one seed share prompts and noise, sample i with sample i."""
    assert (half_sample_weights(64, 10) == half_sample_weights(64, 10)).all()
    assert not (half_sample_weights(64, 10, seed=1) == half_sample_weights(64, 10)).all()
    with pytest.raises(ValueError, match="at least 4"):
        half_sample_weights(3, 10)


def _scorer(**options) -> effnet.EffNetScorer:
    info = DatasetInfo("toy", 1, 8, 2, ["a", "b"], "identity", lambda y, g=None: "")
    return effnet.EffNetScorer(ScoreContext(dataset=info, options={"effnet": options}))


def test_the_effnet_scorer_keeps_its_replicates_and_says_so():
    draw, reference, root = _population(16, seed=6)
    scorer = _scorer()
    scorer._reference = effnet.Reference(np.zeros((1, 16)), np.zeros(1, np.int64), reference, root, np.zeros(1), {})
    assert scorer.replicates() == {}                                         # nothing scored yet
    scorer._last = draw(40)
    reps = scorer.replicates()["fd_effnet"]
    assert len(reps) == effnet.FD_REPLICATES == 10 and np.std(reps) > 0
    assert reps == pytest.approx(list(_replicates(scorer._last, reference, root, 10)), rel=1e-10)
    assert "10 random halves" in scorer.provenance()["fd_replicates"]
    off = _scorer(fd_replicates=0)
    off._reference, off._last = scorer._reference, scorer._last
    assert off.replicates() == {} and off.provenance()["fd_replicates"].startswith("none")
    for bad in (-1, 1001, 2.5, "10", True):
        with pytest.raises(ConfigError, match="fd_replicates .* allowed: an integer 0-1000"):
            _scorer(fd_replicates=bad)


def test_replicates_run_on_a_torch_device_in_float64():
    draw, reference, root = _population(10, seed=7)
    x = draw(20)
    on_cpu = weighted_frechet_distances(x, reference, root, np.ones((1, 20)), torch.device("cpu"))
    assert on_cpu.dtype == np.float64 and on_cpu[0] == pytest.approx(frechet_distance(FeatureStats().update(x), reference))
