"""The EMA of the weights (ablate.engine.ema, and its cadence in ablate.engine.train): every ``every`` optimizer steps
with ``decay``, the first update copying, and its state carried by checkpoints."""

from __future__ import annotations

import ablate  # noqa: F401  (torchvision fix first)
import lightning as L
import torch
import train_kit

from ablate.engine.ema import EMA


class Snapshots(L.Callback):
    """The raw weights after every optimizer step, by step."""

    def __init__(self) -> None:
        self.at: dict[int, list[torch.Tensor]] = {}

    def on_train_batch_end(self, trainer, pl_module, *args) -> None:  # type: ignore[no-untyped-def]
        self.at[trainer.global_step] = [p.detach().clone() for p in pl_module.net.parameters()]


def test_updates_every_few_steps_with_the_decay_the_first_copying():
    torch.manual_seed(0)
    module, snaps = train_kit.tiny_module(every=3, decay=0.8), Snapshots()
    train_kit.bare_trainer(8, [snaps]).fit(module, datamodule=train_kit.random_data())
    assert int(module.ema.n_averaged) == 2  # steps 3 and 6 of 8
    want = [0.8 * a + 0.2 * b for a, b in zip(snaps.at[3], snaps.at[6])]
    for got, expected, last in zip(module.ema.module.parameters(), want, snaps.at[8]):
        assert torch.allclose(got, expected, rtol=1e-6, atol=1e-7)
        assert not torch.equal(got, last)  # not simply the current weights
    assert all(not p.requires_grad for p in module.ema.parameters())


def test_integer_buffers_are_copied_once_and_floating_ones_averaged():
    net = torch.nn.Module()
    net.w = torch.nn.Parameter(torch.tensor([1.0]))
    net.register_buffer("count", torch.tensor([5]))
    ema = EMA(net, 0.5)
    ema.update_parameters(net)  # copy
    with torch.no_grad():
        net.w.fill_(3.0)
        net.count.fill_(9)
    ema.update_parameters(net)
    assert float(ema.module.w.detach()) == 2.0 and int(ema.module.count) == 5 and int(ema.n_averaged) == 2


def test_ema_state_travels_in_the_module_state_and_continues_after_loading():
    torch.manual_seed(0)
    a = train_kit.tiny_module(every=1, decay=0.9)
    train_kit.bare_trainer(3).fit(a, datamodule=train_kit.random_data())
    b = train_kit.tiny_module(every=1, decay=0.9)
    b.load_state_dict(a.state_dict())
    assert int(b.ema.n_averaged) == 3
    for m in (a, b):  # one more update from the same raw weights: averaging, not a fresh copy
        m.ema.update_parameters(a.net)
    for x, y, raw in zip(a.ema.module.parameters(), b.ema.module.parameters(), a.net.parameters()):
        assert torch.equal(x, y) and not torch.equal(x, raw)
