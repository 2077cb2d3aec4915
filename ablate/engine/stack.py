"""K networks of one architecture called as one: the forward of a pack (:mod:`ablate.engine.pack`).

Generic over any ``nn.Module`` backbone whose forward is ``(x, t, y) -> out`` and treats every sample
alone (no batch statistics): the networks' parameters are stacked along a new leading dimension K
(``torch.stack``, differentiable, so the gradients land in each network's own parameters) and the
template module is called through ``torch.func.functional_call`` under ``torch.func.vmap``, so every
Linear is one batched matmul over K and attention runs over K x B sequences. Buffers are the first
network's (a backbone's buffers must be constants, e.g. DiT's positional embedding).

Modes:

- ``"vmap"``: the stacked call (the CUDA default). Under vmap a convolution with batched weights
  becomes one grouped convolution, and an affine LayerNorm a norm then a multiply-add, which round
  differently from K separate calls on the CPU; every other op of the DiT (Linear as a batched matmul,
  attention, non-affine LayerNorm, embeddings, elementwise ops) is bit-identical there
  (``tests/test_stack.py``: a conv-free backbone exactly, the DiT to rounding).
- ``"loop"``: each network called on its own slice, in turn (the CPU default): bit-identical to
  lone cells, and as fast as vmap on a CPU for the smoke models (measured: vmap is no faster there).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any, Literal

import torch
from torch import Tensor, nn

Mode = Literal["vmap", "loop"]


def mode_for(device: torch.device) -> Mode:
    """``vmap`` on CUDA, ``loop`` elsewhere (see module doc)."""
    return "vmap" if device.type == "cuda" else "loop"


def _stack_inputs(values: Sequence[Any]) -> Any:
    first = values[0]
    if isinstance(first, Tensor):
        return torch.stack(list(values))
    if isinstance(first, (tuple, list)):
        return type(first)(_stack_inputs([v[i] for v in values]) for i in range(len(first)))
    if first is None:
        return None
    raise TypeError(f"a stacked network's inputs must be tensors, tuples of tensors or None; got {type(first).__name__}")


class StackedForward:
    """Calls K networks of one architecture on K input tuples as one (see module doc); ``compile``: the
    stacked call goes through ``torch.compile`` once (``vmap`` mode)."""

    def __init__(self, nets: Sequence[nn.Module], mode: Mode, compile: bool = False) -> None:
        self.nets, self.mode = list(nets), mode
        kinds = {type(n) for n in self.nets}
        if len(kinds) != 1:
            raise ValueError(f"a stack holds networks of one architecture; got {sorted(k.__name__ for k in kinds)}")
        self.names = [name for name, _ in self.nets[0].named_parameters()]
        self.template = copy.deepcopy(self.nets[0]).to("meta")
        self._call: Any = self._vmapped
        if compile and mode == "vmap":
            self._call = torch.compile(self._vmapped, dynamic=False)

    def _vmapped(self, params: dict[str, Tensor], buffers: dict[str, Tensor], args: tuple[Any, ...]) -> Tensor:
        def one(p: dict[str, Tensor], *a: Any) -> Tensor:
            return torch.func.functional_call(self.template, (p, buffers), a)

        dims = tuple(None if a is None else 0 for a in args)
        return torch.func.vmap(one, in_dims=(0, *dims), randomness="error")(params, *args)

    def __call__(self, args: Sequence[tuple[Any, ...]], forward: Any = None,
                 members: Sequence[int] | None = None) -> list[Tensor | None]:
        """The output of network k on ``args[k]`` for every k in ``members`` (default: all), None for the
        others; ``forward``: the ``(net, x, t, y)`` callable of the loop mode (default: ``net(x, t, y)``)."""
        members = range(len(self.nets)) if members is None else list(members)
        out: list[Tensor | None] = [None] * len(self.nets)
        if self.mode == "loop":
            for k in members:
                out[k] = forward(self.nets[k], *args[k]) if forward is not None else self.nets[k](*args[k])
            return out
        params = {name: torch.stack([p for p in ps]) for name, ps in
                  zip(self.names, zip(*(list(n.parameters()) for n in self.nets)))}
        buffers = dict(self.nets[0].named_buffers())
        stacked = self._call(params, buffers, _stack_inputs(list(args)))
        for k in members:
            out[k] = stacked[k]
        return out
