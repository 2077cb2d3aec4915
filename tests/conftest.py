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


# The longest test files (seconds of one xdist process, `pytest --durations`, 2026-12-07, 2-core VM), run
# first: CI's two processes take a file each at a time (`--dist loadfile --no-loadscope-reorder`), and a long
# file started last kept one process busy while the other had nothing left. Only the order changes.
LONGEST_FIRST = ("test_failures.py", "test_validity_bench.py", "test_workers.py", "test_latent_path.py", "test_pack.py",
                 "test_search.py", "test_probe.py", "test_cli_errors.py", "test_intervals.py", "test_cell_reference.py",
                 "test_ddp.py", "test_postgres.py", "test_gpu_paths.py", "test_quickstart.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the rest keep their order
