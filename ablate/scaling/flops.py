"""Training FLOPs per image, measured on a real step and checked against the DiT-paper formula.

Convention: one multiply-add is 2 FLOPs, as :class:`torch.utils.flop_counter.FlopCounterMode`
counts and as scaling-law papers count compute (C ~ 6 N D). The DiT paper's GFLOPs
(:meth:`ablate.models.dit.DiTConfig.flops`) count a multiply-add as 1 FLOP and the forward pass
only; :func:`formula_train_flops` turns them into training FLOPs: 2 x (3 x forward), less the
input-gradient products autograd skips (the patch convolution and the first timestep-MLP and
text-projection layers, whose inputs need no gradient), plus the attention scores Q K^T that the
fused attention backward computes again (one n^2 x width product per block; the counter sees it).
Only matmuls, convolutions and attention count (no norms, activations or optimizer), in both.
"""

from __future__ import annotations

import functools
import json

import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

from ablate.models.dit import FREQUENCY_EMBEDDING_SIZE, DiT, DiTConfig
from ablate.models.network import NetworkConfig, build_network

FORMULA_TOLERANCE = 0.001  # measured vs formula: they count the same products


def _cpu_attention(query_shape, key_shape, value_shape, *args, **kwargs) -> int:  # noqa: ANN001
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def _cpu_attention_backward(grad_out_shape, query_shape, key_shape, value_shape, *args, **kwargs) -> int:  # noqa: ANN001
    return sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)


# torch's counter knows the CUDA attention kernels but not the CPU one; count it the same way
_EXTRA = {
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_attention,
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward: _cpu_attention_backward,
}


def measure_train_flops(config: DiTConfig, batch: int = 2) -> float:
    """Training FLOPs per image counted on one real forward + backward step on the CPU."""
    return _measure(tuple(sorted(config.to_dict().items())), batch)


@functools.lru_cache(maxsize=None)
def _measure(key: tuple, batch: int) -> float:
    config = DiTConfig(**dict(key))
    gen = torch.Generator().manual_seed(0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = DiT(config)
    x = torch.randn(batch, config.in_channels, config.input_size, config.input_size, generator=gen)
    t = torch.rand(batch, generator=gen)
    labels = torch.randint(0, config.num_classes + 1, (batch,), generator=gen) if config.num_classes else None
    text = torch.randn(batch, config.cond_dim, generator=gen) if config.cond_dim else None
    y = (labels, text) if labels is not None and text is not None else (labels if labels is not None else text)
    with FlopCounterMode(display=False, custom_mapping=_EXTRA) as counter:
        loss = ((net(x, t, y) - x) ** 2).mean()
        loss.backward()
    return counter.get_total_flops() / batch


def formula_train_flops(config: DiTConfig) -> float:
    """Training FLOPs per image from the DiT-paper forward count (see module doc)."""
    parts = config.flops()
    no_input_grad = parts["patch_embed"] + (FREQUENCY_EMBEDDING_SIZE + config.cond_dim) * config.hidden_size
    recomputed_scores = parts["attention_matmuls"] // 2  # Q K^T once more in the backward
    return 2.0 * (3 * sum(parts.values()) - no_input_grad + recomputed_scores)


def forward_gflops(config: DiTConfig | NetworkConfig) -> float:
    """Forward GFLOPs per image in the DiT paper's convention (the quality-vs-GFLOPs axis)."""
    return config.gflops_per_image()


def network_train_flops(network: NetworkConfig, batch: int = 2) -> float:
    """Training FLOPs per image of any backbone (with its caption encoder), counted on one real forward and
    backward step on the CPU, after checking the forward count against the network's own formula
    (:meth:`NetworkConfig.flops`, 2 FLOPs per multiply-add)."""
    key = json.dumps(network.to_dict(), sort_keys=True)
    if key not in _NETWORK_FLOPS:
        gen = torch.Generator().manual_seed(0)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            net = build_network(network)
        body = network.body
        x = torch.randn(batch, body.in_channels, body.input_size, body.input_size, generator=gen)
        t = torch.rand(batch, generator=gen)
        if network.text is not None:
            cond = torch.randint(1, network.text.vocab_size, (batch, network.text.context_length), generator=gen)
        else:
            width = body.cond_dim + (body.context_length * body.context_dim if network.stored_tokens else 0)
            cond = (torch.randn(batch, width, generator=gen) if body.cond_dim
                    else torch.randint(body.num_classes, (batch,), generator=gen))
        with FlopCounterMode(display=False, custom_mapping=_EXTRA) as counter:
            out = net(x, t, cond)
        forward, formula = counter.get_total_flops() / batch, 2.0 * sum(network.flops().values())
        if abs(forward - formula) > FORMULA_TOLERANCE * formula:
            raise RuntimeError(f"Forward FLOPs per image of {network.backbone} measured {forward:.6g} but its formula "
                               f"gives {formula:.6g}: the network or torch's counter changed; update its flops().")
        with FlopCounterMode(display=False, custom_mapping=_EXTRA) as counter:
            ((net(x, t, cond) - x) ** 2).mean().backward()
        _NETWORK_FLOPS[key] = counter.get_total_flops() / batch
        del out
    return _NETWORK_FLOPS[key]


_NETWORK_FLOPS: dict[str, float] = {}


def train_flops(config: DiTConfig | NetworkConfig) -> float:
    """Measured training FLOPs per image, after checking them against :func:`formula_train_flops` (a DiT), or
    its forward count against the network's formula (:func:`network_train_flops`, any backbone)."""
    if isinstance(config, NetworkConfig):
        return network_train_flops(config)
    measured, formula = measure_train_flops(config), formula_train_flops(config)
    if abs(measured - formula) > FORMULA_TOLERANCE * formula:
        raise RuntimeError(f"Training FLOPs per image of {config} measured {measured:.6g} but the DiT formula gives "
                           f"{formula:.6g} (over {FORMULA_TOLERANCE:.1%} apart): the network or torch's counter "
                           "changed; update ablate/scaling/flops.py.")
    return measured
