"""Run the corruptions of :mod:`ablate.validity.corruptions` through scorers: data in, scores out.

For each seed and corruption, one base set of ``num_samples`` held-out real images is drawn (the same
for every strength of that corruption, so the levels are paired) and corrupted at each strength; every
scorer scores every set. The result (a JSON-able dict) holds each metric's value per corruption,
strength and seed; :mod:`ablate.report.validity` judges and renders it.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import torch

from ablate.data.base import DatasetInfo
from ablate.scorers.base import Scorer, metric_roles
from ablate.validity.corruptions import CORRUPTIONS, Corruption, Pool

BENCH_VERSION = 1


def held_out_pool(info: DatasetInfo, splits: dict[str, Any]) -> tuple[Pool, str]:
    """The train split (the scorers' reference is the test split): images the metrics never compare with."""
    train = splits["train"]
    return Pool(torch.as_tensor(train.latents), train.labels, info.num_classes), f"{info.name} train split"


def run_bench(scorers: list[Scorer], info: DatasetInfo, pool: Pool, num_samples: int, seeds: list[int],
              corruptions: tuple[Corruption, ...] = CORRUPTIONS,
              progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Every scorer's metrics on every corrupted set: ``scorers -> {provenance, seconds, metrics -> {role,
    higher_is_better, values -> corruption -> [per strength: [per seed]]}}``."""
    out: dict[str, Any] = {}
    for scorer in scorers:
        roles = metric_roles(scorer)
        out[scorer.name] = {"metrics": {m: {**r, "values": {c.name: [[] for _ in c.strengths] for c in corruptions}}
                                        for m, r in roles.items()},
                            "seconds": 0.0}
    for seed in seeds:
        for c in corruptions:
            for si, strength in enumerate(c.strengths):
                gen = torch.Generator().manual_seed(1_000 * seed)  # the same base images at every strength
                images, labels = c.apply(pool, num_samples, strength, gen)
                captions = [info.caption(int(y), None) for y in labels]
                for scorer in scorers:
                    start = time.perf_counter()
                    values = scorer.score(images, labels, captions)
                    entry = out[scorer.name]
                    entry["seconds"] += time.perf_counter() - start
                    for metric, value in values.items():
                        entry["metrics"][metric]["values"][c.name][si].append(float(value))
            if progress:
                progress(f"seed {seed}: {c.name} done")
    for scorer in scorers:
        out[scorer.name]["provenance"] = scorer.provenance()
    return out


def result_document(dataset: str, pool: str, num_samples: int, seeds: list[int], scored: dict[str, Any],
                    skipped: dict[str, str], stamp: dict[str, Any],
                    corruptions: tuple[Corruption, ...] = CORRUPTIONS) -> dict[str, Any]:
    """The JSON written per dataset: protocol, corruptions, each scorer's values, the scorers skipped and why."""
    return {
        "bench_version": BENCH_VERSION, "dataset": dataset, "pool": pool, "num_samples": num_samples,
        "seeds": list(seeds),
        "corruptions": [{"name": c.name, "strengths": list(c.strengths), "unit": c.unit, "kind": c.kind}
                        for c in corruptions],
        "scorers": {name: {**entry, **stamp, "num_samples": num_samples, "seeds": list(seeds)}
                    for name, entry in scored.items()},
        "skipped": skipped,
    }
