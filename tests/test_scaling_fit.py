"""Scaling fits on synthetic isoFLOP data generated from known exponents."""

from __future__ import annotations

import numpy as np
import pytest

import ablate  # noqa: F401  (before lightning)
from ablate.scaling.fit import exponent_difference, fit_isoflop, fit_power_law, parabola_minima

A_TRUE, C_TRUE = 0.57, -0.08  # N_opt ~ C^0.57 (Liang et al.), L_opt ~ C^-0.08
BUDGETS = np.array([1e15, 3e15, 1e16, 3e16, 1e17])


def synthetic(rng: np.random.Generator, sigma: float, sizes: int = 7, budgets: np.ndarray = BUDGETS):
    """Per budget: N around N_opt = 0.01 C^a, L = L_opt(C) + 0.05 (ln N - ln N_opt)^2 + noise, D = C / (6 N)."""
    out = []
    for c in budgets:
        n_opt, l_opt = 0.01 * c**A_TRUE, 5.0 * c**C_TRUE
        n = n_opt * np.exp(np.linspace(-1.5, 1.5, sizes) + rng.uniform(-0.2, 0.2))
        loss = l_opt + 0.05 * np.log(n / n_opt) ** 2 + sigma * rng.standard_normal(sizes)
        out.append((c, n, c / (6 * n), loss))
    return out


def fits_of(data, rng, noise_floor=0.0, replicates=1000):
    fits = [fit_isoflop(c, n, d, y, noise_floor=noise_floor, replicates=replicates, confidence=0.9, rng=rng)
            for c, n, d, y in data]
    assert all(f is not None for f in fits)
    return fits


def test_parabola_minimum_exact() -> None:
    x = np.linspace(-2, 2, 5)
    xm, ym, a = parabola_minima(x, (3 * (x - 0.7) ** 2 + 1.5)[:, None])
    assert xm[0] == pytest.approx(0.7) and ym[0] == pytest.approx(1.5) and a[0] == pytest.approx(3)
    xm, ym, _ = parabola_minima(x, (-(x**2))[:, None])
    assert np.isnan(xm[0]) and np.isnan(ym[0])


def test_noiseless_recovers_exponents_exactly() -> None:
    rng = np.random.default_rng(0)
    fits = fits_of(synthetic(rng, 0.0), rng, noise_floor=1e-6)
    n_law, d_law, l_law = (fit_power_law(fits, q, 0.9) for q in ("n_opt", "d_opt", "y_opt"))
    assert n_law.exponent.value == pytest.approx(A_TRUE, abs=1e-3)
    assert d_law.exponent.value == pytest.approx(1 - A_TRUE, abs=1e-3)  # D = C / (6 N)
    assert l_law.exponent.value == pytest.approx(C_TRUE, abs=1e-3)


def test_noisy_exponents_within_their_intervals() -> None:
    """Known exponents fall inside the 90% intervals in most of 20 independent noisy studies."""
    hits = {"n_opt": 0, "y_opt": 0}
    widths = []
    for seed in range(20):
        rng = np.random.default_rng(seed)
        fits = fits_of(synthetic(rng, 0.004), rng, replicates=400)
        for q, truth in (("n_opt", A_TRUE), ("y_opt", C_TRUE)):
            law = fit_power_law(fits, q, 0.9)
            hits[q] += law.exponent.contains(truth)
            if q == "n_opt":
                widths.append(law.exponent.high - law.exponent.low)
    assert hits["n_opt"] >= 15 and hits["y_opt"] >= 15, hits  # 90% intervals: 18 expected
    assert 0 < np.median(widths) < 0.1  # informative, not vacuous


def test_noise_floor_used_without_residuals() -> None:
    rng = np.random.default_rng(1)
    c, n, d, y = synthetic(rng, 0.0, sizes=3)[0]
    fit = fit_isoflop(c, n, d, y, noise_floor=0.01, replicates=200, confidence=0.9, rng=rng)
    assert fit.sigma == pytest.approx(0.01 * np.mean(np.abs(y)))
    assert fit.n_opt.low < fit.n_opt.value < fit.n_opt.high


def test_no_minimum_is_none_and_prediction_interval() -> None:
    rng = np.random.default_rng(2)
    n = np.array([1e5, 1e6, 1e7])
    # straight; convex with its vertex left of the sizes; monotonic though the parabola's vertex is inside
    for falling in ([3.0, 2.0, 1.0], [1.0, 12.8, 25.2], [0.1078, 0.1295, 0.3659]):
        assert fit_isoflop(1e15, n, 1e15 / (6 * n), np.array(falling), noise_floor=0.01, replicates=100,
                           confidence=0.9, rng=rng) is None  # the sizes do not bracket a minimum
    fits = fits_of(synthetic(rng, 0.004), rng)
    law = fit_power_law(fits, "y_opt", 0.9)
    future = 1e18
    pred = law.predict(future, 0.9, noise=0.004)
    assert pred.contains(5.0 * future**C_TRUE)
    assert pred.low < pred.value < pred.high
    other = fit_power_law(fits_of(synthetic(rng, 0.004), rng), "y_opt", 0.9)
    diff = exponent_difference(law, other, 0.9)
    assert diff.contains(0.0)  # same generating exponent
