"""Make ``import torchvision`` work on a CPU-only torch.

The only torchvision matching the pinned CPU torch is a CUDA build whose compiled
extension cannot load; its meta registrations then reference ``torchvision::nms``
and ``torchvision::qnms`` and the import dies. When (and only when) the extension
fails to load, declare those two operator schemas so the pure-Python parts
(transforms, models, ``make_grid``) import; ``nms`` itself stays unavailable.
On machines where the extension loads (CUDA torch), this does nothing.

``import ablate`` calls :func:`install_on_import`, which defers the check (it loads torch) to the
first ``import torchvision``, so commands that need no torch (``leaderboard``) never load it.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys
from pathlib import Path

_SCHEMAS = {
    "nms": "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}
_library = None  # keep the torch.library handle alive for the process


def install() -> bool:
    """Declare the missing schemas if torchvision's extension cannot load; return True if patched."""
    global _library
    if _library is not None or "torchvision" in sys.modules:
        return False
    spec = importlib.util.find_spec("torchvision")
    if spec is None or spec.origin is None:
        return False
    import torch

    candidates = sorted(Path(spec.origin).parent.glob("_C*.so")) + sorted(
        Path(spec.origin).parent.glob("_C*.pyd")
    )
    try:
        if not candidates:
            raise OSError("no compiled extension")
        torch.ops.load_library(str(candidates[0]))
        if hasattr(torch.ops.torchvision, "nms"):
            return False
    except (OSError, RuntimeError):
        pass
    _library = torch.library.Library("torchvision", "FRAGMENT")
    for name, schema in _SCHEMAS.items():
        try:
            _library.define(schema)
        except RuntimeError:  # already defined by a partial load
            pass
    return True


class _InstallBeforeTorchvision(importlib.abc.MetaPathFinder):
    """Runs :func:`install` once, just before torchvision is first imported; finds nothing itself."""

    def find_spec(self, name: str, path: object = None, target: object = None) -> None:
        if name == "torchvision":
            sys.meta_path.remove(self)
            install()
        return None


def install_on_import() -> None:
    """:func:`install` now if torchvision is already imported, else at its first import."""
    if "torchvision" in sys.modules:
        install()
    elif not any(isinstance(f, _InstallBeforeTorchvision) for f in sys.meta_path):
        sys.meta_path.insert(0, _InstallBeforeTorchvision())
