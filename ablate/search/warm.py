"""Warm start: records of other grids (``search.warm_start``) added to the search study as finished trials.

A grid's records count when they were trained like the search's trials (the same model, data and
training, the learning rate aside when it is searched, and the same number of samples and scorers)
and their variant is of the template's form inside the ranges; the objectives are read the same way
as a trial's, over the search's seeds. Added trials have ``source`` ``warm start from <grid>`` and do
not spend the trial budget. Each returned note says what a grid gave, or why it gave nothing.
"""

from __future__ import annotations

import math
from typing import Any

import optuna

from ablate.results import ResultsStore
from ablate.runs.storage import shared_config
from ablate.config.lr import round_lr
from ablate.search.spec import Search
from ablate.search.points import distributions, objectives


def _comparable(search: Search, config: dict[str, Any]) -> list[str]:
    """The keys in which a record's grid config differs from the search's trials ([] if none)."""
    mine = shared_config(search.base)
    theirs = {**config, "data": {k: v for k, v in (config.get("data") or {}).items() if k != "data_dir"}}
    differ = []
    for section in ("data", "model", "train", "eval"):
        a, b = dict(mine.get(section) or {}), dict(theirs.get(section) or {})
        for skip in (("lr",) if section == "train" and search.space.lr is not None else ()) + (
                ("settings", "weights") if section == "eval" else ()):
            a.pop(skip, None)
            b.pop(skip, None)
        differ += [f"{section}.{k}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
    return differ


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
        added, differ = 0, set()
        for variant, rows in frame.groupby("variant", sort=True):
            params = search.space.params(str(variant))
            if params is None:
                continue
            config = rows.iloc[0]["config"] or {}
            problems = _comparable(search, config)
            if problems:
                differ.update(problems)
                continue
            lr = round_lr(float(config["train"]["lr"])) if search.space.lr is not None else None
            if lr is not None:
                if not search.space.lr.low <= lr <= search.space.lr.high:
                    continue
                params["lr"] = lr
            values = objectives(frame, str(variant), search.base.seeds, search.search.objective)
            if (variant, lr) in known or not all(math.isfinite(v) for v in values):
                continue
            study.add_trial(optuna.trial.create_trial(
                params=params, distributions={k: dists[k] for k in params}, values=list(values),
                user_attrs={"variant": str(variant), "lr": lr, "grid": grid_name,
                            "source": f"warm start from {grid_name}"}))
            known.add((variant, lr))
            added += 1
        why = f"; skipped variants trained otherwise ({', '.join(sorted(differ))} differ)" if differ else ""
        notes.append(f"warm start: {added} trials from grid {grid_name!r}{why}")
    return notes
