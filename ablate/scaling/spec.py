"""Scaling files: a grid file (every key of :mod:`ablate.config.grid`) plus a ``scaling`` section.

The grid keys give what every cell shares (variants, dataset, seeds, data, train, eval); the
``scaling`` section gives the model sizes, patch size and compute budgets, and the model's shape
comes from the family (:mod:`ablate.scaling.family`), so ``model`` may hold only ``mlp_ratio``.
``train.max_steps`` and ``train.val_every`` are derived per cell (from the budget, and from
``scaling.validations``). Budgets are training FLOPs per cell (a multiply-add is 2 FLOPs).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ablate.errors import ConfigError
from ablate.config.grid import Grid, check_eval, read_with_section
from ablate.config.schema import Reader, opt
from ablate.scaling.family import canonical_size

FAMILY_KEYS = ("patch_size", "hidden_size", "depth", "num_heads", "by_backbone")  # set by the family, not the file


@dataclass(frozen=True)
class QualityConfig:
    """Quality vs forward GFLOPs (the DiT figure): every size at every patch size, trained ``steps`` steps."""

    steps: int = opt(ge=1)
    patch_sizes: tuple[int, ...] = opt(ge=1, unique=True, nonempty=True)


@dataclass(frozen=True)
class ScalingConfig:
    """The ``scaling`` section: sizes (``d<depth>`` or S/B/L/XL), the isoFLOP patch size, budgets
    (training FLOPs per cell), the extrapolation budget, validations per cell and fit options."""

    sizes: tuple[str, ...] = opt(convert=canonical_size, invalid="model size", unique=True, nonempty=True,
                                 what="a model size such as 'd4' (depth 4, width 256, 4 heads) or 'S'")
    patch_size: int = opt(ge=1)
    budgets: tuple[float, ...] = opt(gt=0, unique=True, nonempty=True)
    extrapolation: float | None = opt(None, gt=0)
    validations: int = opt(4, ge=1)
    noise_floor: float = opt(0.01, ge=0, lt=1)  # relative spread of a loss assumed when a fit has no residuals
    bootstrap: int = opt(1000, ge=100)
    confidence: float = opt(0.9, gt=0, lt=1)
    seed: int = opt(0, ge=0)
    quality: QualityConfig | None = None


@dataclass(frozen=True)
class Study:
    """A read scaling file: the shared grid (model shape not yet set) and its scaling section."""

    base: Grid
    scaling: ScalingConfig
    file: Path

    @property
    def name(self) -> str:
        return self.base.name


def load_study(path: str | Path, results: Path | None = None) -> Study:
    """Read and check a scaling file; every problem is one :class:`ConfigError` naming file, line and key."""
    file, raw, reader = read_with_section(path, "scaling", "scaling", ScalingConfig,
                                          "`name`, `variants` and `scaling` (a grid file plus a scaling section)")
    grid_raw: dict[str, Any] = {k: v for k, v in raw.items() if k != "scaling"}
    model = grid_raw.get("model")
    for key in FAMILY_KEYS:
        if isinstance(model, dict) and key in model:
            reader.fail(("model", key), f"`model.{key}` is set by the scaling family (`scaling.sizes`, "
                                        "`scaling.patch_size`); allowed in `model` of a scaling file: mlp_ratio.")
    train = grid_raw.get("train")
    if isinstance(train, dict) and "max_steps" in train:
        reader.fail(("train", "max_steps"), "`train.max_steps` is derived from each budget in a scaling file; "
                                            "remove it (set `scaling.budgets` instead).")
    base: Grid = reader.build(Grid, grid_raw, ())
    scaling: ScalingConfig = reader.build(ScalingConfig, raw["scaling"], ("scaling",))
    _check(base, scaling, reader)
    return Study(dataclasses.replace(base, source=file, results_root=results or base.results_root), scaling, file)


def _check(grid: Grid, s: ScalingConfig, reader: Reader) -> None:
    """Checks across keys that the dataclasses cannot make alone."""
    if len(s.sizes) < 3:
        reader.bad(("scaling", "sizes"), list(s.sizes), "at least 3 sizes (a parabola in log N needs 3 points)")
    if len(grid.backbones) != 1:
        reader.bad(("backbones",), list(grid.backbones), "exactly one backbone (fit each backbone's exponents with its "
                                                         "own scaling file, e.g. `backbones: [mmdit]`)")
    if len(grid.datasets) != 1:
        reader.bad(("datasets",), list(grid.datasets), "exactly one dataset (the FLOPs of a model depend on it)")
    r = grid.data.resolution
    for key, patches in ((("scaling", "patch_size"), (s.patch_size,)),
                         (("scaling", "quality", "patch_sizes"), s.quality.patch_sizes if s.quality else ())):
        for p in patches:
            if r % p:
                reader.bad(key, p, f"a patch size dividing `data.resolution` = {r}")
    if s.extrapolation is not None and s.extrapolation <= max(s.budgets):
        reader.bad(("scaling", "extrapolation"), s.extrapolation,
                   f"a budget larger than every one of `scaling.budgets` (largest {max(s.budgets):.3g})")
    check_eval(grid, reader)


def config_error(study: Study, key: str, message: str) -> ConfigError:
    """An error about key ``key`` (dotted) of a study's file, for checks made after reading."""
    return ConfigError(f"{study.file}: `{key}` {message}")
