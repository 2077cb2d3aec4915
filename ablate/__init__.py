"""ablate: an ablation benchmark suite for diffusion formulations (Esser et al. 2024, section 5.1).

Convention everywhere: t in [0, 1], t = 0 is data, t = 1 is noise.
"""

from ablate import _torchvision_compat

_torchvision_compat.install()

__version__ = "0.1.0"
