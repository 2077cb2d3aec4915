"""Fidelity and alignment through training (``eval.curve_every``, ablate.engine.curve; issue 28's Figure 4): the
validations at multiples of it carry the EMA weights' scores of the first setting, exactly what evaluating the
checkpoint of that step gives, alone and in a pack alike; the backbone report draws them as curves with bands."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import ablate  # noqa: F401  (torchvision fix first)
import numpy as np
import pandas as pd
import pytest
import torch
import workers_kit
from rich.console import Console

from ablate.config.grid import GridOverrides, load_grid
from ablate.engine.evaluate import draw_prompts, evaluate_setting
from ablate.engine.metric_keys import curve_key
from ablate.engine.pack_train import train_pack
from ablate.engine.runner import RunContext, cell_module, train_cell
from ablate.errors import ConfigError
from ablate.report import backbones

VARIANTS = ["rf/lognorm(0.00, 1.00)", "eps/linear"]
FD, ALIGN = curve_key("moment_fd"), curve_key("moment_align")


def _grid(tmp_path: Path, every: int = 8):
    grid = load_grid(workers_kit.write_grid(tmp_path, variants=VARIANTS, max_steps=20), GridOverrides(results=tmp_path))
    return dataclasses.replace(grid, eval=dataclasses.replace(grid.eval, curve_every=every))  # validations: 8, 16, 20


def _ctx() -> RunContext:
    return RunContext(device=torch.device("cpu"), console=Console(quiet=True), progress=False)


def _curve(directory: Path) -> dict[int, dict[str, float]]:
    last = torch.load(directory / "checkpoints" / "last.ckpt", weights_only=False)
    return {int(p["step"]): p for p in last["ablate_validation_curve"]}


def test_curve_every_must_be_a_multiple_of_val_every(tmp_path):
    path = workers_kit.write_grid(tmp_path)
    path.write_text(path.read_text().replace("scorers: [test-moments]}", "scorers: [test-moments], curve_every: 12}"))
    with pytest.raises(ConfigError, match=r"`eval.curve_every` is 12, which is not a multiple of `train.val_every` = 8"):
        load_grid(path)


def test_the_curve_is_the_ema_weights_scores_at_each_multiple_and_nowhere_else(tmp_path, one_thread):
    grid, ctx = _grid(tmp_path), _ctx()
    cell = grid.cells()[0]
    directory = tmp_path / "lone"
    summary = train_cell(grid, cell, ctx, directory)
    curve = _curve(directory)
    assert sorted(curve) == [8, 16, 20]
    assert FD in curve[8] and FD in curve[16] and FD not in curve[20] and ALIGN in curve[16]
    assert FD not in summary["final_val"]  # the last validation (step 20) is not a multiple of 8
    # the number at step 16 is what evaluating the EMA weights of step 16 gives: retrain to 16 and score it
    short = dataclasses.replace(grid, train=dataclasses.replace(grid.train, max_steps=16))
    train_cell(short, cell, ctx, tmp_path / "to16")
    info, splits = ctx.dataset(grid, cell.dataset)
    module = cell_module(grid, cell.variant, info, cell.seed)
    module.load_state_dict(torch.load(tmp_path / "to16" / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"])
    prompts = draw_prompts(info, splits["test"], grid.eval.num_samples, cell.seed, grid.data.conditioning)
    setting = dataclasses.replace(grid.eval.settings[0], time_grid=grid.eval.time_grid, weights="ema")
    direct = evaluate_setting(module.ema.module, module.formulation, info, prompts, ctx.scorers(grid, cell.dataset),
                              setting, grid.eval.batch_size, ctx.device)["metrics"]
    # (logged numbers pass through a float32 tensor, as every validation number does)
    assert curve[16][FD] == pytest.approx(direct["moment_fd"], rel=1e-6, abs=0)
    assert curve[16][ALIGN] == pytest.approx(direct["moment_align"], rel=1e-6, abs=0)
    assert curve[8][FD] != curve[16][FD]


def test_a_pack_draws_each_members_curve_as_alone(tmp_path, one_thread):
    grid, ctx = _grid(tmp_path), _ctx()
    cells = grid.cells()[:2]
    for i, cell in enumerate(cells):
        train_cell(grid, cell, ctx, tmp_path / "lone" / str(i))
    dirs = [tmp_path / "pack" / str(i) for i in range(len(cells))]
    failed: list = []
    train_pack(grid, cells, ctx, dirs, lambda k, err: failed.append((k, err)), mode="flat")
    assert not failed
    for i in range(len(cells)):
        lone, packed = _curve(tmp_path / "lone" / str(i)), _curve(dirs[i])
        assert lone == packed and FD in packed[8], cells[i].variant


def test_no_curve_by_default(tmp_path, one_thread):
    grid = _grid(tmp_path, every=0)
    train_cell(grid, grid.cells()[0], _ctx(), tmp_path / "cell")
    assert not any(key.startswith("val/curve_") for p in _curve(tmp_path / "cell").values() for key in p)


def test_the_backbone_report_draws_the_metrics_through_training(tmp_path):
    assert backbones.CURVE_METRIC.format("fd_effnet") == curve_key("fd_effnet")
    rows = []
    for backbone in ("dit", "mmdit"):
        for seed in (0, 1):
            curve = [{"step": s, "val/ema_x0_mse": 0.1 / s, "val/ema_loss": 0.2 / s,
                      **({curve_key("fd_effnet"): 100.0 / s + seed, curve_key("ckid_effnet"): 1.0 / s - 0.01 * seed}
                         if s % 2 == 0 else {})} for s in (1, 2, 3, 4)]
            rows.append({"backbone": backbone, "variant": "rf", "seed": seed, "train_val_curve": curve})
    frame = pd.DataFrame(rows)
    keys = backbones.curve_keys(frame, "ckid_effnet", "fd_effnet")
    assert [k for k, _ in keys] == ["val/ema_x0_mse", "val/ema_loss", curve_key("fd_effnet"), curve_key("ckid_effnet")]
    table = backbones.curves(frame, keys)
    fd = table[(table["backbone"] == "dit") & (table["step"] == 2)].iloc[0]
    # fd 50 and 51 over the seeds, positive: the geometric mean, and a band of the logs that stays above zero
    assert fd[curve_key("fd_effnet")] == pytest.approx((50 * 51) ** 0.5)
    assert 0 < fd[f"{curve_key('fd_effnet')} low"] < fd[curve_key("fd_effnet")] < fd[f"{curve_key('fd_effnet')} high"]
    ckid = table[(table["backbone"] == "dit") & (table["step"] == 4)].iloc[0]  # 0.25 and 0.24: positive too
    assert ckid[f"{curve_key('ckid_effnet')} low"] > 0
    wide = backbones.curves(frame.assign(train_val_curve=[[{"step": 1, "val/ema_x0_mse": v, "val/ema_loss": 1.0}]
                                                          for v in (1.0, 9.0, 1.0, 9.0)]), backbones.CURVES)
    assert wide["val/ema_x0_mse"].tolist() == pytest.approx([3.0, 3.0])  # geometric: sqrt(1 x 9)
    assert (wide["val/ema_x0_mse low"] > 0).all()  # a linear band, 5 -+ 12.7 x 4, would reach -46
    assert np.isnan(table[(table["step"] == 3)][curve_key("fd_effnet")]).all()  # drawn at multiples only
    png = backbones.plot_curves("g", table, keys)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert backbones.curve_keys(frame.assign(train_val_curve=[[{"step": 1}]] * 4), "a", "f") == list(backbones.CURVES)
