"""KID (unbiased MMD^2, cubic kernel) and k-NN precision / recall (ablate/scorers/kernels.py), on synthetic features."""

from __future__ import annotations

import numpy as np
import pytest

from ablate.scorers import kernels
from ablate.scorers.frechet import FeatureStats, frechet_distance


def test_kid_is_unbiased_on_two_samples_of_one_distribution():
    """Mean over repeats near 0 (within 3 standard errors), single estimates negative as often as not; the
    biased V-statistic (diagonal kept) is far above 0 for the same draws."""
    rng = np.random.default_rng(0)
    values, biased = [], []
    for _ in range(300):
        x, y = rng.standard_normal((40, 8)), rng.standard_normal((60, 8))
        values.append(kernels.mmd2_unbiased(x, y))
        k = kernels.polynomial_kernel
        biased.append(k(x, x).mean() + k(y, y).mean() - 2 * k(x, y).mean())
    values = np.array(values)
    se = values.std(ddof=1) / np.sqrt(len(values))
    assert abs(values.mean()) < 3 * se
    assert 0.3 < (values < 0).mean() < 0.7
    assert np.mean(biased) > 10 * se


def test_kid_detects_a_shift_and_of_a_set_against_itself_is_near_zero():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((200, 16))
    shifted = kernels.mmd2_unbiased(x, x + 0.5)
    itself = kernels.mmd2_unbiased(x, x)   # the within terms leave out the diagonal, the cross term keeps it:
    k = kernels.polynomial_kernel(x, x)   # 2 (mean off-diagonal - mean diagonal) / n, slightly below 0
    off, diag = (k.sum() - np.trace(k)) / (200 * 199), np.trace(k) / 200
    assert itself == pytest.approx(2 * (off - diag) / 200) and -0.1 * shifted < itself < 0 < 0.1 < shifted
    assert frechet_distance(FeatureStats().update(x), FeatureStats().update(x)) == pytest.approx(0.0, abs=1e-9)


def test_kid_blocks_are_disjoint_slices_against_their_reference_blocks():
    rng = np.random.default_rng(2)
    x, ref = rng.standard_normal((103, 4)), [rng.standard_normal((50, 4)) for _ in range(5)]
    blocks = kernels.kid_blocks(x, ref, [kernels.self_term(r) for r in ref])
    assert blocks.shape == (5,)
    mixed = x[np.random.default_rng(0).permutation(103)]
    assert blocks[3] == pytest.approx(kernels.mmd2_unbiased(mixed[60:80], ref[3]))


def test_kid_blocks_do_not_inherit_the_order_of_the_samples():
    """A set whose first half is one mode and second half another: blocks cut in that order would each hold
    one mode and be far from the mixed reference; the scorer's blocks mix them and see the set as it is."""
    rng = np.random.default_rng(4)
    modes = lambda n: np.concatenate([rng.normal(0, 1, (n // 2, 4)), rng.normal(3, 1, (n // 2, 4))])  # noqa: E731
    x, ref = modes(200), [rng.permutation(modes(100)) for _ in range(4)]
    selfs = [kernels.self_term(r) for r in ref]
    in_order = np.mean([kernels.mmd2_unbiased(x[b * 50:(b + 1) * 50], ref[b], selfs[b]) for b in range(4)])
    assert abs(kernels.kid_blocks(x, ref, selfs).mean()) < 0.1 * in_order
    assert kernels.block_count(1000, 10) == 10 and kernels.block_count(64, 10) == 4 and kernels.block_count(20, 10) == 1


def test_precision_recall_of_a_set_against_itself_and_a_collapsed_set():
    rng = np.random.default_rng(3)
    real = rng.standard_normal((300, 8))
    assert kernels.precision_recall(real, real) == (1.0, 1.0)
    collapsed = real[:5][rng.integers(0, 5, 300)] + 0.01 * rng.standard_normal((300, 8))  # 5 modes of the data
    precision, recall = kernels.precision_recall(real, collapsed)
    assert precision > 0.9 and recall < 0.2
    far = real + 10.0                                                                      # diverse, but not the data
    assert kernels.precision_recall(real, far)[0] < 0.05


@pytest.mark.parametrize("n", [5, 40, 90])
def test_the_low_rank_frechet_distance_equals_the_full_one(n):
    """effnet's Frechet distance from the N x N matrix (N <= D) is the D x D computation's, and falls back above D."""
    from ablate.scorers.frechet import frechet_distance_of_features, psd_sqrt

    rng = np.random.default_rng(5)
    reference = FeatureStats().update(rng.standard_normal((500, 64)) @ rng.standard_normal((64, 64)))
    x = rng.standard_normal((n, 64)) + 0.3
    full = frechet_distance(FeatureStats().update(x), reference)
    assert frechet_distance_of_features(x, reference, psd_sqrt(reference.cov)) == pytest.approx(full, rel=1e-7)
