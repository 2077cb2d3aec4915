"""The stacked call of K networks (ablate.engine.stack), generic over backbones: each network gets its own output
and its own gradients. The flat mode (one network on K x B samples, a batched matmul per Linear) is bit-identical
to the networks alone on this CPU, forward and gradients, for the DiT and another backbone. Under vmap every op of
a conv-free backbone without affine norms is bit-identical too; a DiT's patch convolution becomes one grouped
convolution there, which rounds differently, and the vmapped DiT agrees to rounding."""

from __future__ import annotations

import ablate  # noqa: F401  (torchvision fix first)
import pytest
import torch
from torch import nn

from ablate.engine.stack import StackedForward
from ablate.models.dit import DiT, DiTConfig

K, B = 3, 8


class MLPBackbone(nn.Module):
    """A conv-free backbone with DiT's interface: x (B, C, H, W), t (B,), y labels (B,) -> same shape."""

    def __init__(self, affine: bool = False) -> None:
        super().__init__()
        self.inp, self.cls, self.out = nn.Linear(64, 32), nn.Embedding(4, 32), nn.Linear(32, 64)
        self.norm = nn.LayerNorm(32, elementwise_affine=affine)  # (an affine one rounds differently under vmap)

    def forward(self, x, t, y):  # type: ignore[no-untyped-def]
        h = self.inp(x.flatten(1)) + self.cls(y) + t[:, None]
        return self.out(torch.nn.functional.gelu(self.norm(h))).view_as(x)


class LearnedPosition(nn.Module):
    """A parameter outside the leaf modules (a learned embedding used directly): no flat mode."""

    def __init__(self) -> None:
        super().__init__()
        self.pos = nn.Parameter(torch.zeros(64))
        self.out = nn.Linear(64, 64)

    def forward(self, x, t, y):  # type: ignore[no-untyped-def]
        return self.out(x.flatten(1) + self.pos).view_as(x)


def _inputs(dtype=torch.float32):
    g = torch.Generator().manual_seed(0)
    return [(torch.randn(B, 1, 8, 8, generator=g, dtype=dtype), torch.rand(B, generator=g, dtype=dtype),
             torch.randint(0, 3, (B,), generator=g)) for _ in range(K)]


def _nets(make, dtype=torch.float32):
    nets = []
    for k in range(K):
        torch.manual_seed(k)
        net = make().to(dtype)
        with torch.no_grad():
            for p in net.parameters():
                p.normal_(0, 0.1)  # DiT zero-initialises its output layers: give every weight a value
        nets.append(net)
    return nets


def _run(nets, mode, args):
    for net in nets:
        net.zero_grad(set_to_none=True)
    outs = StackedForward(nets, mode)(args)
    torch.stack([o.square().mean() for o in outs]).sum().backward()
    return [o.detach() for o in outs], [[p.grad.clone() for p in net.parameters()] for net in nets]


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_a_conv_free_backbone_is_bit_identical_under_vmap():
    nets, args = _nets(MLPBackbone), _inputs()
    (lo, lg), (vo, vg) = _run(nets, "loop", args), _run(nets, "vmap", args)
    assert all(torch.equal(a, b) for a, b in zip(lo, vo))
    assert all(torch.equal(a, b) for ga, gb in zip(lg, vg) for a, b in zip(ga, gb))
    assert not torch.equal(vo[0], vo[1])  # each network its own output


@pytest.mark.parametrize("dtype,tolerance", [(torch.float32, 1e-5), (torch.float64, 1e-12)])
def test_a_stacked_dit_agrees_with_its_networks_alone(dtype, tolerance):
    config = DiTConfig(input_size=8, in_channels=1, patch_size=4, hidden_size=32, depth=2, num_heads=2, num_classes=3)
    nets, args = _nets(lambda: DiT(config), dtype), _inputs(dtype)
    (lo, lg), (vo, vg) = _run(nets, "loop", args), _run(nets, "vmap", args)
    for a, b in zip(lo, vo):
        assert torch.linalg.vector_norm(a - b) <= tolerance * torch.linalg.vector_norm(a)
    for ga, gb in zip(lg, vg):
        for a, b in zip(ga, gb):
            assert torch.linalg.vector_norm(a - b) <= tolerance * max(float(torch.linalg.vector_norm(a)), 1e-30) + 1e-30


DIT = DiTConfig(input_size=8, in_channels=1, patch_size=4, hidden_size=32, depth=2, num_heads=2, num_classes=3)


@pytest.mark.parametrize("make", [lambda: DiT(DIT), lambda: MLPBackbone(affine=True)], ids=["dit", "mlp-affine-norm"])
def test_the_flat_stack_is_bit_identical_to_its_networks_alone(make):
    nets, args = _nets(make), _inputs()
    (lo, lg), (fo, fg) = _run(nets, "loop", args), _run(nets, "flat", args)
    assert all(torch.equal(a, b) for a, b in zip(lo, fo))
    assert all(torch.equal(a, b) for ga, gb in zip(lg, fg) for a, b in zip(ga, gb))
    assert not torch.equal(fo[0], fo[1])


@pytest.mark.parametrize("name", ["dit", "mmdit", "crossdit", "uvit"])
def test_every_caption_conditioned_backbone_stacks_flat(name):
    """Every backbone with its jointly trained text encoder (issue 28's grid) lies in leaf modules, so a pack on the
    GPU takes the flat stack (the vmap stack's compiled backward failed on an H100 for all of them, 2026-12-08:
    "LSE is not correctly aligned"), and the flat stack gives each network its own output, exactly, and its own
    gradients (to float32 rounding: at these shapes the batched matmul of the output layer's weight gradient sums in
    another order, up to 3e-8 of weights' gradients of 0.01-0.35)."""
    from test_backbones import CTX_LEN, encoder_network

    from ablate.engine.stack import mode_for

    nets = _nets(lambda: encoder_network(name))
    assert mode_for(torch.device("cuda"), nets[0]) == "flat"
    g = torch.Generator().manual_seed(0)
    args = [(torch.randn(B, 2, 8, 8, generator=g), torch.rand(B, generator=g),
             torch.randint(0, 20, (B, CTX_LEN), generator=g)) for _ in range(K)]
    (lo, lg), (fo, fg) = _run(nets, "loop", args), _run(nets, "flat", args)
    assert all(torch.equal(a, b) for a, b in zip(lo, fo))
    assert all(torch.allclose(a, b, rtol=1e-6, atol=1e-7) for ga, gb in zip(lg, fg) for a, b in zip(ga, gb))
    assert not torch.equal(fo[0], fo[1]) and not torch.allclose(lg[0][0], lg[1][0])


def test_a_parameter_outside_the_leaf_modules_takes_the_vmap_mode():
    from ablate.engine.stack import flat_supported, mode_for

    assert flat_supported(DiT(DIT)) and not flat_supported(LearnedPosition())
    assert mode_for(torch.device("cuda"), LearnedPosition()) == "vmap" and mode_for(torch.device("cuda"), DiT(DIT)) == "flat"
    assert mode_for(torch.device("cpu"), DiT(DIT)) == "loop"
    with pytest.raises(ValueError, match="outside its leaf modules"):
        StackedForward([LearnedPosition(), LearnedPosition()], "flat")
    nets, args = _nets(LearnedPosition), _inputs()
    (lo, _), (vo, _) = _run(nets, "loop", args), _run(nets, "vmap", args)
    assert all(torch.allclose(a, b, rtol=1e-5, atol=1e-6) for a, b in zip(lo, vo))


def test_networks_of_two_architectures_do_not_stack():
    config = DiTConfig(input_size=8, in_channels=1, patch_size=4, hidden_size=32, depth=1, num_heads=2, num_classes=3)
    with pytest.raises(ValueError, match="one architecture"):
        StackedForward([DiT(config), MLPBackbone()], "vmap")
