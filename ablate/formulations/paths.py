"""Trajectories (forward paths) ``z_t = a_t x0 + b_t eps`` on one time axis.

Convention: t in [0, 1], **t = 0 is data, t = 1 is noise**. Every path gives a_t, b_t, their
t-derivatives, the log-SNR ``lambda_t = log(a_t^2 / b_t^2)`` and its inverse ``t(lambda)``.
Computations follow the dtype of ``t`` (use float64 where precision matters).

Paths: ``rf`` (a = 1 - t, b = t), ``cos`` (a = cos(pi t/2), b = sin(pi t/2)), ``linear``
(LDM-Linear, discrete schedule made continuous: our choice, see :class:`LinearPath`), and the
EDM family (a = 1, b = sigma_t) with sigma from EDM's log-normal quantile, rf's sigma
t/(1-t) or cosine's tan(pi t/2).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Any

import torch
from torch import Tensor

SIGMA_MIN, SIGMA_MAX = 0.002, 80.0  # EDM's sampling interval in sigma (Karras et al. 2022)


def per_sample(c: Tensor, like: Tensor) -> Tensor:
    """Broadcast a per-sample coefficient (B,) or scalar over a batch shaped like ``like``."""
    return c.reshape(-1, *([1] * (like.ndim - 1))) if c.ndim > 0 else c


class Path(ABC):
    """A Gaussian forward path. Subclasses define a, b, derivatives and ``t_of_log_snr``."""

    name: str

    @abstractmethod
    def coefficients(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """(a_t, b_t)."""

    @abstractmethod
    def derivatives(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """(da/dt, db/dt)."""

    @abstractmethod
    def t_of_log_snr(self, lam: Tensor) -> Tensor:
        """The t at which this path has log-SNR ``lam`` (clamped to [0, 1])."""

    def add_noise(self, x0: Tensor, eps: Tensor, t: Tensor) -> Tensor:
        """z_t = a_t x0 + b_t eps, t of shape (B,) or scalar."""
        a, b = self.coefficients(t)
        return per_sample(a, x0) * x0 + per_sample(b, x0) * eps

    def log_snr(self, t: Tensor) -> Tensor:
        a, b = self.coefficients(t)
        return 2 * (torch.log(a) - torch.log(b))

    def log_snr_derivative(self, t: Tensor) -> Tensor:
        """lambda'_t = 2 (a'/a - b'/b)."""
        a, b = self.coefficients(t)
        da, db = self.derivatives(t)
        return 2 * (da / a - db / b)

    def metadata(self) -> dict[str, Any]:
        return {"path": self.name}


class RFPath(Path):
    """Rectified flow: a = 1 - t, b = t; lambda = 2 log((1 - t)/t)."""

    name = "rf"

    def coefficients(self, t: Tensor) -> tuple[Tensor, Tensor]:
        return 1 - t, t

    def derivatives(self, t: Tensor) -> tuple[Tensor, Tensor]:
        return -torch.ones_like(t), torch.ones_like(t)

    def t_of_log_snr(self, lam: Tensor) -> Tensor:
        return torch.sigmoid(-lam / 2)


class CosinePath(Path):
    """Cosine (variance preserving): a = cos(pi t/2), b = sin(pi t/2); lambda = 2 log cot(pi t/2)."""

    name = "cos"

    def coefficients(self, t: Tensor) -> tuple[Tensor, Tensor]:
        return torch.cos(math.pi / 2 * t), torch.sin(math.pi / 2 * t)

    def derivatives(self, t: Tensor) -> tuple[Tensor, Tensor]:
        half_pi = math.pi / 2
        return -half_pi * torch.sin(half_pi * t), half_pi * torch.cos(half_pi * t)

    def t_of_log_snr(self, lam: Tensor) -> Tensor:
        return (2 / math.pi) * torch.atan(torch.exp(-lam / 2))


class LinearPath(Path):
    """LDM-Linear (Rombach et al.; constants from Stability's code), variance preserving.

    Discrete schedule: T = 1000, ``beta_i = (sqrt(0.00085) + i/(T-1) (sqrt(0.012) - sqrt(0.00085)))^2``,
    ``abar_i = prod_{j<=i} (1 - beta_j)``; abar runs 0.99915 -> 0.00466, lambda about +7.07 -> -5.36
    (terminal SNR is not zero). **Our choice** for continuous t: t = i/(T-1), lambda(t)
    piecewise-linear between the 1000 points (monotone), a = sqrt(sigmoid(lambda)),
    b = sqrt(sigmoid(-lambda)), derivatives from the same interpolant. A log-SNR outside
    [lambda_999, lambda_0] maps to the nearest end (t = 1 or t = 0).
    """

    name = "linear"
    T = 1000
    BETA_START, BETA_END = 0.00085, 0.012

    def __init__(self) -> None:
        i = torch.arange(self.T, dtype=torch.float64)
        root = math.sqrt(self.BETA_START) + i / (self.T - 1) * (
            math.sqrt(self.BETA_END) - math.sqrt(self.BETA_START)
        )
        self.alphas_cumprod = torch.cumprod(1 - root**2, dim=0)
        self.lambdas = torch.log(self.alphas_cumprod) - torch.log1p(-self.alphas_cumprod)

    def _segment(self, t: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Index of the left knot, fraction within the segment, and the segment's lambda table."""
        table = self.lambdas.to(device=t.device, dtype=t.dtype)
        pos = t.clamp(0, 1) * (self.T - 1)
        idx = pos.floor().long().clamp(0, self.T - 2)
        return idx, pos - idx, table

    def log_snr(self, t: Tensor) -> Tensor:
        idx, frac, table = self._segment(t)
        return table[idx] + frac * (table[idx + 1] - table[idx])

    def log_snr_derivative(self, t: Tensor) -> Tensor:
        idx, _, table = self._segment(t)
        return (table[idx + 1] - table[idx]) * (self.T - 1)

    def coefficients(self, t: Tensor) -> tuple[Tensor, Tensor]:
        lam = self.log_snr(t)
        return torch.sigmoid(lam).sqrt(), torch.sigmoid(-lam).sqrt()

    def derivatives(self, t: Tensor) -> tuple[Tensor, Tensor]:
        a, b = self.coefficients(t)
        dlam = self.log_snr_derivative(t)
        return 0.5 * a * b**2 * dlam, -0.5 * b * a**2 * dlam

    def t_of_log_snr(self, lam: Tensor) -> Tensor:
        table = (-self.lambdas).to(device=lam.device, dtype=lam.dtype)  # increasing in t
        x = (-lam).clamp(table[0], table[-1])
        idx = (torch.searchsorted(table, x.contiguous(), right=True) - 1).clamp(0, self.T - 2)
        frac = (x - table[idx]) / (table[idx + 1] - table[idx])
        return (idx + frac) / (self.T - 1)

    def metadata(self) -> dict[str, Any]:
        return {
            "path": self.name,
            "schedule": f"LDM-linear T={self.T}, beta {self.BETA_START}..{self.BETA_END} (sqrt-linear)",
            "our_choice_continuous_t": "t = i/(T-1); lambda piecewise-linear between the 1000 "
            "discrete points; a = sqrt(sigmoid(lambda)), b = sqrt(sigmoid(-lambda))",
        }


class SigmaPath(Path):
    """EDM family (variance exploding): a = 1, b = sigma_t; lambda = -2 log sigma."""

    @abstractmethod
    def sigma(self, t: Tensor) -> Tensor: ...

    @abstractmethod
    def sigma_derivative(self, t: Tensor) -> Tensor: ...

    @abstractmethod
    def t_of_sigma(self, sigma: Tensor) -> Tensor: ...

    def coefficients(self, t: Tensor) -> tuple[Tensor, Tensor]:
        return torch.ones_like(t), self.sigma(t)

    def derivatives(self, t: Tensor) -> tuple[Tensor, Tensor]:
        return torch.zeros_like(t), self.sigma_derivative(t)

    def log_snr(self, t: Tensor) -> Tensor:
        return -2 * torch.log(self.sigma(t))

    def t_of_log_snr(self, lam: Tensor) -> Tensor:
        return self.t_of_sigma(torch.exp(-lam / 2))


class EDMQuantilePath(SigmaPath):
    """EDM(Pm, Ps): sigma_t = exp(Pm + Ps PhiInv(t)), so t ~ U(0, 1) gives EDM's log-normal sigma."""

    def __init__(self, p_mean: float, p_std: float) -> None:
        self.p_mean, self.p_std = float(p_mean), float(p_std)
        self.name = f"edm-quantile(Pm={self.p_mean}, Ps={self.p_std})"

    def sigma(self, t: Tensor) -> Tensor:
        return torch.exp(self.p_mean + self.p_std * torch.special.ndtri(t))

    def sigma_derivative(self, t: Tensor) -> Tensor:
        x = torch.special.ndtri(t)
        pdf = torch.exp(-0.5 * x**2) / math.sqrt(2 * math.pi)
        return self.sigma(t) * self.p_std / pdf

    def t_of_sigma(self, sigma: Tensor) -> Tensor:
        x = (torch.log(sigma) - self.p_mean) / self.p_std
        return 0.5 * torch.erfc(-x / math.sqrt(2))  # Phi(x); torch's ndtr underflows below x ~ -8

    def metadata(self) -> dict[str, Any]:
        return {"path": "edm", "sigma": "exp(Pm + Ps * PhiInv(t))", "P_mean": self.p_mean, "P_std": self.p_std}


class EDMRFPath(SigmaPath):
    """EDM with rf's schedule: sigma_t = t/(1 - t) (our reading of the paper's ``edm/rf``)."""

    name = "edm-rf"

    def sigma(self, t: Tensor) -> Tensor:
        return t / (1 - t)

    def sigma_derivative(self, t: Tensor) -> Tensor:
        return 1 / (1 - t) ** 2

    def t_of_sigma(self, sigma: Tensor) -> Tensor:
        return sigma / (1 + sigma)

    def metadata(self) -> dict[str, Any]:
        return {"path": "edm", "sigma": "t/(1-t)",
                "our_choice": "edm/rf = EDM preconditioning and weight with sigma(t) = t/(1-t), t ~ U(0,1)"}


class EDMCosPath(SigmaPath):
    """EDM with cosine's schedule: sigma_t = tan(pi t/2) (our reading of the paper's ``edm/cos``)."""

    name = "edm-cos"

    def sigma(self, t: Tensor) -> Tensor:
        return torch.tan(math.pi / 2 * t)

    def sigma_derivative(self, t: Tensor) -> Tensor:
        return (math.pi / 2) / torch.cos(math.pi / 2 * t) ** 2

    def t_of_sigma(self, sigma: Tensor) -> Tensor:
        return (2 / math.pi) * torch.atan(sigma)

    def metadata(self) -> dict[str, Any]:
        return {"path": "edm", "sigma": "tan(pi t/2)",
                "our_choice": "edm/cos = EDM preconditioning and weight with sigma(t) = tan(pi t/2), t ~ U(0,1)"}
