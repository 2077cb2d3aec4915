"""A pack's validation (issue 25): per level and kind, the networks of every member, raw and EMA weights together,
through one :class:`~ablate.engine.stack.StackedForward`: called in turn (the ``loop`` mode, what a pack uses:
:data:`~ablate.engine.stack.EVAL_MODE`) or as one stacked call (``flat``/``vmap``, measured slower on an H100).

Each member's numbers are exactly what its own :meth:`~ablate.engine.train.DiffusionModule.validation_step`
computes: the same validation batch, the same noise (:func:`~ablate.engine.train.validation_noise`, which
depends on the batch alone), and its own formulation's inputs, loss and x0 estimate
(:meth:`~ablate.engine.train.DiffusionModule.prepare_validation`); only the network calls are shared. On the
CPU the flat stack is bit-identical to each network alone (``tests/test_pack.py``). Per validation batch a
pack of K makes 16 stacked calls (8 levels x 2 kinds, each on 2K networks) where member by member it made 32 K.

The stack is built once, apart from the training stack: validation runs without gradients, and a compiled
call meets grad and no-grad calls through two functions, never one (see
:func:`ablate.engine.graphs.graphed_call`). Its shapes are static (every member's slot is filled: a dead
member's with a living one's inputs, its output dropped), so CUDA graphs replay as in training; the loop mode
(the CPU's) calls the living members' networks alone.

A member whose own part (its inputs or its numbers) raises is dropped through ``drop`` and the others go on;
a failure of the stacked call itself fails the pack, as a failure of the training step does.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from torch import Tensor

from ablate.engine.metric_keys import KINDS, WEIGHTS
from ablate.engine.stack import Mode, StackedForward
from ablate.engine.train import DiffusionModule, validation_noise


class PackValidation:
    """The validation of ``members`` through one stack of their 2K networks (``WEIGHTS`` order: raw, then EMA)."""

    def __init__(self, members: Sequence[DiffusionModule], mode: Mode, compiled: bool = False,
                 graphs: bool = False) -> None:
        self.members = list(members)
        nets = {"raw": [m.net for m in members], "ema": [m.ema.module for m in members]}
        self.stack = StackedForward([n for weights in WEIGHTS for n in nets[weights]], mode, compile=compiled,
                                    graphs=graphs)

    def step(self, batch: tuple[Tensor, Tensor], batch_idx: int, alive: Sequence[int],
             drop: Callable[[int, BaseException], None]) -> None:
        """Add validation batch ``batch_idx`` to the sums of the ``alive`` members (each as its ``validation_step``)."""
        x0, cond = batch
        members, k_all = self.members, len(self.members)
        alive = list(alive)
        for level, eps in enumerate(validation_noise(x0, batch_idx)):
            for kind in KINDS:
                prepared = {}
                for k in alive:
                    try:
                        prepared[k] = members[k].prepare_validation(x0, cond, eps, level, kind)
                    except Exception as err:  # noqa: BLE001 -- this member fails; the pack goes on
                        drop(k, err)
                alive = list(prepared)
                if not alive:
                    return
                args = [prepared[k if k in prepared else alive[0]][0] for k in range(k_all)]
                outputs = self.stack(args * len(WEIGHTS), forward=members[0]._forward,
                                     members=[j * k_all + k for j in range(len(WEIGHTS)) for k in alive])
                for k in list(alive):
                    try:
                        for j, weights in enumerate(WEIGHTS):
                            prepared[k][1](outputs[j * k_all + k], weights)  # type: ignore[arg-type]
                    except Exception as err:  # noqa: BLE001 -- this member fails; the pack goes on
                        alive.remove(k)
                        drop(k, err)
        for k in alive:
            members[k]._val_count += x0.shape[0]
