"""A :class:`Formulation` composes a path, a prediction and a loss (e.g. ``rf``, ``x0(velocity)/rf``).

Convention: t in [0, 1], **t = 0 is data, t = 1 is noise**; ``z = a_t x0 + b_t eps``.
The timestep density (how t is drawn in training) is a separate axis: :mod:`.timesteps`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import Tensor

from ablate.formulations.losses import Loss
from ablate.formulations.paths import Path
from ablate.formulations.paths import per_sample as _bc
from ablate.formulations.predictions import Prediction


@dataclass(frozen=True)
class Formulation:
    """A trajectory: a path, what the network predicts on it, and what the loss regresses."""

    name: str
    path: Path
    prediction: Prediction
    loss_fn: Loss

    def __post_init__(self) -> None:
        self.prediction.check(self.path)

    # -- the path -------------------------------------------------------------------------
    def coefficients(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """(a_t, b_t) with z_t = a_t x0 + b_t eps."""
        return self.path.coefficients(t)

    def add_noise(self, x0: Tensor, eps: Tensor, t: Tensor) -> Tensor:
        """z_t = a_t x0 + b_t eps, t of shape (B,) or scalar."""
        return self.path.add_noise(x0, eps, t)

    def log_snr(self, t: Tensor) -> Tensor:
        return self.path.log_snr(t)

    def t_of_log_snr(self, lam: Tensor) -> Tensor:
        return self.path.t_of_log_snr(lam)

    def t_range(self) -> tuple[float, float]:
        """Sampling interval (t_lo, t_hi), the prediction's (spec section 5): EDM family sigma 0.002..80;
        eps prediction on a path with a(1) = 0 stops at lambda = -10; otherwise [0, 1]."""
        return self.prediction.t_range(self.path)

    # -- the network's side ---------------------------------------------------------------
    def model_input(self, z: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """What the network receives: (z, t) or, for EDM, (c_in z, c_noise = ln(sigma)/4)."""
        return self.prediction.model_input(z, t, self.path)

    def estimates(self, raw: Tensor, z: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """(x0_hat, eps_hat) from the raw network output at (z, t); affine in ``raw``."""
        return self.prediction.estimates(raw, z, t, self.path)

    def denoise(self, raw: Tensor, z: Tensor, t: Tensor) -> Tensor:
        """x0_hat (EDM: D)."""
        return self.estimates(raw, z, t)[0]

    def velocity(self, raw: Tensor, z: Tensor, t: Tensor) -> Tensor:
        """dz/dt of the generative ODE: a' x0_hat + b' eps_hat."""
        x0_hat, eps_hat = self.estimates(raw, z, t)
        da, db = (_bc(c, z) for c in self.path.derivatives(t))
        return da * x0_hat + db * eps_hat

    # -- training -------------------------------------------------------------------------
    def target(self, x0: Tensor, eps: Tensor, t: Tensor) -> Tensor:
        """The exact raw output for (x0, eps) at t (EDM: the F that makes D = x0)."""
        return self.prediction.target(x0, eps, t, self.path)

    def loss(self, raw: Tensor, x0: Tensor, eps: Tensor, t: Tensor) -> Tensor:
        """Per-sample training loss (B,): the weighted MSE in the formulation's loss space."""
        return self.loss_fn(raw, x0, eps, t, self.path, self.prediction)

    def eps_weight(self, t: Tensor) -> Tensor:
        """w_t of the unified loss ``-1/2 w_t lambda'_t ||eps_hat - eps||^2`` that equals :meth:`loss`.

        Exact constants: rf gives t/(1-t); eps/cos gives sech(lambda/2)/pi; v/cos 2 exp(-lambda/2)/pi
        (the paper's table lists these up to constant factors).
        """
        return self.loss_fn.eps_weight(t, self.path)

    # -- provenance -----------------------------------------------------------------------
    def metadata(self) -> dict[str, Any]:
        """Everything needed to reproduce this formulation, incl. our choices where the paper is silent.

        The loss is recorded when it is not the prediction's own plain MSE (EDM's is implied by ``edm``).
        """
        lo, hi = self.t_range()
        meta: dict[str, Any] = {
            "formulation": self.name,
            "prediction": self.prediction.name,
            "time_convention": "t in [0, 1], t = 0 is data, t = 1 is noise",
            "t_range": [lo, hi],
            **self.path.metadata(),
            **self.prediction.metadata(self.path, (lo, hi)),
        }
        if self.prediction.space is not None and self.loss_fn != Loss(self.prediction.space):
            meta.update(self.loss_fn.metadata())
        return meta
