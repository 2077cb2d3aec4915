"""Search files: a grid file (every key of :mod:`ablate.config.grid` but ``variants``) plus a ``search`` section.

The grid keys give what every trial shares (dataset, seeds, data, model, train, eval); the
``search`` section gives the space: a variant template with one ``{name}`` placeholder per
searched number, e.g. ``rf/lognorm({m}, {s})``, ``rf/mode({s})``, ``edm({pm}, {ps})`` or
``rf/lognorm(0.00, 1.00)/shift({alpha})``, each placeholder's range (``{low, high}``, searched in
steps of 0.01, the precision of variant names), and optionally a learning-rate range (log scale).
Conventions: t = 0 is data, t = 1 is noise (the template's density is over that t); the template is
written in canonical spelling (two decimals, ``", "`` between arguments), so a trial's variant name
is the template with its numbers and the same point always names the same cell.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ablate.config.grid import GRIDS_DIR, Grid, check_eval, load_grid, read_with_section
from ablate.config.schema import Reader, opt
from ablate.errors import VariantError
from ablate.formulations import canonical_variant
from ablate.formulations.timesteps import format_number

_HINT = '; variant templates with commas need quotes, e.g. "rf/lognorm({m}, {s})"'
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_NUMBER = r"(-?[0-9]+(?:\.[0-9]+)?)"
STEP = 0.01  # the resolution of a searched number: names print two decimals
PAPER_LATTICE_GRID = "sd3-full"  # the paper's 61 formulations: its lattice points are read from this grid


@dataclass(frozen=True)
class Range:
    """A searched interval, ``low`` < ``high`` (checked after reading)."""

    low: float = opt()
    high: float = opt()


@dataclass(frozen=True)
class Confirm:
    """Re-train the ``top`` best trials of each objective with the extra ``seeds`` (for a CI)."""

    top: int = opt(0, ge=0)
    seeds: tuple[int, ...] = opt((), ge=0, unique=True)


@dataclass(frozen=True)
class SearchConfig:
    """The ``search`` section; see the module doc and ``grids/search-smoke.yaml``."""

    variant: str = opt(pattern=r"(?s).*\{.*", what="a variant template with {name} placeholders, "
                                                   "e.g. 'rf/lognorm({m}, {s})'")
    params: dict[str, dict[str, Any]] = opt(what="a mapping from placeholder names to {low, high} mappings")
    lr: Range | None = None
    trials: int = opt(8, ge=1)
    batch: int = opt(4, ge=1)
    sampler: Literal["nsga2", "tpe"] = "nsga2"
    seed: int = opt(0, ge=0)
    objective: str = opt("mean", pattern=r"\S+", what="'mean' or a setting key such as '25steps-cfg5.0-own-ema'")
    lattice: bool = False
    enqueue: tuple[str, ...] = opt((), unique=True, what="a variant of the template's form")
    warm_start: tuple[str, ...] = opt((), unique=True, pattern=r"[A-Za-z0-9][A-Za-z0-9._-]*", what="a grid name")
    confirm: Confirm = field(default_factory=Confirm)


@dataclass(frozen=True)
class Space:
    """The template and its ranges: variant names to parameters and back."""

    template: str
    ranges: dict[str, Range]
    lr: Range | None

    @property
    def names(self) -> list[str]:
        return list(self.ranges)

    def variant(self, params: dict[str, float]) -> str:
        """The canonical variant of a point (numbers rounded to :data:`STEP`)."""
        text = self.template.format(**{k: format_number(round(params[k], 2)) for k in self.names})
        return canonical_variant(text)

    def params(self, variant: str, within: bool = True) -> dict[str, float] | None:
        """The point a variant of this form names, or None (another form, or outside the ranges when ``within``)."""
        parts = _PLACEHOLDER.split(self.template)
        pattern = "".join(re.escape(p) if i % 2 == 0 else _NUMBER for i, p in enumerate(parts))
        match = re.fullmatch(pattern, variant)
        if not match:
            return None
        point = {name: float(v) for name, v in zip(parts[1::2], match.groups())}
        inside = all(r.low - 1e-9 <= point[k] <= r.high + 1e-9 for k, r in self.ranges.items())
        return point if inside or not within else None


@dataclass(frozen=True)
class Search:
    """A read search file: the grid every trial shares (``variants`` holds one placeholder point) and the search."""

    base: Grid
    search: SearchConfig
    space: Space
    file: Path

    @property
    def name(self) -> str:
        return self.base.name

    @property
    def objective_settings(self) -> tuple[str, ...]:
        """The setting keys the objectives average over: the one ``search.objective`` names, or every
        setting of the file (``mean``), never another grid's extra settings."""
        if self.search.objective != "mean":
            return (self.search.objective,)
        return tuple(s.key for s in self.base.eval.all_settings())

    def lattice(self) -> list[str]:
        """The paper's lattice points of this form inside the ranges (from ``grids/sd3-full.yaml``)."""
        paper = load_grid(GRIDS_DIR / f"{PAPER_LATTICE_GRID}.yaml").variants
        return [v for v in paper if self.space.params(v) is not None]


def load_search(path: str | Path, results: Path | None = None) -> Search:
    """Read and check a search file; every problem is one :class:`ConfigError` naming file, line and key."""
    file, raw, reader = read_with_section(path, "search", "search", SearchConfig, "`name` and `search` (a grid "
                                          "file without `variants`, plus a search section)", _HINT)
    if "variants" in raw:
        reader.fail(("variants",), "`variants` is set by the search (one variant per trial, from `search.variant`); "
                                   "remove it, and list fixed points to run first under `search.enqueue`.")
    search: SearchConfig = reader.build(SearchConfig, raw["search"], ("search",))
    space = _space(search, reader)
    grid_raw: dict[str, Any] = {k: v for k, v in raw.items() if k != "search"}
    grid_raw["variants"] = [space.variant({k: r.low for k, r in space.ranges.items()})]
    base: Grid = reader.build(Grid, grid_raw, ())
    _check(base, search, space, reader)
    return Search(dataclasses.replace(base, source=file, results_root=results or base.results_root), search, space, file)


def _space(search: SearchConfig, reader: Reader) -> Space:
    key = ("search", "variant")
    names = _PLACEHOLDER.findall(search.variant)
    if len(set(names)) != len(names):
        reader.bad(key, search.variant, "a template naming each placeholder once")
    if set(names) != set(search.params):
        reader.bad(("search", "params"), sorted(search.params), f"exactly the template's placeholders "
                   f"({', '.join(names) or 'none'}), each with a {{low, high}} range")
    ranges: dict[str, Range] = {}
    for name in names:
        where = ("search", "params", name)
        r: Range = reader.build(Range, search.params[name], where)
        for end in ("low", "high"):
            if round(getattr(r, end), 2) != getattr(r, end):
                reader.bad((*where, end), getattr(r, end), f"a multiple of {STEP} (searched numbers have two decimals)")
        if not r.low < r.high:
            reader.bad((*where, "high"), r.high, f"a number larger than `search.params.{name}.low` = {r.low}")
        ranges[name] = r
    space = Space(search.variant, ranges, search.lr)
    for corner in ("low", "high"):
        point = {k: getattr(r, corner) for k, r in ranges.items()}
        try:
            space.variant(point)
        except VariantError as err:
            reader.fail(key, f"`search.variant` {search.variant!r} at the `{corner}` end of every range is not a valid "
                             f"variant: {err}")
    middle = {k: round((r.low + r.high) / 2, 2) for k, r in ranges.items()}
    written = search.variant.format(**{k: format_number(v) for k, v in middle.items()})
    if space.variant(middle) != written:
        reader.bad(key, search.variant, f"the template in canonical spelling (two decimals, ', ' between arguments, "
                                        f"no 'uniform'): {space.variant(middle)!r} is how {written!r} is written")
    if search.lr is not None and not 0 < search.lr.low < search.lr.high:
        reader.bad(("search", "lr"), dataclasses.asdict(search.lr), "{low, high} with 0 < low < high (log scale)")
    return space


def _check(grid: Grid, s: SearchConfig, space: Space, reader: Reader) -> None:
    """Checks across keys that the dataclasses cannot make alone."""
    check_eval(grid, reader)
    keys = [x.key for x in grid.eval.all_settings()]
    if s.objective != "mean" and s.objective not in keys:
        reader.bad(("search", "objective"), s.objective, f"'mean' (each metric averaged over the settings) or one of "
                                                          f"the grid's settings: {', '.join(keys)}")
    for i, name in enumerate(s.enqueue):
        try:
            variant = canonical_variant(name)
        except VariantError as err:
            reader.fail(("search", "enqueue", i), f"`search.enqueue[{i}]` is {name!r}, not a valid variant: {err}")
        if space.params(variant) is None:
            reader.bad(("search", "enqueue", i), name, f"a variant of the form {space.template!r} inside the ranges")
    clash = set(s.confirm.seeds) & set(grid.seeds)
    if clash:
        reader.bad(("search", "confirm", "seeds"), list(s.confirm.seeds),
                   f"seeds other than the trials' `seeds` {list(grid.seeds)} (extra seeds)")
    if s.confirm.top and not s.confirm.seeds:
        reader.bad(("search", "confirm", "seeds"), [], "at least one extra seed when `search.confirm.top` > 0")
    for name in grid.eval.scorer_options:
        if name not in grid.eval.scorers:
            reader.bad(("eval", "scorer_options", name), name, f"a scorer of `eval.scorers` ({', '.join(grid.eval.scorers)})")
