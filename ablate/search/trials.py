"""The search loop: Optuna's multi-objective sampler proposes points, ordinary grids train them.

How trials map to cells: a trial is one point (the template's numbers, and the learning rate when
searched); its cell is (grid, variant, dataset, seed) with the variant named by the point. Without a
learning-rate range every trial is a cell of one grid named like the search; with one, the trials of
a learning rate form the grid ``<name>.lr<lr>`` (two significant digits), because a grid's cells
share their training config. Each round asks the sampler for ``search.batch`` points, turns them
into grids, runs them with :func:`ablate.runs.workers.run_grid` (same queue, storage, workers,
resume and records as ``ablate run``), then tells the sampler the objectives read back from the
:class:`~ablate.results.ResultsStore`; rounds repeat until the trial budget is spent.

The sampler's study, ``<name>.search``, lives in the search grid's storage beside the queue study:
trials are asked (RUNNING) before their cells run and told (COMPLETE, or FAIL when the cell failed)
after. A rerun after a kill first runs the asked-but-untold trials again (their cells resume through
the queue; finished cells are not retrained), then goes on. Two points that round to one variant
share a cell. The budget counts the points enqueued first (``search.enqueue``, the paper's lattice)
and not the warm-start trials read from other grids' records. One search process per study; use
``--workers N`` to train a round's cells in parallel.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterable

import optuna
import pandas as pd
from optuna.trial import TrialState

from ablate.engine.runner import RunContext
from ablate.errors import ConfigError
from ablate.results import ResultsStore
from ablate.runs.storage import default_storage, open_storage, shared_config
from ablate.runs.workers import WorkerOptions, run_grid
from ablate.search.analysis import point_key, repeats
from ablate.search.points import Point, distributions, grid_for, grid_name, objectives
from ablate.config.lr import lr_label, round_lr
from ablate.search.spec import STEP, Search
from ablate.search.warm import warm_start

DIRECTIONS = ("maximize", "minimize")  # (alignment, fidelity)
MADE = ("search", "enqueued", "paper lattice")  # sources that spend the budget
REDRAWS = 20


def run_points(search: Search, points: Iterable[Point], ctx: RunContext, options: WorkerOptions,
               seeds: tuple[int, ...] = ()) -> None:
    """Train and evaluate ``points`` through run_grid, one grid per learning rate."""
    by_lr: dict[float | None, list[str]] = {}
    for variant, lr in points:
        by_lr.setdefault(lr, []).append(variant)
    for lr, variants in by_lr.items():
        run_grid(grid_for(search, variants, lr, seeds), ctx, options)


def _sampler(search: Search, progress: int = 0) -> optuna.samplers.BaseSampler:
    """The search's sampler, seeded by ``search.seed`` plus the number of trials the study holds: a
    sampler's state outside the storage is its random generator, so a resumed search (a new process)
    seeded as the first would draw the first round's points again (seen on the GPU: NSGA-II's first
    generation, one trial short after a failed cell, re-drew all 8); seeded by the study's progress, a
    resumed search draws what an unbroken one would."""
    s = search.search
    if s.sampler == "tpe":
        return optuna.samplers.TPESampler(seed=s.seed + progress, n_startup_trials=s.batch, multivariate=True)
    return optuna.samplers.NSGAIISampler(population_size=max(s.batch, 2), seed=s.seed + progress)


def _fingerprint(search: Search) -> dict[str, object]:
    config = shared_config(search.base)
    config.pop("name", None)
    s = search.search
    return json.loads(json.dumps({"grid": config, "variant": s.variant, "params": s.params,
                                  "lr": dataclasses.asdict(s.lr) if s.lr else None, "objective": s.objective,
                                  "sampler": s.sampler}))


def open_search_study(search: Search, url: str) -> optuna.Study:
    """The search's sampler study, created on first use; a rerun must search the same space."""
    study = optuna.create_study(study_name=f"{search.name}.search", storage=open_storage(url, heartbeat=False),
                                directions=list(DIRECTIONS), sampler=_sampler(search), load_if_exists=True)
    mine, stored = _fingerprint(search), study.user_attrs.get("search")
    if stored is None:
        study.set_user_attr("search", mine)
    elif stored != mine:
        changed = sorted(k for k in set(mine) | set(stored) if mine.get(k) != stored.get(k))
        raise ConfigError(f"The storage {url} already holds search {search.name!r} with another {', '.join(changed)} "
                          f"than {search.file} now gives. A search continues only with the same space, objective and "
                          "training; rename it (`name`) or use another --results directory (or --storage) to start a new one.")
    return study


def point_of(trial: optuna.trial.FrozenTrial) -> Point:
    lr = trial.user_attrs.get("lr")
    return trial.user_attrs["variant"], None if lr is None else float(lr)


def _enqueue(study: optuna.Study, search: Search) -> None:
    """Queue the fixed points (``search.enqueue``, then the paper's lattice) that no trial holds yet."""
    known = {t.user_attrs.get("variant") for t in study.get_trials(deepcopy=False)}
    fixed = [(v, "enqueued") for v in search.search.enqueue]
    fixed += [(v, "paper lattice") for v in (search.lattice() if search.search.lattice else [])]
    lr = search.space.lr
    for variant, source in fixed:
        params = search.space.params(variant)
        if variant in known or params is None:
            continue
        known.add(variant)
        if lr is not None:
            params["lr"] = min(max(search.base.train.lr, lr.low), lr.high)
        study.enqueue_trial(params, user_attrs={"source": source})


def _ask(study: optuna.Study, search: Search) -> optuna.trial.FrozenTrial:
    """A new trial at a point no trial holds yet: a draw that repeats one (at the 0.01 lattice of the
    parameters, NSGA-II's crossover of a small population often does) is told failed, spends no budget
    (`analysis.repeats`), and is drawn again, up to ``REDRAWS`` times."""
    held = {point_key(t) for t in study.get_trials(deepcopy=False) if "variant" in t.user_attrs}
    dists = distributions(search)
    draw = 0
    while True:
        trial = study.ask()
        params = {k: round(trial.suggest_float(k, d.low, d.high, step=STEP), 2)
                  for k, d in dists.items() if k != "lr"}
        lr = round_lr(trial.suggest_float("lr", dists["lr"].low, dists["lr"].high, log=True)) if "lr" in dists else None
        variant = search.space.variant(params)
        trial.set_user_attr("variant", variant)
        trial.set_user_attr("lr", lr)
        trial.set_user_attr("grid", grid_name(search, lr))
        if "source" not in trial.user_attrs:
            trial.set_user_attr("source", "search")
        if (variant, lr) not in held or draw == REDRAWS or trial.user_attrs["source"] != "search":
            return study._storage.get_trial(trial._trial_id)
        study.tell(trial.number, state=TrialState.FAIL)
        draw += 1


def _tell(study: optuna.Study, search: Search, trials: list[optuna.trial.FrozenTrial]) -> None:
    frames: dict[str, pd.DataFrame] = {}
    for trial in trials:
        variant, lr = point_of(trial)
        name = grid_name(search, lr)
        if name not in frames:
            frames[name] = ResultsStore(search.base.results_root).frame(name)
        values = objectives(frames[name], variant, search.base.seeds, search.objective_settings)
        if all(math.isfinite(v) for v in values):
            study.tell(trial.number, list(values))
        else:
            study._storage.set_trial_user_attr(trial._trial_id, "fail_reason", f"no finite objective: the cell of grid "
                                               f"{name} failed (its traceback is in the cell's logs/output.log)")
            study.tell(trial.number, state=TrialState.FAIL)


def made(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """The trials that spent the budget: asked (not waiting), from the search or the fixed points, and
    not repeats of an earlier trial's point."""
    again = repeats(study)
    return [t for t in study.get_trials(deepcopy=False) if t.state != TrialState.WAITING
            and t.user_attrs.get("source") in MADE and "variant" in t.user_attrs and t.number not in again]


def run_search(search: Search, ctx: RunContext, options: WorkerOptions, trials: int) -> optuna.Study:
    """Warm-start, enqueue the fixed points, then ask / train / tell until ``trials`` trials are told."""
    url = options.storage or default_storage(search.base)
    study = open_search_study(search, url)
    for note in warm_start(study, search):
        ctx.console.print(note, highlight=False, markup=False)
    _enqueue(study, search)
    while True:
        running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        for broken in (t for t in running if "variant" not in t.user_attrs):  # killed between ask and attrs
            study.tell(broken.number, state=TrialState.FAIL)
        pending = [t for t in running if "variant" in t.user_attrs]
        room = trials - len(made(study))
        study.sampler = _sampler(search, len(study.get_trials(deepcopy=False)))
        batch = pending + [_ask(study, search) for _ in range(max(0, min(search.search.batch - len(pending), room)))]
        if not batch:
            return study
        if not pending and {t.number for t in batch} <= repeats(study):
            ctx.console.print(f"search {search.name}: stopped at {len(made(study))} trials; every draw of this round "
                              f"({REDRAWS + 1} each) repeats a point already held: the space is exhausted at its "
                              f"{STEP} lattice", highlight=False, markup=False)
            return study
        ctx.console.print(f"search {search.name}: trials {', '.join(str(t.number) for t in batch)}: "
                          + "; ".join(_label(point_of(t)) for t in batch), highlight=False, markup=False)
        run_points(search, (point_of(t) for t in batch), ctx, options)
        _tell(study, search, batch)


def confirm(search: Search, study: optuna.Study, ctx: RunContext, options: WorkerOptions) -> list[Point]:
    """Re-train the ``search.confirm.top`` best points of each objective with the extra seeds (for the
    report's intervals); seeds whose records exist (the search's cells, or a warm-start grid trained the
    same way) are not trained again. Returns the points."""
    from ablate.search.analysis import OBJECTIVES, best_points, seed_objectives, trial_table

    c = search.search.confirm
    if not c.top:
        return []
    table = trial_table(study, search)
    points = list(dict.fromkeys(p for objective in OBJECTIVES for p in best_points(table, objective, c.top)))
    missing: dict[tuple[int, ...], list[Point]] = {}
    for point in points:
        have = seed_objectives(search, point, c.seeds)
        seeds = tuple(s for s in c.seeds if not all(math.isfinite(v) for v in have[s]))
        if seeds:
            missing.setdefault(seeds, []).append(point)
    for seeds, todo in missing.items():
        ctx.console.print(f"search {search.name}: confirming {'; '.join(map(_label, todo))} with seeds "
                          f"{', '.join(map(str, seeds))}", highlight=False, markup=False)
        run_points(search, todo, ctx, options, seeds=seeds)
    return points


def _label(point: Point) -> str:
    variant, lr = point
    return variant if lr is None else f"{variant} lr {lr_label(lr)}"
