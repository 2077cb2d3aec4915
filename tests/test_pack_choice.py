"""A plain CUDA run's pack size, measured (ablate.runs.packs.MeasuredPacks): a worker trains its first cell alone
and its second round as a pack, times both over the second half of their training (TrialReporter.window),
and claims as many cells as the faster did from then on. The decision is checked here with given timings, the
timing with a trainer's steps, and the whole through a real CPU run whose rule is made to say 3; whether the
choice pays is the GPU's to show (benchmarks/gpu-runs/NEXT.md)."""

from __future__ import annotations

from types import SimpleNamespace

import ablate  # noqa: F401  (torchvision fix first)
import pytest
import torch
import workers_kit
from rich.console import Console

from ablate.config.grid import GridOverrides, load_grid
from ablate.engine.runner import RunContext
from ablate.runs import packs
from ablate.runs.claims import TrialReporter


def _reporter(steps_per_s: float | None, start: float = 0.0) -> SimpleNamespace:
    """A claim whose cell was timed at ``steps_per_s`` over a 10 s window from ``start`` (pack-mates share one)."""
    window = None if steps_per_s is None else (round(10 * steps_per_s), start, start + 10.0)
    return SimpleNamespace(reporter=SimpleNamespace(window=window))


@pytest.mark.parametrize("lone, packed, members, then", [(40.0, 4.0, 8, 1), (20.0, 4.0, 8, 8), (None, 4.0, 8, 8),
                                                          (40.0, 8.0, 3, 1), (20.0, 8.0, 3, 8), (40.0, 4.0, 1, 8)])
def test_the_faster_way_is_kept_after_one_lone_round_and_one_pack(monkeypatch, lone, packed, members, then) -> None:
    """Steps a second: a lone cell at 40 (10,240 img/s at batch 256) beats 8 cells at 4 (8,192 in all); at 20 it
    does not; an untimed lone round (a resumed cell) leaves the rule's 8. A pack round short of 8 at the grid's end
    (3 cells) still measures packing; a "pack" of one cell does not."""
    asked: list[int] = []
    timings = iter([[_reporter(lone)], [_reporter(packed)] * members])

    def round_(worker, size):
        asked.append(size)
        return next(timings, None) or [_reporter(None)] * size

    monkeypatch.setattr(packs, "_round", round_)
    said: list[str] = []
    worker = SimpleNamespace(grid=SimpleNamespace(train=SimpleNamespace(batch_size=256)), say=said.append)
    choose = packs.MeasuredPacks(8)
    for _ in range(4):
        assert choose(worker)
    assert asked == [1, 8, then, then]
    (line,) = said
    assert line.endswith(f"packs of {then} from now on (--pack K to choose)")
    if lone is not None and members > 1:
        assert f"one cell alone trained {256 * lone:,.0f} img/s, a pack of {members} {256 * members * packed:,.0f} in all" in line


def test_packs_trained_in_turn_in_one_round_add_their_times_not_their_rates(monkeypatch) -> None:
    """A round of 4 cells over two backbones forms two packs of 2 trained one after the other: 4 x 200 steps x 256
    images over 20 s is 10,240 img/s, not the 20,480 that summing the four cells' rates would claim."""
    first, second = [_reporter(20.0, 0.0)] * 2, [_reporter(20.0, 10.0)] * 2
    assert packs.trained_img_per_s([c.reporter for c in first + second], 256) == pytest.approx(10_240)
    assert packs.trained_img_per_s([c.reporter for c in first], 256) == pytest.approx(10_240)  # one pack of 2
    assert packs.trained_img_per_s([c.reporter for c in [*first, _reporter(None)]], 256) is None
    rounds = iter([[_reporter(60.0)], first + second])  # alone 15,360 img/s: faster than the round's 10,240
    worker = SimpleNamespace(grid=SimpleNamespace(train=SimpleNamespace(batch_size=256)), say=lambda line: None)
    monkeypatch.setattr(packs, "_round", lambda worker, size: next(rounds, None) or [_reporter(None)] * size)
    choose = packs.MeasuredPacks(4)
    choose(worker), choose(worker)
    assert choose.next_size() == 1  # summing the four cells' rates (20,480) would have chosen packs


def test_a_cell_is_timed_over_the_second_half_of_its_steps() -> None:
    reporter = TrialReporter("sqlite://", 0)
    reporter.every = 1e9  # no queue reports
    module = SimpleNamespace(device=torch.device("cpu"))

    def train(first: int, last: int, total: int) -> None:
        trainer = SimpleNamespace(global_step=first, max_steps=total, global_rank=1)
        reporter.on_train_start(trainer, module)
        for step in range(first + 1, last + 1):
            trainer.global_step = step
            reporter.on_train_batch_end(trainer, module, None, None, step)

    train(0, 10, 10)
    assert [s for s, _ in reporter.timing] == [5, 10] and reporter.window[0] == 5 and reporter.window[2] > reporter.window[1]
    train(6, 10, 10)  # resumed past half its steps: its compile would be in the window
    assert reporter.window is None
    train(0, 7, 10)  # stopped before its last step
    assert reporter.window is None


def test_a_plain_run_measures_then_packs(tmp_path, one_thread, monkeypatch) -> None:
    """4 cells, the rule made to say 3 (as on CUDA): one alone, then a pack of the other 3, then the decision;
    every cell done, trained alone or packed as its round was."""
    import json

    from ablate.results import cell_dir
    from ablate.runs import workers
    from ablate.runs.workers import WorkerOptions, run_grid

    for key, value in workers_kit.worker_env().items():
        if key.startswith("ABLATE_"):
            monkeypatch.setenv(key, value)
    monkeypatch.setattr(workers, "pack_size", lambda *a, **k: 3)
    variants = ["rf/lognorm(0.00, 1.00)", "eps/linear", "edm(-1.20, 1.20)", "v/cos"]
    grid = load_grid(workers_kit.write_grid(tmp_path, "measured", variants, max_steps=10), GridOverrides(results=tmp_path))
    console = Console(record=True, width=250)
    ctx = RunContext(device=torch.device("cpu"), console=console, progress=False)
    assert run_grid(grid, ctx, WorkerOptions()) == {"done": 4}
    said = console.export_text()
    assert "each worker trains one cell alone, then 3 at once" in said and "training 3 cells as one pack" in said
    assert "pack size measured: one cell alone trained" in said and "a pack of 3" in said
    packed = [json.loads((cell_dir(tmp_path, "measured", "fashion-mnist", v, 0) / "train.json").read_text()).get("pack")
              for v in variants]
    assert sorted(packed, key=str) == [3, 3, 3, None]


def test_a_pack_takes_one_backbones_cells_from_later_seeds(tmp_path, one_thread, monkeypatch) -> None:
    """2 variants x 2 backbones x 2 seeds with --pack 4: the queue runs seed-major with the backbone outside the
    variant, so a round of the next 4 cells would hold both backbones and train as two packs of 2; a round takes
    the first cell's pack-mates from the later seed instead: two packs of 4, one a backbone."""
    import json

    from ablate.results import cell_dir
    from ablate.runs.workers import WorkerOptions, run_grid

    for key, value in workers_kit.worker_env().items():
        if key.startswith("ABLATE_"):
            monkeypatch.setenv(key, value)
    variants = ["rf/lognorm(0.00, 1.00)", "eps/linear"]
    path = workers_kit.write_grid(tmp_path, "axis", variants, max_steps=8)
    path.write_text(path.read_text().replace("seeds: [0]", "seeds: [0, 1]\nbackbones: [dit, mmdit]")
                    .replace("val_size: 32}", "val_size: 32, conditioning: caption}"))
    grid = load_grid(path, GridOverrides(results=tmp_path))
    console = Console(record=True, width=250)
    ctx = RunContext(device=torch.device("cpu"), console=console, progress=False)
    assert run_grid(grid, ctx, WorkerOptions(pack=4)) == {"done": 8}
    assert console.export_text().count("training 4 cells as one pack") == 2
    for backbone in ("dit", "mmdit"):
        for variant in variants:
            for seed in (0, 1):
                summary = json.loads((cell_dir(tmp_path, "axis", "fashion-mnist", variant, seed, backbone)
                                      / "train.json").read_text())
                assert summary.get("pack") == 4, (backbone, variant, seed)
