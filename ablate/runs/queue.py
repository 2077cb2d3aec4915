"""The grid's cells as an Optuna queue: every run (a plain one is one worker) claims, runs and finishes
cells through it.

Conventions:

- One study per grid in an Optuna RDB storage (:mod:`ablate.runs.storage`).
- Every cell is one enqueued trial whose user attributes name it (``cell``, ``variant``,
  ``dataset``, ``seed``). A worker claims the oldest waiting trial through ``study.optimize``,
  which runs Optuna's heartbeat thread; the worker then records a heartbeat itself and confirms the
  claim (``where``: host, pid, worker, device, the trial's number, boot id and process start time).
  Heartbeats, reclaiming a dead worker's cell and the fencing of a worker whose claim was taken over:
  :mod:`ablate.runs.claims`.
- A finished trial is COMPLETE with value = the cell's best EMA validation loss. The queue holds
  the queue's state only: the cell's records live in the results store (:mod:`ablate.results`), which
  is the truth for what is done. :func:`queue_cells` queues a COMPLETE cell again when its records
  are missing or damaged (``heals``: the number of the trial it heals); the cell then re-evaluates
  exactly those settings, from its checkpoint (:func:`ablate.engine.runner.run_cell`). A cell done on
  another machine, whose folder this machine's results directory lacks, is left alone (its records are
  in that machine's results directory). A damaged queue is rebuilt from the records: :mod:`ablate.runs.rebuild`.
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

import json
import os
import signal
import socket
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import FrozenTrial, TrialState
from rich.markup import escape

from ablate.runs import logs
from ablate.faults import pause_at
from ablate.io import failure_reason
from ablate.config.grid import Cell, Grid
from ablate.config.setting import Setting
from ablate.io import fenced
from ablate.results import ResultsError, ResultsStore, cell_dir, read_record
from ablate.engine.runner import RunContext, run_cell
from ablate.runs.claims import Claim, TrialLost, TrialReporter, boot_id, process_start, reclaim_stale
from ablate.runs.signals import describe, received, settle
from ablate.runs.storage import heartbeat_settings, open_storage, storage_errors

POLL_S = 2.0
STATE_NAMES = {None: "pending", TrialState.WAITING: "pending", TrialState.RUNNING: "running",
               TrialState.COMPLETE: "done", TrialState.FAIL: "failed"}
ATTEMPT_ATTRS = ("step", "fail_reason", "fail_step", "interrupted")  # reset when a cell is tried again


class CellFailed(Exception):
    """A cell's run failed (divergence, a crash in training or scoring); the grid goes on."""


def cell_of(attrs: dict[str, Any], grid_name: str) -> Cell | None:
    if "cell" not in attrs:
        return None
    return Cell(grid_name, attrs["variant"], attrs["dataset"], int(attrs["seed"]), attrs.get("backbone", "dit"))


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


def store_faults(grid: Grid, cell: Cell, trial: FrozenTrial) -> dict[Setting, str]:
    """The settings whose record is missing or damaged of a cell the queue has as done (``trial``), as far as
    this machine can tell: none for a cell done on another host whose folder is not in this results directory."""
    store = ResultsStore(grid.results_root)
    host = (trial.user_attrs.get("where") or {}).get("host")
    if host not in (None, socket.gethostname()) and not store.cell_dir(cell).exists():
        return {}
    return store.faults(cell, grid.eval.all_settings())


def queue_cells(study: optuna.Study, grid: Grid, retry_failed: bool = False,
                say: Callable[[str], None] | None = None) -> int:
    """Enqueue each cell that has no trial yet, whose last trial failed without :func:`cell_failed`
    (stopped by a signal, worker lost), or failed at all with ``retry_failed``, or is done while its
    records are missing or damaged (:func:`store_faults`; ``say`` tells which). Returns how many were queued.

    Cells tried before (they may have a checkpoint) go to the head of the queue: a worker claims the
    oldest waiting trial, so the cells still waiting from an earlier run are re-queued behind them (their
    waiting trials are failed, unattributed, and replaced). Otherwise a grid cut by a deadline on every
    run (a device call, a batch job's time limit) would start new cells and leave the cut ones behind."""
    existing, cells = trials_by_cell(study), grid.cells()
    last = {cell.id: existing.get(cell.id, [None])[-1] for cell in cells}
    heal = {c.id: faults for c in cells if last[c.id] is not None and last[c.id].state == TrialState.COMPLETE
            and (faults := store_faults(grid, c, last[c.id]))}
    for cell in cells:
        if cell.id in heal and say is not None:
            faults = heal[cell.id]
            say(f"{cell.dataset} · {cell.variant} · seed {cell.seed} is done in the queue, but {len(faults)} of its "
                f"{len(grid.eval.all_settings())} records {'is' if len(faults) == 1 else 'are'} missing or damaged "
                f"({'; '.join(f'{s.key}: {why}' for s, why in list(faults.items())[:3])}): queued again")
    due = [c for c in cells if last[c.id] is None or c.id in heal or (
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
                                            "seed": cell.seed, "backbone": cell.backbone,
                                            **({"heals": last[cell.id].number} if cell.id in heal else {})})
    return len(order) - rotated


def _superseded(study: optuna.Study, trial: optuna.Trial, cell_id: str) -> bool:
    """Another trial already covers this cell: it is complete (and not the one this trial heals, nor older), or
    older and waiting or running."""
    heals = trial.user_attrs.get("heals", -1)
    for other in trials_by_cell(study).get(cell_id, []):
        if other.number == trial.number:
            continue
        if (other.state == TrialState.COMPLETE and other.number > heals) or (
                other.state in (TrialState.RUNNING, TrialState.WAITING) and other.number < trial.number):
            return True
    return False


class _ClaimSampler(optuna.samplers.RandomSampler):
    """Optuna calls ``before_trial`` right after a worker claimed a waiting trial (now RUNNING) and before
    the trial's first heartbeat: the fault-injection point ``claim`` (:mod:`ablate.faults`)."""

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        pause_at("claim")
        super().before_trial(study, trial)


class Worker:
    """Claims and runs cells of one grid until none is waiting or running anywhere."""

    def __init__(self, grid: Grid, ctx: RunContext, url: str, name: str = "", claim_until: float | None = None,
                 claim_round: Callable[[Worker], bool] | None = None) -> None:
        """``claim_until``: a ``time.time()`` after which this worker claims no new cell and stops (a time
        limit: a batch job's, a device call's); the cell it runs then finishes first. ``claim_round``: claims
        and runs some waiting cells at once (a pack, :func:`ablate.runs.packs.run_pack`) instead of one."""
        self.grid, self.ctx, self.url, self.name, self.claim_until = grid, ctx, url, name, claim_until
        self.claim_round = claim_round
        self.study = optuna.load_study(study_name=grid.name, storage=open_storage(url), sampler=_ClaimSampler())
        self.counts: Counter[str] = Counter()
        self.unpackable: set[tuple] = set()  # pack keys whose pack failed before its first step: trained alone since
        self.lost: bool | str = False
        self.returned, self.trial_id = False, None
        self._waiting_for: list[int] = []
        self.where = {"host": socket.gethostname(), "pid": os.getpid(), "worker": name or "main",
                      "device": os.environ.get("CUDA_VISIBLE_DEVICES", str(ctx.device))
                      if ctx.device.type == "cuda" else "cpu",
                      "boot": boot_id(), "started": process_start(os.getpid())}

    def label(self, cell: Cell | None) -> str:
        """``[k/n] dataset · variant · seed s``: the cell's place in the grid (as ``status`` lists it)."""
        if cell is None:
            return "[?] unknown cell"
        cells = [c.id for c in self.grid.cells()]
        place = f"{cells.index(cell.id) + 1}/{len(cells)}" if cell.id in cells else "+"
        backbone = f" · {cell.backbone}" if self.grid.backbones != ("dit",) else ""
        return f"[{place}] {cell.dataset} · {cell.variant}{backbone} · seed {cell.seed}"

    def say(self, text: str) -> None:
        self.ctx.console.print((f"[bold]\\[{self.name}][/] " if self.name else "") + text, highlight=False)

    def objective(self, trial: optuna.Trial) -> float:
        cell = cell_of(trial.user_attrs, self.grid.name)
        if cell is None or _superseded(self.study, trial, cell.id):
            raise optuna.TrialPruned("no cell to run (spare or duplicate trial)")
        directory = cell_dir(self.grid.results_root, self.grid.name, cell.dataset, cell.variant, cell.seed,
                             cell.backbone)
        reporter, claim = TrialReporter(self.url, trial._trial_id), Claim(self.url, trial._trial_id)
        self.ctx.callbacks = [reporter]
        self.trial_id, self.returned = trial._trial_id, False
        start = time.perf_counter()
        try:
            self.study._storage.record_heartbeat(trial._trial_id)  # first: a confirmed claim has a heartbeat
            trial.set_user_attr("where", {**self.where, "trial": trial.number})
            for key in ATTEMPT_ATTRS:
                trial.set_user_attr(key, None)  # attributes of an earlier attempt
            self.say(escape(self.label(cell)))
            with logs.to_file(directory / logs.CELL_LOG), fenced(claim.check):
                outcome = run_cell(self.grid, cell, self.ctx)
                claim.check("the cell's completion")
        except TrialLost as err:
            self.lost = str(err)
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
        summary = self._summary(cell, directory)
        trial.set_user_attr("train", summary)
        trial.set_user_attr("step", summary.get("max_steps"))
        self.counts[outcome] += 1
        self.say(f"{escape(self.label(cell))}: {outcome} in {time.perf_counter() - start:.1f} s")
        self.returned = True
        return float(summary.get("val_loss", float("nan")))

    def _summary(self, cell: Cell, directory: Path) -> dict[str, Any]:
        """The cell's training summary: its train.json, or (that file damaged, all records whole) a record's copy."""
        try:
            summary = json.loads((directory / "train.json").read_text())
            if isinstance(summary, dict) and "val_loss" in summary:
                return summary
        except (OSError, ValueError):
            pass
        store = ResultsStore(self.grid.results_root)
        for setting in self.grid.eval.all_settings():
            try:
                return dict(read_record(store.record_path(cell, setting))["train"] or {})
            except (ResultsError, TypeError, ValueError):
                continue
        return {}

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
        try:
            trial.set_user_attr("fail_reason", reason)
            trial.set_user_attr("fail_step", step)
        except UpdateFinishedTrialError:  # the cell was taken over meanwhile: its failure is not ours to tell
            self.lost = f"trial {trial._trial_id} was taken over by another worker before it failed here ({reason})"
            raise TrialLost(self.lost) from None
        label = self.label(cell_of(trial.user_attrs, self.grid.name))
        self.say(f"[red]{escape(label)}: failed at step {step}: {escape(reason)}[/] (traceback in {escape(str(log))})")
        self.counts["failed"] += 1

    def run(self) -> Counter[str]:
        """Run cells until the queue is empty; a storage that fails (a full disk, a lost database server, a
        damaged file) stops the run with a :class:`ResultsError` paragraph (finished cells are kept)."""
        for dataset in self.grid.datasets:  # fail before any training if data or a scorer is unavailable
            self.ctx.scorers(self.grid, dataset)
        with storage_errors(self.grid, self.url):
            return self._loop()

    def _loop(self) -> Counter[str]:
        while True:
            reclaim_stale(self.study)
            states = {t.state for t in self.study.get_trials(deepcopy=False, states=(TrialState.WAITING,
                                                                                      TrialState.RUNNING))}
            if TrialState.WAITING in states and self.claim_until is not None and time.time() >= self.claim_until:
                self.say("no new cell: the time limit for claiming (--stop-claiming-after) has passed; the "
                         "cells still waiting are left for the next run")
                return self.counts
            if TrialState.WAITING in states and self.claim_round is not None:
                self.claim_round(self)
            elif TrialState.WAITING in states:
                self.lost, self.returned, self.trial_id = False, False, None  # lost: why, once taken over
                try:
                    self.study.optimize(self.objective, n_trials=1, catch=(CellFailed,))
                except Exception as err:  # a trial that another worker already failed as stale cannot be told
                    if not (self.lost or isinstance(err, UpdateFinishedTrialError) or self._taken_over()):
                        raise
                    self.say("[yellow]another worker took this cell over (our heartbeat looked stale); moving on[/]"
                             + (f" ({escape(self.lost)})" if isinstance(self.lost, str) else ""))
                    self.counts["lost"] += 1
            elif TrialState.RUNNING in states:
                self._say_waiting()
                time.sleep(POLL_S)  # another worker is busy; its cell comes back here if it dies
            else:
                return self.counts

    def _taken_over(self) -> bool:
        """The cell this worker finished was taken over meanwhile (its trial failed by another worker), so that
        Optuna could not tell it complete."""
        return bool(self.returned and self.trial_id is not None
                    and self.study._storage.get_trial(self.trial_id).state == TrialState.FAIL)

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
