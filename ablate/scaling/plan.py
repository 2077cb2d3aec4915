"""A study as ordinary grids: one :class:`Grid` per (size, budget), per (size, patch) at fixed steps,
and per extrapolation cell; each named ``<study>.<size>-p<patch>-c<budget>`` (or ``-s<steps>``), with
its model shape, ``max_steps`` and ``val_every``, and results under the study's results root."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Literal

from ablate.errors import ConfigError
from ablate.config.grid import Grid, ModelConfig
from ablate.scaling.budget import Spend, budget_label, steps_for_budget
from ablate.scaling.family import DataShape, ModelSize, network_of, model_size, num_params
from ablate.scaling.flops import forward_gflops, train_flops
from ablate.scaling.spec import Study

Kind = Literal["isoflop", "quality", "extrapolation"]


@dataclass(frozen=True)
class Point:
    """One grid of a study: a model (size, patch) trained for ``spend.steps`` steps."""

    kind: Kind
    size: ModelSize
    patch_size: int
    spend: Spend
    train_flops_per_image: float  # measured (2 FLOPs per multiply-add)
    forward_gflops: float         # DiT-paper convention (1 per multiply-add), per image
    num_params: int
    grid: Grid

    @property
    def label(self) -> str:
        tail = f"c{budget_label(self.spend.budget)}" if self.kind != "quality" else f"s{self.spend.steps}"
        return f"{self.size.label}-p{self.patch_size}-{tail}"


def make_point(study: Study, data: DataShape, kind: Kind, size: ModelSize, patch: int, *,
               budget: float | None = None, steps: int | None = None, variants: tuple[str, ...] | None = None,
               where: str = "") -> Point:
    """The grid of one model at a budget (``budget``) or a number of steps (``steps``)."""
    base = study.base
    config = network_of(size, patch, data, base.model.mlp_ratio)
    per_image = train_flops(config)
    batch = base.train.batch_size * base.train.devices * base.train.num_nodes
    if budget is not None:
        spend = steps_for_budget(budget, per_image, batch, f"{study.file}: {where} for {size.label}-p{patch}")
    else:
        assert steps is not None
        spend = Spend(steps * per_image * batch, steps, steps * batch, steps * per_image * batch)
    if spend.steps < 2 * base.train.warmup_steps:
        raise ConfigError(f"{study.file}: `train.warmup_steps` is {base.train.warmup_steps}, but the {kind} cell "
                          f"{size.label}-p{patch} trains only {spend.steps} steps; allowed: at most half the steps of "
                          f"every cell ({spend.steps // 2} here), so that each trains mostly at the full rate.")
    model = ModelConfig(patch_size=patch, hidden_size=size.hidden_size, depth=size.depth, num_heads=size.num_heads,
                        mlp_ratio=base.model.mlp_ratio)
    val_every = max(1, math.ceil(spend.steps / study.scaling.validations))
    train = dataclasses.replace(base.train, max_steps=spend.steps, val_every=val_every)
    point = Point(kind, size, patch, spend, per_image, forward_gflops(config), num_params(config), base)
    grid = dataclasses.replace(base, name=f"{study.name}.{point.label}", model=model, train=train,
                               variants=variants or base.variants,
                               description=f"{study.name}: {kind} cell {point.label} of {base.description}".strip())
    return dataclasses.replace(point, grid=grid)


def isoflop_points(study: Study, data: DataShape) -> list[Point]:
    """Every size at every budget (budget-major), at the study's patch size."""
    s = study.scaling
    return [make_point(study, data, "isoflop", model_size(size), s.patch_size, budget=c,
                       where=f"`scaling.budgets[{i}]`")
            for i, c in enumerate(s.budgets) for size in s.sizes]


def quality_points(study: Study, data: DataShape) -> list[Point]:
    """Every size at every patch size of ``scaling.quality``, trained the same number of steps."""
    q = study.scaling.quality
    if q is None:
        return []
    return [make_point(study, data, "quality", model_size(size), p, steps=q.steps)
            for p in q.patch_sizes for size in study.scaling.sizes]
