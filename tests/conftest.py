"""Every test process (pytest-xdist workers too) imports ablate first: its torchvision fix for the
CPU-only torch must be in place before anything imports torchvision (see ablate/_torchvision_compat.py)."""

import ablate  # noqa: F401
