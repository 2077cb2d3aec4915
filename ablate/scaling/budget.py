"""Steps per cell that spend a compute budget C: steps = round(C / (training FLOPs per image x batch)).

Rounding to whole steps misses C by at most half a step, so every cell spends C within
:data:`BUDGET_TOLERANCE` once it has at least 1 / (2 x tolerance) = 25 steps; a budget too small
for a model (fewer steps) is an error, never a silently different budget.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ablate.errors import ConfigError

BUDGET_TOLERANCE = 0.02  # every cell of a budget spends C within 2%


@dataclass(frozen=True)
class Spend:
    """How a cell spends its budget: steps, images seen (D) and the FLOPs actually spent."""

    budget: float
    steps: int
    images: int
    flops: float

    @property
    def error(self) -> float:
        """Relative difference between the FLOPs spent and the budget."""
        return abs(self.flops - self.budget) / self.budget


def steps_for_budget(budget: float, flops_per_image: float, batch_size: int, where: str = "the budget") -> Spend:
    """The whole number of steps of ``batch_size`` images that spends ``budget`` FLOPs within the tolerance.

    ``where`` names the budget in errors (file, key and model)."""
    if not (budget > 0 and math.isfinite(budget)) or flops_per_image <= 0 or batch_size < 1:
        raise ConfigError(f"{where}: budget {budget!r} with {flops_per_image!r} FLOPs per image and batch "
                          f"{batch_size!r}; allowed: a positive finite budget, positive FLOPs and batch size.")
    per_step = flops_per_image * batch_size
    steps = max(1, round(budget / per_step))
    spend = Spend(budget, steps, steps * batch_size, steps * per_step)
    if spend.error > BUDGET_TOLERANCE:
        least = per_step / (2 * BUDGET_TOLERANCE)
        raise ConfigError(f"{where} is {budget:.3g} FLOPs, which is {budget / per_step:.1f} steps of {batch_size} "
                          f"images at {flops_per_image:.4g} training FLOPs per image; whole steps cannot spend it "
                          f"within {BUDGET_TOLERANCE:.0%} (off by {spend.error:.1%}). Allowed: a budget of at least "
                          f"{least:.3g} FLOPs for this model (25 steps or more), or a smaller model or batch.")
    return spend


def budget_label(budget: float) -> str:
    """A short, filesystem-safe name for a budget: ``3e12``, ``1.5e13``."""
    mantissa, exponent = f"{budget:.2e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"
