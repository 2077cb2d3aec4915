"""The exponential moving average of a network's weights, kept as training goes.

``ema <- decay * ema + (1 - decay) * net``, the first update copying; the module calls
:meth:`EMA.update_parameters` every ``every`` optimizer steps (SD3: every 100 with decay 0.99; DiT:
every step with 0.9999). Integer buffers are copied at the first update only. Updates before
``ema.start`` steps (an option for short runs) restart the average: they copy the weights.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn


class EMA(nn.Module):
    """The average in ``module``, with the count of updates in ``n_averaged``: the state dict keys match
    torch's ``AveragedModel`` (``module.*``, ``n_averaged``). An update never synchronises host and
    device: the count that decides the first copy lives on the host too (read back once after a
    checkpoint is loaded)."""

    def __init__(self, net: nn.Module, decay: float) -> None:
        super().__init__()
        self.module, self.decay = copy.deepcopy(net), decay
        self.register_buffer("n_averaged", torch.tensor(0, dtype=torch.long))
        self._count: int | None = 0

    def _load_from_state_dict(self, *args: Any, **kwargs: Any) -> None:
        super()._load_from_state_dict(*args, **kwargs)
        self._count = None  # read n_averaged once, at the next update

    @torch.no_grad()
    def update_parameters(self, net: nn.Module, restart: bool = False) -> None:
        """One update; ``restart``: copy the weights instead (the average starts again from them)."""
        if self._count is None:
            self._count = int(self.n_averaged)
        mine = [*self.module.parameters(), *self.module.buffers()]
        theirs = [t.detach() for t in (*net.parameters(), *net.buffers())]
        if self._count == 0 or restart:
            torch._foreach_copy_(mine, theirs)
        else:
            floating = [(a, b) for a, b in zip(mine, theirs) if a.is_floating_point()]
            torch._foreach_lerp_([a for a, _ in floating], [b for _, b in floating], 1.0 - self.decay)
        self.n_averaged += 1
        self._count += 1
