"""The grid's cells as an Optuna queue: every run (a plain one is one worker) claims, runs and finishes
cells through it.

Conventions:

- One study per grid in an Optuna RDB storage (:mod:`ablate.runs.storage`).
- Every cell is one enqueued trial whose user attributes name it (``cell``, ``variant``,
  ``dataset``, ``seed``). A worker claims the oldest waiting trial through ``study.optimize``,
  which runs Optuna's heartbeat thread; the worker then records a heartbeat itself and confirms the
  claim (``where``: host, pid, worker, device, the trial's number, boot id and process start time).
- Reclaim (:func:`reclaim_stale`, before every claim and while waiting): a running trial whose
  heartbeat is older than the grace period, that was never confirmed within the grace period of its
  claim (its worker died in between), or whose worker ran on this machine and is gone (no process
  with its pid and start time: no need to wait), is failed and re-queued (up to ``MAX_STALE_RETRIES``
  times, :class:`optuna.storages.RetryHeartbeatStaleTrialCallback`); the cell resumes from its last
  checkpoint (if this machine sees the cell's results directory).
- A finished trial is COMPLETE with value = the cell's best EMA validation loss. The queue holds
  the queue's state only: the cell's records live in the results store (:mod:`ablate.results`).
- Any failure of a cell (divergence, a crash, a full disk) makes its trial FAIL with ``fail_reason``
  and ``fail_step`` (the traceback goes to the cell's ``logs/output.log``), and the grid goes on; the
  cell stays failed until ``--retry-failed``. A cell stopped by a signal is FAIL with ``interrupted``
  (and a ``fail_reason`` naming the signal); it, and a cell whose worker was lost after the last
  retry, is re-queued by the next run (:func:`cell_failed` tells them apart).
- A trial without a ``cell`` attribute is a spare one Optuna made when the queue emptied between
  a worker's look and its claim; it is pruned at once and ignored, as is a second trial of a cell
  that an older trial already covers (two runs queued the same cell).
- ``ABLATE_HEARTBEAT_INTERVAL`` (s, default 20) and ``ABLATE_GRACE_PERIOD`` (s, default 120) tune
  how fast a dead worker's cell is reclaimed (:func:`ablate.runs.storage.heartbeat_settings`).
"""

from __future__ import annotations

import functools
import json
import os
import signal
import socket
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import lightning as L
import optuna
from optuna.exceptions import StorageInternalError, UpdateFinishedTrialError
from optuna.storages import RDBStorage, fail_stale_trials
from optuna.trial import FrozenTrial, TrialState
from rich.markup import escape
from sqlalchemy.exc import SQLAlchemyError

from ablate.runs import logs
from ablate.errors import ResultsError
from ablate.faults import pause_at
from ablate.io import failure_reason
from ablate.config.grid import Cell, Grid
from ablate.results import cell_dir
from ablate.engine.runner import RunContext, run_cell
from ablate.runs.signals import describe, received, settle
from ablate.runs.storage import heartbeat_settings, open_storage

POLL_S = 2.0
STATE_NAMES = {None: "pending", TrialState.WAITING: "pending", TrialState.RUNNING: "running",
               TrialState.COMPLETE: "done", TrialState.FAIL: "failed"}
ATTEMPT_ATTRS = ("step", "fail_reason", "fail_step", "interrupted")  # reset when a cell is tried again


class CellFailed(Exception):
    """A cell's run failed (divergence, a crash in training or scoring); the grid goes on."""


class TrialLost(RuntimeError):
    """This worker's trial was failed by another worker (its heartbeat looked stale): stop the cell."""


def cell_of(attrs: dict[str, Any], grid_name: str) -> Cell | None:
    if "cell" not in attrs:
        return None
    return Cell(grid_name, attrs["variant"], attrs["dataset"], int(attrs["seed"]))


def trials_by_cell(study: optuna.Study) -> dict[str, list[FrozenTrial]]:
    """Every cell's trials, oldest first (spare and duplicate trials, which are pruned, left out)."""
    out: dict[str, list[FrozenTrial]] = {}
    for trial in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number):
        if "cell" in trial.user_attrs and trial.state != TrialState.PRUNED:
            out.setdefault(trial.user_attrs["cell"], []).append(trial)
    return out


def cell_failed(trial: FrozenTrial) -> bool:
    """The trial failed because its cell did (it stays failed until --retry-failed), rather than because
    its run was stopped by a signal or its worker was lost (the next run goes on with the cell)."""
    return trial.state == TrialState.FAIL and bool(trial.user_attrs.get("fail_reason")) and \
        not trial.user_attrs.get("interrupted")


def queue_cells(study: optuna.Study, grid: Grid, retry_failed: bool = False) -> int:
    """Enqueue each cell that has no trial yet, or whose last trial failed without :func:`cell_failed`
    (stopped by a signal, worker lost), or failed at all with ``retry_failed``. Returns how many were queued.

    Cells tried before (they may have a checkpoint) go to the head of the queue: a worker claims the
    oldest waiting trial, so the cells still waiting from an earlier run are re-queued behind them (their
    waiting trials are failed, unattributed, and replaced). Otherwise a grid cut by a deadline on every
    run (a device call, a batch job's time limit) would start new cells and leave the cut ones behind."""
    existing, cells = trials_by_cell(study), grid.cells()
    last = {cell.id: existing.get(cell.id, [None])[-1] for cell in cells}
    due = [c for c in cells if last[c.id] is None or (
        last[c.id].state == TrialState.FAIL and (retry_failed or not cell_failed(last[c.id])))]
    resumed = [c for c in due if last[c.id] is not None]
    waiting = [c for c in cells if last[c.id] is not None and last[c.id].state == TrialState.WAITING]
    rotated = 0
    if resumed and waiting:
        for cell in waiting:  # a worker that claimed one meanwhile loses it (TrialReporter) and moves on
            try:
                study._storage.set_trial_state_values(last[cell.id]._trial_id, TrialState.FAIL)
            except UpdateFinishedTrialError:
                continue  # it finished meanwhile
            due.append(cell)
            rotated += 1
    order = resumed + [c for c in cells if c in due and c not in resumed]
    for cell in order:
        study.enqueue_trial({}, user_attrs={"cell": cell.id, "variant": cell.variant, "dataset": cell.dataset,
                                            "seed": cell.seed})
    return len(order) - rotated


def _process_start(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks since boot, from /proc); None if it does not run."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def _worker_gone(where: dict[str, Any]) -> bool:
    """The confirmed worker ``where`` ran on this machine (same host and boot) and its process is gone."""
    if not where.get("boot") or where.get("host") != socket.gethostname() or where.get("boot") != _boot_id():
        return False
    return _process_start(int(where["pid"])) != where.get("started")


def reclaim_stale(study: optuna.Study) -> None:
    """Fail and re-queue the running trials whose worker is gone (see the module doc); a worker of this
    machine whose process is gone is known dead at once, without waiting for the grace period."""
    fail_stale_trials(study)
    storage, grace = study._storage, heartbeat_settings()[1]
    retry = storage.get_heartbeat_stale_trial_callback()
    now = datetime.now()  # Optuna stores naive local start times
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        where = trial.user_attrs.get("where") or {}
        confirmed = where.get("trial") == trial.number
        age = (now - trial.datetime_start).total_seconds() if trial.datetime_start else 0.0
        gone = _worker_gone(where) if confirmed else age >= grace  # unconfirmed: its worker died after claiming
        if not gone:
            continue
        try:
            if storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL) and retry is not None:
                retry(study, storage.get_trial(trial._trial_id))
        except UpdateFinishedTrialError:
            pass  # another worker reclaimed it first


def _superseded(study: optuna.Study, trial: optuna.Trial, cell_id: str) -> bool:
    """Another trial already covers this cell: it is complete, or older and waiting or running."""
    for other in trials_by_cell(study).get(cell_id, []):
        if other.number == trial.number:
            continue
        if other.state == TrialState.COMPLETE or (
                other.state in (TrialState.RUNNING, TrialState.WAITING) and other.number < trial.number):
            return True
    return False


@functools.lru_cache(maxsize=4)
def _plain_storage(url: str) -> RDBStorage:
    """One heartbeat-less connection per storage and process, for progress reports."""
    return open_storage(url, heartbeat=False)


class TrialReporter(L.Callback):
    """Follows the training step (``step``, for failure reports); on global rank 0, every heartbeat
    interval, stores it in the trial and stops training with :class:`TrialLost` if the trial is no
    longer this worker's (no longer RUNNING)."""

    def __init__(self, url: str, trial_id: int) -> None:
        self.url, self.trial_id, self.every = url, trial_id, heartbeat_settings()[0]
        self.step: int | None = None
        self._storage: RDBStorage | None = None
        self._last = 0.0

    def __getstate__(self) -> dict[str, Any]:  # ddp_spawn pickles callbacks: reconnect in the child
        return {**self.__dict__, "_storage": None}

    def report(self, trainer: L.Trainer, force: bool = False) -> None:
        self.step = int(trainer.global_step)
        if trainer.global_rank != 0 or (not force and time.monotonic() - self._last < self.every):
            return
        self._last = time.monotonic()
        self._storage = self._storage or _plain_storage(self.url)
        if self._storage.get_trial(self.trial_id).state != TrialState.RUNNING:
            raise TrialLost(f"trial {self.trial_id} was taken over by another worker (stale heartbeat)")
        self._storage.set_trial_user_attr(self.trial_id, "step", self.step)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.report(trainer, force=True)

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        self.report(trainer)


class _ClaimSampler(optuna.samplers.RandomSampler):
    """Optuna calls ``before_trial`` right after a worker claimed a waiting trial (now RUNNING) and before
    the trial's first heartbeat: the fault-injection point ``claim`` (:mod:`ablate.faults`)."""

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        pause_at("claim")
        super().before_trial(study, trial)


class Worker:
    """Claims and runs cells of one grid until none is waiting or running anywhere."""

    def __init__(self, grid: Grid, ctx: RunContext, url: str, name: str = "", claim_until: float | None = None) -> None:
        """``claim_until``: a ``time.time()`` after which this worker claims no new cell and stops (a time
        limit: a batch job's, a device call's); the cell it runs then finishes first."""
        self.grid, self.ctx, self.url, self.name, self.claim_until = grid, ctx, url, name, claim_until
        self.study = optuna.load_study(study_name=grid.name, storage=open_storage(url), sampler=_ClaimSampler())
        self.counts: Counter[str] = Counter()
        self.lost = False
        self._waiting_for: list[int] = []
        self.where = {"host": socket.gethostname(), "pid": os.getpid(), "worker": name or "main",
                      "device": os.environ.get("CUDA_VISIBLE_DEVICES", str(ctx.device))
                      if ctx.device.type == "cuda" else "cpu",
                      "boot": _boot_id(), "started": _process_start(os.getpid())}

    def label(self, cell: Cell | None) -> str:
        """``[k/n] dataset · variant · seed s``: the cell's place in the grid (as ``status`` lists it)."""
        if cell is None:
            return "[?] unknown cell"
        cells = [c.id for c in self.grid.cells()]
        place = f"{cells.index(cell.id) + 1}/{len(cells)}" if cell.id in cells else "+"
        return f"[{place}] {cell.dataset} · {cell.variant} · seed {cell.seed}"

    def say(self, text: str) -> None:
        self.ctx.console.print((f"[bold]\\[{self.name}][/] " if self.name else "") + text, highlight=False)

    def objective(self, trial: optuna.Trial) -> float:
        cell = cell_of(trial.user_attrs, self.grid.name)
        if cell is None or _superseded(self.study, trial, cell.id):
            raise optuna.TrialPruned("no cell to run (spare or duplicate trial)")
        directory = cell_dir(self.grid.results_root, self.grid.name, cell.dataset, cell.variant, cell.seed)
        reporter = TrialReporter(self.url, trial._trial_id)
        self.ctx.callbacks = [reporter]
        start = time.perf_counter()
        try:
            self.study._storage.record_heartbeat(trial._trial_id)  # first: a confirmed claim has a heartbeat
            trial.set_user_attr("where", {**self.where, "trial": trial.number})
            for key in ATTEMPT_ATTRS:
                trial.set_user_attr(key, None)  # attributes of an earlier attempt
            self.say(escape(self.label(cell)))
            with logs.to_file(directory / logs.CELL_LOG):
                outcome = run_cell(self.grid, cell, self.ctx)
        except TrialLost:
            self.lost = True
            raise
        except KeyboardInterrupt:  # a signal (ablate.runs.signals): the next run re-queues the cell
            settle()
            trial.set_user_attr("interrupted", True)
            trial.set_user_attr("fail_reason", f"stopped by {describe(received() or signal.SIGINT)}; "
                                               "the next run resumes it")
            trial.set_user_attr("fail_step", reporter.step)
            raise
        except Exception as err:
            self._fail(trial, directory, reporter, err)
            raise CellFailed(str(err)) from err
        finally:
            self.ctx.callbacks = []
        summary = json.loads((directory / "train.json").read_text())
        trial.set_user_attr("train", summary)
        trial.set_user_attr("step", summary["max_steps"])
        self.counts[outcome] += 1
        self.say(f"{escape(self.label(cell))}: {outcome} in {time.perf_counter() - start:.1f} s")
        return float(summary["val_loss"])

    def _fail(self, trial: optuna.Trial, directory: Path, reporter: TrialReporter, err: Exception) -> None:
        """Record a cell's failure: step and reason in the trial, the traceback in the cell's log."""
        trained = (directory / "train.json").exists()
        step = getattr(err, "step", None)  # the monitor's exact step of a non-finite loss
        if step is None:
            step = (reporter.step if reporter.step is not None
                    else self.grid.train.max_steps if trained  # failed in an evaluation resumed after training
                    else self.study._storage.get_trial(trial._trial_id).user_attrs.get("step"))  # DDP: from rank 0
        reason = failure_reason(err)[:1000] + (" (during evaluation)" if trained else "")
        log = directory / logs.CELL_LOG
        logs.write_failure(log, err)
        trial.set_user_attr("fail_reason", reason)
        trial.set_user_attr("fail_step", step)
        label = self.label(cell_of(trial.user_attrs, self.grid.name))
        self.say(f"[red]{escape(label)}: failed at step {step}: {escape(reason)}[/] (traceback in {escape(str(log))})")
        self.counts["failed"] += 1

    def run(self) -> Counter[str]:
        """Run cells until the queue is empty; a storage that fails (a full disk, a lost database server)
        stops the run with a :class:`ResultsError` (finished cells are kept, the next run goes on)."""
        for dataset in self.grid.datasets:  # fail before any training if data or a scorer is unavailable
            self.ctx.scorers(self.grid, dataset)
        try:
            return self._loop()
        except (StorageInternalError, SQLAlchemyError) as err:
            raise ResultsError(f"The grid's queue in the Optuna storage {self.url} cannot be read or written "
                               f"({type(err).__name__}: {str(err).splitlines()[0]}). Check that its disk has free "
                               "space, or that its database server runs, then run the same command again: "
                               "finished cells are kept.") from None

    def _loop(self) -> Counter[str]:
        while True:
            reclaim_stale(self.study)
            states = {t.state for t in self.study.get_trials(deepcopy=False, states=(TrialState.WAITING,
                                                                                      TrialState.RUNNING))}
            if TrialState.WAITING in states and self.claim_until is not None and time.time() >= self.claim_until:
                self.say("no new cell: the time limit for claiming (--stop-claiming-after) has passed; the "
                         "cells still waiting are left for the next run")
                return self.counts
            if TrialState.WAITING in states:
                self.lost = False
                try:
                    self.study.optimize(self.objective, n_trials=1, catch=(CellFailed,))
                except Exception as err:  # a trial that another worker already failed as stale cannot be told
                    if not (self.lost or isinstance(err, UpdateFinishedTrialError)):
                        raise
                    self.say("[yellow]another worker took this cell over (our heartbeat looked stale); moving on[/]")
                    self.counts["lost"] += 1
            elif TrialState.RUNNING in states:
                self._say_waiting()
                time.sleep(POLL_S)  # another worker is busy; its cell comes back here if it dies
            else:
                return self.counts

    def _say_waiting(self) -> None:
        """Say (once per set of cells) which cells this worker waits for, and when they come back if dead."""
        running = sorted(self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)), key=lambda t: t.number)
        if [t.number for t in running] == self._waiting_for:
            return
        self._waiting_for = [t.number for t in running]
        cells = "; ".join(f"{t.user_attrs.get('variant', '?')} (seed {t.user_attrs.get('seed', '?')}) " + (
            f"on {where['host']}:{where['pid']}" if (where := t.user_attrs.get("where") or {}).get("trial") == t.number
            else "just claimed") for t in running)
        self.say(f"waiting for {len(running)} cell{'s' if len(running) > 1 else ''} running elsewhere: "
                 f"{escape(cells)}; a cell whose worker is silent for {heartbeat_settings()[1]} s runs here")


def cell_states(study: optuna.Study | None, grid: Grid) -> dict[str, tuple[str, FrozenTrial | None, int]]:
    """(state, latest trial, attempts) per cell id, the grid's cells first, then other cells of the study.
    States: pending (not queued, waiting, or re-queued after a lost worker), running, done, failed."""
    by_cell = trials_by_cell(study) if study is not None else {}
    out = {}
    for cell_id in {**{c.id: None for c in grid.cells()}, **by_cell}:
        trials = by_cell.get(cell_id, [])
        last = trials[-1] if trials else None
        out[cell_id] = (STATE_NAMES[last.state if last else None], last, len(trials))
    return out
