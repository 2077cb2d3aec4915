"""Watching a cell train without stalling the GPU: loss checks, the loss log and one progress line.

The training step keeps its loss statistics on the device (see
:meth:`ablate.engine.train.DiffusionModule.read_loss_window`); this callback reads them every
``check_every`` optimizer steps and before each validation, one host-device synchronisation per
read. A non-finite loss raises :class:`FloatingPointError` whose ``step`` attribute is the exact
optimizer step at which it first appeared (the message ends ``at step <k>`` too).
"""

from __future__ import annotations

import time
from typing import Any

import lightning as L
from rich.console import Console
from rich.markup import escape

from ablate.engine.metric_keys import SELECTION, TRAIN_LOSS

CHECK_EVERY = 50       # optimizer steps between reads of the on-device loss statistics
PRINT_EVERY_S = 30.0   # at most one progress line per this many seconds (plus one per validation)


def non_finite_loss(step: int) -> FloatingPointError:
    """The error for a training loss that is nan or infinite at step ``step``, which it carries as
    ``.step`` (a plain :class:`FloatingPointError`, the type people and the queue see). Step k is the
    training step run at the trainer's global step k, i.e. after k optimizer steps (as in
    :func:`ablate.engine.batches.mix_seed`'s keys)."""
    err = FloatingPointError(f"training loss is not finite (nan or inf) at step {step}")
    err.step = step  # type: ignore[attr-defined]
    return err


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s" if m else f"{s}s"


class TrainingMonitor(L.Callback):
    """Checks the loss for non-finite values, logs :data:`TRAIN_LOSS` (the mean over each window) and
    prints ``label step k/N · loss · img/s · ETA`` lines to ``console`` (None: silent)."""

    def __init__(self, label: str, console: Console | None, check_every: int = CHECK_EVERY,
                 print_every_s: float = PRINT_EVERY_S) -> None:
        self.label, self.console = label, console
        self.check_every, self.print_every_s = check_every, print_every_s
        self._window_start_step = 0
        self._t0 = self._last_print = 0.0
        self._images = 0
        self.img_per_s = self.loss = float("nan")

    def __getstate__(self) -> dict[str, Any]:
        """Picklable for ddp_spawn: a console holds a lock, so spawned ranks train silently."""
        return {**self.__dict__, "console": None}

    def on_train_start(self, trainer: L.Trainer, pl_module: Any) -> None:
        self._window_start_step = trainer.global_step
        self._t0 = self._last_print = time.perf_counter()
        self._first_step = trainer.global_step
        pl_module.reset_loss_window()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        self._images += int(batch[0].shape[0]) * trainer.world_size
        if trainer.global_step % self.check_every == 0 or trainer.global_step >= trainer.max_steps:
            self.check(trainer, pl_module, log=True)

    def on_validation_start(self, trainer: L.Trainer, pl_module: Any) -> None:
        if trainer.state.fn == "fit":
            self.check(trainer, pl_module)

    def on_validation_end(self, trainer: L.Trainer, pl_module: Any) -> None:
        val = trainer.callback_metrics.get(SELECTION)
        if val is not None and self.console is not None:
            self._print(trainer, extra=f" · val EMA loss {float(val):.4g}")

    def check(self, trainer: L.Trainer, pl_module: Any, log: bool = False) -> None:
        """Read the loss window (one sync); raise on a non-finite loss; log and print if due."""
        start = self._window_start_step
        steps, mean, first_bad = pl_module.read_loss_window()
        self._window_start_step = trainer.global_step
        if first_bad is not None:
            raise non_finite_loss(start + first_bad)
        if steps:
            self.loss = mean
            if log:
                pl_module.log(TRAIN_LOSS, mean, on_step=True, on_epoch=False)
        elapsed = time.perf_counter() - self._t0
        if elapsed > 0 and self._images:
            self.img_per_s = self._images / elapsed
        now = time.perf_counter()
        if self.console is not None and now - self._last_print >= self.print_every_s:
            self._print(trainer)

    def _print(self, trainer: L.Trainer, extra: str = "") -> None:
        self._last_print = time.perf_counter()
        step, total = trainer.global_step, trainer.max_steps
        done = step - self._first_step
        rate = done / max(self._last_print - self._t0, 1e-9)
        eta = _duration((total - step) / rate) if rate > 0 and step < total else "-"
        self.console.print(f"  {escape(self.label)} step {step}/{total} · loss {self.loss:.4g} · "
                           f"{self.img_per_s:,.0f} img/s · ETA {eta}{extra}", highlight=False, soft_wrap=True)
