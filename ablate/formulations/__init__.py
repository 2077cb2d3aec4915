"""The formulation layer, one small typed object per axis of the SD3 ablation.

- :mod:`.paths`: the trajectory's forward path ``z_t = a_t x0 + b_t eps`` (rf, cos, linear, EDM family).
- :mod:`.predictions`: what the network outputs (velocity, eps, v, x0, EDM-preconditioned F).
- :mod:`.losses`: the loss space (x0, eps, v, velocity) and its weight.
- :mod:`.formulation`: :class:`Formulation` = path + prediction + loss.
- :mod:`.timesteps`: the timestep density pi(t) training draws t from (and the resolution shift).
- :mod:`.solver`: the Euler solver with classifier-free guidance; :mod:`.levels`: validation levels.
- :mod:`.names`: the one parser and printer of variant names.

Plain torch only (no Lightning, data or models). Convention everywhere: t in [0, 1],
**t = 0 is data, t = 1 is noise**, ``z_t = a_t x0 + b_t eps``.
"""

from ablate.formulations.formulation import Formulation
from ablate.formulations.levels import level_log_snrs, level_times, matched_times
from ablate.formulations.losses import Loss
from ablate.formulations.names import (
    TRAJECTORIES,
    Variant,
    canonical_variant,
    get_formulation,
    parse_sampler,
    parse_timestep_density,
    parse_variant,
    variant_name,
)
from ablate.formulations.predictions import LOSS_SPACES, PREDICTIONS, Prediction
from ablate.formulations.solver import TIME_GRIDS, euler_calls, euler_sample, sampler_metadata, sampling_times, solver_metadata
from ablate.formulations.timesteps import TimestepDensity

__all__ = [
    "Formulation",
    "LOSS_SPACES",
    "Loss",
    "PREDICTIONS",
    "Prediction",
    "TIME_GRIDS",
    "TRAJECTORIES",
    "TimestepDensity",
    "Variant",
    "canonical_variant",
    "euler_calls",
    "euler_sample",
    "get_formulation",
    "level_log_snrs",
    "level_times",
    "matched_times",
    "parse_sampler",
    "parse_timestep_density",
    "parse_variant",
    "sampler_metadata",
    "sampling_times",
    "solver_metadata",
    "variant_name",
]
