"""The training loss: what is regressed (the loss space) and with what weight.

Convention: t in [0, 1], t = 0 is data, t = 1 is noise; ``z = a_t x0 + b_t eps``.

A :class:`Loss` is ``weight(t) * mean ||S_hat - S||^2`` per sample, S one of the loss spaces of
:data:`~ablate.formulations.predictions.LOSS_SPACES`: ``x0``, ``eps``, ``v`` (= a eps - b x0) or
``velocity`` (= dz/dt = a' x0 + b' eps). When S is the prediction's own space the raw output is
regressed on its target directly; otherwise S_hat comes from the prediction's (x0_hat, eps_hat).

At fixed z every space's error is a multiple of the eps error, ``S_hat - S = k_S(t) (eps_hat - eps)``
(x0: k = -b/a; v: (a^2 + b^2)/a; velocity: b a'/a - b' = b lambda'/2), so every loss is the unified
``-1/2 w_t lambda'_t ||eps_hat - eps||^2`` with ``w_t = -2 weight(t) k_S^2 / lambda'_t``
(:meth:`Loss.eps_weight`). On rf the velocity-space loss of x0-prediction (JiT's recipe) is
``||x0_hat - x0||^2 / t^2`` with w_t = t/(1-t), rf's own weight. JiT also caps that 1/t (its
``t_eps``); we regress the exact velocity and rely on the timestep clamp ``T_EPS``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor

from ablate.formulations.paths import Path, SigmaPath
from ablate.formulations.predictions import LOSS_SPACES, SIGMA_DATA, Prediction, in_space


def _per_sample_mean(x: Tensor) -> Tensor:
    return x.reshape(x.shape[0], -1).mean(dim=1)


class LossWeight(ABC):
    """A per-sample weight on the squared error, a function of t on the path."""

    name: ClassVar[str]

    @abstractmethod
    def __call__(self, t: Tensor, path: Path) -> Tensor | float: ...


@dataclass(frozen=True)
class Unit(LossWeight):
    """No weight (1.0, a float so the loss keeps its dtype and bits)."""

    name: ClassVar[str] = "unit"

    def __call__(self, t: Tensor, path: Path) -> float:
        return 1.0


@dataclass(frozen=True)
class EDMWeight(LossWeight):
    """EDM's ``(sigma^2 + sd^2)/(sigma sd)^2`` on the x0 error (sigma_data = 0.5)."""

    name: ClassVar[str] = "edm"

    def __call__(self, t: Tensor, path: Path) -> Tensor:
        assert isinstance(path, SigmaPath), "the EDM weight needs a sigma path"
        s = path.sigma(t)
        return (s**2 + SIGMA_DATA**2) / (s * SIGMA_DATA) ** 2


def eps_error_scale(space: str, t: Tensor, path: Path) -> Tensor:
    """k_S(t)^2: the squared factor from the eps error to the error in ``space`` at fixed z."""
    a, b = path.coefficients(t)
    if space == "eps":
        return torch.ones_like(t)
    if space == "x0":
        return (b / a) ** 2
    if space == "v":
        return ((a**2 + b**2) / a) ** 2
    if space == "velocity":
        return (0.5 * b * path.log_snr_derivative(t)) ** 2
    raise ValueError(f"loss space must be one of {LOSS_SPACES}, got {space!r}")


@dataclass(frozen=True)
class Loss:
    """``weight(t) * mean ||S_hat - S||^2`` in loss space S (x0, eps, v or velocity)."""

    space: str
    weight: LossWeight = field(default_factory=Unit)

    def __post_init__(self) -> None:
        if self.space not in LOSS_SPACES:
            raise ValueError(f"loss space must be one of {LOSS_SPACES}, got {self.space!r}")

    def __call__(self, raw: Tensor, x0: Tensor, eps: Tensor, t: Tensor, path: Path, prediction: Prediction) -> Tensor:
        """Per-sample loss (B,), a mean over the non-batch dims."""
        if self.space == prediction.space:
            residual = raw - prediction.target(x0, eps, t, path)
        else:
            z = path.add_noise(x0, eps, t)
            x0_hat, eps_hat = prediction.estimates(raw, z, t, path)
            residual = in_space(self.space, x0_hat, eps_hat, t, path) - in_space(self.space, x0, eps, t, path)
        return self.weight(t, path) * _per_sample_mean(residual**2)

    def eps_weight(self, t: Tensor, path: Path) -> Tensor:
        """w_t of the unified loss ``-1/2 w_t lambda'_t ||eps_hat - eps||^2`` that equals this loss."""
        scale = self.weight(t, path) * eps_error_scale(self.space, t, path)
        return -2 * scale / path.log_snr_derivative(t)

    def metadata(self) -> dict[str, Any]:
        return {"loss_space": self.space, "loss_weight": self.weight.name}


def own_loss(prediction: Prediction) -> Loss:
    """The plain MSE on the prediction's own output, unit weight (EDM has no such space: use EDM_LOSS)."""
    if prediction.space is None:
        raise ValueError(f"prediction {prediction.name!r} has no loss space of its own")
    return Loss(prediction.space)


EDM_LOSS = Loss("x0", EDMWeight())  # Karras et al.: weighted ||D - x0||^2
