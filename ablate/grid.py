"""Grid files: the YAML schema, its validation, cell expansion and command-line overrides.

A grid crosses variants (formulation names, see :mod:`ablate.formulations.names`), datasets and
seeds, with one data/model/train/eval configuration shared by every cell. Every key but ``name``
and ``variants`` is optional; the defaults are the dataclass defaults below (the only place they
live). Conventions:

- Variants are stored in canonical spelling (``rf/uniform`` -> ``rf``); two spellings of one
  variant in a grid are an error.
- ``eval.settings[*].cfg`` is the guidance weight w in ``v_uncond + w (v_cond - v_uncond)``:
  w = 1 is no guidance; any w >= 0 is allowed (w = 0 samples unconditionally).
- Cells run seed-major, then dataset, then variant (each in file order), so an interrupted grid
  has a complete leaderboard for its first seed and dataset as early as possible.
- Results go to ``<results root>/<name>/``; the root is ``results/`` unless ``--results DIR``.
- ``1e-4`` is read as a number (YAML 1.2), not as text as plain PyYAML would.
- A grid may be named by path or, for the shipped ones, by name (``smoke`` -> ``grids/smoke.yaml``).
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import fnmatch
import json
import math
import re
import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, NoReturn, Union, get_args, get_origin, get_type_hints

import yaml

from ablate.errors import ConfigError, VariantError

GRIDS_DIR = Path(__file__).resolve().parent.parent / "grids"
PAPER_SETTINGS = ((50, 1.0), (50, 2.5), (50, 5.0), (5, 5.0), (10, 5.0), (25, 5.0))  # (steps, cfg), SD3 sec. 5.1
KeyPath = tuple[Union[str, int], ...]


def _dataset_names() -> tuple[str, ...]:
    try:
        from ablate.data import DATASETS
    except ImportError:
        return ("fashion-mnist", "imagenet", "cc12m")
    return tuple(DATASETS)


def _scorer_names() -> tuple[str, ...]:
    from ablate.scorers.base import scorer_names

    return tuple(scorer_names())


def _canonical_variant(name: str) -> str:
    from ablate.formulations import canonical_variant

    return canonical_variant(name)


def _opt(default: Any = dataclasses.MISSING, *, factory: Any = dataclasses.MISSING, **checks: Any) -> Any:
    """A dataclass field with validation metadata: ge/gt/lt bounds, choices (a callable giving the
    allowed names), convert (str -> canonical str), pattern, what (description of one item),
    unique/nonempty (lists), yaml=False (not a grid-file key)."""
    return field(default=default, default_factory=factory, metadata=checks)


@dataclass(frozen=True)
class DataConfig:
    """How the dataset is read. ``resolution`` is the latent side length (pixels for Fashion-MNIST,
    pixels / 8 for f8-VAE latents); ``data_dir`` None means the dataset's default location."""

    resolution: int = _opt(32, ge=1)
    data_dir: str | None = None
    val_size: int = _opt(1000, ge=1)
    conditioning: Literal["class", "caption"] = "class"


@dataclass(frozen=True)
class ModelConfig:
    """DiT size; the sequence has (resolution / patch_size)^2 tokens."""

    patch_size: int = _opt(8, ge=1)
    hidden_size: int = _opt(64, ge=1)
    depth: int = _opt(4, ge=1)
    num_heads: int = _opt(4, ge=1)
    mlp_ratio: float = _opt(4.0, gt=0)


@dataclass(frozen=True)
class EMAConfig:
    """EMA of the weights, updated every ``every`` optimizer steps with ``decay`` (SD3: 100, 0.99)."""

    every: int = _opt(100, ge=1)
    decay: float = _opt(0.99, gt=0, lt=1)


@dataclass(frozen=True)
class TrainConfig:
    """AdamW with linear warm-up; ``grad_clip`` None disables clipping; ``precision`` is Lightning's
    (``auto``: bf16-mixed on a GPU that supports it, else 32-true)."""

    max_steps: int = _opt(300, ge=1)
    batch_size: int = _opt(64, ge=1)
    lr: float = _opt(1.0e-4, gt=0)
    warmup_steps: int = _opt(1000, ge=0)
    weight_decay: float = _opt(0.0, ge=0)
    betas: tuple[float, float] = _opt((0.9, 0.999), ge=0, lt=1)
    grad_clip: float | None = _opt(1.0, gt=0)
    cond_dropout: float = _opt(0.1, ge=0, lt=1)
    precision: Literal["auto", "32-true", "bf16-mixed", "16-mixed"] = "auto"
    compile: bool = False
    ema: EMAConfig = field(default_factory=EMAConfig)
    val_every: int = _opt(100, ge=1)
    devices: int = _opt(1, ge=1)
    num_nodes: int = _opt(1, ge=1)


@dataclass(frozen=True)
class SamplerSetting:
    """One Euler sampler setting: ``steps`` steps with guidance weight ``cfg`` (1 = no guidance)."""

    steps: int = _opt(ge=1)
    cfg: float = _opt(ge=0)


@dataclass(frozen=True)
class EvalConfig:
    """Each setting is sampled with each of ``weights`` (ema, raw); ``time_grid`` is ``own`` (uniform
    in the formulation's t) or ``rf`` (uniform in rf-equivalent noise level); ``scorer_options`` maps
    a scorer name from ``scorers`` to its options."""

    num_samples: int = _opt(1000, ge=1)
    batch_size: int = _opt(250, ge=1)
    time_grid: Literal["own", "rf"] = "own"
    weights: tuple[Literal["ema", "raw"], ...] = _opt(("ema", "raw"), unique=True, nonempty=True)
    settings: tuple[SamplerSetting, ...] = _opt(
        factory=lambda: tuple(SamplerSetting(s, c) for s, c in PAPER_SETTINGS), unique=True, nonempty=True
    )
    scorers: tuple[str, ...] = _opt(("probe",), choices=lambda: _scorer_names(), unique=True, nonempty=True)
    scorer_options: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class Cell:
    """One training run: a variant on a dataset with a seed."""

    grid_name: str
    variant: str
    dataset: str
    seed: int

    @property
    def id(self) -> str:
        """Unique within a grid, safe as a file name: ``fashion-mnist--rf+lognorm_0.50_0.60--seed0``."""
        slug = self.variant.replace(" ", "").replace("/", "+").replace("(", "_").replace(",", "_")
        return f"{self.dataset}--{slug.replace(')', '')}--seed{self.seed}"


@dataclass(frozen=True, kw_only=True)
class Grid:
    """A validated grid file (with any command-line overrides applied)."""

    name: str = _opt(pattern=r"[A-Za-z0-9][A-Za-z0-9._-]*",
                     what="a string of letters, digits, '.', '_' or '-' (it names the results folder)")
    description: str = ""
    variants: tuple[str, ...] = _opt(convert=lambda name: _canonical_variant(name), unique=True, nonempty=True,
                                     what="a variant name such as 'rf' or 'rf/lognorm(0.00, 1.00)'")
    datasets: tuple[str, ...] = _opt(("fashion-mnist",), choices=lambda: _dataset_names(), unique=True, nonempty=True)
    seeds: tuple[int, ...] = _opt((0,), ge=0, unique=True, nonempty=True)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    source: Path | None = _opt(None, yaml=False)           # the grid file it was read from
    results_root: Path = _opt(Path("results"), yaml=False)

    @property
    def results_dir(self) -> Path:
        return self.results_root / self.name

    def cells(self) -> list[Cell]:
        """Every (variant, dataset, seed): seeds outermost, variants innermost, file order."""
        return [Cell(self.name, v, d, s) for s in self.seeds for d in self.datasets for v in self.variants]

    def to_dict(self) -> dict[str, Any]:
        """The resolved grid as plain JSON types; written as YAML it loads back to an equal grid."""
        return _plain(self)


@dataclass(frozen=True)
class GridOverrides:
    """Command-line changes to a grid; empty/None fields keep the file's values."""

    datasets: tuple[str, ...] = ()
    variants: tuple[str, ...] = ()      # fnmatch patterns or exact (possibly new) variant names
    seeds: tuple[int, ...] = ()
    results: Path | None = None         # results root: this grid's results go to <results>/<name>/
    max_steps: int | None = None
    num_samples: int | None = None
    data_dir: str | None = None


# (GridOverrides field, key path in the grid file, command-line flag)
_OVERRIDES: tuple[tuple[str, KeyPath, str], ...] = (
    ("datasets", ("datasets",), "--dataset"),
    ("seeds", ("seeds",), "--seeds"),
    ("max_steps", ("train", "max_steps"), "--max-steps"),
    ("num_samples", ("eval", "num_samples"), "--num-samples"),
    ("data_dir", ("data", "data_dir"), "--data-dir"),
)


def add_override_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the grid override options (read them back with :func:`overrides_from_args`)."""
    g = parser.add_argument_group("grid overrides", "change the grid file's values; checked like the file")
    g.add_argument("--dataset", action="append", metavar="NAME",
                   help=f"run on this dataset instead of the grid's (repeatable): {', '.join(_dataset_names())}")
    g.add_argument("--variant", action="append", metavar="PATTERN",
                   help="run only the grid's variants matching this shell-style pattern on canonical names "
                        "(quote it: 'rf/lognorm*'), or this exact variant, added if the grid lacks it (repeatable)")
    g.add_argument("--seeds", metavar="LIST",
                   help="comma-separated seeds, e.g. 0,1,2 (a single number is one seed, not a count)")
    g.add_argument("--results", metavar="DIR", help="results root; this grid's results go to DIR/<name>/")
    g.add_argument("--max-steps", type=int, metavar="N", help="training steps per cell (train.max_steps)")
    g.add_argument("--num-samples", type=int, metavar="N", help="samples per sampler setting (eval.num_samples)")
    g.add_argument("--data-dir", metavar="DIR", help="where the dataset files are (data.data_dir)")


def overrides_from_args(args: argparse.Namespace) -> GridOverrides:
    """The :class:`GridOverrides` from options added by :func:`add_override_arguments`."""
    seeds_text = getattr(args, "seeds", None)
    seeds: tuple[int, ...] = ()
    if seeds_text is not None:
        parts = [p.strip() for p in str(seeds_text).split(",")]
        if not all(re.fullmatch(r"\d+", p) for p in parts):
            raise ConfigError(f"Command-line option --seeds {seeds_text!r} is not a list of seeds; allowed: "
                              "non-negative integers separated by commas, e.g. --seeds 0 or --seeds 0,1,2 "
                              "(a single number is one seed, not a count).")
        seeds = tuple(int(p) for p in parts)
    results = getattr(args, "results", None)
    return GridOverrides(
        datasets=tuple(getattr(args, "dataset", None) or ()),
        variants=tuple(getattr(args, "variant", None) or ()),
        seeds=seeds,
        results=Path(results) if results else None,
        max_steps=getattr(args, "max_steps", None),
        num_samples=getattr(args, "num_samples", None),
        data_dir=getattr(args, "data_dir", None),
    )


def available_grids() -> list[str]:
    """Names of the grids shipped in ``grids/``."""
    return sorted(p.stem for p in GRIDS_DIR.glob("*.yaml"))


def resolve_grid_path(path: str | Path) -> Path:
    """The grid file for a path, or for a shipped grid's name (``smoke``)."""
    candidate = Path(path)
    if candidate.is_file():
        return candidate
    shipped = GRIDS_DIR / (candidate.name if candidate.suffix else f"{candidate.name}.yaml")
    if candidate.parent == Path(".") and shipped.is_file():
        return shipped
    problem = "is a directory, not a file" if candidate.is_dir() else "does not exist"
    raise ConfigError(f"Grid file {str(path)!r} {problem}. Give a path to a grid YAML file or the name of "
                      f"one in {GRIDS_DIR}: {', '.join(available_grids()) or '(none found)'}.")


def load_grid(path: str | Path, overrides: GridOverrides | None = None) -> Grid:
    """Read, validate and resolve a grid file; every problem is one :class:`ConfigError` paragraph
    naming the file (and line), the key path, the bad value and what is allowed."""
    overrides = overrides or GridOverrides()
    file = resolve_grid_path(path)
    raw, lines = _read_yaml(file)
    if raw is None:
        raise ConfigError(f"Grid file {file} is empty; it needs at least the keys `name` and `variants`.")
    reader = _Reader(str(file), lines, _apply_overrides(raw, overrides) if isinstance(raw, dict) else {})
    grid: Grid = reader.build(Grid, raw, ())
    reader.check_consistency(grid)
    variants = _select_variants(grid.variants, overrides.variants, str(file)) if overrides.variants else grid.variants
    return dataclasses.replace(grid, variants=variants, source=file,
                               results_root=overrides.results or grid.results_root)


class _Loader(yaml.SafeLoader):
    """Safe YAML with YAML 1.2 floats: ``1e-4`` and ``1.0e4`` are numbers."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"), list("-+0123456789")
)


def _read_yaml(file: Path) -> tuple[Any, dict[KeyPath, int]]:
    """The document and the line of every key path (duplicate keys are an error)."""
    try:
        loader = _Loader(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"Cannot read grid file {file}: {err}. It must be a readable UTF-8 YAML file.") from None
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        what = " ".join(f"{getattr(err, 'context', '') or ''} {getattr(err, 'problem', '') or err}".split())
        raise ConfigError(f"Grid file {file}{where} is not valid YAML ({what}). Check the indentation, colons and "
                          "quotes there; variant names with commas need quotes, e.g. \"rf/lognorm(0.00, 1.00)\".") from None
    finally:
        loader.dispose()
    lines: dict[KeyPath, int] = {}
    if node is not None:
        _collect_lines(node, (), lines, file)
    return data, lines


def _collect_lines(node: yaml.Node, path: KeyPath, lines: dict[KeyPath, int], file: Path) -> None:
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: set[KeyPath] = set()
        for key_node, value_node in node.value:
            key = (*path, str(key_node.value))
            line = key_node.start_mark.line + 1
            if key in seen:
                raise ConfigError(f"{file}, line {line}: key `{_fmt(key)}` appears twice (also on line {lines[key]}); "
                                  "allowed: each key once per mapping.")
            seen.add(key)
            lines[key] = line
            _collect_lines(value_node, key, lines, file)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _collect_lines(item, (*path, i), lines, file)


def _apply_overrides(raw: dict[str, Any], overrides: GridOverrides) -> dict[KeyPath, str]:
    """Write the overrides into the raw document; returns which key paths came from which flag."""
    origins: dict[KeyPath, str] = {}
    for attr, path, flag in _OVERRIDES:
        value = getattr(overrides, attr)
        if value is None or value == ():
            continue
        node = raw
        for key in path[:-1]:
            if node.get(key) is None:
                node[key] = {}
            node = node[key]
            if not isinstance(node, dict):
                break  # the file's own error is reported by validation
        else:
            node[path[-1]] = list(value) if isinstance(value, tuple) else value
            origins[path] = flag
    return origins


def _select_variants(variants: tuple[str, ...], patterns: tuple[str, ...], file: str) -> tuple[str, ...]:
    """Grid variants matching any pattern (file order), then exact names not in the grid (given order)."""
    chosen: set[str] = set()
    added: list[str] = []
    for pattern in patterns:
        if any(c in pattern for c in "*?["):
            hits = [v for v in variants if fnmatch.fnmatchcase(v, pattern)]
            if not hits:
                raise ConfigError(f"Command-line option --variant {pattern!r} matches none of the variants of {file}; "
                                  f"allowed: a pattern matching one of {', '.join(variants)} (canonical spelling, "
                                  "two decimals: 'rf/lognorm(0.50*'), or an exact variant name.")
            chosen.update(hits)
            continue
        try:
            name = _canonical_variant(pattern)
        except VariantError as err:
            raise ConfigError(f"Command-line option --variant {pattern!r} (for {file}) has no wildcard (*, ?, [) and "
                              f"is not a valid variant name: {err}") from None
        if name in variants:
            chosen.add(name)
        elif name not in added:
            added.append(name)
    return tuple(v for v in variants if v in chosen) + tuple(added)


_KINDS = {str: "text", bool: "a boolean", int: "an integer", float: "a number", list: "a list", dict: "a mapping",
          type(None): "null"}


def _fmt(path: KeyPath) -> str:
    """``("eval", "settings", 2, "steps")`` -> ``eval.settings[2].steps``."""
    out = ""
    for key in path:
        out += f"[{key}]" if isinstance(key, int) else (f".{key}" if out else str(key))
    return out


def _yaml_keys(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls) if f.metadata.get("yaml", True)]


def _describe(tp: Any, md: Mapping[str, Any]) -> str:
    """What a value of type ``tp`` with checks ``md`` may be, in words."""
    origin, args = get_origin(tp), get_args(tp)
    if dataclasses.is_dataclass(tp):
        return f"a mapping with keys {', '.join(_yaml_keys(tp))}"
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(a, md) for a in args if a is not type(None)) + " or null"
    if origin is tuple:
        item = _describe(args[0], md)
        if args[-1] is not Ellipsis:
            return f"a list of {len(args)} items, each {item}"
        extra = "".join(x for x, on in ((" non-empty", md.get("nonempty")), (" repeat-free", md.get("unique"))) if on)
        return f"a{extra} list, each item {item}"
    if origin is dict:
        return "a mapping from scorer names to mappings of options"
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if "choices" in md and md["choices"]():
        return "one of " + ", ".join(repr(a) for a in md["choices"]())
    text = md.get("what") or {bool: "true or false", int: "an integer", float: "a number", str: "a string"}[tp]
    bounds = [f"{op} {md[k]}" for k, op in (("ge", ">="), ("gt", ">"), ("lt", "<")) if k in md]
    return text + (" " + " and ".join(bounds) if bounds else "")


class _Reader:
    """Builds dataclasses from raw YAML values; errors name the file, line and key path."""

    def __init__(self, file: str, lines: dict[KeyPath, int], origins: dict[KeyPath, str]) -> None:
        self.file, self.lines, self.origins = file, lines, origins

    def where(self, path: KeyPath) -> str:
        for n in range(len(path), -1, -1):
            if path[:n] in self.origins:
                return f"Command-line option {self.origins[path[:n]]} (applied to {self.file})"
        line = next((self.lines[path[:n]] for n in range(len(path), -1, -1) if path[:n] in self.lines), None)
        return f"{self.file}, line {line}" if line else self.file

    def fail(self, path: KeyPath, message: str) -> NoReturn:
        raise ConfigError(f"{self.where(path)}: {message}")

    def bad(self, path: KeyPath, value: Any, allowed: str, why: str = "") -> NoReturn:
        key = f"`{_fmt(path)}`" if path else "the grid"
        self.fail(path, f"{key} is {value!r}{why}; allowed: {allowed}.")

    def build(self, cls: type, raw: Any, path: KeyPath) -> Any:
        keys = _yaml_keys(cls)
        raw = {} if raw is None and path else raw  # an empty section means "all defaults"
        if not isinstance(raw, Mapping):
            self.bad(path, raw, _describe(cls, {}))
        for key in raw:
            if key not in keys:
                close = difflib.get_close_matches(str(key), keys, n=1, cutoff=0.6)
                hint = f" Did you mean `{_fmt((*path, close[0]))}`?" if close else ""
                scope = f"in `{_fmt(path)}`" if path else "at the top level"
                self.fail((*path, str(key)), f"unknown key `{_fmt((*path, str(key)))}`.{hint} "
                                             f"Allowed keys {scope}: {', '.join(keys)}.")
        hints = get_type_hints(cls)
        kwargs: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if f.name in raw:
                kwargs[f.name] = self.value(raw[f.name], hints[f.name], (*path, f.name), f.metadata)
            elif f.metadata.get("yaml", True) and f.default is f.default_factory is dataclasses.MISSING:
                self.fail(path, f"the required key `{_fmt((*path, f.name))}` is missing; allowed: "
                                f"{_describe(hints[f.name], f.metadata)}.")
        return cls(**kwargs)

    def value(self, v: Any, tp: Any, path: KeyPath, md: Mapping[str, Any], shown: Any = None) -> Any:
        shown = shown or tp
        origin, args = get_origin(tp), get_args(tp)
        if dataclasses.is_dataclass(tp):
            return self.build(tp, v, path)
        if origin in (Union, types.UnionType):
            return None if v is None else self.value(v, next(a for a in args if a is not type(None)), path, md, tp)
        if origin is tuple:
            return self.sequence(v, args, path, md, shown)
        if origin is dict:
            if not isinstance(v, Mapping) or not all(isinstance(o, Mapping) for o in v.values()):
                self.bad(path, v, _describe(tp, md))
            try:
                json.dumps(v)
            except (TypeError, ValueError):
                self.bad(path, v, "plain values (numbers, strings, lists, mappings)", " (not JSON-serialisable)")
            return {str(k): dict(o) for k, o in v.items()}
        if origin is Literal:
            if isinstance(v, bool) or v not in args:
                self.bad(path, v, _describe(shown, md))
            return v
        if tp is bool:
            ok = isinstance(v, bool)
        elif tp is int:
            ok = not isinstance(v, bool) and (isinstance(v, int) or isinstance(v, float) and v.is_integer())
        elif tp is float:
            ok = not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v)
        else:
            ok = isinstance(v, str)
        if not ok:
            self.bad(path, v, _describe(shown, md), f" ({_KINDS.get(type(v), type(v).__name__)})")
        v = tp(v)
        if ("ge" in md and v < md["ge"]) or ("gt" in md and v <= md["gt"]) or ("lt" in md and v >= md["lt"]):
            self.bad(path, v, _describe(shown, md), " (out of range)")
        if "pattern" in md and not re.fullmatch(md["pattern"], v):
            self.bad(path, v, _describe(shown, md))
        names = md["choices"]() if "choices" in md else ()
        if names and v not in names:
            close = difflib.get_close_matches(v, names, n=1)
            self.bad(path, v, _describe(shown, md), f" (did you mean {close[0]!r}?)" if close else "")
        if "convert" in md:
            try:
                v = md["convert"](v)
            except VariantError as err:
                self.fail(path, f"`{_fmt(path)}` is {v!r}, which is not a valid variant: {err}")
        return v

    def sequence(self, v: Any, args: tuple[Any, ...], path: KeyPath, md: Mapping[str, Any], shown: Any) -> tuple:
        variadic = args[-1] is Ellipsis
        if not isinstance(v, list) or (not variadic and len(v) != len(args)):
            self.bad(path, v, _describe(shown, md))
        if md.get("nonempty") and not v:
            self.bad(path, v, _describe(shown, md), " (empty)")
        items = tuple(self.value(x, args[0] if variadic else args[i], (*path, i), md) for i, x in enumerate(v))
        if md.get("unique"):
            first: dict[Any, int] = {}
            for i, item in enumerate(items):
                if item in first:
                    j = first[item]
                    same = "" if v[i] == v[j] else f" (both are {item!r} in canonical form)"
                    self.fail((*path, i), f"`{_fmt((*path, i))}` = {v[i]!r} repeats `{_fmt((*path, j))}` = "
                                          f"{v[j]!r}{same}; allowed: each item once.")
                first[item] = i
        return items

    def check_consistency(self, grid: Grid) -> None:
        """Checks across keys: DiT head and patch divisibility, scorer options for listed scorers."""
        m, r = grid.model, grid.data.resolution
        if m.hidden_size % m.num_heads:
            self.fail(("model", "num_heads"), f"`model.num_heads` is {m.num_heads}, which does not divide "
                                              f"`model.hidden_size` = {m.hidden_size}; allowed: a divisor of it.")
        if r % m.patch_size:
            self.fail(("model", "patch_size"), f"`model.patch_size` is {m.patch_size}, which does not divide "
                                               f"`data.resolution` = {r}; allowed: a divisor of it.")
        for name in grid.eval.scorer_options:
            if name not in grid.eval.scorers:
                self.fail(("eval", "scorer_options", name), f"`eval.scorer_options.{name}` gives options for a scorer "
                          f"not in `eval.scorers`; allowed keys: {', '.join(grid.eval.scorers)}.")


def _plain(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        return {f.name: _plain(getattr(obj, f.name)) for f in dataclasses.fields(obj) if f.metadata.get("yaml", True)}
    if isinstance(obj, (tuple, list)):
        return [_plain(x) for x in obj]
    if isinstance(obj, dict):
        return {str(k): _plain(x) for k, x in obj.items()}
    return obj
