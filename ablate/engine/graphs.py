"""CUDA graphs for the compiled network where every shape is static: ``torch.compile(mode="reduce-overhead")``
(torch's cudagraph trees), so a small model's step is no longer bound by kernel launches (issue 25, one H200:
the protocol model's step 25.0 ms compiled, 11.4 ms with graphs). Whether they are used is
:func:`ablate.engine.accel.graphs_for` (``train.cuda_graphs``); this module is how.

What replaying graphs requires (torch/_inductor/cudagraph_trees.py), and how ablate meets it:

- A graph replays fixed addresses. Parameters and buffers are static inputs: one recording is kept per set
  of their addresses, and a call with another set (the EMA weights, the next cell of a worker) records its
  own graph once and reuses the compiled code (no recompile; torch does not count these re-recordings
  against ``cudagraph_unexpected_rerecord_limit``). So nothing may rebind a parameter once training runs: the
  EMA update and a resume (``load_state_dict``) copy values in place (``tests/test_graphs.py`` checks the
  addresses). The other inputs (x, t, y) are copied into the graph's own buffers at each replay.
- Each static shape has its own graph (``dynamic=False``): the training batch, each validation batch size
  (the last may be partial), each sampling batch (doubled under guidance). They are few and fixed, so each is
  recorded once per worker and set of weights.
- A graph's outputs live in memory that the next replay overwrites. :class:`GraphedCall` clones every output
  as it leaves, so callers may keep what they like (a loss for logging, the non-finite check, a sampler's
  previous evaluation), and marks a new step (``torch.compiler.cudagraph_mark_step_begin``) before each
  replay: legal because ablate never calls the network again before the backward of a training call (one
  graphed call per training step, of the lone network or of a whole pack; validation and sampling have no
  backward).
- Gradients are outputs of the backward graph and live until the next replay: Lightning sets them to None
  (``zero_grad``) before each backward, and clipping, the fused AdamW and the EMA update run eagerly, outside
  the graphs, before the next step's forward.
- A call whose capture or replay raises falls back, with one warning, to the compiled call without graphs
  (which falls back to eager where that fails, as before). A failure while the backward graph is recorded
  (inside ``loss.backward()``) is not caught here; it fails the cell like any other error of its step.
- Off CUDA (inputs on the CPU) a call goes straight to the compiled call without graphs: the same results.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from ablate.engine.accel import compile_once, compiled_call, contiguous, plain_call


def first_tensor(value: Any) -> Tensor | None:
    """The first tensor in ``value`` (a tensor, or lists, tuples and dicts of them), None if there is none."""
    if isinstance(value, Tensor):
        return value
    items = value.values() if isinstance(value, dict) else value if isinstance(value, (list, tuple)) else ()
    for item in items:
        found = first_tensor(item)
        if found is not None:
            return found
    return None


def on_cuda(args: tuple[Any, ...]) -> bool:
    """Whether a call's inputs are on a CUDA device (judged by its first tensor)."""
    tensor = first_tensor(args)
    return tensor is not None and tensor.is_cuda


def _cloned(out: Any) -> Any:
    if isinstance(out, Tensor):
        return out.clone()
    if isinstance(out, (list, tuple)):
        return type(out)(_cloned(o) for o in out)
    return out


_fell_back: list[str] = []  # what fell back to the compiled call in this process (GraphedCall.what)


def fallbacks() -> list[str]:
    """What of this process runs without CUDA graphs though asked to: graphed calls that failed (and run compiled
    since), and graphs torch itself skipped (``cudagraph_skips``: it logs why, e.g. a CPU tensor or a mutated
    input, and runs that graph compiled)."""
    from torch._dynamo.utils import counters

    skipped = counters["inductor"]["cudagraph_skips"]
    return [*_fell_back, *([f"{skipped} graph(s) skipped by torch"] if skipped else [])]


def fell_back() -> bool:
    """Whether anything of this process runs without the CUDA graphs asked for (:func:`fallbacks`; a record's
    ``cuda_graphs`` then says false)."""
    return bool(fallbacks())


class GraphedCall:
    """``graphed(*args)`` (a ``reduce-overhead`` compiled callable) where the inputs are on CUDA, its outputs
    cloned (module doc); ``plain(*args)`` elsewhere, and for good after the first failure of ``graphed``
    (one warning naming ``what``)."""

    def __init__(self, graphed: Callable[..., Any], plain: Callable[..., Any], what: str) -> None:
        self.graphed, self.plain, self.what = graphed, plain, what
        self.failed = False

    def __call__(self, *args: Any) -> Any:
        if self.failed or not on_cuda(args):
            return self.plain(*args)
        torch.compiler.cudagraph_mark_step_begin()
        try:
            out = self.graphed(*args)
        except Exception as err:  # noqa: BLE001 -- a graph that cannot be captured still runs, compiled
            self.failed = True
            _fell_back.append(self.what)
            first = str(err).splitlines()[0] if str(err) else ""
            warnings.warn(f"CUDA graphs of {self.what} failed ({type(err).__name__}: {first}); it runs compiled "
                          "without graphs (train.cuda_graphs: false does so from the start)", stacklevel=2)
            return self.plain(*args)
        return _cloned(out)


def _replayed_training_call(net: nn.Module, x: Tensor, t: Tensor, y: Any) -> Tensor:
    return net(x, t, y)


def _replayed_inference_call(net: nn.Module, x: Tensor, t: Tensor, y: Any) -> Tensor:
    return net(x, t, y)


_graphed: dict[bool, GraphedCall] | None = None


def graphed_call(net: nn.Module, x: Tensor, t: Tensor, y: Any) -> Tensor:
    """``net(x, t, y)`` through the process's ``reduce-overhead`` compiled functions (shared by every network of
    an architecture, as :func:`ablate.engine.accel.compiled_call` is), replaying CUDA graphs on CUDA. Calls with
    gradients and without (validation, sampling: no_grad or inference_mode) go through two functions, never one:
    one compiled first under inference_mode can fail later training calls (pytorch/pytorch#135892), and a worker
    may evaluate a cell before it trains the next."""
    global _graphed
    if _graphed is None:
        _graphed = {grad: GraphedCall(compile_once(fn, mode="reduce-overhead"), compiled_call,
                                      f"the network ({'training' if grad else 'inference'})")
                    for grad, fn in ((True, _replayed_training_call), (False, _replayed_inference_call))}
    return _graphed[torch.is_grad_enabled()](net, *contiguous(x, t, y))


def forward_fn(compiled: bool, graphs: bool = False) -> Callable[..., Tensor]:
    """The callable ``(net, x, t, y) -> output`` to use: eager; compiled; or compiled with CUDA graphs on CUDA
    (``graphs``, which needs ``compiled``)."""
    if not compiled:
        return plain_call
    return graphed_call if graphs else compiled_call
