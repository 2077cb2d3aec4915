"""A pack: K cells of one grid trained together as one stacked model, in one process and one trainer.

A pack is how a worker executes cells, not a new kind of record: every member is a whole
:class:`~ablate.engine.train.DiffusionModule` (its formulation, timestep density, seed, EMA), draws
its batch, t and noise from (its seed, step, rank) exactly as alone, and writes its own checkpoints,
logs, ``train-runs.json`` and ``train.json`` in the format a lone cell writes, so a cell resumes alone
or in any pack. What the members share is the step: one stacked forward and backward
(:class:`~ablate.engine.stack.StackedForward`), one AdamW over all their parameters (AdamW is
elementwise, so it steps each exactly as its own would), the validation (:mod:`ablate.engine.pack_validation`, its
networks called in turn: :data:`~ablate.engine.stack.EVAL_MODE`), and the trainer's loops.

- Per cell: the loss (its own formulation), the gradient clipping (on its own parameters, before the
  optimizer step, as alone), the EMA update, the validation numbers and the best/last checkpoints
  (each member has its own :class:`~ablate.engine.checkpointing.CellCheckpoint`, driven through a view
  of the trainer that shows the member's numbers, loggers and state: :class:`_MemberTrainer`).
- A member whose loss turns non-finite (read every ``CHECK_EVERY`` steps and before each validation,
  with the exact step) or whose bookkeeping or own part of a validation fails is dropped from the pack and reported through
  ``on_failed``; the others go on. A failure of the shared step fails the pack (every member).
- Resume: members resume together when their checkpoints are at the same step (one trainer state
  is built from theirs); :func:`resume_groups` splits the rest.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, Sampler

from ablate.config.grid import Cell, Grid
from ablate.data.base import LatentSplit
from ablate.engine.batches import LatentDataModule, StepBatches, _IndexedBatches, _StepDataLoader
from ablate.engine.checkpointing import AtomicCheckpointIO, CellCheckpoint
from ablate.engine.metric_keys import TRAIN_LOSS
from ablate.engine.monitor import TrainingMonitor
from ablate.engine.pack_validation import PackValidation
from ablate.engine.stack import EVAL_MODE, Mode, StackedForward
from ablate.engine.train import DiffusionModule, optimizer_and_schedule
from ablate.engine.accel import fused_adamw

Failed = Callable[[int, BaseException], None]


def _unreported(k: int, err: BaseException) -> None:
    raise err  # no callback to tell (a pack outside a trainer): the failure is the caller's


class _PackBatches(Sampler[list[list[int]]]):
    """Step k's batch of every member: member j reads its own :class:`StepBatches` (its seed's order)."""

    def __init__(self, samplers: list[StepBatches]) -> None:
        self.samplers = samplers

    def __len__(self) -> int:
        return len(self.samplers[0])

    def __iter__(self):  # type: ignore[no-untyped-def]
        return (list(batches) for batches in zip(*self.samplers))


class _PackItems(Dataset):
    def __init__(self, data: _IndexedBatches) -> None:
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: list[list[int]]) -> list[tuple[Tensor, Tensor]]:
        return [self.data[i] for i in index]


class PackDataModule(LatentDataModule):
    """The members' training batches of each step (a list, member order), and the shared validation subset."""

    def __init__(self, splits: dict[str, LatentSplit], batch_size: int, val_size: int, seeds: list[int],
                 conditioning: str = "class", tokens: bool = False) -> None:
        super().__init__(splits, batch_size, val_size, seeds[0], conditioning, tokens)
        self.seeds = seeds

    def train_dataloader(self) -> DataLoader:
        data = _IndexedBatches(self.splits["train"], self.conditioning, self.tokens)
        trainer = self.trainer
        samplers = [StepBatches(len(data), self.batch_size, seed, start_step=lambda: trainer.global_step)
                    for seed in self.seeds]
        return _StepDataLoader(_PackItems(data), sampler=_PackBatches(samplers), batch_size=None, pin_memory=self._pin())


class PackModule(L.LightningModule):
    """K members trained as one (see module doc); ``alive[k]`` turns False when member k fails."""

    def __init__(self, members: Sequence[DiffusionModule], mode: Mode, compiled: bool = False) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)
        self.alive = [True] * len(members)
        self.mode, self.fused_used = mode, None
        self.stack = StackedForward([m.net for m in members], mode, compile=compiled, graphs=members[0].graphs)
        self.validation = PackValidation(members, EVAL_MODE, compiled=compiled, graphs=members[0].graphs)
        self.numbers: list[dict[str, float]] = [{} for _ in members]
        self.on_failed: Failed = _unreported

    def drop(self, k: int, err: BaseException) -> None:
        """Member k failed (``err``): it leaves the pack, ``on_failed`` is told, and with none left the pack stops."""
        self.alive[k] = False
        self.on_failed(k, err)
        if not self.living() and self._trainer is not None:
            self.trainer.should_stop = True

    def _attach(self) -> None:
        for m in self.members:
            m.trainer = self.trainer

    def setup(self, stage: str) -> None:
        self._attach()

    def living(self) -> list[int]:
        return [k for k, ok in enumerate(self.alive) if ok]

    def training_step(self, batch: list[tuple[Tensor, Tensor]], batch_idx: int) -> Tensor:
        prepared = [m.prepare_step(b) for m, b in zip(self.members, batch)]
        alive = self.living()
        outputs = self.stack([args for args, _ in prepared], forward=self.members[0]._forward, members=alive)
        losses = [prepared[k][1](outputs[k]) for k in alive]  # type: ignore[arg-type]
        return torch.stack(losses).sum()  # d(sum)/d(loss_k) = 1: each member's gradients are its own loss's

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        for k in self.living():
            self.members[k].on_before_optimizer_step(optimizer)

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        for k in self.living():
            self.members[k].update_ema()

    def configure_optimizers(self) -> dict[str, Any]:
        first = self.members[0]
        fused = first.fused if first.fused is not None else fused_adamw(str(self.trainer.precision), self.device)
        self.fused_used = fused
        for m in self.members:
            m.fused_used = fused
        params = [p for m in self.members for p in m.net.parameters()]
        return optimizer_and_schedule(first.train_config, params, fused)

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self.validation.step(batch, batch_idx, self.living(), self.drop)

    def on_validation_epoch_start(self) -> None:
        for m in self.members:
            m.on_validation_epoch_start()

    def on_validation_epoch_end(self) -> None:
        for k in self.living():
            self.numbers[k] = self.members[k].validation_numbers()

    def member_optimizer_state(self, full: dict[str, Any], k: int) -> dict[str, Any]:
        """Member k's slice of the pack's AdamW state, numbered as its own optimizer numbers it."""
        n = len(list(self.members[k].net.parameters()))
        start = sum(len(list(m.net.parameters())) for m in self.members[:k])
        state = {i - start: s for i, s in full["state"].items() if start <= i < start + n}
        return {"state": state, "param_groups": [{**g, "params": list(range(n))} for g in full["param_groups"]]}


class _MemberTrainer:
    """The trainer as member k's own callbacks see it: its validation numbers, its loggers, its module, and
    ``save_checkpoint`` writing its own checkpoint in a lone cell's format."""

    def __init__(self, trainer: L.Trainer, pack: PackModule, k: int, checkpoint: CellCheckpoint,
                 loggers: list[Any]) -> None:
        self.__dict__.update(_trainer=trainer, _pack=pack, _k=k, _checkpoint=checkpoint, loggers=loggers)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._trainer, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._trainer, name, value)

    @property
    def logger(self) -> Any:
        return self.loggers[0] if self.loggers else None

    @property
    def lightning_module(self) -> DiffusionModule:
        return self._pack.members[self._k]

    @property
    def callback_metrics(self) -> dict[str, Tensor]:
        return {key: torch.tensor(value) for key, value in self._pack.numbers[self._k].items()}

    def save_checkpoint(self, filepath: Any, weights_only: bool = False, storage_options: Any = None) -> None:
        pack, k, member = self._pack, self._k, self._pack.members[self._k]
        ckpt = self._trainer._checkpoint_connector.dump_checkpoint(weights_only)
        ckpt["state_dict"] = member.state_dict()
        if "optimizer_states" in ckpt:
            ckpt["optimizer_states"] = [pack.member_optimizer_state(s, k) for s in ckpt["optimizer_states"]]
        ckpt["callbacks"] = {self._checkpoint.state_key: self._checkpoint.state_dict()}
        ckpt[member.CHECKPOINT_HYPER_PARAMS_NAME] = member._hparams_name
        ckpt[member.CHECKPOINT_HYPER_PARAMS_KEY] = dict(member.hparams)
        self._checkpoint.on_save_checkpoint(self, member, ckpt)
        AtomicCheckpointIO().save_checkpoint(ckpt, filepath)


class PackCallback(L.Callback):
    """Per member: the loss checks, the trial's heartbeat reporter, the checkpoints and the logs; a member
    that fails any of them is dropped (``on_failed``); when none is left the pack stops."""

    def __init__(self, directories: list[Path], labels: list[str], loggers: list[list[Any]], on_failed: Failed,
                 reporters: Sequence[L.Callback | None] = (), console: Any = None) -> None:
        self.directories, self.on_failed = directories, on_failed
        self.checkpoints = [CellCheckpoint(d / "checkpoints") for d in directories]
        self.monitors = [TrainingMonitor(label, None) for label in labels]
        self.reporters = list(reporters) or [None] * len(directories)
        self.loggers = loggers
        self.console, self._last_print, self._t0 = console, 0.0, 0.0
        self.views: list[_MemberTrainer] = []

    def _each(self, pack: PackModule, fn: Callable[[int], None]) -> None:
        for k in pack.living():
            try:
                fn(k)
            except Exception as err:  # noqa: BLE001 -- this member fails (a non-finite loss too); the pack goes on
                pack.drop(k, err)

    def setup(self, trainer: L.Trainer, pack: PackModule, stage: str) -> None:
        pack.on_failed = self.on_failed  # a member failing inside the pack's own steps (validation) is told too
        self.views = [_MemberTrainer(trainer, pack, k, c, self.loggers[k]) for k, c in enumerate(self.checkpoints)]
        for k, c in enumerate(self.checkpoints):
            c.setup(self.views[k], pack.members[k], stage)

    def on_train_start(self, trainer: L.Trainer, pack: PackModule) -> None:
        self._t0 = self._last_print = time.perf_counter()

        def start(k: int) -> None:
            view, member = self.views[k], pack.members[k]
            for callback in (self.checkpoints[k], self.monitors[k], self.reporters[k]):
                if callback is not None:
                    callback.on_train_start(view, member)
            for logger in self.loggers[k]:
                logger.log_hyperparams(dict(member.hparams))
        self._each(pack, start)

    def on_train_batch_start(self, trainer: L.Trainer, pack: PackModule, batch: Any, batch_idx: int) -> None:
        self._each(pack, lambda k: self.checkpoints[k].on_train_batch_start(self.views[k], pack.members[k], batch[k], batch_idx))

    def on_train_batch_end(self, trainer: L.Trainer, pack: PackModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        def end(k: int) -> None:
            view, member, monitor = self.views[k], pack.members[k], self.monitors[k]
            monitor._images += int(batch[k][0].shape[0])
            if trainer.global_step % monitor.check_every == 0 or trainer.global_step >= trainer.max_steps:
                self._check(k, view, member)
            if self.reporters[k] is not None:
                self.reporters[k].on_train_batch_end(view, member, outputs, batch[k], batch_idx)
            self.checkpoints[k].on_train_batch_end(view, member, outputs, batch[k], batch_idx)
        self._each(pack, end)
        self._print(trainer, pack)

    def _check(self, k: int, view: _MemberTrainer, member: DiffusionModule) -> None:
        monitor = self.monitors[k]
        monitor.check(view, member)  # raises on a non-finite loss, with its step
        if monitor.loss == monitor.loss:
            for logger in self.loggers[k]:
                logger.log_metrics({TRAIN_LOSS: monitor.loss}, step=max(view.global_step - 1, 0))

    def on_validation_start(self, trainer: L.Trainer, pack: PackModule) -> None:
        if trainer.state.fn == "fit":
            self._each(pack, lambda k: self._check(k, self.views[k], pack.members[k]))

    def on_validation_end(self, trainer: L.Trainer, pack: PackModule) -> None:
        def end(k: int) -> None:
            for logger in self.loggers[k]:
                logger.log_metrics(pack.numbers[k], step=max(trainer.global_step - 1, 0))
                logger.save()
            self.checkpoints[k].on_validation_end(self.views[k], pack.members[k])
        self._each(pack, end)
        self._print(trainer, pack, force=True)

    def on_train_end(self, trainer: L.Trainer, pack: PackModule) -> None:
        for k in pack.living():
            for logger in self.loggers[k]:
                logger.finalize("success")

    def _print(self, trainer: L.Trainer, pack: PackModule, force: bool = False) -> None:
        now = time.perf_counter()
        if self.console is None or not (force or now - self._last_print >= self.monitors[0].print_every_s):
            return
        self._last_print = now
        images = sum(self.monitors[k]._images for k in range(len(self.monitors)))
        rate = images / max(now - self._t0, 1e-9)
        self.console.print(f"  pack of {len(pack.living())}/{len(pack.alive)} step {trainer.global_step}/"
                           f"{trainer.max_steps} · {rate:,.0f} img/s in all", highlight=False, soft_wrap=True)


def merged_checkpoint(paths: list[Path], pack: PackModule) -> dict[str, Any]:
    """The pack's trainer state from its members' checkpoints (all at one step): their weights, EMA and
    AdamW state side by side, the loops and schedule of the first (the same for all, see :func:`resume_groups`)."""
    ckpts = [torch.load(p, map_location="cpu", weights_only=False) for p in paths]
    base = dict(ckpts[0])
    base["state_dict"] = {f"members.{k}.{key}": v for k, c in enumerate(ckpts) for key, v in c["state_dict"].items()}
    state, offset = {}, 0
    for k, c in enumerate(ckpts):
        opt = c["optimizer_states"][0]
        state.update({offset + i: s for i, s in opt["state"].items()})
        offset += len(list(pack.members[k].net.parameters()))
    groups = [{**g, "params": list(range(offset))} for g in ckpts[0]["optimizer_states"][0]["param_groups"]]
    base["optimizer_states"] = [{"state": state, "param_groups": groups}]
    base["callbacks"] = {}
    return base


def restore_member_callbacks(paths: list[Path | None], callback: PackCallback) -> None:
    """Each member's checkpoint callback state (best score and path, validation curve) from its own file."""
    for path, checkpoint in zip(paths, callback.checkpoints):
        if path is not None:
            states = torch.load(path, map_location="cpu", weights_only=False).get("callbacks", {})
            if checkpoint.state_key in states:
                checkpoint.load_state_dict(states[checkpoint.state_key])


def fit_pack(trainer: L.Trainer, pack: PackModule, data: PackDataModule, resume: list[Path | None],
             callback: PackCallback) -> None:
    """``trainer.fit`` of the pack, from the members' checkpoints when they have them (all or none)."""
    if not any(resume):
        trainer.fit(pack, datamodule=data)
        return
    if not all(resume):
        raise ValueError("a pack resumes all its members or none (see resume_groups)")
    restore_member_callbacks(resume, callback)
    with tempfile.TemporaryDirectory(prefix="ablate-pack-") as tmp:
        path = Path(tmp) / "pack.ckpt"
        torch.save(merged_checkpoint([p for p in resume if p is not None], pack), path)
        trainer.fit(pack, datamodule=data, ckpt_path=path)


def pack_key(grid: Grid, cell: Cell) -> tuple[str, str, str]:
    """What the cells of one pack share: one dataset, one backbone (one network shape) and one training config
    (learning rate per variant included)."""
    return cell.dataset, cell.backbone, repr(grid.train.for_variant(cell.variant))


def resume_groups(grid: Grid, cells: list[Cell], steps: list[int]) -> list[list[int]]:
    """Indices of ``cells`` that can train as one pack: one :func:`pack_key` and checkpoints at one step (0: none);
    every cell alone under ``ddp_spawn``."""
    if grid.train.devices * grid.train.num_nodes > 1:
        return [[i] for i in range(len(cells))]
    groups: dict[tuple, list[int]] = {}
    for i, (cell, step) in enumerate(zip(cells, steps)):
        groups.setdefault((*pack_key(grid, cell), step), []).append(i)
    return list(groups.values())
