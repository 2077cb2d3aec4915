"""Frechet distance math: closed forms, a non-commuting case, streaming float64 statistics."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import linalg

import ablate  # noqa: F401  (fixes torchvision first)
from ablate.scorers.frechet import FeatureStats, frechet_distance


def _random_spd(rng: np.random.Generator, d: int) -> np.ndarray:
    a = rng.normal(size=(d, d))
    return a @ a.T / d + 0.1 * np.eye(d)


def _fd_by_sqrtm(mu1: np.ndarray, s1: np.ndarray, mu2: np.ndarray, s2: np.ndarray) -> float:
    """Independent formula, as the reference FID code computes it: tr of scipy's sqrtm(S1 S2), real part."""
    covmean = linalg.sqrtm(s1 @ s2)
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(np.real(covmean)))


def test_fd_of_a_feature_set_with_itself_is_zero() -> None:
    x = torch.randn(2000, 32, generator=torch.Generator().manual_seed(0)) @ torch.randn(32, 32)
    stats = FeatureStats().update(x)
    assert abs(frechet_distance(stats, stats)) < 1e-6


def test_fd_closed_form_for_diagonal_gaussians() -> None:
    mu1, mu2 = np.array([0.0, 1.0, -2.0]), np.array([3.0, 1.0, 0.0])
    v1, v2 = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 0.25])
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(v1) - np.sqrt(v2)) ** 2)  # 13 + (1 + 1 + 6.25)
    assert expected == pytest.approx(21.25)
    assert frechet_distance((mu1, np.diag(v1)), (mu2, np.diag(v2))) == pytest.approx(expected, rel=1e-10)


def test_fd_closed_form_for_commuting_covariances() -> None:
    rng = np.random.default_rng(1)
    q, _ = np.linalg.qr(rng.normal(size=(6, 6)))  # shared eigenvectors: S1 S2 = S2 S1
    l1, l2 = rng.uniform(0.5, 3, 6), rng.uniform(0.5, 3, 6)
    s1, s2 = (q * l1) @ q.T, (q * l2) @ q.T
    mu1, mu2 = rng.normal(size=6), rng.normal(size=6)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(l1) - np.sqrt(l2)) ** 2)
    assert frechet_distance((mu1, s1), (mu2, s2)) == pytest.approx(expected, rel=1e-8)


def test_fd_non_commuting_matches_the_sqrtm_formula() -> None:
    rng = np.random.default_rng(2)
    s1, s2 = _random_spd(rng, 20), _random_spd(rng, 20)
    assert not np.allclose(s1 @ s2, s2 @ s1)
    mu1, mu2 = rng.normal(size=20), rng.normal(size=20)
    expected = _fd_by_sqrtm(mu1, s1, mu2, s2)
    assert expected > 1.0
    assert frechet_distance((mu1, s1), (mu2, s2)) == pytest.approx(expected, rel=1e-8)
    assert frechet_distance((mu2, s2), (mu1, s1)) == pytest.approx(expected, rel=1e-8)  # symmetric


def test_fd_handles_singular_covariances() -> None:
    """Rank-deficient features (dead units) still give a finite distance, ~0 against themselves."""
    x = torch.randn(500, 16, generator=torch.Generator().manual_seed(3))
    x[:, :4] = 0.0
    stats = FeatureStats().update(x)
    assert abs(frechet_distance(stats, stats)) < 1e-6
    shifted = x.clone()
    shifted[:, 4:] += 1.0
    other = FeatureStats().update(shifted)
    assert frechet_distance(stats, other) == pytest.approx(12.0, rel=1e-6)  # shift of 1 in 12 live dims


def test_stats_match_numpy_and_are_order_and_batch_size_invariant() -> None:
    g = torch.Generator().manual_seed(4)
    a = torch.randn(640, 24, generator=g) @ torch.randn(24, 24, generator=g) + 100.0  # large offset: stable?
    b = torch.randn(640, 24, generator=g) * 2.0
    ref = FeatureStats().update(a)
    assert ref.n == 640
    np.testing.assert_allclose(ref.mean, a.double().mean(0).numpy(), rtol=1e-12)
    np.testing.assert_allclose(ref.cov, np.cov(a.double().numpy(), rowvar=False), rtol=1e-9, atol=1e-9)
    b_stats = FeatureStats().update(b)
    fd = frechet_distance(ref, b_stats)
    for batch in (1, 7, 64):
        streamed = FeatureStats()
        for chunk in a.split(batch):
            streamed.update(chunk)
        assert frechet_distance(streamed, b_stats) == pytest.approx(fd, rel=1e-6)
    shuffled = FeatureStats().update(a[torch.randperm(640, generator=g)])
    assert frechet_distance(shuffled, b_stats) == pytest.approx(fd, rel=1e-6)


def test_sample_stats_approach_the_gaussian_closed_form() -> None:
    rng = np.random.default_rng(5)
    s1, s2 = _random_spd(rng, 4), _random_spd(rng, 4)
    mu1, mu2 = np.zeros(4), np.full(4, 0.5)
    x1 = rng.multivariate_normal(mu1, s1, size=200_000)
    x2 = rng.multivariate_normal(mu2, s2, size=200_000)
    fd = frechet_distance(FeatureStats().update(x1), FeatureStats().update(x2))
    assert fd == pytest.approx(_fd_by_sqrtm(mu1, s1, mu2, s2), rel=0.02)


def test_save_load_round_trip(tmp_path) -> None:
    stats = FeatureStats().update(torch.randn(50, 8))
    path = tmp_path / "sub" / "ref.npz"
    stats.save(path, {"model": "test", "count": 50})
    loaded = FeatureStats.load(path)
    assert loaded.n == 50 and loaded.provenance == {"model": "test", "count": 50}
    np.testing.assert_array_equal(loaded.mean, stats.mean)
    np.testing.assert_array_equal(loaded.cov, stats.cov)
    assert [p.name for p in path.parent.iterdir()] == ["ref.npz"]  # no temp file left behind
    loaded.update(torch.randn(10, 8))  # loaded stats keep streaming
    assert loaded.n == 60


def test_bad_inputs_raise() -> None:
    stats = FeatureStats().update(torch.randn(5, 3))
    with pytest.raises(ValueError, match="dimension"):
        stats.update(torch.randn(5, 4))
    with pytest.raises(ValueError, match="at least 2"):
        FeatureStats().update(torch.randn(1, 3)).cov
    with pytest.raises(ValueError, match="mismatched"):
        frechet_distance(stats, (np.zeros(4), np.eye(4)))
