"""A worker's claim on a cell (:mod:`ablate.runs.queue`): confirmed, kept alive by heartbeats, reclaimed once
its worker is gone, and fenced so that a worker whose claim was taken over writes nothing more.

- **The claim is the trial, and the trial is the fencing token.** Every claim of a cell is a trial of its
  own: a reclaimed trial is failed for ever (a finished trial cannot run again) and the cell gets a new
  one. So "my trial is still RUNNING" is exactly "my claim is the current one". :class:`Claim` checks it
  before every atomic write of the cell (:func:`ablate.io.fenced`: records, ``done.json``, training
  summaries, checkpoints, previews), before each setting is evaluated, and before the trial is told
  complete. A worker that was stopped (SIGSTOP, a frozen VM) or cut off from the storage for longer than
  the grace period, and so lost its cell to another worker, then raises :class:`TrialLost` at its next
  write: the file is not replaced (its temp file is removed) and the worker moves on to the next cell
  without failing the run. The check runs right before the rename; a filesystem has no compare-and-swap,
  so a worker frozen in the microseconds between the two could still land one file, which the reclaiming
  worker writes again from the same checkpoint (the checks make the window small, not zero). The ranks
  of a DDP cell (``ddp_spawn``, other processes) write checkpoints unfenced; rank 0's
  :class:`TrialReporter` stops their training once the claim is lost.
- **Clocks are compared in the storage's time, or not at all.** Optuna records each heartbeat with the
  database's ``now()`` and judges staleness against ``now()`` again: the server's clock for PostgreSQL or
  MySQL, and for SQLite (a file on one machine) that machine's. A claim not yet confirmed by its worker
  (it may have died right after claiming, before any heartbeat) is timed on the observer's own monotonic
  clock from when it first saw it, never against the trial's start time, which Optuna stores as the
  claiming machine's naive local time: the clocks (and time zones) of two machines never have to agree.
- **Reclaim** (:func:`reclaim_stale`, before every claim and while waiting): a running trial whose
  heartbeat is older than the grace period, that stays unconfirmed for the grace period, or whose worker
  ran on this machine and is gone (no process with its pid and start time: no need to wait), is failed and
  re-queued (up to ``MAX_STALE_RETRIES`` times, Optuna's retry callback); the cell resumes from its last
  checkpoint.
"""

from __future__ import annotations

import functools
import socket
import time
from pathlib import Path
from typing import Any

import lightning as L
import optuna
import torch
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import RDBStorage, fail_stale_trials
from optuna.trial import TrialState
from sqlalchemy.exc import SQLAlchemyError

from ablate.runs.storage import heartbeat_settings, open_storage, storage_log


class TrialLost(RuntimeError):
    """This worker's claim on its cell was taken over by another worker (its heartbeat looked stale): stop
    the cell, write nothing more."""


def process_start(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks since boot, from /proc); None if it does not run."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def _worker_gone(where: dict[str, Any]) -> bool:
    """The confirmed worker ``where`` ran on this machine (same host and boot) and its process is gone."""
    if not where.get("boot") or where.get("host") != socket.gethostname() or where.get("boot") != boot_id():
        return False
    return process_start(int(where["pid"])) != where.get("started")


_FIRST_SEEN: dict[tuple[str, int], float] = {}  # (storage, trial id) -> when this process first saw it unconfirmed


def reclaim_stale(study: optuna.Study) -> None:
    """Fail and re-queue the running trials whose worker is gone (see the module doc)."""
    fail_stale_trials(study)
    storage, grace = study._storage, heartbeat_settings()[1]
    retry = storage.get_heartbeat_stale_trial_callback()
    now = time.monotonic()
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        where = trial.user_attrs.get("where") or {}
        if where.get("trial") == trial.number:  # confirmed: Optuna's heartbeat check covers it, or its process is gone
            gone = _worker_gone(where)
        else:  # unconfirmed: its worker may have died right after claiming
            gone = now - _FIRST_SEEN.setdefault((str(getattr(storage, "url", id(storage))), trial._trial_id), now) >= grace
        if not gone:
            continue
        try:
            if storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL) and retry is not None:
                retry(study, storage.get_trial(trial._trial_id))
        except UpdateFinishedTrialError:
            pass  # another worker reclaimed it first


@functools.lru_cache(maxsize=4)
def plain_storage(url: str) -> RDBStorage:
    """One heartbeat-less connection per storage and process, for progress reports and claim checks."""
    return open_storage(url, heartbeat=False)


class Claim:
    """This worker's claim on one cell: trial ``trial_id`` of the storage ``url`` (see the module doc)."""

    def __init__(self, url: str, trial_id: int) -> None:
        self.url, self.trial_id = url, trial_id

    def check(self, subject: Path | str = "") -> None:
        """Raise :class:`TrialLost` if the trial is no longer RUNNING (another worker took the cell over)."""
        if plain_storage(self.url).get_trial(self.trial_id).state != TrialState.RUNNING:
            raise TrialLost(f"trial {self.trial_id} was taken over by another worker (its heartbeat looked stale)"
                            + (f"; {subject} not written" if subject else ""))


class TrialReporter(L.Callback):
    """Follows the training step (``step``, for failure reports); on global rank 0, every heartbeat
    interval, stores it in the trial and stops training with :class:`TrialLost` if the claim was taken over.
    A storage briefly unavailable (locked, a dropped connection) is noted in the cell's log and tried again
    at the next interval."""

    def __init__(self, url: str, trial_id: int) -> None:
        self.url, self.trial_id, self.every = url, trial_id, heartbeat_settings()[0]
        self.step: int | None = None
        self._last = 0.0
        self._first_step = 0
        self.timing: list[tuple[int, float]] = []  # (step, seconds) at half the steps and at the last, see window

    @property
    def window(self) -> tuple[int, float, float] | None:
        """(steps, start, end) of the second half of this run of the cell (``time.perf_counter`` seconds: its
        validations and checkpoint writes in, its compile out; the device synchronised at both ends); None for a run
        that started past half its steps or did not reach the last."""
        if len(self.timing) != 2 or self.timing[1][1] <= self.timing[0][1]:
            return None
        (s0, t0), (s1, t1) = self.timing
        return s1 - s0, t0, t1

    def _time(self, trainer: L.Trainer, module: Any) -> None:
        step, total = int(trainer.global_step), int(trainer.max_steps)
        half = total // 2
        due = (not self.timing and self._first_step < half <= step) or (len(self.timing) == 1 and step >= total)
        if due:
            device = getattr(module, "device", None)
            if device is not None and device.type == "cuda":
                torch.cuda.synchronize(device)
            self.timing.append((step, time.perf_counter()))

    def report(self, trainer: L.Trainer, force: bool = False) -> None:
        self.step = int(trainer.global_step)
        if trainer.global_rank != 0 or (not force and time.monotonic() - self._last < self.every):
            return
        self._last = time.monotonic()
        try:
            Claim(self.url, self.trial_id).check()
            plain_storage(self.url).set_trial_user_attr(self.trial_id, "step", self.step)
        except UpdateFinishedTrialError:  # taken over between the check and the report
            raise TrialLost(f"trial {self.trial_id} was taken over by another worker") from None
        except SQLAlchemyError as err:
            storage_log(f"step {self.step} not reported to the queue (tried again in {self.every} s): "
                        f"{type(err).__name__}: {str(err).splitlines()[0]}")

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._first_step, self.timing = int(trainer.global_step), []
        self.report(trainer, force=True)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: Any, *args: Any) -> None:
        self.report(trainer)
        self._time(trainer, pl_module)
