"""The 8 validation levels (spec sections 4 and 6).

- Native validation loss: stratified at 8 equally spaced t, ``t_k = (k + 0.5)/8`` in the
  formulation's own time (the paper's protocol).
- Cross-formulation x0-MSE (our addition): at 8 fixed log-SNR levels
  ``lambda_k = 2 log((1 - t_k)/t_k)`` (rf's log-SNR at t_k); each formulation evaluates at its own t
  with that lambda (LDM-linear clamps levels outside its range to its ends).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ablate.formulations.formulation import Formulation

NUM_LEVELS = 8


def level_times() -> Tensor:
    """t_k = (k + 0.5)/8, float64."""
    return (torch.arange(NUM_LEVELS, dtype=torch.float64) + 0.5) / NUM_LEVELS


def level_log_snrs() -> Tensor:
    """lambda_k = 2 log((1 - t_k)/t_k)."""
    t = level_times()
    return 2 * (torch.log1p(-t) - torch.log(t))


def matched_times(formulation: Formulation) -> Tensor:
    """The formulation's own t at each fixed log-SNR level lambda_k."""
    return formulation.t_of_log_snr(level_log_snrs())
