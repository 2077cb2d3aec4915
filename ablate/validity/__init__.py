"""The metric-validity bench: graded corruptions of held-out real images, scored by every scorer.

Data in, scores out: it knows the scorers and a dataset, not training (:mod:`ablate.validity.bench`);
the verdicts and their rendering are torch-free (:mod:`ablate.report.validity`), so every leaderboard
can cite them.
"""
