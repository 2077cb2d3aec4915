"""Grid files: the schema (as dataclasses), cell expansion and command-line overrides.

A grid crosses variants (formulation names, see :mod:`ablate.formulations.names`), datasets and
seeds, with one data/model/train/eval configuration shared by every cell. Every key but ``name``
and ``variants`` is optional; the defaults are the dataclass defaults below (the only place they
live); reading and checking them against these dataclasses is :mod:`ablate.config.schema`. Conventions:

- Variants are stored in canonical spelling (``rf/uniform`` -> ``rf``); two spellings of one
  variant in a grid are an error.
- ``eval.settings[*].cfg`` is the guidance weight w in ``v_uncond + w (v_cond - v_uncond)``:
  w = 1 is no guidance; any w >= 0 is allowed (w = 0 samples unconditionally).
- Cells run seed-major, then dataset, then backbone, then variant (each in file order), so an interrupted
  grid has a complete leaderboard for its first seed and dataset as early as possible. A worker training
  packs takes a round's pack-mates from later seeds where its seed has too few of one backbone
  (:func:`ablate.runs.packs.claim`).
- Results go to ``<results root>/<name>/``; the root is ``results/`` unless ``--results DIR``.
- ``1e-4`` is read as a number (YAML 1.2), not as text as plain PyYAML would.
- A grid may be named by path or, for the shipped ones, by name (``smoke`` -> ``grids/smoke.yaml``).
"""

from __future__ import annotations

import argparse
import dataclasses
import fnmatch
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ablate.errors import ConfigError, VariantError, shorten
from ablate.config.schema import MAX_NAME, KeyPath, Reader, opt, plain, read_yaml
from ablate.config.checks import backbone_names, check_consistency, check_eval  # noqa: F401 (check_eval: for search and scaling files)
from ablate.config.setting import Setting
from ablate.config.lr import LrSchedule, LrSearch, read_lr_search

GRIDS_DIR = Path(__file__).resolve().parents[2] / "grids"
PAPER_SETTINGS = ((50, 1.0), (50, 2.5), (50, 5.0), (5, 5.0), (10, 5.0), (25, 5.0))  # (steps, cfg), SD3 sec. 5.1
_YAML_HINT = '; variant names with commas need quotes, e.g. "rf/lognorm(0.00, 1.00)"'


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


@dataclass(frozen=True)
class DataConfig:
    """How the dataset is read. ``resolution`` is the latent side length (pixels for Fashion-MNIST,
    pixels / 8 for f8-VAE latents); ``data_dir`` None means the dataset's default location."""

    resolution: int = opt(32, ge=1)
    data_dir: str | None = opt(None, pattern=r"(?s).*\S.*", what="a directory path")
    val_size: int = opt(1000, ge=1)
    conditioning: Literal["class", "caption"] = "class"


@dataclass(frozen=True)
class ModelConfig:
    """Backbone size; the sequence has (resolution / patch_size)^2 image tokens. ``by_backbone`` gives a
    backbone its own values of these keys (e.g. ``{mmdit: {depth: 4}}``, to match parameter counts)."""

    patch_size: int = opt(8, ge=1)
    hidden_size: int = opt(64, ge=1)
    depth: int = opt(4, ge=1)
    num_heads: int = opt(4, ge=1)
    mlp_ratio: float = opt(4.0, gt=0)
    by_backbone: dict[str, dict[str, Any]] = opt(
        factory=dict, what="a mapping from backbone names to mappings of model keys (patch_size, hidden_size, "
                            "depth, num_heads, mlp_ratio) that backbone uses instead")

    def for_backbone(self, backbone: str) -> ModelConfig:
        """The size ``backbone`` trains with: this section with its ``by_backbone`` entry applied."""
        return dataclasses.replace(self, **self.by_backbone.get(backbone, {}), by_backbone={})


@dataclass(frozen=True)
class EMAConfig:
    """EMA of the weights, updated every ``every`` optimizer steps with ``decay`` (SD3: 100, 0.99).
    ``start``: updates before this step copy the weights instead of averaging them, so the average
    starts from the weights at ``start`` (0, the default: it starts at the first update, as SD3)."""

    every: int = opt(100, ge=1)
    decay: float = opt(0.99, gt=0, lt=1)
    start: int = opt(0, ge=0)


@dataclass(frozen=True)
class TrainConfig:
    """AdamW with linear warm-up, then ``lr_schedule`` (default constant; :class:`LrSchedule`); ``grad_clip``
    None disables clipping; ``precision`` is Lightning's (``auto``: bf16-mixed on a GPU that supports it, else 32-true)."""

    max_steps: int = opt(300, ge=1)
    batch_size: int = opt(64, ge=1)
    lr: float = opt(1.0e-4, gt=0)
    lr_search: LrSearch | None = None  # written `lr: search(low, high, log)`; see LrSearch
    lr_by_variant: dict[str, float] = opt(factory=dict, gt=0, keys=lambda name: _canonical_variant(name),
                                          what="a mapping from variant names to learning rates (numbers > 0)")
    warmup_steps: int = opt(1000, ge=0)
    lr_schedule: LrSchedule = field(default_factory=LrSchedule)
    weight_decay: float = opt(0.0, ge=0)
    betas: tuple[float, float] = opt((0.9, 0.999), ge=0, lt=1)
    grad_clip: float | None = opt(1.0, gt=0)
    cond_dropout: float = opt(0.1, ge=0, lt=1)
    precision: Literal["auto", "32-true", "bf16-mixed", "16-mixed"] = "auto"
    compile: Literal["auto", True, False] = "auto"  # auto: compiled on CUDA (see ablate.engine.accel)
    cuda_graphs: Literal["auto", True, False] = "auto"  # auto: a compiled network replays CUDA graphs on CUDA
    ema: EMAConfig = field(default_factory=EMAConfig)
    val_every: int = opt(100, ge=1)
    devices: int = opt(1, ge=1)
    num_nodes: int = opt(1, ge=1)

    def for_variant(self, variant: str) -> TrainConfig:
        """The settings a variant trains with: its rate from ``lr_by_variant`` if there, else ``lr``."""
        return dataclasses.replace(self, lr=self.lr_by_variant.get(variant, self.lr))


@dataclass(frozen=True)
class EvalConfig:
    """Each (steps, cfg) item of ``settings`` is sampled with each of ``weights`` (ema, raw) on
    ``time_grid`` (``own``: uniform in the formulation's t; ``rf``: uniform in rf-equivalent noise
    level); :meth:`all_settings` gives the resulting :class:`~ablate.config.setting.Setting` values.
    ``scorer_options`` maps a scorer name from ``scorers`` to its options. ``curve_every``: every this many
    training steps (a multiple of ``train.val_every``; 0: never) the validation also samples the first of
    ``settings`` with the EMA weights and scores it, so fidelity and alignment are curves through training
    (the shape of SD3's Figure 4: :mod:`ablate.engine.curve`)."""

    num_samples: int = opt(1000, ge=1)
    batch_size: int = opt(250, ge=1)
    time_grid: Literal["own", "rf"] = "own"
    weights: tuple[Literal["ema", "raw"], ...] = opt(("ema", "raw"), unique=True, nonempty=True)
    settings: tuple[Setting, ...] = opt(
        factory=lambda: tuple(Setting(s, c) for s, c in PAPER_SETTINGS), unique=True, nonempty=True
    )
    scorers: tuple[str, ...] = opt(("probe",), choices=lambda: _scorer_names(), unique=True, nonempty=True)
    scorer_options: dict[str, dict[str, Any]] = opt(factory=dict,
                                                    what="a mapping from scorer names to mappings of options")
    curve_every: int = opt(0, ge=0)

    def all_settings(self) -> tuple[Setting, ...]:
        """Every control setting of a cell, weights-major (all EMA settings first), file order within."""
        return tuple(dataclasses.replace(s, time_grid=self.time_grid, weights=w)
                     for w in self.weights for s in self.settings)


@dataclass(frozen=True)
class Cell:
    """One training run: a variant of a backbone on a dataset with a seed."""

    grid_name: str
    variant: str
    dataset: str
    seed: int
    backbone: str = "dit"

    @property
    def id(self) -> str:
        """Unique within a grid, safe as a file name: ``fashion-mnist--rf+lognorm_0.50_0.60--seed0``, then
        ``--<backbone>`` for a backbone other than DiT."""
        slug = self.variant.replace(" ", "").replace("/", "+").replace("(", "_").replace(",", "_")
        tail = "" if self.backbone == "dit" else f"--{self.backbone}"
        return f"{self.dataset}--{slug.replace(')', '')}--seed{self.seed}{tail}"


@dataclass(frozen=True, kw_only=True)
class Grid:
    """A validated grid file (with any command-line overrides applied)."""

    name: str = opt(pattern=r"[A-Za-z0-9][A-Za-z0-9._-]*",
                     what="a string of letters, digits, '.', '_' or '-' (it names the results folder)")
    description: str = ""
    variants: tuple[str, ...] = opt(convert=lambda name: _canonical_variant(name), invalid="variant",
                                    unique=True, nonempty=True,
                                     what="a variant name such as 'rf' or 'rf/lognorm(0.00, 1.00)'")
    datasets: tuple[str, ...] = opt(("fashion-mnist",), choices=lambda: _dataset_names(), unique=True, nonempty=True)
    seeds: tuple[int, ...] = opt((0,), ge=0, lt=2**32, unique=True, nonempty=True)  # numpy's and Lightning's range
    backbones: tuple[str, ...] = opt(("dit",), choices=lambda: backbone_names(), unique=True, nonempty=True)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    source: Path | None = opt(None, yaml=False)           # the grid file it was read from
    results_root: Path = opt(Path("results"), yaml=False)

    @property
    def results_dir(self) -> Path:
        return self.results_root / self.name

    def cells(self) -> list[Cell]:
        """Every (variant, backbone, dataset, seed): seeds outermost, then datasets, backbones, variants
        innermost, file order."""
        return [Cell(self.name, v, d, s, b) for s in self.seeds for d in self.datasets for b in self.backbones
                for v in self.variants]

    def to_dict(self) -> dict[str, Any]:
        """The resolved grid as plain JSON types; written as YAML it loads back to an equal grid."""
        return plain(self)


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
    cuda_graphs: str | bool | None = None


# (GridOverrides field, key path in the grid file, command-line flag)
_OVERRIDES: tuple[tuple[str, KeyPath, str], ...] = (
    ("datasets", ("datasets",), "--dataset"),
    ("seeds", ("seeds",), "--seeds"),
    ("max_steps", ("train", "max_steps"), "--max-steps"),
    ("num_samples", ("eval", "num_samples"), "--num-samples"),
    ("data_dir", ("data", "data_dir"), "--data-dir"),
    ("cuda_graphs", ("train", "cuda_graphs"), "--cuda-graphs"),
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
    g.add_argument("--num-samples", type=int, metavar="N", help="samples per setting (eval.num_samples)")
    g.add_argument("--data-dir", metavar="DIR", help="where the dataset files are (data.data_dir)")
    g.add_argument("--cuda-graphs", metavar="auto|true|false", type=lambda v: {"true": True, "false": False}.get(v, v),
                   help="replay CUDA graphs of the compiled network (train.cuda_graphs; auto: on CUDA where compiled)")


def overrides_from_args(args: argparse.Namespace) -> GridOverrides:
    """The :class:`GridOverrides` from options added by :func:`add_override_arguments`."""
    seeds_text = getattr(args, "seeds", None)
    seeds: tuple[int, ...] = ()
    if seeds_text is not None:
        parts = [p.strip() for p in str(seeds_text).split(",")]
        if not all(re.fullmatch(r"\d+", p) for p in parts):
            raise ConfigError(f"Command-line option --seeds {shorten(seeds_text)} is not a list of seeds; allowed: "
                              "non-negative integers separated by commas, e.g. --seeds 0 or --seeds 0,1,2 "
                              "(a single number is one seed, not a count).")
        seeds = tuple(int(p) for p in parts)
    results = getattr(args, "results", None)
    if results is not None and not str(results).strip():
        raise ConfigError("Command-line option --results is empty (an unset shell variable?); allowed: a directory "
                          "path (this grid's results go to DIR/<name>/), or leave the option out for results/.")
    return GridOverrides(
        datasets=tuple(getattr(args, "dataset", None) or ()),
        variants=tuple(getattr(args, "variant", None) or ()),
        seeds=seeds,
        results=Path(results) if results is not None else None,
        max_steps=getattr(args, "max_steps", None),
        num_samples=getattr(args, "num_samples", None),
        data_dir=getattr(args, "data_dir", None),
        cuda_graphs=getattr(args, "cuda_graphs", None),
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
    raise ConfigError(f"Grid file {shorten(str(path))} {problem}. Give a path to a grid YAML file or the name of "
                      f"one in {GRIDS_DIR}: {', '.join(available_grids()) or '(none found)'}.")


def read_with_section(path: str | Path, kind: str, section: str, section_type: type, needs: str,
                      hint: str = _YAML_HINT) -> tuple[Path, dict[str, Any], Reader]:
    """A grid file plus one section of its own (a ``scaling`` or ``search`` file): the file, its document
    and a :class:`Reader` naming it; errors say it is a ``kind`` file needing the keys ``needs``."""
    file = resolve_grid_path(path)
    raw, lines = read_yaml(file, f"{kind} file", hint)
    if not isinstance(raw, dict):
        raise ConfigError(f"{kind.capitalize()} file {file} is {'empty' if raw is None else 'not a mapping'}; it needs "
                          f"the keys {needs}.")
    reader = Reader(str(file), lines, {}, f"the {kind} file")
    if section not in raw:
        reader.fail((), f"the required key `{section}` is missing; allowed: a mapping with keys "
                        f"{', '.join(f.name for f in dataclasses.fields(section_type))} "
                        f"(see {section_type.__module__.replace('.', '/')}.py).")
    return file, raw, reader


def load_grid(path: str | Path, overrides: GridOverrides | None = None) -> Grid:
    """Read, validate and resolve a grid file; every problem is one :class:`ConfigError` paragraph
    naming the file (and line), the key path, the bad value and what is allowed."""
    overrides = overrides or GridOverrides()
    file = resolve_grid_path(path)
    raw, lines = read_yaml(file, "grid file", _YAML_HINT)
    if raw is None:
        raise ConfigError(f"Grid file {file} is empty; it needs at least the keys `name` and `variants`.")
    reader = Reader(str(file), lines, _apply_overrides(raw, overrides) if isinstance(raw, dict) else {}, "the grid")
    read_lr_search(raw, reader.where(("train", "lr")))
    grid: Grid = reader.build(Grid, raw, ())
    check_consistency(grid, reader)
    variants = _select_variants(grid.variants, overrides.variants, str(file)) if overrides.variants else grid.variants
    return dataclasses.replace(grid, variants=variants, source=file,
                               results_root=overrides.results or grid.results_root)


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
        if len(pattern) > MAX_NAME:
            raise ConfigError(f"Command-line option --variant {shorten(pattern)} is too long; allowed: a variant name "
                              f"or pattern of at most {MAX_NAME} characters.")
        if any(c in pattern for c in "*?["):
            hits = [v for v in variants if fnmatch.fnmatchcase(v, pattern)]
            if not hits:
                raise ConfigError(f"Command-line option --variant {shorten(pattern)} matches none of the variants of {file}; "
                                  f"allowed: a pattern matching one of {', '.join(variants)} (canonical spelling, "
                                  "two decimals: 'rf/lognorm(0.50*'), or an exact variant name.")
            chosen.update(hits)
            continue
        try:
            name = _canonical_variant(pattern)
        except VariantError as err:
            raise ConfigError(f"Command-line option --variant {shorten(pattern)} (for {file}) has no wildcard (*, ?, [) and "
                              f"is not a valid variant name: {err}") from None
        if name in variants:
            chosen.add(name)
        elif name not in added:
            added.append(name)
    return tuple(v for v in variants if v in chosen) + tuple(added)
