"""ablate: an ablation benchmark suite for diffusion formulations (Esser et al. 2024, section 5.1).

Convention everywhere: t in [0, 1], t = 0 is data, t = 1 is noise.
"""

from ablate import threads

threads.set_wait_policy()  # before torch (and its OpenMP) loads: see ablate/threads.py

from ablate import _torchvision_compat  # noqa: E402

_torchvision_compat.install_on_import()  # at the first `import torchvision`: torch stays unloaded until needed

__version__ = "0.1.0"
