"""Checkpoints that are never half-written, a validation at the last step, and the validation numbers
kept in every checkpoint.

- :class:`AtomicCheckpointIO` writes every checkpoint through :func:`ablate.io.atomic_file` (temp
  file, fsync, rename): a full disk or a kill mid-write leaves the previous ``best.ckpt`` /
  ``last.ckpt`` whole, never a truncated file under the final name.
- :class:`CellCheckpoint` keeps a cell's ``best.ckpt`` and ``last.ckpt`` (also written between
  validations once ``ABLATE_CHECKPOINT_EVERY_S`` seconds of training, default 600, have passed since
  the last one, so that a stopped long cell loses at most that much), validates at ``max_steps``
  even when it is not a multiple of ``val_every`` (so the last steps can give the kept checkpoint),
  and stores the numbers of the validation that preceded each checkpoint in it (``ablate_validation``). The training summary is
  read from the checkpoints alone, so a resumed run records what an uninterrupted one does.
- It also keeps the validation curve, every validation so far as ``{"step": k, "val/...": x}``, in its
  state (restored on resume) and in every checkpoint (``ablate_validation_curve``): read it with
  :func:`validation_curve_of`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO

from ablate.errors import ResultsError
from ablate.env import env_number
from ablate.io import atomic_file
from ablate.engine.metric_keys import SELECTION, is_validation_key

EVERY_S_VARIABLE = "ABLATE_CHECKPOINT_EVERY_S"
VALIDATION_KEY = "ablate_validation"
CURVE_KEY = "ablate_validation_curve"


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's torch checkpoint IO, with every save atomic."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO.save_checkpoint takes no storage_options")
        with atomic_file(Path(path)) as fh:
            torch.save(checkpoint, fh)


class CellCheckpoint(ModelCheckpoint):
    """A cell's checkpoints: ``best.ckpt`` (lowest EMA validation loss, the one evaluated) and ``last.ckpt``
    (the state at the latest validation, whether or not it improved: Lightning alone writes ``last`` only
    with a new best; and between validations every ``every_s`` seconds of training, before a step); the
    last training step is always validated, and each checkpoint keeps its latest validation's numbers."""

    def __init__(self, directory: Path, every_s: float | None = None) -> None:
        super().__init__(dirpath=directory, filename="best", monitor=SELECTION, mode="min", save_top_k=1,
                         save_last=True, enable_version_counter=False)
        self.curve: list[dict[str, float]] = []
        self.every_s = checkpoint_interval() if every_s is None else every_s
        self._last_saved = time.monotonic()
        self._between_steps = False

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_start(trainer, pl_module)
        self._last_saved = time.monotonic()

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:  # before the checkpoints that this validation triggers
            numbers = {k: float(v) for k, v in trainer.callback_metrics.items() if is_validation_key(k)}
            self.curve = [p for p in self.curve if p["step"] < trainer.global_step]  # a resumed run re-validates
            self.curve.append({"step": int(trainer.global_step), **numbers})
        super().on_validation_end(trainer, pl_module)
        if not self._should_skip_saving_checkpoint(trainer) and not self._should_save_on_train_epoch_end(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))  # no new best this time
        self._last_saved = time.monotonic()

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), CURVE_KEY: list(self.curve)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.curve = list(state_dict.get(CURVE_KEY, []))
        super().load_state_dict({k: v for k, v in state_dict.items() if k != CURVE_KEY})

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        super().on_train_batch_end(trainer, pl_module, *args)
        if trainer.max_steps > 0 and trainer.global_step >= trainer.max_steps:
            trainer.should_stop = True  # Lightning then validates after this batch (as for early stopping)

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        """The timed ``last.ckpt``, written before a step starts: the previous step is then complete (the
        module's own batch-end work, the EMA update, runs after the callbacks' ``on_train_batch_end``)."""
        super().on_train_batch_start(trainer, pl_module, *args)
        due = trainer.strategy.broadcast(time.monotonic() - self._last_saved >= self.every_s)  # rank 0's clock
        if due and trainer.global_step > 0 and trainer.state.fn == "fit" and not trainer.sanity_checking:
            # straight through the trainer: ModelCheckpoint's own save would mark the step saved and skip a
            # validation's best.ckpt at the same step
            self._between_steps = True
            try:
                trainer.save_checkpoint(Path(self.dirpath) / f"{self.CHECKPOINT_NAME_LAST}{self.FILE_EXTENSION}")
            finally:
                self._between_steps = False
            self._last_saved = time.monotonic()

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        checkpoint[VALIDATION_KEY] = {k: float(v) for k, v in trainer.callback_metrics.items() if is_validation_key(k)}
        checkpoint[CURVE_KEY] = list(self.curve)
        if self._between_steps:  # the next batch is already counted "ready": as at the end of the last step, or a
            progress = checkpoint["loops"]["fit_loop"]["epoch_loop.batch_progress"]  # resume validates a step early
            for counts in (progress["total"], progress["current"]):
                counts["ready"] = counts["completed"]


def checkpoint_interval() -> float:
    """Seconds of training between two ``last.ckpt`` writes when no validation comes first:
    ``ABLATE_CHECKPOINT_EVERY_S`` (a number >= 0; 0 writes after every step), default 600."""
    return env_number(EVERY_S_VARIABLE, 600.0, minimum=0,
                      what="seconds of training between two checkpoints of a cell (0: after every step)")


def validation_of(checkpoint: dict[str, Any], path: Path) -> dict[str, float]:
    """The validation numbers stored in a checkpoint loaded from ``path``."""
    numbers = checkpoint.get(VALIDATION_KEY)
    if not numbers:
        raise ResultsError(f"The checkpoint {path} holds no validation numbers ({VALIDATION_KEY}): it was written "
                           "by an older ablate, or before the first validation. Delete the cell's checkpoints "
                           "directory to train the cell again.")
    return dict(numbers)


def validation_curve_of(checkpoint: dict[str, Any]) -> list[dict[str, float]]:
    """Every validation up to a checkpoint, oldest first (empty for checkpoints written before the curve was kept)."""
    return [dict(point) for point in checkpoint.get(CURVE_KEY) or []]
