"""Make ``import torchvision`` work on a CPU-only torch.

The only torchvision matching the pinned CPU torch is a CUDA build whose compiled
extension cannot load; its meta registrations then reference ``torchvision::nms``
and ``torchvision::qnms`` and the import dies. When (and only when) the extension
fails to load, declare those two operator schemas so the pure-Python parts
(transforms, models, ``make_grid``) import; ``nms`` itself stays unavailable.
On machines where the extension loads (CUDA torch), this does nothing.
"""

from __future__ import annotations

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
