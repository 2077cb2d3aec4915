"""A pack's sampling (issue 25): the cells of a pack sample a setting together, their networks called per Euler
step through one :class:`~ablate.engine.stack.StackedForward`: in turn (the ``loop`` mode, what a pack uses:
:data:`~ablate.engine.stack.EVAL_MODE`) or as one stacked call (``flat``/``vmap``, measured slower on an H100).

Each member runs its own solver (:func:`ablate.formulations.euler_calls`: its formulation, time grid and
guidance, on its own prompts and initial noise, batch by batch as :func:`ablate.engine.evaluate.generate`
slices them); only the network calls are shared, through a :class:`~ablate.engine.stack.StackedForward` of the
members' networks of the setting's weights (one per weights and set of members, built once). So a member's
samples are what :func:`~ablate.engine.evaluate.generate` draws for it alone: bit for bit on the CPU
(``tests/test_pack_sampling.py``), within GPU nondeterminism on CUDA.

Shapes are static within a setting (every member's slot is filled: a member that failed mid-setting keeps its
slot with a living one's inputs, its output dropped), so CUDA graphs replay, one per batch shape. A member
whose own solver raises is dropped through ``drop``; the others go on. A failure of the stacked call itself
is the caller's (it fails every member of the setting).
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ablate.config.setting import Setting
from ablate.data.base import DatasetInfo
from ablate.data.conditioning import null_conditioning
from ablate.engine.evaluate import Prompts, sampling_autocast
from ablate.engine.graphs import forward_fn
from ablate.engine.stack import Mode, StackedForward
from ablate.engine.train import DiffusionModule
from ablate.formulations import euler_calls

Solver = Generator[tuple[Tensor, Tensor, Any], Tensor, tuple[Tensor, int]]


class PackSampler:
    """Samples settings for ``modules`` (the members' loaded modules, on one device) through stacked calls."""

    def __init__(self, modules: Sequence[DiffusionModule], mode: Mode, compiled: bool = False,
                 graphs: bool = False) -> None:
        self.modules, self.mode, self.compiled, self.graphs = list(modules), mode, compiled, graphs
        self._stacks: dict[tuple[str, tuple[int, ...]], StackedForward] = {}

    def stack(self, weights: str, members: Sequence[int]) -> StackedForward:
        """The stacked call of ``members``' networks of ``weights`` ("raw" or "ema"), built at its first use."""
        key = (weights, tuple(members))
        if key not in self._stacks:
            nets: list[nn.Module] = [self.modules[k].net if weights == "raw" else self.modules[k].ema.module
                                     for k in members]
            self._stacks[key] = StackedForward(nets, self.mode, compile=self.compiled, graphs=self.graphs)
        return self._stacks[key]

    @torch.inference_mode()
    def generate(self, members: Sequence[int], setting: Setting, prompts: dict[int, Prompts], info: DatasetInfo,
                 batch_size: int, device: torch.device,
                 drop: Callable[[int, BaseException], None]) -> dict[int, tuple[Tensor, int]]:
        """Each of ``members``' samples (N, C, H, W, on the CPU) and NFE per sample for ``setting``, as
        :func:`~ablate.engine.evaluate.generate` gives them alone; a member dropped on the way is left out."""
        stack, forward, autocast = self.stack(setting.weights, members), forward_fn(self.compiled, self.graphs), \
            sampling_autocast(device)
        for k in members:
            (self.modules[k].net if setting.weights == "raw" else self.modules[k].ema.module).eval()
        alive, out, nfe = list(members), {k: [] for k in members}, {}
        for start in range(0, len(prompts[members[0]].noise), batch_size):
            solvers: dict[int, Solver] = {}
            calls: dict[int, tuple[Tensor, Tensor, Any]] = {}
            for k in alive:
                try:
                    sl, formulation = slice(start, start + batch_size), self.modules[k].formulation
                    cond = prompts[k].cond[sl].to(device)
                    solvers[k] = euler_calls(formulation, prompts[k].noise[sl].to(device), steps=setting.steps,
                                             cfg=setting.cfg, cond=cond, uncond=null_conditioning(cond, info.num_classes),
                                             time_grid=setting.time_grid)
                    calls[k] = next(solvers[k])
                except Exception as err:  # noqa: BLE001 -- this member fails; the pack goes on
                    solvers.pop(k, None)
                    drop(k, err)
            alive = list(solvers)
            while solvers:
                filler = calls[next(iter(solvers))]
                with autocast:
                    outputs = stack([calls.get(k, filler) for k in members], forward=forward,
                                    members=[i for i, k in enumerate(members) if k in solvers])
                for i, k in enumerate(members):
                    if k not in solvers:
                        continue
                    try:
                        calls[k] = solvers[k].send(outputs[i].float())  # type: ignore[union-attr]
                    except StopIteration as done:
                        x, nfe[k] = done.value
                        out[k].append(x.float().cpu())
                        del solvers[k], calls[k]
                    except Exception as err:  # noqa: BLE001 -- this member fails; the pack goes on
                        del solvers[k], calls[k]
                        alive.remove(k)
                        drop(k, err)
        return {k: (torch.cat(out[k]), nfe[k]) for k in alive}
