"""The learning-rate schedule ``train.lr_schedule``: warm-up, then constant (the default) or a decay to a small
rate (issue 26, part 1)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from ablate.config.grid import load_grid
from ablate.config.lr import LrSchedule
from ablate.errors import ConfigError


def test_constant_is_the_old_warm_up_then_flat_rule_exactly():
    schedule = LrSchedule()
    for warmup in (0, 1, 5, 500):
        for step in range(0, 1200, 7):
            assert schedule.factor(step, 1000, warmup) == min(1.0, (step + 1) / max(warmup, 1))


@pytest.mark.parametrize("kind", ["cosine", "linear"])
def test_decay_warms_up_then_falls_monotonically_to_the_floor_at_the_last_step(kind):
    schedule = LrSchedule(kind=kind, min_lr_ratio=0.01)
    steps, warmup = 1000, 100
    factors = [schedule.factor(k, steps, warmup) for k in range(steps)]
    assert factors[:warmup] == [(k + 1) / warmup for k in range(warmup)]  # the same warm-up
    assert factors[warmup - 1] == 1.0 and all(a >= b for a, b in zip(factors[warmup - 1:], factors[warmup:]))
    assert factors[-1] == pytest.approx(0.01, abs=1e-12) and factors[warmup] < 1.0
    middle = schedule.factor(warmup - 1 + (steps - warmup) // 2, steps, warmup)
    assert middle == pytest.approx(0.505, abs=0.01)  # both shapes pass half way between 1 and the floor mid-decay
    quarter = schedule.factor(warmup - 1 + (steps - warmup) // 4, steps, warmup)
    expected = 0.01 + 0.99 * (0.5 * (1 + math.cos(math.pi / 4)) if kind == "cosine" else 0.75)
    assert quarter == pytest.approx(expected, abs=0.01)


def test_the_optimizer_follows_the_schedule_and_ends_at_the_floor():
    import lightning as L
    from train_kit import bare_trainer, random_data, tiny_module

    module = tiny_module(max_steps=12, warmup_steps=2, lr_schedule=LrSchedule("cosine", 0.1))
    rates: list[float] = []

    class RecordRates(L.Callback):  # the rate each optimizer step uses
        def on_train_batch_start(self, trainer, *args) -> None:
            rates.append(trainer.optimizers[0].param_groups[0]["lr"])

    bare_trainer(12, [RecordRates()]).fit(module, random_data())
    assert rates[0] == pytest.approx(1e-3 / 2) and rates[1] == pytest.approx(1e-3)
    assert rates[-1] == pytest.approx(1e-4) and len(rates) == 12
    assert all(a >= b for a, b in zip(rates[1:], rates[2:]))


def test_the_grid_reads_checks_and_records_the_schedule(tmp_path: Path):
    source = Path("grids/smoke.yaml").read_text()
    assert "lr_schedule" not in source
    grid = load_grid(Path("grids/smoke.yaml"))
    assert grid.train.lr_schedule == LrSchedule("constant", 0.01)  # the default: warm-up then constant
    path = tmp_path / "smoke.yaml"
    path.write_text(source.replace("train:\n", "train:\n  lr_schedule: {kind: cosine, min_lr_ratio: 0.05}\n", 1))
    grid = load_grid(path)
    assert grid.train.lr_schedule == LrSchedule("cosine", 0.05)
    assert grid.train.for_variant("rf").lr_schedule == LrSchedule("cosine", 0.05)  # per-variant rates keep it
    from ablate.config.schema import plain

    assert plain(grid)["train"]["lr_schedule"] == {"kind": "cosine", "min_lr_ratio": 0.05}  # in every record's config
    path.write_text(source.replace("train:\n", "train:\n  lr_schedule: {kind: step}\n", 1))
    with pytest.raises(ConfigError, match=r"`train\.lr_schedule\.kind` is 'step'.*'constant', 'cosine', 'linear'"):
        load_grid(path)
    path.write_text(source.replace("train:\n", "train:\n  lr_schedule: {kind: linear, min_lr_ratio: 1.5}\n", 1))
    with pytest.raises(ConfigError, match=r"min_lr_ratio` is 1.5 \(out of range\)"):
        load_grid(path)


def test_the_leaderboard_states_the_schedule():
    import pandas as pd

    from ablate.report.diagnostics import deviations

    train = {"lr": 1e-3, "warmup_steps": 500, "lr_schedule": {"kind": "cosine", "min_lr_ratio": 0.01}}
    frame = pd.DataFrame([{"variant": "rf", "config": {"train": train}, "scorers": {}, "time_grid": "own",
                           "record": {}}])
    line = deviations(frame, ["rf"])[-1]
    assert line.startswith("Learning rate 0.001 for every variant") and "warm-up over 500 steps, then cosine" in line
    assert "cosine, decaying to 0.01 x the peak rate at the last step." in line
    frame.loc[0, "config"]["train"].pop("lr_schedule")  # records from before the option
    assert deviations(frame, ["rf"])[-1].endswith("then n/a (n/a: records from before `train.lr_schedule`, which kept "
                                                  "the rate constant).")
