"""The ``--device`` option of every command, checked against the torch that is installed.

``auto`` (or nothing) is cuda when torch sees a GPU, else cpu; ``cpu``; ``cuda`` or ``cuda:N`` only
where torch sees that GPU. Anything else is a :class:`~ablate.errors.ConfigError` saying what is allowed
here, instead of a traceback from deep inside torch or Lightning.
"""

from __future__ import annotations

import torch

from ablate.errors import ConfigError

ALLOWED = "auto (cuda when a GPU is visible, else cpu), cpu, cuda or cuda:N"


def resolve_device(choice: str | None) -> torch.device:
    """The torch device ``--device choice`` asks for, if this machine has it."""
    text = (choice or "auto").strip().lower()
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(text)
    except RuntimeError:
        raise ConfigError(f"--device {choice!r} is not a device name; allowed: {ALLOWED}.") from None
    if device.type == "cpu":
        return device
    if device.type != "cuda":
        raise ConfigError(f"--device {choice!r} is not supported by ablate; allowed: {ALLOWED}.")
    if not torch.cuda.is_available():
        build = ("a CPU-only build" if torch.version.cuda is None
                 else f"built for CUDA {torch.version.cuda}, but no GPU is visible (CUDA_VISIBLE_DEVICES, driver)")
        raise ConfigError(f"--device {choice!r} asks for a GPU, but there is no CUDA GPU here: torch "
                          f"{torch.__version__} is {build}. Allowed here: --device cpu, or auto (which picks cpu).")
    count = torch.cuda.device_count()
    if device.index is not None and device.index >= count:
        raise ConfigError(f"--device {choice!r} names GPU {device.index}, but torch sees {count} GPU(s); "
                          f"allowed: cuda, or cuda:0 to cuda:{count - 1}.")
    return device
