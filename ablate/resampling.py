"""What a record keeps for resampling the samples within a setting, and its check (no torch).

Two kinds, kept under two keys because they are resampled differently (:mod:`ablate.report.statistics`):

- ``metric_resamples`` (:data:`PARTS`): per metric, the values of disjoint parts of the samples whose mean is
  the metric (KID's sample blocks, the class-conditional KID's classes); a resample redraws the parts.
- ``metric_replicates`` (:data:`REPLICATES`): per metric, the metric itself on resampled sets of the samples
  (fd_effnet on random halves: a Frechet distance is no mean over parts); their spread is the metric's spread
  over the samples, their mean is not the metric (it carries the smaller set's bias).

Records written before a key existed lack it: their metrics are resampled over seeds only.
"""

from __future__ import annotations

from typing import Any

PARTS = "metric_resamples"
REPLICATES = "metric_replicates"
KEPT = {PARTS: "the values of disjoint parts of the samples whose mean is the metric",
        REPLICATES: "the metric on resampled sets of the samples"}


def problem(record: dict[str, Any]) -> str | None:
    """Why ``record``'s :data:`PARTS` or :data:`REPLICATES` is malformed (the key, what is wrong and what is
    allowed: absent, null or a dict of metric name -> list of numbers), as the end of a sentence; else None."""
    for key, what in KEPT.items():
        kept = record.get(key)
        if kept is None:
            continue
        wrong = None
        if not isinstance(kept, dict):
            wrong = f"a {type(kept).__name__}"
        else:
            for metric, values in kept.items():
                bad = ([v for v in values if isinstance(v, bool) or not isinstance(v, (int, float))]
                       if isinstance(values, list) else None)
                if bad is None or bad:
                    wrong = (f"{metric!r}: a {type(values).__name__}" if bad is None
                             else f"{metric!r}: values that are not numbers ({repr(bad[:3])[:80]})")
                    break
        if wrong is not None:
            return (f"a malformed {key!r} ({wrong}); it must map each metric name to a list of numbers, {what}, "
                    "or be left out")
    return None
