"""What a finished search shows: its trials as a table, the Pareto front, the best point per objective
with a confidence interval over seeds, its distance from the paper's choices, and parameter importance.

Objectives: alignment (higher is better) and fidelity (lower is better), as the trials were told.
Intervals: Student t 95% over the per-seed objectives of a point (its trial seeds plus the
``search.confirm`` seeds, read from a warm-start grid trained the same way when it has them); one seed
gives no interval. Distances: per parameter and Euclidean in the
template's own units (e.g. lognorm's m and s), to every paper choice of the template's form; and, for
any rf variant, the total-variation distance between its timestep density pi(t) and each paper
choice's (t = 0 is data, t = 1 is noise), which puts every density family in the same units.
Importance: Optuna's PED-ANOVA (fANOVA needs scikit-learn, which ablate does not install).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import optuna
import pandas as pd
from optuna.trial import TrialState
from scipy import stats

from ablate.report.paper import PAPER_CHOICES
from ablate.report.ranking import non_dominated_ranks
from ablate.results import ResultsStore
from ablate.search.points import Point, grid_name, objectives
from ablate.search.spec import Search
from ablate.search.warm import warm_frames

OBJECTIVES = ("alignment", "fidelity")
BETTER = {"alignment": "max", "fidelity": "min"}


def point_key(trial: optuna.trial.FrozenTrial) -> tuple[str, float | None]:
    """The point a trial trained: (variant, learning rate or None)."""
    return trial.user_attrs["variant"], trial.user_attrs.get("lr")


def repeats(study: optuna.Study) -> set[int]:
    """Numbers of the trials at a point an earlier trial holds: a sampler's repeated draws (a resumed
    NSGA-II re-drew a round before draws were checked; now a repeat is told failed and drawn again).
    They spend no budget and are no result of their own."""
    seen, out = set(), set()
    for t in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number):
        if "variant" in t.user_attrs:
            if point_key(t) in seen:
                out.add(t.number)
            seen.add(point_key(t))
    return out


def told(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """The complete trials, less the repeats."""
    again = repeats(study)
    return [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.number not in again]


def trial_table(study: optuna.Study, search: Search) -> pd.DataFrame:
    """One row per told trial: number, source, variant, lr, each parameter, the objectives and ``front``
    (1 = Pareto front, by repeated non-dominated sorting over all told trials)."""
    rows = []
    for t in told(study):
        rows.append({"number": t.number, "source": t.user_attrs.get("source", "search"),
                     "variant": t.user_attrs["variant"], "lr": t.user_attrs.get("lr"),
                     **{k: t.params.get(k, math.nan) for k in search.space.names},
                     "alignment": t.values[0], "fidelity": t.values[1]})
    columns = ["number", "source", "variant", "lr", *search.space.names, *OBJECTIVES, "front"]
    if not rows:
        return pd.DataFrame(columns=columns)
    table = pd.DataFrame(rows)
    table["front"] = non_dominated_ranks(table["alignment"].to_numpy(), table["fidelity"].to_numpy())
    return table.sort_values(["front", "fidelity", "number"]).reset_index(drop=True)[columns]


def best_points(table: pd.DataFrame, objective: str, top: int = 1) -> list[Point]:
    """The ``top`` distinct points with the best value of ``objective`` (ties: lower trial number)."""
    ranked = table.sort_values([objective, "number"], ascending=[BETTER[objective] == "min", True])
    points: list[Point] = []
    for _, row in ranked.iterrows():
        lr = None if row["lr"] is None or pd.isna(row["lr"]) else float(row["lr"])
        if (row["variant"], lr) not in points:
            points.append((row["variant"], lr))
        if len(points) == top:
            break
    return points


@dataclass(frozen=True)
class Estimate:
    """A point's objective over seeds: mean and a 95% interval (NaN for one seed)."""

    mean: float
    low: float
    high: float
    seeds: int


def estimate(values: list[float]) -> Estimate:
    x = np.asarray([v for v in values if math.isfinite(v)], dtype=float)
    if len(x) == 0:
        return Estimate(math.nan, math.nan, math.nan, 0)
    if len(x) == 1:
        return Estimate(float(x[0]), math.nan, math.nan, 1)
    half = float(stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x)))
    return Estimate(float(x.mean()), float(x.mean()) - half, float(x.mean()) + half, len(x))


def seed_objectives(search: Search, point: Point, seeds: tuple[int, ...]) -> dict[int, tuple[float, float]]:
    """Both objectives of ``point`` per seed, from the search's records or, for a seed they lack, a
    warm-start grid's records trained the same way (NaN where neither has it)."""
    variant, lr = point
    frames = [ResultsStore(search.base.results_root).frame(grid_name(search, lr)), *warm_frames(search, lr)]
    out = {}
    for seed in seeds:
        found = [v for v in (objectives(f, variant, (seed,), search.objective_settings) for f in frames)
                 if all(math.isfinite(x) for x in v)]
        out[seed] = found[0] if found else (math.nan, math.nan)
    return out


def seed_estimates(search: Search, point: Point) -> dict[str, Estimate]:
    """Both objectives of ``point`` over its trial seeds and the confirm seeds (:func:`seed_objectives`)."""
    per_seed = list(seed_objectives(search, point, tuple(search.base.seeds) + tuple(search.search.confirm.seeds)).values())
    return {name: estimate([v[i] for v in per_seed]) for i, name in enumerate(OBJECTIVES)}


def parameter_distances(search: Search, variant: str) -> list[tuple[str, dict[str, float], float]]:
    """(paper choice, per-parameter difference variant - choice, Euclidean distance) for every paper
    choice of the template's form."""
    mine = search.space.params(variant, within=False)
    out = []
    for choice in PAPER_CHOICES:
        theirs = search.space.params(choice, within=False)
        if mine is None or theirs is None:
            continue
        diff = {k: round(mine[k] - theirs[k], 4) for k in mine}
        out.append((choice, diff, math.sqrt(sum(d * d for d in diff.values()))))
    return out


def density_distances(variant: str) -> dict[str, float]:
    """Total-variation distance between the timestep densities of an rf variant and of each paper choice
    (0: the same density, 1: disjoint); empty for other trajectories."""
    import torch

    from ablate.formulations import parse_variant

    def pdf(name: str) -> torch.Tensor | None:
        formulation, density = parse_variant(name)
        if formulation.name != "rf":
            return None
        t = torch.linspace(0.0005, 0.9995, 1000, dtype=torch.float64)
        return density.density(t).nan_to_num(0.0)

    mine = pdf(variant)
    if mine is None:
        return {}
    return {c: float(0.5 * (mine - pdf(c)).abs().mean()) for c in PAPER_CHOICES}  # mean over [0, 1] = integral


def importances(study: optuna.Study) -> tuple[dict[str, dict[str, float]], str]:
    """PED-ANOVA importance of each parameter per objective, and a note (why none, when none)."""
    complete = told(study)
    names = sorted({k for t in complete for k in t.params})
    if len(names) < 2:
        return {}, f"one parameter ({', '.join(names) or 'none'}): nothing to apportion"
    out: dict[str, dict[str, float]] = {}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            evaluator = optuna.importance.PedAnovaImportanceEvaluator()
            distinct = optuna.create_study(directions=study.directions)  # in memory: the told trials only
            distinct.add_trials(complete)
            for i, name in enumerate(OBJECTIVES):
                out[name] = optuna.importance.get_param_importances(
                    distinct, evaluator=evaluator, params=names, target=lambda t, i=i: t.values[i])
    except (ValueError, RuntimeError) as err:
        return {}, f"PED-ANOVA failed on {len(complete)} trials: {err}"
    caution = "; with under 20 trials these shares are noise" if len(complete) < 20 else ""
    return out, (f"Optuna's PED-ANOVA over {len(complete)} trials (fANOVA needs scikit-learn, not installed "
                 f"with ablate); 0 = no effect on where the best 10% of trials lie{caution}")
