"""A worker's packs: it claims up to K waiting cells of its grid at once and trains them as one stacked model
(:mod:`ablate.engine.pack`), then evaluates them together (:mod:`ablate.engine.pack_evaluate`). A cell stays
the unit of the queue: each claimed cell is its own trial, with its own heartbeat thread, ``where``, ``step``
(:class:`~ablate.runs.queue.TrialReporter`), failure (``fail_reason``, ``fail_step``, told FAIL as it fails
while its pack-mates go on) and completion; a stale one is reclaimed as any. Cells that cannot share a pack
(another step to resume from, another training config) train as smaller packs or alone, one group after another.
"""

from __future__ import annotations

import functools
import json
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages._heartbeat import get_heartbeat_thread
from optuna.trial import TrialState
from rich.markup import escape

from ablate.config.grid import Cell
from ablate.engine.pack import pack_key, resume_groups
from ablate.engine.pack_evaluate import evaluate_pack
from ablate.engine.pack_train import PackDidNotStart, resume_steps, train_pack
from ablate.engine.cell_state import check_training_state
from ablate.engine.runner import claim_directory, evaluate_cell, say_to_cell, train_cell
from ablate.io import fenced
from ablate.results import cell_dir
from ablate.runs import logs
from ablate.runs.claims import Claim
from ablate.runs.queue import ATTEMPT_ATTRS, TrialLost, TrialReporter, _superseded, cell_of
from ablate.runs.signals import describe, received, settle

if TYPE_CHECKING:
    from ablate.runs.queue import Worker


@dataclass
class _Claim:
    trial: optuna.Trial
    cell: Cell
    reporter: TrialReporter
    heartbeat: Any
    directory: Path | None = None
    settings: list[Any] = field(default_factory=list)  # the settings whose records are missing or damaged
    start: float = field(default_factory=time.perf_counter)
    open: bool = True  # not yet told (COMPLETE or FAIL) nor lost
    lost: bool = False  # taken over by another worker: nothing more of it is written


def claim(worker: Worker, size: int) -> list[_Claim]:
    """Up to ``size`` waiting cells of the grid that can train as one pack, each claimed as its trial (RUNNING,
    heartbeat, ``where``): the oldest waiting cell, then the oldest waiting cells of its :func:`pack_key` (on a grid
    of several backbones, a pack takes one backbone's cells from later seeds rather than stopping at the few of
    its seed; on a grid of one, the queue's order as it is)."""
    study, claims = worker.study, []
    while len(claims) < size:
        waiting = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
        if claims:
            trial = _packmate(worker, waiting, pack_key(worker.grid, claims[0].cell))
            if trial is None:
                break
        elif not waiting:
            break
        else:
            trial = study.ask()  # the oldest waiting trial; a new, cell-less one if another worker took the last
        cell = cell_of(trial.user_attrs, worker.grid.name)
        if cell is None or _superseded(study, trial, cell.id):
            study.tell(trial, state=TrialState.PRUNED)
            if cell is None:
                break
            continue
        heartbeat = get_heartbeat_thread(trial._trial_id, study._storage)
        heartbeat.start()
        study._storage.record_heartbeat(trial._trial_id)  # first: a confirmed claim has a heartbeat
        trial.set_user_attr("where", {**worker.where, "trial": trial.number})
        for key in ATTEMPT_ATTRS:
            trial.set_user_attr(key, None)  # attributes of an earlier attempt
        claims.append(_Claim(trial, cell, TrialReporter(worker.url, trial._trial_id), heartbeat))
    return claims


def _packmate(worker: Worker, waiting: list[optuna.trial.FrozenTrial], key: tuple) -> optuna.Trial | None:
    """The oldest of the ``waiting`` trials whose cell has pack key ``key``, made RUNNING as ``study.ask`` makes the
    oldest of all (None if there is none, or other workers took each first)."""
    storage = worker.study._storage
    for frozen in waiting:
        cell = cell_of(frozen.user_attrs, worker.grid.name)
        if cell is None or pack_key(worker.grid, cell) != key:
            continue
        try:
            if storage.set_trial_state_values(frozen._trial_id, state=TrialState.RUNNING):
                return optuna.Trial(worker.study, frozen._trial_id)
        except UpdateFinishedTrialError:  # finished by another worker meanwhile
            continue
    return None


def _tell(worker: Worker, c: _Claim, **kw: Any) -> None:
    c.open = False
    c.heartbeat.join()
    try:
        worker.study.tell(c.trial, **kw)
    except UpdateFinishedTrialError:  # another worker failed it as stale meanwhile
        worker.say("[yellow]another worker took a cell of this pack over (our heartbeat looked stale); moving on[/]")
        worker.counts["lost"] += 1


def _failed(worker: Worker, c: _Claim, err: BaseException) -> None:
    if not c.open:
        return
    if isinstance(err, TrialLost):
        c.open, c.lost = False, True
        c.heartbeat.join()
        worker.say("[yellow]another worker took a cell of this pack over (our heartbeat looked stale); moving on[/]")
        worker.counts["lost"] += 1
        return
    worker._fail(c.trial, c.directory or Path("."), c.reporter, err)  # type: ignore[arg-type]
    _tell(worker, c, state=TrialState.FAIL)


def _complete(worker: Worker, c: _Claim, outcome: str) -> None:
    summary = json.loads((c.directory / "train.json").read_text())  # type: ignore[operator]
    c.trial.set_user_attr("train", summary)
    c.trial.set_user_attr("step", summary["max_steps"])
    worker.counts[outcome] += 1
    worker.say(f"{escape(worker.label(c.cell))}: {outcome} in {time.perf_counter() - c.start:.1f} s")
    _tell(worker, c, values=[float(summary["val_loss"])])


def _train(worker: Worker, claims: list[_Claim]) -> None:
    """Train the claimed cells that need it: in packs of cells at one resume step, a lone one alone."""
    ctx = worker.ctx
    todo = [c for c in claims if c.open and check_training_state(c.directory, say_to_cell(ctx)) is None]  # type: ignore[arg-type]
    if not todo:
        return
    steps = [step for _, step in resume_steps([c.directory for c in todo], ctx)]  # type: ignore[misc]
    groups = resume_groups(worker.grid, [c.cell for c in todo], steps)
    for group in groups:
        members = [todo[i] for i in group]
        key = pack_key(worker.grid, members[0].cell)  # type: ignore[arg-type]
        packed = len(members) > 1 and key not in worker.unpackable
        if packed and _train_packed(worker, members):
            continue
        if packed:  # it failed before its first step: this worker packs no more of these cells
            worker.unpackable.add(key)
        for c in members:
            _train_alone(worker, c)


def _train_alone(worker: Worker, c: _Claim) -> None:
    worker.ctx.callbacks = [c.reporter]
    try:
        with logs.to_file(c.directory / logs.CELL_LOG):  # type: ignore[operator]
            train_cell(worker.grid, c.cell, worker.ctx, c.directory)  # type: ignore[arg-type]
    except Exception as err:  # noqa: BLE001 -- this cell fails; the grid goes on
        _failed(worker, c, err)
    finally:
        worker.ctx.callbacks = []


def _train_packed(worker: Worker, members: list[_Claim]) -> bool:
    """Train ``members`` as one pack; False if the pack failed before its first step (its cells then train alone,
    and so do this worker's later cells of its pack key: a pack only makes training faster, a member's record is
    the same alone)."""
    worker.say(f"training {len(members)} cells as one pack")
    try:
        with logs.to_file([c.directory / logs.CELL_LOG for c in members]):  # type: ignore[operator]
            train_pack(worker.grid, [c.cell for c in members], worker.ctx, [c.directory for c in members],  # type: ignore[misc]
                       lambda k, err: _failed(worker, members[k], err), reporters=[c.reporter for c in members])
    except PackDidNotStart as err:
        worker.say(f"[yellow]the pack failed before its first step ({escape(str(err))}); its {len(members)} cells "
                   "train alone, as will this worker's later cells of the same backbone and training config[/]")
        return False
    except TrialLost as err:  # a member taken over while the pack wrote its files: nothing of it landed; a
        # pack-mate whose summary was not written yet fails its evaluation and is queued again
        worker.say(f"[yellow]{escape(str(err))}[/]")
    return True


def run_pack(worker: Worker, size: int) -> bool:
    """Claim up to ``size`` cells, train them (packed), evaluate each; False if there was none to claim."""
    return bool(_round(worker, size))


def _round(worker: Worker, size: int) -> list[_Claim]:
    """:func:`run_pack`, returning its claims (none if there was none to claim)."""
    claims = claim(worker, size)
    if not claims:
        return claims
    try:
        for c in claims:
            worker.say(escape(worker.label(c.cell)))
            claimed = claim_directory(worker.grid, c.cell, worker.ctx)
            if claimed is None:  # done already, every record whole (recorded by an earlier run)
                g = worker.grid
                c.directory = cell_dir(g.results_root, g.name, c.cell.dataset, c.cell.variant, c.cell.seed, c.cell.backbone)
                _complete(worker, c, "skipped")
            else:
                c.directory, c.settings = claimed
        with fenced(_fence(worker, claims)):
            _run_claims(worker, claims)
    except KeyboardInterrupt:  # a signal (ablate.runs.signals): the next run re-queues the open cells
        settle()
        for c in claims:
            if c.open:
                c.trial.set_user_attr("interrupted", True)
                c.trial.set_user_attr("fail_reason", f"stopped by {describe(received() or signal.SIGINT)}; "
                                                     "the next run resumes it")
                c.trial.set_user_attr("fail_step", c.reporter.step)
                _tell(worker, c, state=TrialState.FAIL)
        raise
    finally:
        for c in claims:
            if c.open:
                c.heartbeat.join()
    return claims


def _fence(worker: Worker, claims: list[_Claim]) -> Callable[[Path], None]:
    """The fence of a pack's writes (:func:`ablate.io.fenced`): a write into a claimed cell's directory lands only
    while that cell's trial is still ours (:class:`ablate.runs.claims.Claim`)."""
    def check(path: Path) -> None:
        for c in claims:
            if c.directory is None or not Path(path).is_relative_to(c.directory):
                continue
            if c.lost:
                raise TrialLost(f"trial {c.trial._trial_id} was taken over by another worker; {path} not written")
            if c.open:  # a cell this worker told (failed, done) stays its own until it is queued again
                Claim(worker.url, c.trial._trial_id).check(path)
    return check


def _run_claims(worker: Worker, claims: list[_Claim]) -> None:
    """Train the claimed cells that need it (packed), then evaluate their missing or damaged settings: packed where
    several of one dataset and backbone (one network shape) are left."""
    _train(worker, claims)
    groups: dict[tuple[str, str], list[_Claim]] = {}
    for c in claims:
        if c.open:
            groups.setdefault((c.cell.dataset, c.cell.backbone), []).append(c)
    for group in groups.values():
        if len(group) > 1:
            _evaluate_pack(worker, group)
            continue
        c = group[0]
        try:
            with logs.to_file(c.directory / logs.CELL_LOG):  # type: ignore[operator]
                summary = json.loads((c.directory / "train.json").read_text())  # type: ignore[operator]
                outcome = evaluate_cell(worker.grid, c.cell, worker.ctx, c.directory, summary, c.settings)  # type: ignore[arg-type]
        except Exception as err:  # noqa: BLE001 -- this cell fails; the grid goes on
            _failed(worker, c, err)
            continue
        _complete(worker, c, outcome)


def _evaluate_pack(worker: Worker, claims: list[_Claim]) -> None:
    """Evaluate the claimed cells as one pack (:func:`ablate.engine.pack_evaluate.evaluate_pack`), each told as it
    fails or completes."""
    todo, summaries = [], []
    for c in claims:
        try:
            summaries.append(json.loads((c.directory / "train.json").read_text()))  # type: ignore[operator]
            todo.append(c)
        except Exception as err:  # noqa: BLE001 -- this cell fails; the pack goes on
            _failed(worker, c, err)
    if not todo:
        return
    worker.say(f"evaluating {len(todo)} cells as one pack")
    try:
        with logs.to_file([c.directory / logs.CELL_LOG for c in todo]):  # type: ignore[operator]
            done = evaluate_pack(worker.grid, [c.cell for c in todo], worker.ctx, [c.directory for c in todo],  # type: ignore[misc]
                                 summaries, [c.settings for c in todo], lambda k, err: _failed(worker, todo[k], err))
    except Exception as err:  # noqa: BLE001 -- the pack's evaluation failed outside its members: each fails
        for c in todo:
            _failed(worker, c, err)
        return
    for k in done:
        if todo[k].open:
            _complete(worker, todo[k], "done")


def trained_img_per_s(reporters: list[TrialReporter], batch_size: int) -> float | None:
    """Training images a second of one round's cells over their timed windows (:attr:`TrialReporter.window`):
    all their images over the time the windows cover together. Pack-mates' windows coincide, so their images share
    one time; the packs of a round trained in turn (a round over several backbones or resume steps forms one pack
    each) follow each other, so their times add up. None if a cell was not timed."""
    windows = [r.window for r in reporters]
    if not windows or any(w is None for w in windows):
        return None
    covered, end = 0.0, float("-inf")
    for _, start, stop in sorted(windows, key=lambda w: w[1]):  # type: ignore[index]
        covered += max(0.0, stop - max(start, end))
        end = max(end, stop)
    return batch_size * sum(w[0] for w in windows) / covered if covered > 0 else None  # type: ignore[index]


class MeasuredPacks:
    """A worker's ``claim_round`` that picks its pack size by measuring (a plain CUDA run, ``--pack`` not given):
    its first round trains one cell alone, its second a pack of ``k``, each timed over the second half of its
    training (:func:`trained_img_per_s`: validations in, compile out); every later round claims as many
    cells as the faster did, in training images a second. Why: with CUDA graphs a lone cell's step is bound by
    the host's Python on a slow host and by the GPU on a fast one, and the two H100 hosts measured went opposite
    ways (``benchmarks/gpu-runs/2026-12-07e``: the pack of 8 1.48x faster; ``2026-12-07g``: one cell alone 1.26x).
    A round that could not be timed (a cell resumed past half its steps, or found done; a "pack" of one cell)
    leaves ``k``."""

    def __init__(self, k: int) -> None:
        self.k = k
        self.img_per_s: dict[int, float | None] = {}  # by the size asked for; None: that round gave no timing
        self.cells: dict[int, int] = {}  # the cells each measuring round had

    def next_size(self) -> int:
        for size in (1, self.k):
            if size not in self.img_per_s:
                return size
        one, pack = self.img_per_s[1], self.img_per_s[self.k]
        return 1 if one is not None and pack is not None and one > pack else self.k

    def __call__(self, worker: Worker) -> bool:
        measuring, size = len(self.img_per_s) < 2, self.next_size()
        claims = _round(worker, size)
        if measuring and claims:
            rate = trained_img_per_s([c.reporter for c in claims], worker.grid.train.batch_size)
            # a pack short of k at the grid's end still measures packing
            self.img_per_s[size] = rate if len(claims) >= min(size, 2) else None
            self.cells[size] = len(claims)
            if len(self.img_per_s) == 2:
                one, pack = self.img_per_s[1], self.img_per_s[self.k]
                said = (f"one cell alone trained {one:,.0f} img/s, a pack of {self.cells[self.k]} {pack:,.0f} in all"
                        if one and pack
                        else "the first rounds could not both be timed (a resumed or finished cell, or a pack of one)")
                worker.say(f"pack size measured: {said}; packs of {self.next_size()} from now on (--pack K to choose)")
        return bool(claims)


def claim_rounds(size: int, measure: bool = False) -> Callable[[Worker], bool] | None:
    """A worker's ``claim_round`` for packs of up to ``size`` cells (None for 1: one cell at a time, as ever);
    ``measure``: :class:`MeasuredPacks` of ``size`` (the size was the rule's, not the user's)."""
    if size <= 1:
        return None
    return MeasuredPacks(size) if measure else functools.partial(run_pack, size=size)
