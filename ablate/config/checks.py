"""A grid's checks across keys, run once its sections are read (:func:`ablate.config.grid.load_grid`): model sizes
per backbone against the resolution, captions for the backbones that attend to text, and the evaluation's scorer
options and sample counts (also for search and scaling files). ``grid`` is a :class:`ablate.config.grid.Grid`."""

from __future__ import annotations

from typing import Any

from ablate.config.schema import Reader, plain


def backbone_names() -> tuple[str, ...]:
    from ablate.models.network import BACKBONES

    return tuple(BACKBONES)


def check_consistency(grid: Any, reader: Reader) -> None:
    """Checks across keys: head and patch divisibility (per backbone), captions for text backbones, and
    :func:`check_eval`."""
    r = grid.data.resolution
    sizes = {(): grid.model}
    for backbone, keys in grid.model.by_backbone.items():
        where = ("model", "by_backbone", backbone)
        base = {k: v for k, v in plain(grid.model).items() if k != "by_backbone"}
        if backbone not in grid.backbones or "by_backbone" in keys:
            reader.fail(where, f"`model.by_backbone.{backbone}` sizes a backbone not in `backbones` or nests; "
                               f"allowed: keys {', '.join(grid.backbones)}, each with keys {', '.join(base)}.")
        sizes[where] = reader.build(type(grid.model), {**base, **keys}, where)
    for where, m in sizes.items():
        path = where or ("model",)
        if m.hidden_size % m.num_heads:
            reader.fail((*path, "num_heads"), f"`{'.'.join(path)}.num_heads` is {m.num_heads}, which does not divide "
                                              f"the hidden size {m.hidden_size}; allowed: a divisor of it.")
        if r % m.patch_size:
            reader.fail((*path, "patch_size"), f"`{'.'.join(path)}.patch_size` is {m.patch_size}, which does not "
                                               f"divide `data.resolution` = {r}; allowed: a divisor of it.")
    if grid.data.conditioning != "caption" and any(b != "dit" for b in grid.backbones):
        reader.fail(("backbones",), f"`backbones` lists {', '.join(b for b in grid.backbones if b != 'dit')}, which "
                                    "attend to caption tokens, but `data.conditioning` is "
                                    f"{grid.data.conditioning!r}; allowed: `data.conditioning: caption` with any of "
                                    f"{', '.join(backbone_names())}, or `backbones: [dit]` for class labels.")
    if grid.train.cuda_graphs is True and grid.train.compile is False:
        reader.fail(("train", "cuda_graphs"), "`train.cuda_graphs` is true, but `train.compile` is false, and CUDA "
                                              "graphs are captured by torch.compile; allowed: `train.cuda_graphs: "
                                              "true` with `train.compile: auto` or true, or `train.cuda_graphs: auto` "
                                              "or false (auto: graphs wherever the network is compiled on CUDA).")
    every, val_every = grid.eval.curve_every, grid.train.val_every
    if every and (every % val_every or every > grid.train.max_steps):
        reader.fail(("eval", "curve_every"), f"`eval.curve_every` is {every}, which is not a multiple of `train.val_every` "
                                             f"= {val_every} up to `train.max_steps` = {grid.train.max_steps}: the curve's "
                                             "samples are drawn at validations; allowed: 0 (no curve) or such a "
                                             f"multiple, e.g. {val_every * max(1, min(every // val_every, grid.train.max_steps // val_every))}.")
    check_eval(grid, reader)


def check_eval(grid: Any, reader: Reader) -> None:
    """The evaluation's checks across keys (grid, search and scaling files): scorer options only for listed scorers
    and only options each scorer reads, enough samples per setting for every scorer."""
    from ablate.scorers.base import min_samples, option_problem, sample_needs

    for name, options in grid.eval.scorer_options.items():
        if name not in grid.eval.scorers:
            reader.fail(("eval", "scorer_options", name), f"`eval.scorer_options.{name}` gives options for a scorer "
                        f"not in `eval.scorers`; allowed keys: {', '.join(grid.eval.scorers)}.")
        problem = option_problem(name, options)
        if problem:
            reader.fail(("eval", "scorer_options", name), f"`eval.scorer_options.{name}`: {problem}.")
    need = min_samples(grid.eval.scorers)
    if grid.eval.num_samples < need:
        reader.fail(("eval", "num_samples"), f"`eval.num_samples` is {grid.eval.num_samples}, but the scorers of `eval.scorers` ("
                    f"{', '.join(grid.eval.scorers)}) need at least {need} samples per setting (each scorer's least: "
                    f"{', '.join(f'{n} {k}' for n, k in sample_needs(grid.eval.scorers).items())}); allowed: an integer >= {need}.")
