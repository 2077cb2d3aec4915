"""Packs (ablate.engine.pack, pack_train, stack): K cells trained as one stacked model in one trainer give each
cell, bit for bit on the CPU, what it gets alone: weights, EMA, AdamW state, validation numbers, checkpoints,
training summary; a diverging member fails alone with its step; a killed pack resumes, in a pack or alone."""

from __future__ import annotations

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
from ablate.engine.pack_train import train_pack
from ablate.engine.runner import RunContext, train_cell

VARIANTS = ["rf/lognorm(0.00, 1.00)", "eps/linear", "edm(-1.20, 1.20)"]
SAME_KEYS = ("best_step", "val_loss", "val_loss_raw", "val_x0_mse", "val_loss_by_t", "val_x0_mse_by_t", "final_val",
             "max_steps", "num_params", "train_gflops", "compiled", "fused_optimizer")


class Interrupted(BaseException):
    """A kill: not an Exception, so it stops the whole pack (as a signal's KeyboardInterrupt does)."""


def _grid(tmp_path, seeds=(0, 1)):
    grid = load_grid(workers_kit.write_grid(tmp_path, variants=VARIANTS, max_steps=14), GridOverrides(results=tmp_path))
    # validations (and checkpoints) at 4, 8, 12, 14; EMA every 3 steps, so a resume lands between updates
    train = dataclasses.replace(grid.train, val_every=4, ema=EMAConfig(every=3, decay=0.9))
    return dataclasses.replace(grid, train=train, seeds=tuple(seeds))


def _cells(grid):
    """Three formulations, two seeds: (rf/lognorm, 0), (eps/linear, 1), (edm, 0)."""
    cells = grid.cells()
    cells = [cells[0], cells[4], cells[2]]
    assert [c.seed for c in cells] == [0, 1, 0] and [c.variant for c in cells] == VARIANTS
    return cells


def _ctx(*callbacks: L.Callback) -> RunContext:
    return RunContext(device=torch.device("cpu"), console=Console(quiet=True), progress=False, callbacks=list(callbacks))


def _same_checkpoints(a_dir, b_dir) -> None:
    for name in ("best.ckpt", "last.ckpt"):
        a, b = (torch.load(d / "checkpoints" / name, weights_only=False) for d in (a_dir, b_dir))
        assert a["global_step"] == b["global_step"], name
        assert a["state_dict"].keys() == b["state_dict"].keys(), name
        assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"]), f"{name}: weights or EMA differ"
        sa, sb = a["optimizer_states"][0], b["optimizer_states"][0]
        assert sa["state"].keys() == sb["state"].keys() and sa["param_groups"] == sb["param_groups"], name
        assert all(torch.equal(sa["state"][i][k], sb["state"][i][k]) for i in sa["state"] for k in sa["state"][i]), name
        assert a["lr_schedulers"] == b["lr_schedulers"] and a["loops"] == b["loops"], name
        assert a["hyper_parameters"] == b["hyper_parameters"], name
        assert a["ablate_validation"] == b["ablate_validation"], name
        assert a["ablate_validation_curve"] == b["ablate_validation_curve"], name
        assert list(a["callbacks"]) == list(b["callbacks"]), name
        ca, cb = next(iter(a["callbacks"].values())), next(iter(b["callbacks"].values()))
        assert {k: v for k, v in ca.items() if "path" not in k and k != "best_k_models"} == \
               {k: v for k, v in cb.items() if "path" not in k and k != "best_k_models"}, name


def _lone(grid, tmp_path):
    return [train_cell(grid, cell, _ctx(), tmp_path / "lone" / str(i)) for i, cell in enumerate(_cells(grid))]


@pytest.mark.parametrize("mode", ["flat", "loop"])  # flat: one stacked network (CUDA's); loop: the CPU's
def test_a_pack_trains_each_cell_bit_for_bit_as_alone(tmp_path, one_thread, mode):
    grid = _grid(tmp_path)
    cells = _cells(grid)
    lone = _lone(grid, tmp_path)
    dirs = [tmp_path / "pack" / str(i) for i in range(len(cells))]
    failed = []
    packed = train_pack(grid, cells, _ctx(), dirs, lambda k, err: failed.append((k, err)), mode=mode)
    assert not failed and sorted(packed) == [0, 1, 2]
    for i in range(len(cells)):
        for key in SAME_KEYS:
            assert packed[i][key] == lone[i][key], (VARIANTS[i], key)
        assert packed[i]["pack"] == 3 and "pack" not in lone[i]
        assert json.loads((dirs[i] / "train.json").read_text()) == packed[i]
        _same_checkpoints(tmp_path / "lone" / str(i), dirs[i])
        assert (dirs[i] / "logs" / "metrics.csv").exists()


@pytest.mark.parametrize("mode", ["flat", "loop"])
def test_a_diverging_member_fails_alone_with_its_step(tmp_path, one_thread, monkeypatch, mode):
    monkeypatch.setenv("ABLATE_TEST_NAN_VARIANT", VARIANTS[1])  # NaN inputs from step 3 on (workers_kit)
    grid = _grid(tmp_path)
    cells = _cells(grid)
    dirs = [tmp_path / "pack" / str(i) for i in range(len(cells))]
    failed = []
    packed = train_pack(grid, cells, _ctx(), dirs, lambda k, err: failed.append((k, err)), mode=mode)
    assert [k for k, _ in failed] == [1] and isinstance(failed[0][1], FloatingPointError)
    assert failed[0][1].step == 3 and "at step 3" in str(failed[0][1])  # found before the validation at step 4
    assert sorted(packed) == [0, 2] and not (dirs[1] / "train.json").exists()
    monkeypatch.delenv("ABLATE_TEST_NAN_VARIANT")
    lone = _lone(grid, tmp_path)
    for i in (0, 2):  # its pack-mates train on, exactly as alone
        assert all(packed[i][key] == lone[i][key] for key in SAME_KEYS), VARIANTS[i]
        _same_checkpoints(tmp_path / "lone" / str(i), dirs[i])


def test_a_member_failing_mid_validation_fails_alone(tmp_path, one_thread, monkeypatch, mode="flat"):
    """A pack trained flat (CUDA's stack) validates its members' networks in turn (ablate.engine.pack_validation,
    EVAL_MODE); a member whose own part of it raises (here at the validation of step 8) fails alone, and its
    pack-mates' numbers and checkpoints are as alone."""
    from ablate.engine.train import DiffusionModule

    own = DiffusionModule.prepare_validation

    def prepare(self, *args, **kwargs):
        if self.hparams["variant"] == VARIANTS[1] and self.global_step == 8:
            raise RuntimeError("validation broke")
        return own(self, *args, **kwargs)

    grid = _grid(tmp_path)
    cells = _cells(grid)
    lone = _lone(grid, tmp_path)
    monkeypatch.setattr(DiffusionModule, "prepare_validation", prepare)
    dirs = [tmp_path / "pack" / str(i) for i in range(len(cells))]
    failed = []
    packed = train_pack(grid, cells, _ctx(), dirs, lambda k, err: failed.append((k, err)), mode=mode)
    assert [(k, str(err)) for k, err in failed] == [(1, "validation broke")]
    assert sorted(packed) == [0, 2] and not (dirs[1] / "train.json").exists()
    assert torch.load(dirs[1] / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 4
    for i in (0, 2):
        assert all(packed[i][key] == lone[i][key] for key in SAME_KEYS), VARIANTS[i]
        _same_checkpoints(tmp_path / "lone" / str(i), dirs[i])


def test_a_killed_pack_resumes_in_a_pack_or_alone_bit_for_bit(tmp_path, one_thread):
    grid = _grid(tmp_path)
    cells = _cells(grid)
    lone = _lone(grid, tmp_path)
    dirs = [tmp_path / "pack" / str(i) for i in range(len(cells))]
    with pytest.raises(Interrupted):
        train_pack(grid, cells, _ctx(train_kit.InterruptAt(10, Interrupted)), dirs, lambda k, err: pytest.fail(f"member {k} failed: {err}"),
                   mode="flat")
    for d in dirs:
        assert torch.load(d / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 8
        assert not (d / "train.json").exists()
    alone = train_cell(grid, cells[0], _ctx(), dirs[0])  # a pack member's checkpoint resumes alone ...
    rest = train_pack(grid, cells[1:], _ctx(), dirs[1:], lambda k, err: pytest.fail(f"member {k} failed: {err}"))
    resumed = [alone, rest[0], rest[1]]  # ... or in another pack
    for i in range(len(cells)):
        assert resumed[i]["resumed_from_step"] == 8 and resumed[i]["runs"] == 2
        assert all(resumed[i][key] == lone[i][key] for key in SAME_KEYS), VARIANTS[i]
        _same_checkpoints(tmp_path / "lone" / str(i), dirs[i])


def test_a_plain_run_packs_its_cells_and_records_each_as_alone(tmp_path, one_thread, monkeypatch):
    import optuna
    from optuna.trial import TrialState

    from ablate.results import ResultsStore, cell_dir
    from ablate.runs.queue import trials_by_cell
    from ablate.runs.storage import open_storage
    from ablate.runs.workers import WorkerOptions, run_grid

    for key, value in workers_kit.worker_env().items():
        if key.startswith("ABLATE_"):
            monkeypatch.setenv(key, value)
    path = workers_kit.write_grid(tmp_path, "packed", VARIANTS, max_steps=10)
    console = Console(record=True, width=250)
    runs = {}
    for pack, name in ((3, "plain"), (1, "lone")):  # a run with --pack 3 packs all 3 cells
        grid = load_grid(path, GridOverrides(results=tmp_path / name))
        ctx = RunContext(device=torch.device("cpu"), console=console, progress=False)
        assert run_grid(grid, ctx, WorkerOptions(pack=pack)) == {"done": 3}
        runs[name] = grid
    said = console.export_text()
    assert "each worker trains up to 3 cells at once" in said
    assert "evaluating 3 cells as one pack" in said  # ablate.engine.pack_evaluate
    study = optuna.load_study(study_name="packed", storage=open_storage(
        f"sqlite:///{tmp_path / 'plain' / 'packed' / 'optuna.sqlite3'}", heartbeat=False))
    trials = [t for ts in trials_by_cell(study).values() for t in ts]
    assert len(trials) == 3 and all(t.state == TrialState.COMPLETE for t in trials)
    assert all(t.user_attrs["where"]["trial"] == t.number and t.user_attrs["step"] == 10 for t in trials)
    volatile = ("wall_s", "total_wall_s", "gpu_hours", "gpu_share", "train_img_per_s", "pack")
    for variant in VARIANTS:
        a, b = (cell_dir(tmp_path / name, "packed", "fashion-mnist", variant, 0) for name in ("plain", "lone"))
        ta, tb = (json.loads((d / "train.json").read_text()) for d in (a, b))
        assert ta["pack"] == 3 and "pack" not in tb
        assert {k: v for k, v in ta.items() if k not in volatile} == {k: v for k, v in tb.items() if k not in volatile}
    frames = [ResultsStore(tmp_path / name).frame("packed").sort_values(["variant", "setting"]) for name in ("plain", "lone")]
    metric_columns = [c for c in frames[0].columns if c.startswith("moment_")]
    assert metric_columns and frames[0][metric_columns].values.tolist() == frames[1][metric_columns].values.tolist()


def test_pack_size_rule(tmp_path):
    from ablate.runs.pack_size import pack_size, size_for

    grid = load_grid(workers_kit.write_grid(tmp_path, "sizes", VARIANTS, max_steps=10), GridOverrides(results=tmp_path))
    cpu, cuda = _ctx(), torch.device("cuda")
    assert pack_size(grid, cpu, None, workers=1, unfinished=30) == 1  # CPU: one cell at a time (packing measured neutral)
    assert pack_size(grid, cpu, None, workers=2, unfinished=3, spread=True) == 1  # --workers: as launched
    assert size_for(cuda, 325.2, share=30) == 8  # the protocol model: 3 x 0.4234 GFLOP x 256 a step (bench on the H100 packed 7 at 2600)
    assert size_for(cuda, 320.0, share=3) == 3  # never more than the worker's share
    assert size_for(cuda, 3000.0, share=30) == 1  # S/2 and larger fill a step alone
    assert pack_size(grid, cpu, 5, workers=2, unfinished=3, spread=True) == 5  # --pack wins
    ddp = dataclasses.replace(grid, train=dataclasses.replace(grid.train, devices=2))
    assert pack_size(ddp, cpu, None, workers=1, unfinished=3) == 1


def test_packs_group_cells_by_backbone_learning_rate_and_resume_step(tmp_path):
    """Only cells of one dataset, backbone, training config (a variant's own rate included) and resume step share
    a pack; cells of a backbone axis or of tuned rates are dealt into several packs, not trained alone or mixed."""
    from ablate.engine.pack import resume_groups

    grid = _grid(tmp_path)
    rf, eps, edm = (dataclasses.replace(c, seed=0) for c in _cells(grid))
    cells = [rf, eps, dataclasses.replace(edm, backbone="mmdit"), dataclasses.replace(rf, seed=1, backbone="mmdit"), edm]
    assert resume_groups(grid, cells, [0] * 5) == [[0, 1, 4], [2, 3]]
    assert resume_groups(grid, cells, [0, 8, 0, 0, 8]) == [[0], [1, 4], [2, 3]]
    tuned = dataclasses.replace(grid, train=dataclasses.replace(grid.train, lr_by_variant={"eps/linear": 0.5}))
    assert resume_groups(tuned, cells, [0] * 5) == [[0, 4], [1], [2, 3]]
    ddp = dataclasses.replace(grid, train=dataclasses.replace(grid.train, devices=2))
    assert resume_groups(ddp, cells, [0] * 5) == [[0], [1], [2], [3], [4]]


def test_a_pack_trains_stacked_and_validates_and_samples_in_turn():
    """Training stacks the members' networks (flat on CUDA); validation and sampling call them in turn (EVAL_MODE:
    the stacked forms were slower on an H100, benchmarks/gpu-runs/2026-12-07e/README.md)."""
    from ablate.engine.pack import PackModule
    from ablate.engine.stack import EVAL_MODE, mode_for

    members = [train_kit.tiny_module(v) for v in ("rf", "eps/linear")]
    pack = PackModule(members, mode_for(torch.device("cuda"), members[0].net))
    assert EVAL_MODE == "loop" and pack.stack.mode == "flat" and pack.validation.stack.mode == "loop"


def test_a_pack_that_fails_before_its_first_step_trains_its_cells_alone(tmp_path, one_thread, monkeypatch):
    """A shared step that fails at once (as the vmap stack's compiled backward did on an H100, 2026-12-08: "LSE is
    not correctly aligned") trained nothing: the run says so and trains the pack's cells alone, each as a lone run
    would, and packs none of those cells again (today: every member failed, the run packed and failed the next
    round too, and needed --retry-failed --pack 1)."""
    from ablate.engine.pack import PackModule
    from ablate.results import cell_dir
    from ablate.runs.workers import WorkerOptions, run_grid

    for key, value in workers_kit.worker_env().items():
        if key.startswith("ABLATE_"):
            monkeypatch.setenv(key, value)
    tries = []

    def broken(self, *args, **kwargs):
        tries.append(len(self.members))
        raise RuntimeError("LSE is not correctly aligned (strideH)")

    variants = [*VARIANTS, "rf"]
    path = workers_kit.write_grid(tmp_path, "packed", variants, max_steps=6)
    console = Console(record=True, width=250)
    for name, pack in (("fallback", 2), ("lone", 1)):
        with monkeypatch.context() as patch:
            if name == "fallback":
                patch.setattr(PackModule, "training_step", broken)
            grid = load_grid(path, GridOverrides(results=tmp_path / name))
            ctx = RunContext(device=torch.device("cpu"), console=console, progress=False)
            assert run_grid(grid, ctx, WorkerOptions(pack=pack)) == {"done": 4}
    said = console.export_text()
    assert tries == [2] and said.count("training 2 cells as one pack") == 1  # two rounds of 2: the second alone
    assert "the pack failed before its first step (RuntimeError: LSE is not correctly aligned (strideH)); its 2 cells " \
           "train alone" in said
    for variant in variants:
        a, b = (cell_dir(tmp_path / name, "packed", "fashion-mnist", variant, 0) for name in ("fallback", "lone"))
        ta, tb = (json.loads((d / "train.json").read_text()) for d in (a, b))
        assert "pack" not in ta and ta["best_step"] == tb["best_step"] and ta["val_loss"] == tb["val_loss"]
