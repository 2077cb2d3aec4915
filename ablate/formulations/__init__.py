"""The formulation layer: trajectories, predictions, timestep samplers and the Euler sampler.

Plain torch only (no Lightning, data or models). Convention everywhere: t in [0, 1],
**t = 0 is data, t = 1 is noise**, ``z_t = a_t x0 + b_t eps``.
"""

from ablate.formulations.levels import level_log_snrs, level_times, matched_times
from ablate.formulations.names import (
    Variant,
    canonical_variant,
    get_formulation,
    parse_sampler,
    parse_variant,
    variant_name,
)
from ablate.formulations.predictions import Formulation
from ablate.formulations.sampling import TIME_GRIDS, euler_sample, sampler_metadata, sampling_times

__all__ = [
    "Formulation",
    "TIME_GRIDS",
    "Variant",
    "canonical_variant",
    "euler_sample",
    "get_formulation",
    "level_log_snrs",
    "level_times",
    "matched_times",
    "parse_sampler",
    "parse_variant",
    "sampler_metadata",
    "sampling_times",
    "variant_name",
]
