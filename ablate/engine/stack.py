"""K networks of one architecture called as one: the forward of a pack (:mod:`ablate.engine.pack`).

Generic over any ``nn.Module`` backbone whose forward is ``(x, t, y) -> out`` and treats every sample
alone (no batch statistics). The networks' parameters are stacked along a new leading dimension K at
each call (``torch.stack``, differentiable, so the gradients land in each network's own parameters).
Buffers are the first network's (a backbone's buffers must be constants, e.g. DiT's positional embedding).

Modes:

- ``"flat"``: the K networks as one network on the K x B samples: a copy of the first whose every
  ``nn.Linear`` is one batched matmul over K (``baddbmm`` of the stacked weights on the K blocks of B
  samples) and whose other parametrised leaf modules (convolutions, embeddings, affine norms) run each
  network's own module on its block; everything else (attention over K x B sequences, norms without
  parameters, elementwise passes) runs once on all samples. Bit-identical to the networks alone on
  this CPU, forward and gradients (``tests/test_stack.py``, ``tests/test_pack.py``). A backbone with a
  parameter outside its leaf modules (a learned positional embedding used directly) cannot be flattened
  this way: :func:`flat_supported`, and the vmap mode takes it.
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
import warnings
from collections.abc import Sequence
from typing import Any, Literal

import torch
from torch import Tensor, nn

from ablate.engine.accel import compile_once
from ablate.engine.graphs import GraphedCall

Mode = Literal["flat", "vmap", "loop"]


EVAL_MODE: Mode = "loop"
"""How a pack validates and samples, on every device: its members' networks in turn (each replaying its own CUDA
graphs), not stacked. On an H100 with graphs the stacked forms were slower at k = 8: validation 1.42-1.49x and
sampling 1.92x in two calls, and a plain 8-cell run spent 125 s evaluating as a pack against 40 s for the same cells
alone (``benchmarks/gpu-runs/2026-12-07e/README.md``). Training keeps :func:`mode_for`'s stack."""


def mode_for(device: torch.device, net: nn.Module) -> Mode:
    """``flat`` on CUDA where the backbone allows it (else ``vmap``), ``loop`` elsewhere (see module doc)."""
    if device.type != "cuda":
        return "loop"
    return "flat" if flat_supported(net) else "vmap"


def flat_supported(net: nn.Module) -> bool:
    """Whether every parameter of ``net`` belongs to a leaf module (the flat mode's condition)."""
    return all(not list(m.children()) for m in net.modules() if any(True for _ in m.parameters(recurse=False)))


class _StackedLinear(nn.Module):
    """K ``nn.Linear`` as one batched matmul over the K blocks of the input's leading dimension."""

    def __init__(self, linears: list[nn.Linear]) -> None:
        super().__init__()
        self.__dict__["linears"] = linears  # the networks' own modules, not registered here

    def forward(self, x: Tensor) -> Tensor:
        k, shape = len(self.linears), x.shape
        blocks = x.reshape(k, -1, shape[-1])
        weight = torch.stack([m.weight for m in self.linears]).transpose(1, 2)
        if self.linears[0].bias is None:
            out = torch.bmm(blocks, weight)
        else:
            out = torch.baddbmm(torch.stack([m.bias for m in self.linears])[:, None, :], blocks, weight)
        return out.reshape(*shape[:-1], out.shape[-1])


class _PerNetwork(nn.Module):
    """K copies of one leaf module, each on its own block of the input's leading dimension."""

    def __init__(self, modules: list[nn.Module]) -> None:
        super().__init__()
        self.__dict__["modules_"] = modules

    def forward(self, *args: Any) -> Tensor:
        k = len(self.modules_)
        chunks = [a.chunk(k) if isinstance(a, Tensor) else [a] * k for a in args]
        return torch.cat([m(*(c[i] for c in chunks)) for i, m in enumerate(self.modules_)])


def flat_network(nets: Sequence[nn.Module]) -> nn.Module:
    """One network computing all of ``nets`` on their concatenated inputs (the flat mode)."""
    if not flat_supported(nets[0]):
        raise ValueError(f"{type(nets[0]).__name__} has parameters outside its leaf modules: use the vmap mode")
    flat = copy.deepcopy(nets[0])
    by_name = [dict(n.named_modules()) for n in nets]
    for name, module in list(flat.named_modules()):
        if not name or list(module.children()) or not any(True for _ in module.parameters(recurse=False)):
            continue
        members = [modules[name] for modules in by_name]
        parent, _, leaf = name.rpartition(".")
        replacement = _StackedLinear(members) if type(module) is nn.Linear else _PerNetwork(members)
        setattr(flat.get_submodule(parent) if parent else flat, leaf, replacement)
    return flat


def _join(values: Sequence[Any]) -> Any:
    """The K networks' inputs as one batch (concatenated along the batch dimension)."""
    first = values[0]
    if isinstance(first, Tensor):
        return torch.cat(list(values))
    if isinstance(first, (tuple, list)):
        return type(first)(_join([v[i] for v in values]) for i in range(len(first)))
    if first is None:
        return None
    raise TypeError(f"a stacked network's inputs must be tensors, tuples of tensors or None; got {type(first).__name__}")


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
    stacked call (``flat`` or ``vmap``) goes through ``torch.compile`` once; ``graphs`` too: it replays CUDA
    graphs where its inputs are on CUDA (:class:`ablate.engine.graphs.GraphedCall`: outputs cloned, compiled
    without graphs after a failure)."""

    def __init__(self, nets: Sequence[nn.Module], mode: Mode, compile: bool = False, graphs: bool = False) -> None:
        self.nets, self.mode = list(nets), mode
        kinds = {type(n) for n in self.nets}
        if len(kinds) != 1:
            raise ValueError(f"a stack holds networks of one architecture; got {sorted(k.__name__ for k in kinds)}")
        self.names = [name for name, _ in self.nets[0].named_parameters()]
        self.template = copy.deepcopy(self.nets[0]).to("meta")
        self.flat = flat_network(self.nets) if mode == "flat" else None
        self._eager: Any = self._vmapped if mode == "vmap" else self._flat
        self._call: Any = self._eager
        self._untried = compile and mode != "loop"
        if self._untried:
            self._call = compile_once(self._eager)
            if graphs:
                self._call = GraphedCall(compile_once(self._eager, mode="reduce-overhead"), self._call,
                                         f"the stacked {mode} call")

    def _flat(self, args: Sequence[tuple[Any, ...]]) -> list[Tensor]:
        flat = self.flat
        assert flat is not None
        joined = [_join([a[i] for a in args]) for i in range(len(args[0]))]
        return list(flat(*joined).chunk(len(args)))

    def _first_call(self, *args: Any) -> Any:
        """The stacked call; the first compiled one falls back to eager (with a warning) if compiling fails."""
        if not self._untried:
            return self._call(*args)
        self._untried = False
        try:
            return self._call(*args)
        except Exception as err:  # noqa: BLE001 -- a backbone dynamo cannot trace still trains, eagerly
            warnings.warn(f"the stacked {self.mode} call could not be compiled ({type(err).__name__}: "
                          f"{str(err).splitlines()[0] if str(err) else ''}); it runs eagerly", stacklevel=2)
            self._call = self._eager
            return self._call(*args)

    def _place(self, device: torch.device) -> None:
        """The flat network's buffers follow the networks' device (it is not a registered submodule)."""
        flat = self.flat
        if flat is not None and any(b.device != device for b in flat.buffers()):
            flat.to(device)

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
        if self.mode == "flat":
            self._place(args[0][0].device)
            for k, o in enumerate(self._first_call(list(args))):
                out[k] = o if k in members else None
            return out
        params = {name: torch.stack([p for p in ps]) for name, ps in
                  zip(self.names, zip(*(list(n.parameters()) for n in self.nets)))}
        buffers = dict(self.nets[0].named_buffers())
        stacked = self._first_call(params, buffers, _stack_inputs(list(args)))
        for k in members:
            out[k] = stacked[k]
        return out
