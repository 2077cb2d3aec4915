"""Per-variant learning-rate tuning in any grid: ``train.lr: search(low, high, log)`` (issue 14, part 4)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

import workers_kit
from ablate.config.grid import GridOverrides, LrSearch, load_grid
from ablate.errors import ConfigError
from ablate.results import ResultsStore, cell_dir
from ablate.runs.lr_tuning import best_rates, rates, tuning_grids


def _grid_file(tmp_path: Path, lr: str, variants: list[str] = ["rf", "eps/linear"]) -> Path:
    path = workers_kit.write_grid(tmp_path, "tune", variants, max_steps=16)
    path.write_text(path.read_text().replace("lr: 1.0e-3", lr))
    return path


def test_rates_are_log_spaced_at_two_significant_digits():
    assert rates(LrSearch(1e-4, 1e-3, 3)) == [1e-4, 3.2e-4, 1e-3]
    assert rates(LrSearch(1e-4, 1e-2, 5)) == [1e-4, 3.2e-4, 1e-3, 3.2e-3, 1e-2]
    with pytest.raises(ConfigError, match="0 < low < high"):
        rates(LrSearch(1e-3, 1e-4, 3))


def test_the_search_spelling_is_read_and_checked(tmp_path: Path):
    grid = load_grid(_grid_file(tmp_path, "lr: 'search(1e-3, 1e-2, log)', lr_trials: 2"), GridOverrides(results=tmp_path))
    assert grid.train.lr_search == LrSearch(1e-3, 1e-2, 2) and grid.train.lr == pytest.approx(3.2e-3)
    assert [(g.name, g.train.lr, g.seeds) for g in tuning_grids(grid)] == [("tune.lr1.0e-03", 1e-3, (0,)),
                                                                         ("tune.lr1.0e-02", 1e-2, (0,))]
    for bad in ("search(1e-3, 1e-2)", "search(1e-2, 1e-3, log)", "grid(1, 2)"):
        with pytest.raises(ConfigError, match=r"tune\.yaml, line \d+: `train\.lr` is .*allowed: a number .* 'search\(low, high, log\)'"):
            load_grid(_grid_file(tmp_path, f"lr: '{bad}'"))


def test_each_variant_gets_its_lowest_validation_loss_rate(tmp_path: Path):
    grid = load_grid(_grid_file(tmp_path, "lr: 'search(1e-3, 1e-2, log)', lr_trials: 2"))
    losses = {"rf": {1e-3: 0.30, 1e-2: 0.25}, "eps/linear": {1e-3: 0.05, 1e-2: float("inf")}}
    assert best_rates(grid, losses) == {"rf": 1e-2, "eps/linear": 1e-3}
    with pytest.raises(ConfigError, match="no finished cell at any rate for eps/linear"):
        best_rates(grid, {"rf": losses["rf"]})


def test_a_grid_with_an_lr_search_trains_each_variant_at_its_best_rate(tmp_path: Path, monkeypatch):
    from ablate.cli import main

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    grid_file = _grid_file(tmp_path, "lr: 'search(1e-3, 3e-2, log)', lr_trials: 2")
    assert main(["run", str(grid_file), "--results", str(tmp_path / "results"), "--device", "cpu",
                 "--no-leaderboard"]) == 0
    store = ResultsStore(tmp_path / "results")
    tuning = {}
    for name, rate in (("tune.lr1.0e-03", 1e-3), ("tune.lr3.0e-02", 3e-2)):
        frame = store.frame(name).drop_duplicates("variant")
        assert sorted(frame["variant"]) == ["eps/linear", "rf"] and set(frame["seed"]) == {0}
        for variant, loss in zip(frame["variant"], frame["train_val_loss"]):
            tuning.setdefault(variant, {})[rate] = loss
    chosen = {v: min(by_rate, key=by_rate.get) for v, by_rate in tuning.items()}
    records = store.records("tune")
    assert records and all(r["config"]["train"]["lr_by_variant"] == chosen for r in records)
    for variant, rate in chosen.items():  # the cell trained at that rate (the module's saved hyper-parameters)
        cell = next(r for r in records if r["variant"] == variant)
        directory = cell_dir(tmp_path / "results", "tune", cell["dataset"], variant, cell["seed"])
        hparams = yaml.safe_load((directory / "logs" / "hparams.yaml").read_text())
        assert json.dumps(hparams).count(f'"lr": {rate}') == 1, hparams
    from ablate.report.leaderboard import build_leaderboard

    lb = build_leaderboard(store.frame("tune"), "tune", "moment_align", "moment_fd", replicates=10)
    assert any(line.startswith("LEARNING RATE TUNED PER VARIANT") and f"rf {chosen['rf']:.1e}" in line
               for line in lb.deviations)
