"""Every test process (pytest-xdist workers too) imports ablate first: its torchvision fix for the
CPU-only torch must be in place before anything imports torchvision (see ablate/_torchvision_compat.py)."""

import ablate  # noqa: F401
import pytest


@pytest.fixture()
def one_thread():
    """Torch on one thread for the test (bit-identical sums); a test module's own fixture of that name wins."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
