"""What the network predicts, and a :class:`Formulation` = path + prediction.

Convention: t in [0, 1], t = 0 is data, t = 1 is noise; ``z = a_t x0 + b_t eps``.

Predictions (raw network output F, given z and t):

- ``velocity`` (rf): F estimates dz/dt = a' x0 + b' eps (for rf: eps - x0); loss v-MSE.
- ``eps``: F estimates eps; loss eps-MSE.
- ``v``: F estimates v = a eps - b x0 (Salimans & Ho; for VP paths eps = b z + a v); loss v-MSE.
- ``edm``: EDM preconditioning (sigma_data = 0.5) on a = 1, b = sigma paths:
  ``D = c_skip z + c_out F(c_in z, c_noise)``, loss ``(s^2+sd^2)/(s sd)^2 ||D - x0||^2``.

Every prediction converts to estimates (x0_hat, eps_hat) by solving the 2x2 linear system with
z = a x0_hat + b eps_hat, so the ODE velocity is ``a' x0_hat + b' eps_hat``, which equals the
spec's ``(a'/a) z - (b/2) lambda' eps_hat``. Per-sample losses are means over non-batch dims.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ablate.formulations.paths import SIGMA_MAX, SIGMA_MIN, Path, SigmaPath

PREDICTIONS = ("velocity", "eps", "v", "edm")
SIGMA_DATA = 0.5
EPS_LOG_SNR_MIN = -10.0  # eps models on a path reaching a = 0 stop at this log-SNR (our choice)


def _bc(c: Tensor, like: Tensor) -> Tensor:
    """Broadcast a per-sample coefficient (B,) or scalar over a batch shaped like ``like``."""
    return c.reshape(-1, *([1] * (like.ndim - 1))) if c.ndim > 0 else c


def _per_sample_mean(x: Tensor) -> Tensor:
    return x.reshape(x.shape[0], -1).mean(dim=1)


@dataclass(frozen=True)
class Formulation:
    """A trajectory: a path crossed with a prediction target (e.g. ``rf``, ``eps/linear``, ``edm(-1.2, 1.2)``)."""

    name: str
    path: Path
    prediction: str

    def __post_init__(self) -> None:
        if self.prediction not in PREDICTIONS:
            raise ValueError(f"prediction must be one of {PREDICTIONS}, got {self.prediction!r}")
        if self.prediction == "edm" and not isinstance(self.path, SigmaPath):
            raise ValueError("EDM preconditioning needs a sigma path (a = 1, b = sigma)")

    # -- the path -------------------------------------------------------------------------
    def coefficients(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """(a_t, b_t) with z_t = a_t x0 + b_t eps."""
        return self.path.coefficients(t)

    def add_noise(self, x0: Tensor, eps: Tensor, t: Tensor) -> Tensor:
        """z_t = a_t x0 + b_t eps, t of shape (B,) or scalar."""
        a, b = self.coefficients(t)
        return _bc(a, x0) * x0 + _bc(b, x0) * eps

    def log_snr(self, t: Tensor) -> Tensor:
        return self.path.log_snr(t)

    def t_of_log_snr(self, lam: Tensor) -> Tensor:
        return self.path.t_of_log_snr(lam)

    def t_range(self) -> tuple[float, float]:
        """Sampling interval (t_lo, t_hi). Our choices (spec section 5): EDM family sigma 0.002..80;
        eps prediction on a path with a(1) = 0 stops at lambda = -10; otherwise [0, 1]."""
        one = torch.ones((), dtype=torch.float64)
        if isinstance(self.path, SigmaPath):
            lo = self.path.t_of_sigma(SIGMA_MIN * one)
            hi = self.path.t_of_sigma(SIGMA_MAX * one)
            return float(lo), float(hi)
        a1, _ = self.path.coefficients(one)
        if self.prediction == "eps" and float(a1) < 1e-6:
            return 0.0, float(self.path.t_of_log_snr(EPS_LOG_SNR_MIN * one))
        return 0.0, 1.0

    # -- the network's side ---------------------------------------------------------------
    def _edm_scalings(self, t: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """EDM's (c_skip, c_out, c_in, c_noise) at sigma(t)."""
        s = self.path.sigma(t)
        sd2 = SIGMA_DATA**2
        root = torch.sqrt(s**2 + sd2)
        return sd2 / (s**2 + sd2), s * SIGMA_DATA / root, 1 / root, torch.log(s) / 4

    def model_input(self, z: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """What the network receives: (z, t) or, for EDM, (c_in z, c_noise = ln(sigma)/4)."""
        if self.prediction == "edm":
            _, _, c_in, c_noise = self._edm_scalings(t)
            return _bc(c_in, z) * z, c_noise
        return z, t

    def estimates(self, raw: Tensor, z: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """(x0_hat, eps_hat) from the raw network output at (z, t); linear in ``raw``."""
        a, b = (_bc(c, z) for c in self.coefficients(t))
        if self.prediction == "eps":
            return (z - b * raw) / a, raw
        if self.prediction == "v":
            norm = a**2 + b**2  # 1 on variance-preserving paths
            return (a * z - b * raw) / norm, (b * z + a * raw) / norm
        if self.prediction == "velocity":
            da, db = (_bc(c, z) for c in self.path.derivatives(t))
            det = a * db - b * da
            return (db * z - b * raw) / det, (a * raw - da * z) / det
        c_skip, c_out, _, _ = (_bc(c, z) for c in self._edm_scalings(t))
        x0_hat = c_skip * z + c_out * raw
        return x0_hat, (z - x0_hat) / b

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
        """The regression target of the raw output (EDM: the F that makes D = x0)."""
        a, b = (_bc(c, x0) for c in self.coefficients(t))
        if self.prediction == "eps":
            return eps
        if self.prediction == "v":
            return a * eps - b * x0
        if self.prediction == "velocity":
            da, db = (_bc(c, x0) for c in self.path.derivatives(t))
            return da * x0 + db * eps
        c_skip, c_out, _, _ = (_bc(c, x0) for c in self._edm_scalings(t))
        return (x0 - c_skip * (a * x0 + b * eps)) / c_out

    def loss(self, raw: Tensor, x0: Tensor, eps: Tensor, t: Tensor) -> Tensor:
        """Per-sample training loss (B,): the native MSE with the formulation's weight.

        EDM: ``(s^2+sd^2)/(s sd)^2 * mean ||D - x0||^2``; others: ``mean ||raw - target||^2``.
        """
        if self.prediction == "edm":
            z = self.add_noise(x0, eps, t)
            s = self.path.sigma(t)
            weight = (s**2 + SIGMA_DATA**2) / (s * SIGMA_DATA) ** 2
            return weight * _per_sample_mean((self.denoise(raw, z, t) - x0) ** 2)
        return _per_sample_mean((raw - self.target(x0, eps, t)) ** 2)

    def eps_weight(self, t: Tensor) -> Tensor:
        """w_t of the unified loss ``-1/2 w_t lambda'_t ||eps_hat - eps||^2`` that equals :meth:`loss`.

        Exact constants: rf gives t/(1-t); eps/cos gives sech(lambda/2)/pi; v/cos 2 exp(-lambda/2)/pi
        (the paper's table lists these up to constant factors).
        """
        a, b = self.coefficients(t)
        dlam = self.path.log_snr_derivative(t)
        if self.prediction == "eps":
            scale = torch.ones_like(t)
        elif self.prediction == "v":
            scale = ((a**2 + b**2) / a) ** 2
        elif self.prediction == "velocity":
            scale = (0.5 * b * dlam) ** 2
        else:
            scale = (b**2 + SIGMA_DATA**2) / SIGMA_DATA**2
        return -2 * scale / dlam

    # -- provenance -----------------------------------------------------------------------
    def metadata(self) -> dict[str, Any]:
        """Everything needed to reproduce this formulation, incl. our choices where the paper is silent."""
        lo, hi = self.t_range()
        meta: dict[str, Any] = {
            "formulation": self.name,
            "prediction": self.prediction,
            "time_convention": "t in [0, 1], t = 0 is data, t = 1 is noise",
            "t_range": [lo, hi],
            **self.path.metadata(),
        }
        if self.prediction == "edm":
            meta.update(sigma_data=SIGMA_DATA, sigma_range=[SIGMA_MIN, SIGMA_MAX],
                        network_noise_input="c_noise = ln(sigma)/4")
        elif self.prediction == "eps" and hi < 1.0:
            meta["our_choice_t_hi"] = f"eps model stops where lambda = {EPS_LOG_SNR_MIN}"
        return meta
