"""The accelerator policy, in one place: which device, which precision, compiled or not, fused or not.

Conventions:

- ``compile`` is ``"auto"`` (compiled on CUDA, eager on the CPU, where compiling costs more than
  it saves for the smoke models), ``True`` or ``False``.
- ``cuda_graphs`` is ``"auto"`` or ``True`` (a compiled network also replays CUDA graphs on CUDA, where
  every shape it meets is static; :mod:`ablate.engine.graphs`) or ``False``. Never on the CPU, where there
  are no CUDA graphs; ``True`` differs from ``"auto"`` only in refusing ``compile: false`` (graphs are
  captured by ``torch.compile``).
- ``precision`` is Lightning's; ``"auto"`` is ``bf16-mixed`` on CUDA, ``32-true`` on the CPU.
- Gradient clipping is done by ablate itself, before the optimizer step (see
  :meth:`ablate.engine.train.DiffusionModule.on_before_optimizer_step`), never by Lightning: Lightning
  refuses to clip for a fused optimizer under mixed precision. So AdamW is fused wherever torch
  has a fused kernel, except under ``16-mixed``, whose gradient scaler a fused step would unscale
  only after our clipping.
- Compiled forwards are shared by the whole process: :func:`compiled_call` is one
  ``torch.compile``-d function that takes the network as an argument, so every network of the
  same architecture (raw and EMA weights, every cell a worker runs) reuses one set of graphs
  (one per input shape and grad mode); the compile cost is paid once per worker, not per cell.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from typing import Any, Literal

import torch
from torch import Tensor, nn


Compile = Literal["auto", True, False]
CudaGraphs = Literal["auto", True, False]


def precision_for(precision: str, device: torch.device) -> str:
    """Lightning's precision string for a grid's ``train.precision`` on ``device``."""
    if precision != "auto":
        return precision
    return "bf16-mixed" if device.type == "cuda" else "32-true"


def compile_for(compile_: Compile, device: torch.device) -> bool:
    """Whether to compile the network on ``device`` (``auto``: on CUDA only)."""
    return device.type == "cuda" if compile_ == "auto" else bool(compile_)


def graphs_for(cuda_graphs: CudaGraphs, compiled: bool, device: torch.device | None = None) -> bool:
    """Whether the network replays CUDA graphs: compiled, ``cuda_graphs`` not False, and ``device`` CUDA
    (None: wherever a call's inputs are on CUDA, which :mod:`ablate.engine.graphs` checks at each call)."""
    return compiled and cuda_graphs is not False and (device is None or device.type == "cuda")


def fused_adamw(precision: str, device: torch.device) -> bool:
    """Use the fused AdamW kernel: on CUDA, except under ``16-mixed`` (see module doc)."""
    return device.type == "cuda" and precision != "16-mixed"


def plain_call(net: nn.Module, x: Tensor, t: Tensor, y: Any) -> Tensor:
    """``net(x, t, y)``, eagerly."""
    return net(x, t, y)


def compile_once(fn: Callable[..., Any], **options: Any) -> Any:
    """``torch.compile(fn, dynamic=False, **options)``, with room in dynamo's cache for every graph a worker
    compiles: raw + EMA weights, train / validation / two sampling batch shapes, grad and no-grad, a handful
    per architecture, and several architectures in one process (bench)."""
    import torch._dynamo

    torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 64)
    return torch.compile(fn, dynamic=False, **options)


def contiguous(x: Tensor, t: Tensor, y: Any) -> tuple[Tensor, Tensor, Any]:
    """The network's inputs made contiguous: compiled graphs are specialised on strides, and an expanded ``t``
    (validation's one level for a whole batch) would otherwise compile a second graph for every formulation
    whose ``model_input`` passes t through, against one for those that compute a new tensor (EDM)."""
    return x.contiguous(), t.contiguous(), y.contiguous() if isinstance(y, Tensor) else y


def _compiled_net_call(net: nn.Module, x: Tensor, t: Tensor, y: Any) -> Tensor:
    return net(x, t, y)


_compiled: Any = None


def compiled_call(net: nn.Module, x: Tensor, t: Tensor, y: Any) -> Tensor:
    """``net(x, t, y)`` through the process's one compiled function (see module doc), inputs made
    :func:`contiguous` first."""
    global _compiled
    if _compiled is None:
        _compiled = compile_once(_compiled_net_call)
    return _compiled(net, *contiguous(x, t, y))


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def gpu_hours(seconds: float, device: torch.device, share: float = 1.0, gpus: int = 1) -> float:
    """GPU-hours of ``seconds`` of wall clock on ``gpus`` GPUs, each held at ``share`` (1 / the processes
    sharing it); 0 off CUDA. The one formula of every cost in the records."""
    return seconds * gpus * share / 3600 if device.type == "cuda" else 0.0


def settle() -> None:
    """Before a timed window: a full garbage collection now, untimed, so that none falls in the window. After a
    compile or a fit's set-up one comes soon and costs ~0.2 s (178 ms on this project's VM, 2026-12-07f): in 100
    graphed steps of 5.4 ms on an H100 it read as 8.3 ms a step. A long run pays one now and then, in passing."""
    gc.collect()


def timed_steps(step: Callable[[], None], warmup: int, steps: int, device: torch.device) -> tuple[float, float]:
    """Run ``step`` ``warmup`` times (compiling included), then ``steps`` times; the seconds of each part,
    the device synchronised at both ends, :func:`settle`-d between them."""
    start = time.perf_counter()
    for _ in range(warmup):
        step()
    synchronize(device)
    warm = time.perf_counter() - start
    settle()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    synchronize(device)
    return warm, time.perf_counter() - start
