"""Packed sampling (ablate.engine.pack_sampling, pack_evaluate): the cells of a pack sample a setting through one
stacked call per solver step, and each gets, bit for bit on the CPU, the samples it draws alone; a member whose
solver fails mid-setting fails alone; a pack's records are the records its cells write alone."""

from __future__ import annotations

import dataclasses
import json
from types import SimpleNamespace

import ablate  # noqa: F401  (torchvision fix first)
import pytest
import torch
import train_kit
import workers_kit  # noqa: F401  (registers the test-moments scorer)
from rich.console import Console

from ablate.config.grid import GridOverrides, load_grid
from ablate.config.setting import Setting
from ablate.engine.evaluate import Prompts, generate
from ablate.engine.pack_sampling import PackSampler

VARIANTS = ["rf/lognorm(0.00, 1.00)", "eps/linear", "edm(-1.20, 1.20)"]
SETTINGS = [Setting(steps=3, cfg=2.0, weights="ema"), Setting(steps=2, cfg=1.0, time_grid="rf", weights="raw")]
INFO = SimpleNamespace(num_classes=3)  # all that sampling reads of a dataset's info
N, BATCH = 10, 4  # a partial last batch


def _modules():
    modules = []
    for k, variant in enumerate(VARIANTS):
        module = train_kit.tiny_module(variant, seed=k)
        g = torch.Generator().manual_seed(k)
        with torch.no_grad():  # DiT's output layer starts at zero: give raw and EMA weights distinct random values
            for p in [*module.net.parameters(), *module.ema.module.parameters()]:
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)
        modules.append(module)
    return modules


def _prompts(seed: int) -> Prompts:
    g = torch.Generator().manual_seed(100 + seed)
    labels = torch.randint(0, 3, (N,), generator=g)
    return Prompts(labels, labels, [""] * N, torch.randn(N, 1, 8, 8, generator=g))


def _alone(module, setting, prompts):
    net = module.net if setting.weights == "raw" else module.ema.module
    return generate(net, module.formulation, INFO, prompts, setting.steps, setting.cfg, setting.time_grid, BATCH,
                    torch.device("cpu"))


@pytest.mark.parametrize("mode", ["flat", "loop"])
def test_packed_samples_are_each_cells_own(one_thread, mode):
    modules = _modules()
    prompts = {k: _prompts(k) for k in range(len(modules))}
    sampler = PackSampler(modules, mode)
    for setting in SETTINGS:
        packed = sampler.generate([0, 1, 2], setting, prompts, INFO, BATCH, torch.device("cpu"), pytest.fail)
        assert sorted(packed) == [0, 1, 2]
        for k, module in enumerate(modules):
            samples, nfe = _alone(module, setting, prompts[k])
            assert packed[k][1] == nfe and packed[k][0].shape == (N, 1, 8, 8)
            assert torch.equal(packed[k][0], samples), (VARIANTS[k], setting.key)
            assert samples.std() > 0.05  # not a trivial equality of zeros
    part = sampler.generate([2, 0], SETTINGS[0], prompts, INFO, BATCH, torch.device("cpu"), pytest.fail)
    assert sorted(part) == [0, 2] and torch.equal(part[2][0], _alone(modules[2], SETTINGS[0], prompts[2])[0])


@pytest.mark.parametrize("mode", ["flat", "loop"])
def test_a_member_failing_mid_sampling_fails_alone(one_thread, monkeypatch, mode):
    modules = _modules()
    prompts = {k: _prompts(k) for k in range(len(modules))}
    broken, calls = modules[1].formulation, []
    estimates = type(broken).estimates

    def fail_on_second_batch(self, *args, **kwargs):
        if self is broken:
            calls.append(1)
            if len(calls) > SETTINGS[0].steps:  # the first step of the second batch
                raise RuntimeError("solver broke")
        return estimates(self, *args, **kwargs)

    monkeypatch.setattr(type(broken), "estimates", fail_on_second_batch)
    failed = []
    packed = PackSampler(modules, mode).generate([0, 1, 2], SETTINGS[0], prompts, INFO, BATCH, torch.device("cpu"),
                                                 lambda k, err: failed.append((k, str(err))))
    assert failed == [(1, "solver broke")] and sorted(packed) == [0, 2]
    monkeypatch.setattr(type(broken), "estimates", estimates)
    for k in (0, 2):
        assert torch.equal(packed[k][0], _alone(modules[k], SETTINGS[0], prompts[k])[0]), VARIANTS[k]


class Interrupted(BaseException):
    """A kill: not an Exception, so it stops the whole pack (as a signal's KeyboardInterrupt does)."""


def _trained(tmp_path):
    """Three cells (seeds 0, 1, 0: their own prompts and noise) trained as a pack, and each evaluated alone from the
    same checkpoints into another results directory ("lone")."""
    from ablate.engine.pack_train import train_pack
    from ablate.engine.runner import RunContext, evaluate_cell

    path = workers_kit.write_grid(tmp_path, "evalpack", VARIANTS, max_steps=4,
                                  settings="[{steps: 2, cfg: 2.0}, {steps: 3, cfg: 1.0}]")
    grids = {name: dataclasses.replace(load_grid(path, GridOverrides(results=tmp_path / name)), seeds=(0, 1))
             for name in ("pack", "lone")}
    ctx = RunContext(device=torch.device("cpu"), console=Console(quiet=True), progress=False)
    cells = [grids["pack"].cells()[i] for i in (0, 4, 2)]
    assert [(c.variant, c.seed) for c in cells] == list(zip(VARIANTS, (0, 1, 0)))
    settings = grids["pack"].eval.all_settings()
    dirs = {name: [tmp_path / name / "cells" / str(k) for k in range(len(cells))] for name in grids}
    summaries = train_pack(grids["pack"], cells, ctx, dirs["pack"], lambda k, err: pytest.fail(str(err)))
    for k, cell in enumerate(cells):
        dirs["lone"][k].mkdir(parents=True)
        (dirs["lone"][k] / "checkpoints").symlink_to(dirs["pack"][k] / "checkpoints")
        assert evaluate_cell(grids["lone"], cell, ctx, dirs["lone"][k], summaries[k], settings) == "done"
    return SimpleNamespace(grids=grids, ctx=ctx, cells=cells, settings=settings, dirs=dirs,
                           summaries=[summaries[k] for k in range(len(cells))])


def _same_records(tmp_path, t, packs: dict, missing=()) -> None:
    """Every packed record (but the ``missing`` (member, setting index)) is the lone one but its timing, with
    ``eval.pack`` as ``packs[(member, setting index)]``, and so is its preview."""
    from ablate.results import ResultsStore

    stores = {name: ResultsStore(tmp_path / name) for name in t.grids}
    volatile = ("eval", "created", "config")
    for k, cell in enumerate(t.cells):
        for j, setting in enumerate(t.settings):
            packed = stores["pack"].record_path(cell, setting)
            if (k, j) in missing:
                assert not packed.exists()
                continue
            a, b = json.loads(packed.read_text()), json.loads(stores["lone"].record_path(cell, setting).read_text())
            assert {key: v for key, v in a.items() if key not in volatile} == \
                   {key: v for key, v in b.items() if key not in volatile}, (VARIANTS[k], setting.key)
            assert a["eval"]["pack"] == packs[(k, j)] and "pack" not in b["eval"], (k, j)
            assert stores["pack"].preview_path(cell, setting).read_bytes() == \
                   stores["lone"].preview_path(cell, setting).read_bytes()


def test_a_packs_records_are_its_cells_records_alone_and_a_failing_member_leaves_them(tmp_path, one_thread, monkeypatch):
    """evaluate_pack against evaluate_cell on the same trained cells: every record equal but its timing; a member
    whose sampling fails fails alone, with no done.json, and its pack-mates' records are still their own."""
    import ablate.engine.pack_sampling as pack_sampling
    from ablate.engine.pack_evaluate import evaluate_pack

    t = _trained(tmp_path)
    solver = pack_sampling.euler_calls

    def breaking(formulation, *args, **kwargs):  # eps/linear's solver fails in the second setting
        calls = solver(formulation, *args, **kwargs)
        if formulation.prediction.name == "eps" and kwargs["steps"] == t.settings[1].steps:
            next(calls)
            raise RuntimeError("solver broke")
        return calls

    monkeypatch.setattr(pack_sampling, "euler_calls", breaking)
    failed = []
    done = evaluate_pack(t.grids["pack"], t.cells, t.ctx, t.dirs["pack"], t.summaries, [t.settings] * 3,
                         lambda k, err: failed.append((k, str(err))))
    assert failed == [(1, "solver broke")], failed
    assert done == [0, 2], done
    assert [(d / "done.json").exists() for d in t.dirs["pack"]] == [True, False, True]
    _same_records(tmp_path, t, {(0, 0): 3, (1, 0): 3, (2, 0): 3, (0, 1): 2, (2, 1): 2}, missing={(1, 1)})


def test_a_killed_pack_evaluation_resumes_with_each_cells_missing_records(tmp_path, one_thread, monkeypatch):
    """A pack killed between two records' writes resumes each cell at its own missing settings (as claim_directory
    finds them): the cells missing a setting sample it together, and every record is the lone one."""
    import ablate.engine.pack_evaluate as pack_evaluate
    from ablate.results import ResultsStore

    t = _trained(tmp_path)
    write, written = pack_evaluate.write_setting_record, []

    def killed_at_fifth(*args, **kwargs):
        if len(written) == 4:
            raise Interrupted
        written.append(1)
        return write(*args, **kwargs)

    monkeypatch.setattr(pack_evaluate, "write_setting_record", killed_at_fifth)
    fail = lambda k, err: pytest.fail(f"member {k} failed: {err}")  # noqa: E731
    with pytest.raises(Interrupted):
        pack_evaluate.evaluate_pack(t.grids["pack"], t.cells, t.ctx, t.dirs["pack"], t.summaries, [t.settings] * 3, fail)
    assert not any((d / "done.json").exists() for d in t.dirs["pack"])
    monkeypatch.setattr(pack_evaluate, "write_setting_record", write)
    store = ResultsStore(tmp_path / "pack")
    missing = [list(store.faults(cell, t.settings)) for cell in t.cells]
    assert missing == [[], [t.settings[1]], [t.settings[1]]]
    assert pack_evaluate.evaluate_pack(t.grids["pack"], t.cells, t.ctx, t.dirs["pack"], t.summaries, missing, fail) == [0, 1, 2]
    assert all((d / "done.json").exists() for d in t.dirs["pack"])
    _same_records(tmp_path, t, {(0, 0): 3, (1, 0): 3, (2, 0): 3, (0, 1): 3, (1, 1): 2, (2, 1): 2})


def test_the_bench_times_a_packs_validation_and_sampling_against_its_members_alone(tmp_path, one_thread):
    """ablate bench's rows (GPU only there); on the CPU the pack's numbers and samples are its members' exactly."""
    from ablate.engine import benchmark as B
    from ablate.engine.pack_eval_bench import packed_sampling_times, packed_validation_times

    grid = load_grid(workers_kit.write_grid(tmp_path, "bench", VARIANTS, max_steps=4), GridOverrides(results=tmp_path))
    grid = dataclasses.replace(grid, data=dataclasses.replace(grid.data, val_size=300))  # two batches, the last partial
    info = B.synthetic_info(grid, 1)
    v = packed_validation_times(grid, info, torch.device("cpu"), 2)
    assert (v["k"], v["items"], v["batches"], v["max_rel_diff"]) == (2, 300, 2, 0.0) and v["pack_s"] > 0
    assert v["member_rel_spread"] > 1e-3  # the members differ: their agreement with the pack is not a trivial one
    s = packed_sampling_times(grid, info, torch.device("cpu"), 2)
    assert (s["setting"], s["num_samples"], s["max_abs_diff"]) == ("4steps-cfg2.0-own-ema", 16, 0.0) and s["lone_s"] > 0
    assert s["sample_sd"] > 0.05  # not zeros: a network returning 0 everywhere would make any two paths agree
