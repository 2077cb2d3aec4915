"""Records tests/data/cell_reference.json: what 3 smoke cells compute, end to end, on the CPU.

Run ONLY deliberately, at a commit whose behaviour is the reference: it was run once at commit
996a5a1 (before the issue-11 redesign of training); ``tests/test_cell_reference.py`` then checks that
later code reproduces every number exactly. Re-running it after a change only re-records the new
behaviour and makes the test prove nothing.

    OMP_NUM_THREADS=1 PYTHONPATH=. python tests/data/record_cell_reference.py

The configuration is ``grids/smoke.yaml`` made small (the YAML keys in :data:`REDUCED`): the same
data, model, optimizer, EMA and validation levels, a few steps, 32 samples, two of the paper's Euler
settings. Per cell it keeps every validation's numbers (native loss and cross-formulation x0-MSE,
EMA and raw, by level and averaged), the training summary's validation numbers, and the probe
scorer's metrics for every setting x weights. The probe is the real scorer (features, Frechet
distance, class probability) with its network left at its seeded initialisation rather than trained:
training it costs a minute and its weights depend on the CPU kind, while the scores are a fixed
function of the samples either way, so any change in the samples changes them.

Bit identity needs one torch thread (CPU float reductions depend on the thread count) and the same
CPU kind and torch version as the recording (kept in the file as ``environment``). There is one record
per machine kind, each made at 996a5a1: ``cell_reference.json`` (an Intel Xeon) and
``cell_reference-<cpu>.json``; to add one, run this file's version of f50ab83 in a worktree of 996a5a1
and save its output under that name (an Intel Xeon's and an AMD EPYC's numbers differ by up to 2.2e-7
relative: vectorised kernels round differently).
"""

from __future__ import annotations

import io
import json
import platform
import sys
from pathlib import Path
from typing import Any

import ablate  # noqa: F401  (torchvision fix first)
import lightning as L
import torch
import yaml
from rich.console import Console

from ablate.io import write_bytes_atomic, write_json_atomic
from ablate.scorers import probe as probe_module
from ablate.scorers.probe import probe_hash, weights_sha256

ROOT = Path(__file__).resolve().parents[2]
OUT = Path(__file__).with_name("cell_reference.json")
VARIANTS = ["rf/lognorm(0.00, 1.00)", "eps/linear", "edm(-1.20, 1.20)"]
# grids/smoke.yaml with these keys replaced (a validation at steps 4 and 8, and at the last step, 10). The
# weights are pinned: smoke.yaml evaluated [ema, raw] when the reference was recorded and now evaluates EMA
# only, so this test is what checks sampling with the raw weights.
REDUCED: dict[str, dict[str, Any]] = {
    "data": {"val_size": 64},
    "train": {"max_steps": 10, "val_every": 4},
    "eval": {"num_samples": 32, "batch_size": 32, "weights": ["ema", "raw"],
             "settings": [{"steps": 50, "cfg": 1.0}, {"steps": 5, "cfg": 5.0}], "scorers": ["probe"], "scorer_options": {}},
}


def reduced_smoke_grid(directory: Path) -> Path:
    """grids/smoke.yaml with :data:`REDUCED` applied and only :data:`VARIANTS`, written to ``directory``."""
    raw = yaml.safe_load((ROOT / "grids" / "smoke.yaml").read_text())
    raw["name"], raw["variants"] = "smoke-reference", list(VARIANTS)
    for section, keys in REDUCED.items():
        raw[section].update(keys)
    path = directory / "smoke-reference.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def seed_untrained_probe(cache_dir: Path, resolution: int) -> None:
    """Put the probe at its seeded initialisation into ``cache_dir`` where the probe scorer looks for it."""
    model = probe_module._build(10, probe_module.HYPERPARAMETERS["seed"])
    stem = cache_dir / "probe" / probe_hash(resolution)
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    write_bytes_atomic(stem.with_suffix(".pt"), buffer.getvalue())
    write_json_atomic(stem.with_suffix(".json"), {"weights_sha256": weights_sha256(model), "test_accuracy": None,
                                                  "note": "untrained (seeded initialisation), for tests only"})


class Validations(L.Callback):
    """Every validation's numbers, by the step they were logged at."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        numbers = {k: float(v) for k, v in sorted(trainer.callback_metrics.items()) if k.startswith("val")}
        self.rows.append({"step": trainer.global_step, "numbers": numbers})


TRAIN_KEYS = ("best_step", "val_loss", "val_loss_raw", "val_x0_mse", "val_loss_by_t", "val_x0_mse_by_t", "final_val")


def compute(work: Path) -> dict[str, Any]:
    """Train and evaluate the 3 cells under ``work``; their numbers by variant."""
    from ablate.config.grid import GridOverrides, load_grid
    from ablate.results import cell_dir
    from ablate.engine.runner import RunContext, run_cell

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        grid = load_grid(reduced_smoke_grid(work), GridOverrides(results=work / "results"))
        seed_untrained_probe(work / "cache", grid.data.resolution)
        out = {}
        for cell in grid.cells():
            validations = Validations()
            ctx = RunContext(device=torch.device("cpu"), cache_dir=work / "cache", console=Console(quiet=True),
                             progress=False, callbacks=[validations])
            run_cell(grid, cell, ctx)
            directory = cell_dir(grid.results_root, grid.name, cell.dataset, cell.variant, cell.seed)
            out[cell.variant] = cell_numbers(directory, validations.rows)
        return out
    finally:
        torch.set_num_threads(threads)


def cell_numbers(directory: Path, validations: list[dict[str, Any]]) -> dict[str, Any]:
    """The numbers of the cell in ``directory``: validations, training summary, metrics."""
    summary = json.loads((directory / "train.json").read_text())
    metrics = {}
    for path in sorted(directory.glob("records/*.json")):
        record = json.loads(path.read_text())
        metrics[f"{record['steps']} steps, cfg {record['cfg']}, {record['weights']}"] = record["metrics"]
    return {"validations": validations, "train": {k: summary[k] for k in TRAIN_KEYS}, "metrics": metrics}


def environment() -> dict[str, str]:
    return {"torch": torch.__version__, "lightning": L.__version__, "python": sys.version.split()[0],
            "machine": platform.machine(), "cpu": _cpu_model()}


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def main() -> None:
    import subprocess
    import tempfile

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout
    with tempfile.TemporaryDirectory() as work:
        cells = compute(Path(work))
    OUT.write_text(json.dumps({"commit": commit.strip(), "environment": environment(), "reduced": REDUCED,
                               "cells": cells}, indent=1) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
