"""Checkpoints (issue 10): a write cut short (a full disk) never leaves a truncated file under the final
name, and the last training steps are validated when max_steps is not a multiple of val_every."""

from __future__ import annotations

import errno
import json

import pandas as pd
import pytest
import torch
import workers_kit
from rich.console import Console

from ablate.engine.checkpointing import AtomicCheckpointIO
from ablate.errors import ResultsError
from ablate.config.grid import GridOverrides, load_grid
from ablate.results import ResultsStore, cell_dir
from ablate.engine.runner import RunContext, run_cell


def test_last_steps_are_validated_when_max_steps_is_not_a_multiple_of_val_every(tmp_path):
    grid = load_grid(workers_kit.write_grid(tmp_path, variants=["rf"], max_steps=12), GridOverrides(results=tmp_path))
    run_cell(grid, grid.cells()[0], RunContext(device=torch.device("cpu"), console=Console(quiet=True), progress=False))
    directory = cell_dir(tmp_path, "tiny", "fashion-mnist", "rf", 0)
    assert torch.load(directory / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 12
    metrics = pd.read_csv(directory / "logs" / "metrics.csv")
    validated = metrics.dropna(subset=["val/ema_loss"])
    assert list(validated["step"]) == [7, 11]  # val_every 8, and the last step
    summary = json.loads((directory / "train.json").read_text())
    assert summary["final_val"]["val/ema_loss"] == pytest.approx(float(validated["val/ema_loss"].iloc[-1]))
    assert summary["val_loss"] == min(validated["val/ema_loss"])
    # every record carries the validation curve (step = optimizer steps done) and the solver's last call
    records = ResultsStore(tmp_path).records("tiny")
    assert records and all(r["train"]["val_curve"] == records[0]["train"]["val_curve"] for r in records)
    curve = records[0]["train"]["val_curve"]
    assert [p["step"] for p in curve] == [8, 12]
    assert [p["val/ema_loss"] for p in curve] == pytest.approx(list(validated["val/ema_loss"]))
    assert set(curve[0]) == {"step", "val/ema_loss", "val/raw_loss", "val/ema_x0_mse", "val/raw_x0_mse"}  # no levels
    assert all(0 < r["solver_details"]["last_call_rf_noise"] < 1 for r in records)


def test_checkpoint_write_cut_short_keeps_the_previous_file(tmp_path, monkeypatch):
    checkpoint_io, path = AtomicCheckpointIO(), tmp_path / "checkpoints" / "best.ckpt"
    checkpoint_io.save_checkpoint({"w": torch.ones(3)}, path)

    def full_disk(obj, fh):  # type: ignore[no-untyped-def]
        fh.write(b"half a checkpoint")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(ResultsError, match="best.ckpt.*No space left on device"):
        checkpoint_io.save_checkpoint({"w": torch.zeros(3)}, path)
    monkeypatch.undo()
    assert torch.equal(torch.load(path, weights_only=False)["w"], torch.ones(3))
    assert [p.name for p in path.parent.iterdir()] == ["best.ckpt"]  # no temp file left either


def test_a_metrics_log_cut_short_does_not_stop_a_resume(tmp_path):
    """A kill mid-write can leave ``metrics.csv`` unparsable; resuming must go on (the logs are for people)."""
    from ablate.engine.runner import EARLIER_LOG, keep_earlier_log

    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / EARLIER_LOG).write_text("epoch,step,train/loss\n0,1,0.5\n0,9,0.4\n")
    (logs / "metrics.csv").write_text('epoch,step,train/loss\n0,5,0.3\n0,6,0.2,7,8\n0,7,"0.1\n')
    keep_earlier_log(logs, resumed_step=8)  # rows before step 8 that parse are kept; the row with extra fields is not
    assert pd.read_csv(logs / EARLIER_LOG)["step"].tolist() == [1, 5, 7]
    (logs / "metrics.csv").write_bytes(b"epoch,step,train/loss\n0,5,0.3\n\xff\xfe\x00")
    keep_earlier_log(logs, resumed_step=8)
