"""A cell's training state checked before the cell runs: a damaged file is worked around, never fatal.

The files (see :mod:`ablate.engine.runner`): ``checkpoints/best.ckpt`` (the kept checkpoint, evaluated),
``checkpoints/last.ckpt`` (the latest state), ``train.json`` (the training summary, written when training
ended) and ``train-runs.json`` (each training run's time). They are written atomically, so a damaged one
was cut or changed by something else (a copy, a disk error). :func:`check_training_state` decides, and says
which (``say``: the console, and the cell's log through the ``ablate.cell`` logger):

- all whole: evaluation goes on from ``best.ckpt`` and ``train.json``;
- ``best.ckpt`` damaged or missing after a validation: restored from ``last.ckpt`` when that was written at
  the best validation's step (both hold the same state then: the validation curve in ``last.ckpt`` says which
  step was best); otherwise the best weights are lost and the cell starts over (its checkpoints and summaries
  removed; the records already written are kept, being whole);
- ``train.json`` damaged: removed, and training resumes from the intact checkpoint (``last.ckpt``, else
  ``best.ckpt``; at the last step that only writes the summary again);
- ``train-runs.json`` damaged: removed (the training time of earlier runs is then not counted in
  ``gpu_hours``, a lower bound as for a killed run);
- ``last.ckpt`` damaged: training resumes from ``best.ckpt``, or starts over if neither loads
  (:func:`ablate.engine.runner.resume_checkpoint`).
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ablate.engine.checkpointing import validation_curve_of
from ablate.engine.metric_keys import SELECTION
from ablate.io import write_bytes_atomic

SUMMARY, RUNS = "train.json", "train-runs.json"
_log = logging.getLogger("ablate.cell")


def load_checkpoint(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """(the checkpoint, None) if ``path`` loads, else (None, why not: ``missing`` or the error)."""
    if not path.exists():
        return None, "missing"
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # noqa: BLE001 -- any unreadable file: a damaged checkpoint
        return None, f"{type(err).__name__}: {(str(err).splitlines() or [''])[0].split('. ')[0][:200]}"
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        return None, "not a training checkpoint"
    return checkpoint, None


def read_json(path: Path, required: tuple[str, ...] = ()) -> tuple[Any, str | None]:
    """(the JSON value, None) if ``path`` parses (an object with ``required`` keys, if given), else (None, why)."""
    if not path.exists():
        return None, "missing"
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        return None, f"{type(err).__name__}: {err}"
    if required and (not isinstance(value, dict) or any(k not in value for k in required)):
        return None, f"not a JSON object with {', '.join(required)}"
    return value, None


def _best_step(checkpoint: dict[str, Any]) -> int | None:
    """The step of the best (lowest) validation in a checkpoint's curve, the first of equals; None without one."""
    curve = [p for p in validation_curve_of(checkpoint) if SELECTION in p]
    return int(min(curve, key=lambda p: p[SELECTION])["step"]) if curve else None


def check_training_state(directory: Path, say: Callable[[str], None]) -> dict[str, Any] | None:
    """The cell's training summary if it can be evaluated as it is (or after ``best.ckpt`` was restored),
    else None: train (resume) it; damaged files are repaired or removed first (see the module doc)."""
    ckpts = directory / "checkpoints"
    best_path, last_path = ckpts / "best.ckpt", ckpts / "last.ckpt"
    summary, summary_fault = read_json(directory / SUMMARY, ("val_loss", "max_steps"))
    best, best_fault = load_checkpoint(best_path)
    if best is not None and summary is not None:
        return summary
    if best is None and (best_path.exists() or summary is not None or last_path.exists()):
        last, last_fault = load_checkpoint(last_path)
        step = _best_step(last) if last is not None else None
        if last is not None and step is not None and step == int(last["global_step"]):
            write_bytes_atomic(best_path, last_path.read_bytes())
            say(f"{best_path} is {_what(best_fault)}: restored from {last_path.name}, written at the same step "
                f"({step}, the best validation)")
            best = last
        elif last is None or step is not None or best_path.exists() or summary is not None:
            say(f"{best_path} is {_what(best_fault)} and {last_path.name} "
                + (f"is {_what(last_fault)}" if last is None else f"was written at step {int(last['global_step'])}, "
                   f"not at the best validation (step {step})")
                + ": the best weights are lost, so the cell starts over from step 0 (its records kept)")
            for path in (directory / SUMMARY, directory / RUNS):
                path.unlink(missing_ok=True)
            shutil.rmtree(ckpts, ignore_errors=True)
            return None
    if summary is not None and best is not None:
        return summary
    if summary_fault != "missing":
        say(f"{directory / SUMMARY} is damaged ({summary_fault}): training resumes from the intact checkpoint "
            "to write it again")
        (directory / SUMMARY).unlink(missing_ok=True)
    _, runs_fault = read_json(directory / RUNS)
    if runs_fault not in (None, "missing"):
        say(f"{directory / RUNS} is damaged ({runs_fault}): removed; the time of the cell's earlier training runs "
            "is not counted in its gpu_hours (a lower bound)")
        (directory / RUNS).unlink(missing_ok=True)
    return None


def _what(fault: str | None) -> str:
    return "missing" if fault == "missing" else f"damaged ({fault})"


def note(say: Callable[[str], None]) -> Callable[[str], None]:
    """``say`` that also writes the line to the cell's log (the ``ablate.cell`` logger)."""

    def both(text: str) -> None:
        say(text)
        _log.warning(text)

    return both
