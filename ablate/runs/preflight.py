"""The checks a run makes before its first cell: what only the data, the scorers or the disk can tell.

A grid file's values are checked when it is read (:mod:`ablate.config.grid`); some limits are known only
once the dataset is loaded or the scorers are built. They are checked here, in the order a cell would meet
them, so that a run never fails every cell for a reason knowable at the start:

- the scorers' cache (``--cache-dir``) can be created and written;
- each dataset serves the grid's ``data.conditioning`` (:func:`ablate.data.conditioning.conditioning_modes`);
- its test split (prompts and the validation subset) holds at least ``data.val_size`` items and one prompt;
- every scorer's weights are there (:meth:`Scorer.check_available`) and its reference set, where the dataset
  tells its size, has at least the scorer's ``min_samples`` items (a covariance needs 2).
"""

from __future__ import annotations

import os
from pathlib import Path

from ablate.config.grid import Grid
from ablate.data.conditioning import conditioning_modes
from ablate.engine.runner import RunContext
from ablate.errors import ConfigError, ResultsError


def preflight(grid: Grid, ctx: RunContext) -> None:
    """Raise one :class:`~ablate.errors.AblateError` paragraph if a cell of ``grid`` would fail for a reason
    known now; loads each dataset and builds each scorer (both are kept in ``ctx`` for the cells)."""
    check_cache_writable(Path(ctx.cache_dir))
    where = f"grid {grid.name}" + (f" ({grid.source})" if grid.source else "")
    for dataset in grid.datasets:
        info, splits = ctx.dataset(grid, dataset)
        test = splits["test"]
        modes = conditioning_modes(info, test)
        if grid.data.conditioning not in modes:
            raise ConfigError(f"{where}: `data.conditioning` is {grid.data.conditioning!r}, which dataset {dataset!r} "
                              f"does not serve; allowed for it: {', '.join(repr(m) for m in modes) or 'none'}"
                              f"{'' if 'caption' in modes else ' (caption conditioning needs a dataset prepared with caption embeddings)'}.")
        if len(test) < 1:
            raise ConfigError(f"{where}: dataset {dataset!r} has an empty test split, so no prompt can be drawn; "
                              "prepare it again with a larger --holdout.")
        if grid.data.val_size > len(test):
            raise ConfigError(f"{where}: `data.val_size` is {grid.data.val_size}, but the validation set is drawn from "
                              f"the test split of dataset {dataset!r}, which holds {len(test):,} items; allowed: an integer "
                              f"from 1 to {len(test):,}.")
        for scorer in ctx.scorers(grid, dataset):  # builds each scorer: its weights files are checked here
            count = scorer.reference_count(splits)
            if count is not None and count < scorer.min_samples:
                raise ConfigError(f"{where}: scorer {scorer.name!r} compares samples with a reference set of "
                                  f"{count} item(s) of dataset {dataset!r}, and needs at least {scorer.min_samples} "
                                  "(a Frechet distance needs a covariance); prepare the dataset with a larger "
                                  "--holdout or give the scorer a larger `reference`.")


def check_cache_writable(directory: Path) -> None:
    """The scorers' cache can be created and written (a reference set or a probe may have to be cached), judged
    from the directory or its nearest existing parent, so that nothing is created before it is needed."""
    existing = directory.absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    problem = ("is not a directory" if not existing.is_dir()
               else "is not writable" if not os.access(existing, os.W_OK | os.X_OK) else None)
    if problem:
        raise ResultsError(f"The scorers' cache {directory} cannot be written: {existing} {problem}. Choose a writable "
                           "directory with --cache-dir DIR (or ABLATE_CACHE_DIR), or fix its permissions.")
