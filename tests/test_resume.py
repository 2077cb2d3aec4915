"""Resuming a cell (ablate.engine.runner.train_cell with ablate.engine.train, batches, ema, checkpointing): training
interrupted after a checkpoint and started again ends with the weights, EMA, optimizer state and
validation numbers of an uninterrupted run, bit for bit; checkpoints hold what trained them."""

from __future__ import annotations

import csv
import dataclasses
import json

import ablate  # noqa: F401  (torchvision fix first)
import lightning as L
import pytest
import torch
import train_kit
import workers_kit
from rich.console import Console

from ablate.config.grid import EMAConfig, GridOverrides, load_grid
from ablate.engine.checkpointing import validation_curve_of
from ablate.engine.runner import RunContext, train_cell

VARIANT = "rf/lognorm(0.00, 1.00)"


class Interrupted(Exception):
    pass


def InterruptAt(step: int) -> L.Callback:  # noqa: N802 -- reads as the class it makes
    return train_kit.InterruptAt(step, Interrupted)


def test_interrupted_and_resumed_cell_is_bit_identical_to_an_uninterrupted_one(tmp_path, one_thread):
    grid = load_grid(workers_kit.write_grid(tmp_path, variants=[VARIANT], max_steps=14), GridOverrides(results=tmp_path))
    # validations (and checkpoints) at 4, 8, 12, 14; EMA every 3 steps, so a resume lands between updates
    grid = dataclasses.replace(grid, train=dataclasses.replace(grid.train, val_every=4, ema=EMAConfig(every=3, decay=0.9)))
    cell = grid.cells()[0]

    def ctx(*callbacks: L.Callback) -> RunContext:
        return RunContext(device=torch.device("cpu"), console=Console(quiet=True), progress=False, callbacks=list(callbacks))

    whole = train_cell(grid, cell, ctx(), tmp_path / "whole")
    with pytest.raises(Interrupted):
        train_cell(grid, cell, ctx(InterruptAt(10)), tmp_path / "cut")
    assert torch.load(tmp_path / "cut" / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 8
    resumed = train_cell(grid, cell, ctx(), tmp_path / "cut")

    assert resumed["resumed_from_step"] == 8 and whole["resumed_from_step"] == 0
    # the cut run's time counts: the cell trained in two runs, the summary's totals are their sums
    runs = json.loads((tmp_path / "cut" / "train-runs.json").read_text())
    assert [r["from_step"] for r in runs] == [0, 8] and resumed["runs"] == 2 and whole["runs"] == 1
    assert runs[0]["wall_s"] > 0 and resumed["total_wall_s"] == pytest.approx(runs[0]["wall_s"] + resumed["wall_s"])
    for key in ("best_step", "val_loss", "val_loss_raw", "val_x0_mse", "val_loss_by_t", "val_x0_mse_by_t", "final_val"):
        assert resumed[key] == whole[key], key
    a, b = (torch.load(d / "checkpoints" / "last.ckpt", weights_only=False) for d in (tmp_path / "whole", tmp_path / "cut"))
    assert a["global_step"] == b["global_step"] == 14
    assert a["state_dict"].keys() == b["state_dict"].keys() and any(k.startswith("ema.") for k in a["state_dict"])
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"]), "weights or EMA differ"
    assert int(a["state_dict"]["ema.n_averaged"]) == 4  # steps 3, 6, 9, 12
    opt_a, opt_b = a["optimizer_states"][0]["state"], b["optimizer_states"][0]["state"]
    assert all(torch.equal(opt_a[i][k], opt_b[i][k]) for i in opt_a for k in opt_a[i]), "optimizer state differs"
    assert a["lr_schedulers"] == b["lr_schedulers"]
    # what trained it, as plain data
    assert json.loads(json.dumps(a["hyper_parameters"])) == a["hyper_parameters"]
    assert a["hyper_parameters"]["variant"] == VARIANT and a["hyper_parameters"]["seed"] == cell.seed
    assert a["hyper_parameters"]["train"]["ema"] == {"every": 3, "decay": 0.9, "start": 0}
    assert a["hyper_parameters"]["network"]["hidden_size"] == grid.model.hidden_size
    # the rows logged before the resumed step are kept beside the new log, as written
    with (tmp_path / "whole" / "logs" / "metrics.csv").open(newline="") as fh:
        want = [{k: v for k, v in row.items() if v} for row in csv.DictReader(fh) if int(row["step"]) < 8]
    with (tmp_path / "cut" / "logs" / "metrics-before-resume.csv").open(newline="") as fh:
        kept = [{k: v for k, v in row.items() if v} for row in csv.DictReader(fh)]
    assert len(kept) == len(want) == 2 and kept == want  # the validations at steps 4 and 8 (logged as 3, 7)


def test_a_cell_stopped_between_validations_resumes_from_its_timed_checkpoint(tmp_path, one_thread, monkeypatch):
    """With ABLATE_CHECKPOINT_EVERY_S=0, last.ckpt is also written before every step: a cell stopped in step 10
    resumes from step 9 (not from the validation at 8, and between EMA updates) and ends as an uninterrupted run:
    weights, EMA, the validation steps and numbers, best.ckpt (a timed write must not stop a validation's)."""
    grid = load_grid(workers_kit.write_grid(tmp_path, variants=[VARIANT], max_steps=14), GridOverrides(results=tmp_path))
    grid = dataclasses.replace(grid, train=dataclasses.replace(grid.train, val_every=4, ema=EMAConfig(every=3, decay=0.9)))
    cell = grid.cells()[0]

    def ctx(*callbacks: L.Callback) -> RunContext:
        return RunContext(device=torch.device("cpu"), console=Console(quiet=True), progress=False, callbacks=list(callbacks))

    whole = train_cell(grid, cell, ctx(), tmp_path / "whole")  # default interval: no timed writes in a short run
    monkeypatch.setenv("ABLATE_CHECKPOINT_EVERY_S", "0")
    with pytest.raises(Interrupted):
        train_cell(grid, cell, ctx(InterruptAt(10)), tmp_path / "cut")
    # Lightning calls checkpoint callbacks last: the stop raised in step 10's hooks precedes any write after it
    assert torch.load(tmp_path / "cut" / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 9
    resumed = train_cell(grid, cell, ctx(), tmp_path / "cut")
    assert resumed["resumed_from_step"] == 9
    for key in ("best_step", "val_loss", "val_loss_raw", "val_x0_mse", "final_val"):
        assert resumed[key] == whole[key], key
    for name in ("last.ckpt", "best.ckpt"):
        a, b = (torch.load(d / "checkpoints" / name, weights_only=False) for d in (tmp_path / "whole", tmp_path / "cut"))
        assert a["global_step"] == b["global_step"], name
        assert validation_curve_of(a) == validation_curve_of(b), name  # validated at the same steps, same numbers
        assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"]), name
    last = torch.load(tmp_path / "cut" / "checkpoints" / "last.ckpt", weights_only=False)
    assert [p["step"] for p in validation_curve_of(last)] == [4, 8, 12, 14]


def test_the_checkpoint_interval_is_checked(monkeypatch) -> None:
    from ablate.engine.checkpointing import checkpoint_interval
    from ablate.errors import ConfigError

    monkeypatch.delenv("ABLATE_CHECKPOINT_EVERY_S", raising=False)
    assert checkpoint_interval() == 600
    monkeypatch.setenv("ABLATE_CHECKPOINT_EVERY_S", "45")
    assert checkpoint_interval() == 45
    for bad in ("-1", "soon", "nan"):
        monkeypatch.setenv("ABLATE_CHECKPOINT_EVERY_S", bad)
        with pytest.raises(ConfigError, match="ABLATE_CHECKPOINT_EVERY_S"):
            checkpoint_interval()
