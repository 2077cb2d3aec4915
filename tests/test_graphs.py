"""CUDA graphs of the compiled network (ablate.engine.graphs, train.cuda_graphs), on the CPU: the switch's parsing
and validation, the selection (auto: graphs on CUDA where compiled, never on the CPU), what a graphed call does on
CUDA (a new step marked, outputs cloned, one warning and the compiled call after a failure) with the device faked,
the property graphs rely on (the EMA update and a resume copy into the same parameter storage: data_ptr unchanged),
and unchanged results when the switch is on but the device is the CPU. None of this runs a CUDA graph: the
device command of ablate bench and benchmarks/pack_steps.py measures that."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import ablate  # noqa: F401  (torchvision fix first)
import lightning as L
import pytest
import torch
import train_kit
import workers_kit
import yaml
from rich.console import Console

import ablate.engine.accel as accel
import ablate.engine.graphs as graphs
import ablate.engine.stack as stack_module
from ablate.config.grid import GridOverrides, add_override_arguments, load_grid, overrides_from_args
from ablate.engine.accel import compiled_call, graphs_for, plain_call
from ablate.engine.benchmark import synthetic_info
from ablate.engine.graphs import GraphedCall, forward_fn, graphed_call
from ablate.engine.pack import PackModule
from ablate.engine.runner import RunContext, cell_module, train_cell
from ablate.engine.stack import StackedForward
from ablate.errors import ConfigError

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


class Interrupted(Exception):
    pass


def grid_file(tmp_path: Path, **train) -> Path:
    doc = yaml.safe_load(Path("grids/smoke.yaml").read_text())
    doc["train"].update(train)
    path = tmp_path / "g.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


# ---- the switch ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("value", ["auto", True, False])
def test_cuda_graphs_key_reads_auto_true_false(tmp_path, value):
    assert load_grid(grid_file(tmp_path, cuda_graphs=value)).train.cuda_graphs == value
    assert load_grid("smoke").train.cuda_graphs == "auto"  # the default


@pytest.mark.parametrize("value, words", [("maybe", ["train.cuda_graphs", "'maybe'", "one of 'auto', true, false"]),
                                          (1, ["train.cuda_graphs", "one of 'auto', true, false"])])
def test_bad_cuda_graphs_value_names_the_key_and_the_allowed_values(tmp_path, value, words):
    with pytest.raises(ConfigError) as err:
        load_grid(grid_file(tmp_path, cuda_graphs=value))
    assert all(w in str(err.value) for w in words) and "\n" not in str(err.value)


def test_cuda_graphs_true_needs_a_compiled_network(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_grid(grid_file(tmp_path, cuda_graphs=True, compile=False))
    assert all(w in str(err.value) for w in ("train.cuda_graphs", "train.compile", "allowed")), err.value
    assert load_grid(grid_file(tmp_path, cuda_graphs="auto", compile=False)).train.compile is False  # auto: fine


def test_cuda_graphs_command_line_flag():
    parser = argparse.ArgumentParser()
    add_override_arguments(parser)
    for flag, value in (("true", True), ("false", False), ("auto", "auto")):
        assert load_grid("smoke", overrides_from_args(parser.parse_args(["--cuda-graphs", flag]))).train.cuda_graphs == value
    with pytest.raises(ConfigError) as err:
        load_grid("smoke", overrides_from_args(parser.parse_args(["--cuda-graphs", "yes"])))
    assert "--cuda-graphs" in str(err.value) and "one of 'auto', true, false" in str(err.value)


# ---- the selection ---------------------------------------------------------------------------------------------

def test_graphs_on_cuda_where_compiled_never_on_the_cpu():
    assert graphs_for("auto", True, CUDA) and graphs_for(True, True, CUDA)
    assert not graphs_for("auto", True, CPU) and not graphs_for(True, True, CPU)
    assert not graphs_for("auto", False, CUDA) and not graphs_for(False, True, CUDA)
    assert graphs_for("auto", True) and not graphs_for(False, True)  # no device: each call's inputs decide
    assert forward_fn(False, True) is plain_call and forward_fn(True, False) is compiled_call
    assert forward_fn(True, True) is graphed_call


def test_a_cells_module_takes_the_switch():
    grid = load_grid("smoke")
    info = synthetic_info(grid, 1)
    off = dataclasses.replace(grid, train=dataclasses.replace(grid.train, cuda_graphs=False))
    assert cell_module(grid, "rf", info, compiled=True).graphs is True
    assert cell_module(grid, "rf", info, compiled=False).graphs is False
    assert cell_module(off, "rf", info, compiled=True).graphs is False
    assert cell_module(grid, "rf", info, compiled=True)._forward is graphed_call


# ---- a graphed call --------------------------------------------------------------------------------------------

def test_a_graphed_call_on_cuda_marks_a_step_and_clones_its_outputs(monkeypatch):
    monkeypatch.setattr(graphs, "on_cuda", lambda args: True)  # the device faked: no CUDA here
    marks = []
    monkeypatch.setattr(torch.compiler, "cudagraph_mark_step_begin", lambda: marks.append(1))
    owned = torch.arange(6.0)  # stands for memory the graph's next replay overwrites

    call = GraphedCall(lambda x: [owned * 1, owned], lambda x: pytest.fail("the plain call ran"), "a test")
    first = call(torch.zeros(1))
    assert marks == [1] and all(o.data_ptr() != owned.data_ptr() for o in first)
    owned.fill_(-1.0)  # the next replay
    assert torch.equal(first[1], torch.arange(6.0)) and not call.failed


def test_a_graph_that_fails_falls_back_to_the_compiled_call_with_one_warning(monkeypatch):
    monkeypatch.setattr(graphs, "on_cuda", lambda args: True)
    monkeypatch.setattr(graphs, "_fell_back", [])
    tries = []

    def capture(x):
        tries.append(1)
        raise RuntimeError("CUDA error: operation not permitted when stream is capturing\nmore")

    call = GraphedCall(capture, lambda x: x + 1, "the network")
    with pytest.warns(UserWarning, match="CUDA graphs of the network failed .*RuntimeError.*capturing"):
        assert torch.equal(call(torch.zeros(2)), torch.ones(2))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert torch.equal(call(torch.ones(2)), torch.full((2,), 2.0))
    assert tries == [1] and call.failed and graphs.fallbacks() == ["the network"]  # in train.json: cuda_graphs false


def test_graphs_torch_skipped_count_as_fallbacks(monkeypatch):
    from torch._dynamo.utils import counters

    monkeypatch.setattr(graphs, "_fell_back", [])
    monkeypatch.setitem(counters["inductor"], "cudagraph_skips", 0)
    assert not graphs.fell_back()
    monkeypatch.setitem(counters["inductor"], "cudagraph_skips", 2)  # torch logged why and ran them compiled
    assert graphs.fell_back() and graphs.fallbacks() == ["2 graph(s) skipped by torch"]


def test_on_the_cpu_a_graphed_call_is_the_compiled_call(monkeypatch):
    calls = []

    def compiled(net, x, t, y):
        calls.append(x.is_contiguous())
        return net(x, t, y)

    monkeypatch.setattr(graphs, "_graphed", None)
    monkeypatch.setattr(graphs, "compiled_call", compiled)
    monkeypatch.setattr(graphs, "compile_once", lambda fn, **kw: lambda *a: pytest.fail("a graph on the CPU"))
    net = lambda x, t, y: x * t.view(-1, 1) + y  # noqa: E731
    x, t = torch.randn(3, 4).t(), torch.tensor(0.5).expand(4)
    assert torch.equal(graphed_call(net, x, t, 1.0), x * 0.5 + 1.0) and calls == [True]


def test_training_and_inference_calls_replay_separate_compiled_functions(monkeypatch):
    """One function compiled first under inference_mode can break later training calls (pytorch#135892)."""
    monkeypatch.setattr(graphs, "_graphed", None)
    monkeypatch.setattr(graphs, "on_cuda", lambda args: True)
    monkeypatch.setattr(torch.compiler, "cudagraph_mark_step_begin", lambda: None)
    used = []

    def compile_once(fn, **options):
        assert options == {"mode": "reduce-overhead"}
        return lambda *a: used.append(fn.__name__) or fn(*a)

    monkeypatch.setattr(graphs, "compile_once", compile_once)
    net = lambda x, t, y: x * 2  # noqa: E731
    x = torch.ones(2, requires_grad=True)
    with torch.inference_mode():
        graphed_call(net, x, x, None)
    with torch.no_grad():
        graphed_call(net, x, x, None)
    out = graphed_call(net, x, x, None)
    out.sum().backward()  # the clone keeps the graph's gradient path
    assert torch.equal(x.grad, torch.full((2,), 2.0))
    assert used[:2] == ["_replayed_inference_call"] * 2 and used[2] == "_replayed_training_call"


def test_stacked_call_with_graphs_on_the_cpu_is_unchanged(monkeypatch):
    monkeypatch.setattr(stack_module, "compile_once", lambda fn, **kw: fn)  # compiling on the CPU costs minutes
    grid = load_grid("smoke")
    info = synthetic_info(grid, 1)
    nets = []
    for seed in range(2):
        torch.manual_seed(seed)
        nets.append(cell_module(grid, "rf", info).net)
    args = [(torch.randn(3, 1, grid.data.resolution, grid.data.resolution), torch.rand(3), torch.tensor([0, 1, 2]))
            for _ in nets]
    graphed = StackedForward(nets, "flat", compile=True, graphs=True)
    assert isinstance(graphed._call, GraphedCall)
    with torch.no_grad():
        expected = StackedForward(nets, "flat")(args)
        assert all(torch.equal(a, b) for a, b in zip(graphed(args), expected))
        monkeypatch.setattr(graphs, "on_cuda", lambda args: True)  # the graphed branch: cloned, the same values
        assert all(torch.equal(a, b) for a, b in zip(graphed(args), expected))


# ---- fixed addresses -------------------------------------------------------------------------------------------

def addresses(module: torch.nn.Module) -> dict[str, int]:
    """Storage address of every parameter and buffer of a cell's network and EMA (what a graph replays)."""
    return {name: t.data_ptr() for name, t in (*module.net.named_parameters(), *module.net.named_buffers(),
                                               *module.ema.named_parameters(prefix="ema"),
                                               *module.ema.named_buffers(prefix="ema"))}


def test_ema_update_and_load_state_dict_copy_in_place():
    grid = load_grid("smoke")
    info = synthetic_info(grid, 1)
    module, other = (cell_module(grid, "rf", info, seed=s) for s in (0, 1))
    before = addresses(module)
    for restart in (False, False, True):  # the first copy, an average, a restart
        module.ema.update_parameters(module.net, restart=restart)
    assert addresses(module) == before
    module.load_state_dict(other.state_dict())  # a resume's weights, EMA and count
    assert addresses(module) == before
    assert all(torch.equal(a, b) for a, b in zip(module.state_dict().values(), other.state_dict().values()))
    pack = PackModule([module, cell_module(grid, "rf", info, seed=2)], "loop")
    ptrs = {k: t.data_ptr() for k, t in pack.state_dict(keep_vars=True).items()}
    pack.load_state_dict({k: v.clone() + 1 if v.is_floating_point() else v for k, v in pack.state_dict().items()})
    assert {k: t.data_ptr() for k, t in pack.state_dict(keep_vars=True).items()} == ptrs  # a pack's resume too


class Addresses(L.Callback):
    """The cell's addresses before Lightning restores a checkpoint (setup), after (train start) and at the end."""

    def setup(self, trainer, module, stage):
        self.before = addresses(module)

    def on_train_start(self, trainer, module):
        self.restored, self.weights = addresses(module), {k: v.clone() for k, v in module.state_dict().items()}

    def on_train_end(self, trainer, module):
        self.end = addresses(module)


def test_a_resumed_cell_trains_in_the_storage_it_started_with(tmp_path, one_thread):
    """Lightning restores a checkpoint after ``setup`` and before training starts: into the same storage; the steps
    and EMA updates after it keep it too."""
    grid = load_grid(workers_kit.write_grid(tmp_path, variants=["rf"], max_steps=6), GridOverrides(results=tmp_path))
    grid = dataclasses.replace(grid, train=dataclasses.replace(grid.train, val_every=3))
    cell = grid.cells()[0]

    def ctx(*callbacks):
        return RunContext(device=CPU, console=Console(quiet=True), progress=False, callbacks=list(callbacks))

    with pytest.raises(Interrupted):
        train_cell(grid, cell, ctx(train_kit.InterruptAt(4, Interrupted)), tmp_path / "c")
    checkpoint = torch.load(tmp_path / "c" / "checkpoints" / "last.ckpt", weights_only=False)
    assert checkpoint["global_step"] == 3
    spy = Addresses()
    train_cell(grid, cell, ctx(spy), tmp_path / "c")
    assert spy.weights.keys() == checkpoint["state_dict"].keys()
    assert all(torch.equal(spy.weights[k], checkpoint["state_dict"][k]) for k in spy.weights)  # it was restored ...
    assert spy.restored == spy.before  # ... in place
    assert spy.end == spy.before  # and trained and EMA-averaged in place


# ---- the switch on, the device the CPU --------------------------------------------------------------------------

def test_results_are_unchanged_with_the_switch_on_on_the_cpu(tmp_path, monkeypatch, one_thread):
    """One cell trained compiled with cuda_graphs true and false on the CPU: the same weights, bit for bit, and no
    graph made (compiled_call stands in for torch.compile, which costs minutes on this CPU)."""
    monkeypatch.setattr(accel, "_compiled", accel.plain_call)
    monkeypatch.setattr(graphs, "_graphed", None)
    monkeypatch.setattr(graphs, "compile_once", lambda fn, **kw: lambda *a: pytest.fail("a graph on the CPU"))
    states = {}
    for value in (True, False):
        grid = load_grid(workers_kit.write_grid(tmp_path, variants=["rf"], max_steps=4), GridOverrides(results=tmp_path))
        grid = dataclasses.replace(grid, train=dataclasses.replace(grid.train, compile=True, cuda_graphs=value, val_every=2))
        ctx = RunContext(device=CPU, console=Console(quiet=True), progress=False)
        summary = train_cell(grid, grid.cells()[0], ctx, tmp_path / str(value))
        assert summary["compiled"] is True and summary["cuda_graphs"] is False
        states[value] = torch.load(tmp_path / str(value) / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    assert states[True].keys() == states[False].keys()
    assert all(torch.equal(states[True][k], states[False][k]) for k in states[True])
