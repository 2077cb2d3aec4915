"""Warm start: records of other grids (``search.warm_start``) added to the search study as finished trials.

A grid's records count when they were trained like the search's trials (the same model, data and
training, the learning rate aside when it is searched, and the same number of samples and scorers)
and their variant is of the template's form inside the ranges; the objectives are read the same way
as a trial's, over the search's seeds and only the search's settings (the grid may sample more). The
extra seeds of a warm-start point (``search.confirm``) are read from the same records when they are
there (:func:`warm_frames`). Added trials have ``source`` ``warm start from <grid>`` and do
not spend the trial budget. Each returned note says what a grid gave, or why it gave nothing.
"""

from __future__ import annotations

import math
from typing import Any

import optuna
import pandas as pd

from ablate.results import ResultsStore
from ablate.runs.storage import shared_config, with_added_options
from ablate.config.lr import round_lr
from ablate.search.spec import Search
from ablate.search.points import distributions, objectives


def config_differences(search: Search, config: dict[str, Any]) -> list[str]:
    """The keys in which a record's grid config differs from the search's trials ([] if none)."""
    mine = shared_config(search.base)
    theirs = with_added_options(config, mine, search.base)
    theirs = {**theirs, "data": {k: v for k, v in (theirs.get("data") or {}).items() if k != "data_dir"}}
    differ = []
    for section in ("data", "model", "train", "eval"):
        a, b = dict(mine.get(section) or {}), dict(theirs.get(section) or {})
        for skip in (("lr",) if section == "train" and search.space.lr is not None else ()) + (
                ("settings", "weights") if section == "eval" else ()):
            a.pop(skip, None)
            b.pop(skip, None)
        differ += [f"{section}.{k}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
    return differ


def _usable(search: Search, frame: pd.DataFrame, lr: float | None) -> tuple[pd.DataFrame, set[str]]:
    """The records of a warm-start grid trained like the search's trials at ``lr`` (the searched rate;
    None: the file's, which the config comparison covers), and the keys in which the others differ."""
    keep, differ = [], set()
    for config in frame["config"]:
        problems = config_differences(search, config or {})
        differ.update(problems)
        same_lr = lr is None or round_lr(float(config["train"]["lr"])) == lr
        keep.append(not problems and same_lr)
    return frame[keep], differ


def warm_frames(search: Search, lr: float | None) -> list[pd.DataFrame]:
    """Each ``search.warm_start`` grid's records trained like the search's trials at ``lr``: the other
    seeds of a warm-start point are read from them rather than trained again."""
    store = ResultsStore(search.base.results_root)
    frames = [store.frame(name) for name in search.search.warm_start]
    return [_usable(search, frame, lr)[0] for frame in frames if not frame.empty]


def warm_start(study: optuna.Study, search: Search) -> list[str]:
    """Add the usable records of each ``search.warm_start`` grid once; returns one note per grid."""
    store, notes = ResultsStore(search.base.results_root), []
    known = {(t.user_attrs.get("variant"), t.user_attrs.get("lr")) for t in study.get_trials(deepcopy=False)}
    dists = distributions(search)
    for grid_name in search.search.warm_start:
        frame = store.frame(grid_name)
        if frame.empty:
            notes.append(f"warm start: grid {grid_name!r} has no records under {store.root}")
            continue
        usable, differ = _usable(search, frame, None)
        added = 0
        for variant, rows in usable.groupby("variant", sort=True):
            params = search.space.params(str(variant))
            if params is None:
                continue
            lr = round_lr(float(rows.iloc[0]["config"]["train"]["lr"])) if search.space.lr is not None else None
            if lr is not None:
                if not search.space.lr.low <= lr <= search.space.lr.high:
                    continue
                params["lr"] = lr
            values = objectives(rows, str(variant), search.base.seeds, search.objective_settings)
            if (variant, lr) in known or not all(math.isfinite(v) for v in values):
                continue
            study.add_trial(optuna.trial.create_trial(
                params=params, distributions={k: dists[k] for k in params}, values=list(values),
                user_attrs={"variant": str(variant), "lr": lr, "grid": grid_name,
                            "source": f"warm start from {grid_name}"}))
            known.add((variant, lr))
            added += 1
        why = f"; skipped records trained otherwise ({', '.join(sorted(differ))} differ)" if differ else ""
        notes.append(f"warm start: {added} trials from grid {grid_name!r}{why}")
    return notes
