"""Timestep densities: how training draws t, a density pi(t) on [0, 1] (t = 0 is data, t = 1 is noise).

Names as the paper writes them: ``uniform``, ``lognorm(m, s)``, ``mode(s)``, ``cosmap``; any of
them may be followed by ``/shift(alpha)``, the resolution shift ``t' = alpha t / (1 + (alpha - 1) t)``
(paper section 5.3.2). Each density has ``sample(n, generator)`` and its exact ``density(t)``.

Draws are computed in float64 and clamped to [T_EPS, 1 - T_EPS] so every formulation's sigma and
log-SNR stay finite (EDM's sigma is infinite at t = 1); the densities are the unclamped ones.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch
from torch import Tensor

from ablate.errors import VariantError

T_EPS = 1e-6
MODE_S_MAX = 2 / (math.pi - 2)  # ~1.7519: beyond it mode(s) is not monotone
DENSITY_HELP = (
    "Valid timestep densities: uniform; lognorm(m, s) with any m and s > 0; "
    f"mode(s) with -1 <= s <= 2/(pi-2) ~ {MODE_S_MAX:.4f}; cosmap; each optionally followed by "
    "/shift(alpha) with alpha > 0."
)


def format_number(x: float) -> str:
    """Canonical number in a name: two decimals as the paper writes them, more only when needed."""
    x = float(x)
    if x == 0:
        x = 0.0  # no "-0.00"
    return f"{x:.2f}" if abs(x - round(x, 2)) < 1e-12 else repr(x)


class TimestepDensity(ABC):
    """A density on t in [0, 1] that can be sampled."""

    @property
    @abstractmethod
    def name(self) -> str:
        """Canonical name, e.g. ``lognorm(0.00, 1.00)``."""

    @abstractmethod
    def _draw(self, u: Tensor) -> Tensor:
        """Map float64 uniform (or normal, see :attr:`base_noise`) draws to t."""

    @abstractmethod
    def density(self, t: Tensor) -> Tensor:
        """pi(t), exact."""

    base_noise = "uniform"

    def sample(
        self,
        n: int,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> Tensor:
        """n draws of t, deterministic given ``generator``; returned on ``device`` as ``dtype``."""
        gen_device = generator.device if generator is not None else "cpu"
        draw = torch.randn if self.base_noise == "normal" else torch.rand
        u = draw(n, generator=generator, device=gen_device, dtype=torch.float64)
        t = self._draw(u).clamp(T_EPS, 1 - T_EPS)
        return t.to(device=device or gen_device, dtype=dtype)

    def __repr__(self) -> str:
        return self.name


class Uniform(TimestepDensity):
    name = "uniform"

    def _draw(self, u: Tensor) -> Tensor:
        return u

    def density(self, t: Tensor) -> Tensor:
        return torch.ones_like(t)


@dataclass(frozen=True, repr=False)
class LogitNormal(TimestepDensity):
    """lognorm(m, s): u ~ N(m, s^2), t = sigmoid(u)."""

    m: float
    s: float
    base_noise = "normal"

    @property
    def name(self) -> str:
        return f"lognorm({format_number(self.m)}, {format_number(self.s)})"

    def _draw(self, u: Tensor) -> Tensor:
        return torch.sigmoid(self.m + self.s * u)

    def density(self, t: Tensor) -> Tensor:
        logit = torch.log(t) - torch.log1p(-t)
        return torch.exp(-((logit - self.m) ** 2) / (2 * self.s**2)) / (
            self.s * math.sqrt(2 * math.pi) * t * (1 - t)
        )


@dataclass(frozen=True, repr=False)
class ModeHeavyTails(TimestepDensity):
    """mode(s): u ~ U(0,1), t = f(u) = 1 - u - s (cos^2(pi u/2) - 1 + u); density |d f^-1/dt|."""

    s: float

    @property
    def name(self) -> str:
        return f"mode({format_number(self.s)})"

    def _draw(self, u: Tensor) -> Tensor:
        return 1 - u - self.s * (torch.cos(math.pi / 2 * u) ** 2 - 1 + u)

    def inverse(self, t: Tensor) -> Tensor:
        """u = f^-1(t) by bisection in float64 (f decreases from 1 at u = 0 to 0 at u = 1)."""
        t64 = t.to(torch.float64)
        lo, hi = torch.zeros_like(t64), torch.ones_like(t64)
        for _ in range(60):
            mid = (lo + hi) / 2
            above = self._draw(mid) > t64  # f(mid) > t means the root is right of mid
            lo, hi = torch.where(above, mid, lo), torch.where(above, hi, mid)
        return ((lo + hi) / 2).to(t.dtype)

    def density(self, t: Tensor) -> Tensor:
        u = self.inverse(t)
        slope = -1 - self.s + self.s * (math.pi / 2) * torch.sin(math.pi * u)
        return 1 / slope.abs()


class CosMap(TimestepDensity):
    """cosmap: u ~ U(0,1), t = 1 - 1/(tan(pi u/2) + 1); rf's log-SNR then equals cosine's at t = u."""

    name = "cosmap"

    def _draw(self, u: Tensor) -> Tensor:
        return 1 - 1 / (torch.tan(math.pi / 2 * u) + 1)

    def density(self, t: Tensor) -> Tensor:
        return 2 / (math.pi - 2 * math.pi * t + 2 * math.pi * t**2)


@dataclass(frozen=True, repr=False)
class Shifted(TimestepDensity):
    """Resolution shift of a base density: t' = alpha t / (1 + (alpha - 1) t)."""

    base: TimestepDensity
    alpha: float

    @property
    def name(self) -> str:
        return f"{self.base.name}/shift({format_number(self.alpha)})"

    @property
    def base_noise(self) -> str:  # type: ignore[override]
        return self.base.base_noise

    def _draw(self, u: Tensor) -> Tensor:
        t = self.base._draw(u)
        return self.alpha * t / (1 + (self.alpha - 1) * t)

    def density(self, t: Tensor) -> Tensor:
        denom = self.alpha - (self.alpha - 1) * t
        return self.base.density(t / denom) * self.alpha / denom**2


def build_density(kind: str, args: list[float], spelled: str) -> TimestepDensity:
    """One timestep density from its parsed name and arguments; raises VariantError with the valid forms."""
    arity = {"uniform": 0, "cosmap": 0, "lognorm": 2, "mode": 1}
    if kind not in arity:
        raise VariantError(f"Unknown timestep density {spelled!r}. {DENSITY_HELP}")
    if len(args) != arity[kind]:
        form = {"uniform": "uniform", "cosmap": "cosmap", "lognorm": "lognorm(m, s)", "mode": "mode(s)"}[kind]
        raise VariantError(
            f"Timestep density {spelled!r} takes {arity[kind]} argument(s), got {len(args)}: "
            f"write it as {form}. {DENSITY_HELP}"
        )
    if kind == "lognorm":
        if args[1] <= 0:
            raise VariantError(f"In {spelled!r} the scale s = {args[1]} must be > 0. {DENSITY_HELP}")
        return LogitNormal(args[0], args[1])
    if kind == "mode":
        if not -1 <= args[0] <= MODE_S_MAX:
            raise VariantError(
                f"In {spelled!r} s = {args[0]} is outside -1 <= s <= 2/(pi-2) ~ {MODE_S_MAX:.4f} "
                f"(beyond it the map is not monotone). {DENSITY_HELP}"
            )
        return ModeHeavyTails(args[0])
    return Uniform() if kind == "uniform" else CosMap()


def shift(base: TimestepDensity, alpha: float) -> TimestepDensity:
    """The resolution-shift wrapper; alpha = 1 returns ``base`` unchanged."""
    if not alpha > 0:
        raise VariantError(f"shift(alpha) needs alpha > 0, got {alpha}. {DENSITY_HELP}")
    return base if alpha == 1 else Shifted(base, float(alpha))
