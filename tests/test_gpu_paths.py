"""The GPU-only code paths, exercised on the CPU where torch allows it (issue 9).

On CUDA ablate trains with bf16-mixed precision, a fused AdamW, its own gradient clipping, a
compiled network and no host-device synchronisation inside a step. The CPU can run every one of
those pieces when they are selected explicitly, so a crash like the one Lightning raised at the
first GPU optimizer step ("does not allow for gradient clipping ... fused optimizer") fails here.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

import ablate  # noqa: F401  -- first: its torchvision fix must precede Lightning's import
import lightning as L
import torch
from rich.console import Console
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from ablate.engine.accel import compile_for, compiled_call, fused_adamw, gpu_hours, precision_for
from ablate.engine.benchmark import synthetic_info, synthetic_splits
from ablate.config.grid import load_grid
from ablate.models.dit import DiT, DiTConfig
from ablate.engine.batches import LatentDataModule
from ablate.engine.ema import EMA
from ablate.engine.runner import RunContext, cell_module, make_trainer
from ablate.engine.train import DiffusionModule


def tiny_grid(**train):
    grid = load_grid("smoke")
    base = dict(max_steps=6, batch_size=8, val_every=3, warmup_steps=2, precision="bf16-mixed", grad_clip=1e-3)
    return dataclasses.replace(grid, train=dataclasses.replace(grid.train, **{**base, **train}),
                               data=dataclasses.replace(grid.data, val_size=8))


class GradSpy(L.Callback):
    """Gradient norms before ablate clips them (callback hooks run before the module's) and after
    (an optimizer step post-hook: Lightning runs the closure inside ``optimizer.step``, so only then are
    the gradients there; the update leaves them as clipping left them)."""

    def __init__(self) -> None:
        self.before: list[float] = []
        self.after: list[float] = []

    @staticmethod
    def norm(module: torch.nn.Module) -> float:
        return float(torch.linalg.vector_norm(torch.stack([p.grad.float().norm() for p in module.parameters()
                                                           if p.grad is not None])))

    def on_train_start(self, trainer, pl_module) -> None:
        trainer.optimizers[0].register_step_post_hook(lambda *_: self.after.append(self.norm(pl_module.net)))

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        self.before.append(self.norm(pl_module.net))


def fit(grid, tmp_path: Path, variant: str = "rf", fused: bool | None = True, callbacks=()) -> DiffusionModule:
    info = synthetic_info(grid, 1)
    ctx = RunContext(device=torch.device("cpu"), console=Console(quiet=True), progress=False, fused=fused)
    trainer, _, _ = make_trainer(grid, ctx, tmp_path, "test", extra_callbacks=tuple(callbacks))
    module = cell_module(grid, variant, info, fused=fused)
    data = LatentDataModule(synthetic_splits(info, 64, 16), grid.train.batch_size, grid.data.val_size, 0)
    trainer.fit(module, datamodule=data)
    return module


def test_fused_adamw_under_bf16_mixed_with_clipping_trains_and_clips(tmp_path):
    """Lightning's own clipping refuses this combination; ablate clips before the fused step."""
    spy = GradSpy()
    module = fit(tiny_grid(), tmp_path, callbacks=[spy])
    assert module.fused_used is True and module.trainer.precision == "bf16-mixed"
    assert len(spy.before) == len(spy.after) == 6
    assert max(spy.before) > 1e-2  # clipping had something to do ...
    assert max(spy.after) <= 1e-3 * (1 + 1e-3)  # ... and did it before every optimizer step
    assert (tmp_path / "checkpoints" / "best.ckpt").is_file()


def test_no_clipping_when_grad_clip_is_null(tmp_path):
    spy = GradSpy()
    fit(tiny_grid(grad_clip=None), tmp_path, callbacks=[spy])
    assert spy.before == pytest.approx(spy.after) and max(spy.after) > 1e-2


def test_a_training_step_never_synchronises_host_and_device(tmp_path, monkeypatch):
    """Every way a tensor's value reaches Python is a host sync on CUDA; none may happen in a step."""
    reads: list[str] = []
    module_step = DiffusionModule.training_step
    clip = DiffusionModule.on_before_optimizer_step

    def watched(method):
        def run(self, *args, **kwargs):
            saved = {name: getattr(torch.Tensor, name) for name in ("__bool__", "item", "__float__", "__int__", "tolist")}

            def spy(name):
                def read(tensor, *a, **k):
                    reads.append(name)
                    return saved[name](tensor, *a, **k)
                return read

            for name in saved:
                monkeypatch.setattr(torch.Tensor, name, spy(name))
            try:
                return method(self, *args, **kwargs)
            finally:
                for name, fn in saved.items():
                    monkeypatch.setattr(torch.Tensor, name, fn)
        return run

    monkeypatch.setattr(DiffusionModule, "training_step", watched(module_step))
    monkeypatch.setattr(DiffusionModule, "on_before_optimizer_step", watched(clip))
    fit(tiny_grid(), tmp_path, variant="edm(-1.20, 1.20)")
    assert reads == []


def test_a_non_finite_loss_names_its_exact_step(tmp_path, monkeypatch):
    """Losses are checked on the device and read every CHECK_EVERY steps; the error names the step."""
    import ablate.engine.monitor as monitor

    monkeypatch.setattr(monitor, "CHECK_EVERY", 4)
    real = DiffusionModule.training_step

    def poisoned(self, batch, batch_idx):
        loss = real(self, batch, batch_idx)
        return loss * float("nan") if self.global_step == 5 else loss

    monkeypatch.setattr(DiffusionModule, "training_step", poisoned)
    real_track = DiffusionModule._track
    monkeypatch.setattr(DiffusionModule, "_track", lambda self, loss: real_track(
        self, loss * float("nan") if self.global_step == 5 else loss))
    with pytest.raises(FloatingPointError, match=r"at step 5\b"):
        fit(tiny_grid(max_steps=12, val_every=12, grad_clip=None), tmp_path, fused=False)


def test_ema_matches_torch_averaged_model_bit_for_bit():
    net = DiT(DiTConfig(input_size=8, in_channels=1, patch_size=4, hidden_size=16, depth=1, num_heads=2, num_classes=3))
    ours, theirs = EMA(net, 0.9), AveragedModel(net, multi_avg_fn=get_ema_multi_avg_fn(0.9), use_buffers=True)
    for step in range(4):
        with torch.no_grad():
            for p in net.parameters():
                p.add_(torch.randn_like(p))
        ours.update_parameters(net)
        theirs.update_parameters(net)
        for a, b in zip(ours.module.parameters(), theirs.module.parameters()):
            assert torch.equal(a, b), step
    assert int(ours.n_averaged) == int(theirs.n_averaged) == 4
    assert set(ours.state_dict()) == set(theirs.state_dict())
    # a loaded EMA continues from the stored count (no copy-over on its next update)
    fresh = EMA(net, 0.9)
    fresh.load_state_dict(ours.state_dict())
    fresh.update_parameters(net)
    ours.update_parameters(net)
    assert all(torch.equal(a, b) for a, b in zip(fresh.module.parameters(), ours.module.parameters()))


def _random_dit(stream: bool) -> DiT:
    torch.manual_seed(0)
    net = DiT(DiTConfig(input_size=16, in_channels=1, patch_size=4, hidden_size=32, depth=2, num_heads=2,
                        num_classes=3, autocast_stream=stream))
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.05)
    return net


def test_autocast_stream_carries_the_residual_in_bf16_and_changes_nothing_without_autocast():
    x, t, y = torch.randn(4, 1, 16, 16), torch.rand(4), torch.tensor([0, 1, 2, 3])
    on, off = _random_dit(True), _random_dit(False)
    assert torch.equal(on(x, t, y), off(x, t, y))  # fp32: identical
    seen = []
    on.blocks[1].register_forward_pre_hook(lambda m, args: seen.append(args[0].dtype))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = on(x, t, y)
    assert seen == [torch.bfloat16]
    ref = off(x, t, y)
    assert (low.float() - ref).norm() / ref.norm() < 3e-2  # bf16 rounding, not a different function


def test_one_compiled_forward_serves_every_network_of_an_architecture():
    """Raw and EMA weights, and every cell of a worker, share the graphs compiled once."""
    import torch._dynamo.utils as dynamo_utils

    x, t, y = torch.randn(4, 1, 16, 16), torch.rand(4), torch.tensor([0, 1, 2, 3])
    before = dynamo_utils.counters["stats"]["unique_graphs"]
    for seed in range(2):
        net = _random_dit(True)
        with torch.no_grad():
            for p in net.parameters():
                p.mul_(1 + seed)
            assert torch.allclose(compiled_call(net, x, t, y), net(x, t, y), atol=1e-5)
    assert dynamo_utils.counters["stats"]["unique_graphs"] - before == 1
    # an expanded t (validation: one level for the whole batch) reuses the same graph
    with torch.no_grad():
        compiled_call(net, x, torch.tensor(0.3).expand(4), y)
    assert dynamo_utils.counters["stats"]["unique_graphs"] - before == 1


def test_accelerator_policy():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert precision_for("auto", cuda) == "bf16-mixed" and precision_for("auto", cpu) == "32-true"
    assert precision_for("16-mixed", cpu) == "16-mixed"
    assert compile_for("auto", cuda) and not compile_for("auto", cpu) and compile_for(True, cpu)
    assert fused_adamw("bf16-mixed", cuda) and not fused_adamw("16-mixed", cuda) and not fused_adamw("32-true", cpu)
    assert gpu_hours(3600, cuda, share=0.25, gpus=2) == 0.5 and gpu_hours(3600, cpu) == 0.0
