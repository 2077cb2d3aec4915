"""The training monitor (ablate.engine.monitor with the module's on-device loss window): a non-finite loss is
reported at the exact optimizer step it first appeared, whenever the window is read."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
import train_kit

from ablate.engine.metric_keys import TRAIN_LOSS
from ablate.engine.monitor import TrainingMonitor

BATCH = (torch.zeros(4, 1, 8, 8), torch.zeros(4, dtype=torch.long))


def run(losses: list[float], check_every: int, validate_at: tuple[int, ...] = ()) -> tuple[list, int | None]:
    """Feed ``losses`` through a module's loss window and a monitor, with the hooks in Lightning's order:
    ``losses[k]`` is the loss of training step k (run at global step k, which is k + 1 after its
    optimizer step). Returns what was logged, by global step, and the step of the error (None: none)."""
    module = train_kit.tiny_module()
    logged: list[tuple[int, str, float]] = []
    trainer = SimpleNamespace(global_step=0, max_steps=len(losses), world_size=1, state=SimpleNamespace(fn="fit"))
    module.log = lambda key, value, **kw: logged.append((trainer.global_step, key, value))  # type: ignore[method-assign]
    monitor = TrainingMonitor("test", None, check_every=check_every)
    monitor.on_train_start(trainer, module)
    try:
        for k, loss in enumerate(losses):
            module._track(torch.tensor(loss))
            trainer.global_step = k + 1
            monitor.on_train_batch_end(trainer, module, None, BATCH, k)
            if k + 1 in validate_at:
                monitor.on_validation_start(trainer, module)
    except FloatingPointError as err:
        assert str(err).endswith(f"at step {err.step}")
        return logged, err.step
    return logged, None


def test_finite_losses_are_logged_as_window_means():
    logged, bad = run([1.0, 2.0, 3.0, 4.0, 5.0, 6.0], check_every=4)
    assert bad is None
    assert logged == [(4, TRAIN_LOSS, 2.5), (6, TRAIN_LOSS, 5.5)]  # every 4 steps, and at the last step


@pytest.mark.parametrize("bad_step", [0, 3, 4, 5, 6])
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_the_first_non_finite_loss_is_reported_at_its_step(bad_step, value):
    losses = [1.0] * 9
    losses[bad_step] = value
    losses[7] = math.nan  # a later one does not hide the first
    logged, bad = run(losses, check_every=4)
    assert bad == bad_step
    assert all(step <= bad_step for step, _, _ in logged)  # raised at the first read after it, unlogged


def test_a_validation_reads_the_window_before_the_next_check():
    _, bad = run([1.0, 1.0, math.nan, 1.0, 1.0, 1.0], check_every=5, validate_at=(3,))
    assert bad == 2
    _, bad = run([1.0, 1.0, 1.0, math.nan, 1.0, 1.0], check_every=50, validate_at=(2,))
    assert bad == 3  # read at the last step
