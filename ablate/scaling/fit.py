"""Fits of a scaling study, with uncertainty from a parametric bootstrap.

- IsoFLOP curve (one budget C): a parabola of a metric y (a loss, or a fidelity distance) in
  x = ln N over the model sizes; its minimum gives N_opt, y_opt and, from the cells' own images
  seen (ln D is a line in ln N at fixed C), D_opt. Replicates draw y* = fitted + Gaussian noise of
  spread ``sigma`` and are fitted again: ``sigma`` is the residual spread when the fit has spare
  points (more sizes, or several seeds), and never less than ``noise_floor`` x mean |y| (with 3
  sizes the parabola goes through every point and has no residuals). A replicate whose parabola
  opens downwards, or whose minimum lies more than half the sampled span of ln N beyond the sizes
  trained (an extrapolation of a nearly straight line), has no minimum and is left out (the fraction
  kept is reported). A budget is fitted only when the sizes bracket the optimum, as an isoFLOP
  analysis needs: the best measured size (mean over seeds) is neither the smallest nor the largest,
  and the fitted minimum lies within the sizes and above zero when every value is; otherwise the
  budget has no fit (more sizes, or a larger budget, are needed).
- Power laws Y = k C^e for Y in N_opt, D_opt, y_opt: least squares in log-log over the budgets; the
  exponent's interval comes from refitting each bootstrap replicate (replicate j of every budget).
- Prediction at a new budget: the power law's value for each replicate, widened by the noise of
  one measurement for y_opt; the interval is the central ``confidence`` share of those values.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Interval:
    """A point estimate with a central interval (``low``, ``high``); NaN where there is none."""

    value: float
    low: float
    high: float

    def contains(self, x: float) -> bool:
        return bool(self.low <= x <= self.high)


def interval(value: float, draws: np.ndarray, confidence: float) -> Interval:
    """``value`` with the central ``confidence`` percentile interval of the finite ``draws``."""
    finite = draws[np.isfinite(draws)]
    if finite.size == 0:
        return Interval(float(value), float("nan"), float("nan"))
    tail = 50 * (1 - confidence)
    low, high = np.percentile(finite, [tail, 100 - tail])
    return Interval(float(value), float(low), float(high))


def parabola_minima(x: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Least-squares parabolas through (x, ys[:, j]) for every column j: (x_min, y_min, curvature a).

    x_min and y_min are NaN where the parabola has no minimum within half the span of x beyond the data."""
    design = np.stack([x**2, x, np.ones_like(x)], axis=1)
    coef = np.linalg.lstsq(design, ys, rcond=None)[0]  # (3, draws)
    a, b, c = coef
    span = (x.max() - x.min()) / 2
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        xm = np.where(a > 0, -b / (2 * a), np.nan)
        ok = (a > 0) & (xm >= x.min() - span) & (xm <= x.max() + span)
        return np.where(ok, xm, np.nan), np.where(ok, c - b**2 / (4 * a), np.nan), a


@dataclass(frozen=True)
class IsoFlopFit:
    """The isoFLOP fit of one budget: optimum (N, D, y) with intervals and the bootstrap replicates."""

    budget: float
    n_opt: Interval
    d_opt: Interval
    y_opt: Interval
    coef: tuple[float, float, float]  # y = a x^2 + b x + c, x = ln N
    sigma: float
    kept: float                       # share of replicates with a minimum
    draws: np.ndarray                 # (replicates, 3): ln N_opt, ln D_opt, y_opt; NaN rows where no minimum


def fit_isoflop(budget: float, n: np.ndarray, d: np.ndarray, y: np.ndarray, *, noise_floor: float,
                replicates: int, confidence: float, rng: np.random.Generator) -> IsoFlopFit | None:
    """Fit one budget's isoFLOP parabola (sizes may repeat: seeds); None if the fit has no minimum."""
    x, lnd, y = np.log(np.asarray(n, float)), np.log(np.asarray(d, float)), np.asarray(y, float)
    if len(np.unique(x)) < 3:
        return None
    coef = np.polyfit(x, y, 2)
    xm, ym, _ = parabola_minima(x, y[:, None])
    sizes = np.unique(x)
    best = sizes[np.argmin([y[x == v].mean() for v in sizes])]
    bracketed = sizes[0] < best < sizes[-1]
    if not (bracketed and np.isfinite(xm[0]) and x.min() <= xm[0] <= x.max() and (ym[0] > 0 or y.min() <= 0)):
        return None
    dof = len(x) - 3
    resid = y - np.polyval(coef, x)
    sigma = max(float(np.sqrt((resid**2).sum() / dof)) if dof > 0 else 0.0, noise_floor * float(np.mean(np.abs(y))))
    fake = np.polyval(coef, x)[:, None] + sigma * rng.standard_normal((len(x), replicates))
    bx, by, _ = parabola_minima(x, fake)
    slope, icpt = np.polyfit(x, lnd, 1)
    draws = np.stack([bx, slope * bx + icpt, by], axis=1)
    kept = float(np.isfinite(bx).mean())
    return IsoFlopFit(
        budget=float(budget), coef=tuple(float(v) for v in coef), sigma=sigma, kept=kept,
        n_opt=_exp(interval(xm[0], bx, confidence)), d_opt=_exp(interval(slope * xm[0] + icpt, draws[:, 1], confidence)),
        y_opt=interval(ym[0], by, confidence), draws=draws)


def _exp(i: Interval) -> Interval:
    return Interval(float(np.exp(i.value)), float(np.exp(i.low)), float(np.exp(i.high)))


QUANTITIES = ("n_opt", "d_opt", "y_opt")


@dataclass(frozen=True)
class PowerLaw:
    """Y = k C^exponent fitted over budgets, with the exponent's interval and the replicate fits."""

    quantity: str
    exponent: Interval
    log_k: float
    draws: np.ndarray  # (replicates, 2): exponent, ln k; NaN rows where a budget had no minimum
    budgets: tuple[float, ...]

    def predict(self, budget: float, confidence: float, noise: float = 0.0, seed: int = 0) -> Interval:
        """Y at ``budget`` with an interval over replicates, widened by Gaussian ``noise`` (one measurement)."""
        lc = np.log(budget)
        value = float(np.exp(self.log_k + self.exponent.value * lc))
        draws = np.exp(self.draws[:, 1] + self.draws[:, 0] * lc)
        if noise > 0:
            draws = draws + noise * np.random.default_rng(seed).standard_normal(draws.shape)
        return interval(value, draws, confidence)


def fit_power_law(fits: list[IsoFlopFit], quantity: str, confidence: float) -> PowerLaw | None:
    """Power law of ``quantity`` (n_opt, d_opt or y_opt) against the budget; None with fewer than 2 budgets."""
    if len(fits) < 2:
        return None
    column = QUANTITIES.index(quantity)
    lc = np.log([f.budget for f in fits])
    values = np.log([getattr(f, quantity).value for f in fits])
    draws = np.stack([f.draws[:, column] for f in fits])  # (budgets, replicates)
    if quantity == "y_opt":
        with np.errstate(invalid="ignore"):
            draws = np.log(np.where(draws > 0, draws, np.nan))
    slope, icpt = np.polyfit(lc, values, 1)
    ok = np.all(np.isfinite(draws), axis=0)
    design = np.stack([lc, np.ones_like(lc)], axis=1)
    coef = np.full((2, draws.shape[1]), np.nan)
    if ok.any():
        coef[:, ok] = np.linalg.lstsq(design, draws[:, ok], rcond=None)[0]
    return PowerLaw(quantity, interval(float(slope), coef[0], confidence), float(icpt),
                    np.stack([coef[0], coef[1]], axis=1), tuple(f.budget for f in fits))


def exponent_difference(a: PowerLaw, b: PowerLaw, confidence: float) -> Interval:
    """The exponent of ``a`` minus that of ``b``, with an interval from independent replicates."""
    n = min(len(a.draws), len(b.draws))
    return interval(a.exponent.value - b.exponent.value, a.draws[:n, 0] - b.draws[:n, 0], confidence)
