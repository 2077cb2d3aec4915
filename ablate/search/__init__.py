"""Searching a formulation's numbers: a multi-objective Optuna search whose trials are ordinary grid cells.

A search file is a grid file without ``variants`` plus a ``search`` section (:mod:`~ablate.search.spec`):
a variant template such as ``rf/lognorm({m}, {s})`` with a range per number, optionally a learning
rate range. :mod:`~ablate.search.trials` asks Optuna's NSGA-II or TPE sampler for rounds of points,
trains each round as a grid through the same entry point as ``ablate run`` (queue, storage, workers,
resume, records), and tells the sampler the objectives read back from the results store;
:mod:`~ablate.search.warm` adds other grids' records first; :mod:`~ablate.search.points` maps points
to grids and objectives; :mod:`~ablate.search.analysis` and :mod:`~ablate.search.report` make the report.
"""
