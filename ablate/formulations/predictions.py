"""What the network outputs: one small class per prediction, all with one interface.

Convention: t in [0, 1], t = 0 is data, t = 1 is noise; ``z = a_t x0 + b_t eps`` on a :class:`Path`.

A prediction turns the raw network output F at (z, t) into the estimates (x0_hat, eps_hat) by
solving z = a x0_hat + b eps_hat together with its own definition of F; every estimate is affine
in F. It also says what the network receives (:meth:`Prediction.model_input`), which F is exact
(:meth:`Prediction.target`) and where the sampler may run (:meth:`Prediction.t_range`).

- ``velocity``: F estimates dz/dt = a' x0 + b' eps (rf: eps - x0).
- ``eps``: F estimates eps; x0_hat = (z - b F)/a.
- ``v``: F estimates v = a eps - b x0 (Salimans & Ho); eps_hat = (b z + a F)/(a^2 + b^2).
- ``x0``: F estimates x0; eps_hat = (z - a F)/b.
- ``edm``: EDM preconditioning (sigma_data = 0.5) on a = 1, b = sigma paths:
  ``x0_hat = D = c_skip z + c_out F(c_in z, c_noise)``.

The same quantities name the *loss spaces* (``x0``, ``eps``, ``v``, ``velocity``, see
:func:`in_space`); a prediction whose F is one of them has that as its :attr:`Prediction.space`.
Adding a prediction is one class here plus its name in :data:`PREDICTIONS`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import torch
from torch import Tensor

from ablate.formulations.paths import SIGMA_MAX, SIGMA_MIN, Path, SigmaPath
from ablate.formulations.paths import per_sample as _bc

SIGMA_DATA = 0.5
EPS_LOG_SNR_MIN = -10.0  # eps models on a path reaching a = 0 stop at this log-SNR (our choice)
LOSS_SPACES = ("x0", "eps", "v", "velocity")


def in_space(space: str, x0: Tensor, eps: Tensor, t: Tensor, path: Path) -> Tensor:
    """The pair (x0, eps) at t expressed in a loss space: x0, eps, v = a eps - b x0, velocity = a' x0 + b' eps."""
    if space == "x0":
        return x0
    if space == "eps":
        return eps
    if space == "v":
        a, b = (_bc(c, x0) for c in path.coefficients(t))
        return a * eps - b * x0
    if space == "velocity":
        da, db = (_bc(c, x0) for c in path.derivatives(t))
        return da * x0 + db * eps
    raise ValueError(f"loss space must be one of {LOSS_SPACES}, got {space!r}")


class Prediction(ABC):
    """What the raw network output F estimates, and how F converts to (x0_hat, eps_hat)."""

    name: ClassVar[str]
    space: ClassVar[str | None]  # the loss space in which F itself is the estimate (None: EDM's F)

    def check(self, path: Path) -> None:
        """Raise ValueError when this prediction cannot be used on ``path``."""

    def model_input(self, z: Tensor, t: Tensor, path: Path) -> tuple[Tensor, Tensor]:
        """What the network receives; (z, t) unless the prediction preconditions its input."""
        return z, t

    @abstractmethod
    def estimates(self, raw: Tensor, z: Tensor, t: Tensor, path: Path) -> tuple[Tensor, Tensor]:
        """(x0_hat, eps_hat) from the raw output at (z, t); affine in ``raw``."""

    def target(self, x0: Tensor, eps: Tensor, t: Tensor, path: Path) -> Tensor:
        """The raw output that is exact for this (x0, eps) at t."""
        assert self.space is not None, f"{type(self).__name__} must define target"
        return in_space(self.space, x0, eps, t, path)

    def t_range(self, path: Path) -> tuple[float, float]:
        """Sampling interval (t_lo, t_hi); [0, 1] unless the prediction is singular at an end."""
        return 0.0, 1.0

    def metadata(self, path: Path, t_range: tuple[float, float]) -> dict[str, Any]:
        """Choices beyond the name that a result row must record (none by default)."""
        return {}

    def __repr__(self) -> str:
        return self.name


class Velocity(Prediction):
    """F estimates the ODE velocity dz/dt = a' x0 + b' eps (rectified flow: eps - x0)."""

    name, space = "velocity", "velocity"

    def estimates(self, raw: Tensor, z: Tensor, t: Tensor, path: Path) -> tuple[Tensor, Tensor]:
        a, b = (_bc(c, z) for c in path.coefficients(t))
        da, db = (_bc(c, z) for c in path.derivatives(t))
        det = a * db - b * da
        return (db * z - b * raw) / det, (a * raw - da * z) / det


class Eps(Prediction):
    """F estimates the noise eps; x0_hat = (z - b F)/a, singular where a = 0."""

    name, space = "eps", "eps"

    def estimates(self, raw: Tensor, z: Tensor, t: Tensor, path: Path) -> tuple[Tensor, Tensor]:
        a, b = (_bc(c, z) for c in path.coefficients(t))
        return (z - b * raw) / a, raw

    def t_range(self, path: Path) -> tuple[float, float]:
        """[0, 1], or up to lambda = -10 on a path reaching a = 0 at t = 1 (eps/cos, eps/rf): our choice."""
        one = torch.ones((), dtype=torch.float64)
        a1, _ = path.coefficients(one)
        if float(a1) < 1e-6:
            return 0.0, float(path.t_of_log_snr(EPS_LOG_SNR_MIN * one))
        return 0.0, 1.0

    def metadata(self, path: Path, t_range: tuple[float, float]) -> dict[str, Any]:
        if t_range[1] < 1.0:
            return {"our_choice_t_hi": f"eps model stops where lambda = {EPS_LOG_SNR_MIN}"}
        return {}


class V(Prediction):
    """F estimates v = a eps - b x0 (Salimans & Ho); on variance-preserving paths eps = b z + a v."""

    name, space = "v", "v"

    def estimates(self, raw: Tensor, z: Tensor, t: Tensor, path: Path) -> tuple[Tensor, Tensor]:
        a, b = (_bc(c, z) for c in path.coefficients(t))
        norm = a**2 + b**2  # 1 on variance-preserving paths
        return (a * z - b * raw) / norm, (b * z + a * raw) / norm


class X0(Prediction):
    """F estimates the data x0; eps_hat = (z - a F)/b, singular only where b = 0.

    On rf, b(t) = t: at t_hi = 1 (pure noise) eps_hat = z is well defined, so the sampler runs over
    [0, 1]; t = 0 is never evaluated (the solver's last step returns x0_hat from the previous time and
    training draws t >= T_EPS).
    """

    name, space = "x0", "x0"

    def estimates(self, raw: Tensor, z: Tensor, t: Tensor, path: Path) -> tuple[Tensor, Tensor]:
        a, b = (_bc(c, z) for c in path.coefficients(t))
        return raw, (z - a * raw) / b


class EDMPreconditioned(Prediction):
    """EDM (Karras et al. 2022): D = c_skip z + c_out F(c_in z, c_noise), sigma_data = 0.5; a = 1, b = sigma."""

    name, space = "edm", None

    def check(self, path: Path) -> None:
        if not isinstance(path, SigmaPath):
            raise ValueError("EDM preconditioning needs a sigma path (a = 1, b = sigma)")

    def scalings(self, t: Tensor, path: SigmaPath) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """EDM's (c_skip, c_out, c_in, c_noise) at sigma(t)."""
        s = path.sigma(t)
        sd2 = SIGMA_DATA**2
        root = torch.sqrt(s**2 + sd2)
        return sd2 / (s**2 + sd2), s * SIGMA_DATA / root, 1 / root, torch.log(s) / 4

    def model_input(self, z: Tensor, t: Tensor, path: Path) -> tuple[Tensor, Tensor]:
        """(c_in z, c_noise = ln(sigma)/4)."""
        _, _, c_in, c_noise = self.scalings(t, path)  # type: ignore[arg-type]
        return _bc(c_in, z) * z, c_noise

    def estimates(self, raw: Tensor, z: Tensor, t: Tensor, path: Path) -> tuple[Tensor, Tensor]:
        _, b = (_bc(c, z) for c in path.coefficients(t))
        c_skip, c_out, _, _ = (_bc(c, z) for c in self.scalings(t, path))  # type: ignore[arg-type]
        x0_hat = c_skip * z + c_out * raw
        return x0_hat, (z - x0_hat) / b

    def target(self, x0: Tensor, eps: Tensor, t: Tensor, path: Path) -> Tensor:
        """The F that makes D = x0."""
        a, b = (_bc(c, x0) for c in path.coefficients(t))
        c_skip, c_out, _, _ = (_bc(c, x0) for c in self.scalings(t, path))  # type: ignore[arg-type]
        return (x0 - c_skip * (a * x0 + b * eps)) / c_out

    def t_range(self, path: Path) -> tuple[float, float]:
        """EDM's sigma interval 0.002..80 mapped to t."""
        one = torch.ones((), dtype=torch.float64)
        return float(path.t_of_sigma(SIGMA_MIN * one)), float(path.t_of_sigma(SIGMA_MAX * one))  # type: ignore[attr-defined]

    def metadata(self, path: Path, t_range: tuple[float, float]) -> dict[str, Any]:
        return {"sigma_data": SIGMA_DATA, "sigma_range": [SIGMA_MIN, SIGMA_MAX],
                "network_noise_input": "c_noise = ln(sigma)/4"}


PREDICTIONS: dict[str, Prediction] = {p.name: p for p in (Velocity(), Eps(), V(), X0(), EDMPreconditioned())}
