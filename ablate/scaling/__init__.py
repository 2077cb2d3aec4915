"""Scaling studies: isoFLOP grids per formulation, power-law fits with uncertainty, quality vs GFLOPs.

A scaling file is a grid file plus a ``scaling`` section (:mod:`ablate.scaling.spec`). It expands
into ordinary :class:`ablate.config.grid.Grid` objects, one per model size and budget (and per size and
patch size at fixed steps), run by the same grid-running entry point as ``ablate run``; their
records land in the same results store. Modules: :mod:`~ablate.scaling.family` (the model family),
:mod:`~ablate.scaling.flops` (measured training FLOPs), :mod:`~ablate.scaling.budget` (steps that
spend a budget), :mod:`~ablate.scaling.plan` (the grids), :mod:`~ablate.scaling.fit` (fits),
:mod:`~ablate.scaling.collect` (points from records), :mod:`~ablate.scaling.extrapolate` and
:mod:`~ablate.scaling.report`.
"""
