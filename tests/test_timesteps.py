"""Timestep densities (issue 2): histograms of 1e5 draws match ``density``, which integrates to 1."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import integrate, stats

from ablate.formulations.paths import CosinePath, RFPath
from ablate.formulations.names import parse_sampler as get_sampler
from ablate.formulations.timesteps import MODE_S_MAX, T_EPS, CosMap

SAMPLERS = ["uniform", "lognorm(0, 1)", "lognorm(0.5, 0.6)", "lognorm(-1, 2.2)", "lognorm(1, 0.2)",
            "mode(-1)", "mode(-0.54)", "mode(0)", "mode(1.29)", "mode(1.75)", "cosmap",
            "lognorm(0, 1)/shift(3)", "mode(1.29)/shift(0.5)", "uniform/shift(2)"]


def _pdf(sampler):
    return lambda x: float(sampler.density(torch.tensor([x], dtype=torch.float64))[0])


def _bin_probabilities(sampler, edges: np.ndarray) -> np.ndarray:
    pdf = _pdf(sampler)
    return np.array([integrate.quad(pdf, lo, hi, limit=200)[0] for lo, hi in zip(edges[:-1], edges[1:])])


@pytest.mark.parametrize("name", SAMPLERS)
def test_density_integrates_to_one(name):
    sampler = get_sampler(name)
    total, _ = integrate.quad(_pdf(sampler), 0, 1, points=[0.5], limit=500)
    assert total == pytest.approx(1.0, abs=2e-4)


def chi_square_pvalues(sampler, tilts: tuple[float, ...] = (1.0,), n: int = 100_000) -> list[float]:
    """Binned chi-square p-values of n draws against the density, tilted across its quantiles by each of
    ``tilts`` (1.0: the density itself; the bins' probabilities are integrated once)."""
    t = sampler.sample(n, generator=torch.Generator().manual_seed(0), dtype=torch.float64).numpy()
    edges = np.quantile(t, np.linspace(0, 1, 41))  # ~equal-count bins from the draws
    edges[0], edges[-1] = 0.0, 1.0
    counts, _ = np.histogram(t, edges)
    probs = _bin_probabilities(sampler, edges)
    out = []
    for tilt in tilts:
        tilted = probs * np.linspace(1, tilt, len(probs))
        out.append(float(stats.chisquare(counts, tilted / tilted.sum() * n).pvalue))
    return out


@pytest.mark.parametrize("name", SAMPLERS)
def test_histogram_matches_density(name):
    exact, tilted = chi_square_pvalues(get_sampler(name), tilts=(1.0, 1.15))
    assert exact > 1e-3
    assert tilted < 1e-6  # the test can tell a 15% tilt


def test_draws_are_clamped_and_deterministic():
    s = get_sampler("mode(-1)")
    a = s.sample(50_000, generator=torch.Generator().manual_seed(3))
    b = s.sample(50_000, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and a.dtype == torch.float32
    lo, hi = torch.tensor([T_EPS, 1 - T_EPS], dtype=torch.float32)
    assert bool(a.min() >= lo) and bool(a.max() <= hi)


def test_mode_zero_is_uniform():
    t = torch.linspace(0.001, 0.999, 999, dtype=torch.float64)
    assert torch.allclose(get_sampler("mode(0)").density(t), torch.ones_like(t))
    draws = get_sampler("mode(0)").sample(100_000, generator=torch.Generator().manual_seed(0))
    assert stats.kstest(draws.numpy(), "uniform").pvalue > 1e-3


def test_known_density_values():
    half = torch.tensor([0.5], dtype=torch.float64)
    assert float(get_sampler("mode(1.29)").density(half)) == pytest.approx(1 / (1 - 1.29 * (math.pi / 2 - 1)))
    assert float(get_sampler("mode(1.29)").density(half)) == pytest.approx(3.79, abs=0.01)
    mass, _ = integrate.quad(_pdf(get_sampler("lognorm(0, 1)")), 0.3, 0.7)
    assert mass == pytest.approx(0.60, abs=0.01)
    assert MODE_S_MAX == pytest.approx(1.7519, abs=1e-4)


def test_cosmap_matches_cosine_log_snr():
    u = torch.linspace(0.01, 0.99, 99, dtype=torch.float64)
    t = CosMap()._draw(u)
    assert torch.allclose(RFPath().log_snr(t), CosinePath().log_snr(u), atol=1e-10)


def test_shift_maps_draws():
    base, shifted = get_sampler("lognorm(0, 1)"), get_sampler("lognorm(0, 1)/shift(3)")
    g = lambda: torch.Generator().manual_seed(5)  # noqa: E731
    t, ts = base.sample(1000, g(), dtype=torch.float64), shifted.sample(1000, g(), dtype=torch.float64)
    assert torch.allclose(ts, 3 * t / (1 + 2 * t))
