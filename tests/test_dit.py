"""DiT backbone: shapes, adaLN-Zero init, conditioning, FLOPs/params against the paper."""

from __future__ import annotations

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

import ablate  # noqa: F401  (fixes torchvision before anything imports it)
from ablate.errors import ConfigError
from ablate.models import DIT_PRESETS, DiT, DiTConfig
from ablate.models.dit import timestep_embedding


def tiny(**overrides) -> DiTConfig:
    base = dict(input_size=8, in_channels=4, patch_size=2, hidden_size=32, depth=2, num_heads=4, num_classes=10)
    base.update(overrides)
    return DiTConfig(**base)


def perturbed(config: DiTConfig, seed: int = 0) -> DiT:
    """A model whose zero-initialised layers are no longer zero (as after some training)."""
    torch.manual_seed(seed)
    model = DiT(config)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model


def inputs(config: DiTConfig, batch: int = 3, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, config.in_channels, config.input_size, config.input_size, generator=g)
    t = torch.rand(batch, generator=g)
    labels = torch.randint(0, config.num_classes + 1, (batch,), generator=g) if config.num_classes else None
    text = torch.randn(batch, config.cond_dim, generator=g) if config.cond_dim else None
    if labels is not None and text is not None:
        return x, t, (labels, text)
    return x, t, labels if labels is not None else text


@pytest.mark.parametrize(
    "overrides",
    [
        dict(patch_size=2, in_channels=4),
        dict(patch_size=4, in_channels=1),
        dict(input_size=16, patch_size=8, in_channels=1),
        dict(input_size=12, patch_size=4, in_channels=3, mlp_ratio=2.0),  # 3x3 tokens, odd grid
        dict(num_classes=0, cond_dim=16),
        dict(num_classes=5, cond_dim=16),
        dict(num_classes=0),
    ],
)
def test_output_shape_matches_input(overrides):
    config = tiny(**overrides)
    model = perturbed(config)
    x, t, y = inputs(config)
    out = model(x, t, y)
    assert out.shape == x.shape and out.dtype == x.dtype
    assert torch.isfinite(out).all() and out.abs().sum() > 0


def test_zero_init_outputs_exact_zeros():
    for config in (tiny(), tiny(num_classes=0, cond_dim=8, patch_size=4, in_channels=1)):
        torch.manual_seed(0)
        model = DiT(config)
        x, t, y = inputs(config)
        assert torch.equal(model(x, t, y), torch.zeros_like(x))
        gates = [b.adaLN_modulation.weight for b in model.blocks]
        assert all(torch.count_nonzero(g) == 0 for g in gates)


def test_class_conditioning_matters_and_null_row_exists():
    config = tiny(num_classes=10)
    model = perturbed(config)
    assert model.class_embedding.num_embeddings == 11 and model.null_class == 10
    x, t, _ = inputs(config)
    outs = [model(x, t, torch.full((3,), label)) for label in (0, 1, model.null_class)]
    assert not torch.allclose(outs[0], outs[1])
    assert not torch.allclose(outs[0], outs[2])
    with pytest.raises(IndexError):  # no row past the null class
        model(x, t, torch.full((3,), 11))


def test_text_conditioning_matters_and_zero_is_null():
    config = tiny(num_classes=0, cond_dim=8)
    model = perturbed(config)
    x, t, _ = inputs(config)
    text = torch.randn(3, 8)
    assert not torch.allclose(model(x, t, text), model(x, t, torch.zeros(3, 8)))
    # the null (all zeros) adds nothing: c equals the timestep embedding alone
    null_c = model.condition(t, torch.zeros(3, 8))
    assert torch.equal(null_c, model.t_embedder(timestep_embedding(t)))


def test_both_conditionings_take_a_pair():
    config = tiny(num_classes=4, cond_dim=8)
    model = perturbed(config)
    x, t, (labels, text) = inputs(config)
    assert not torch.allclose(model(x, t, (labels, text)), model(x, t, (labels, torch.zeros_like(text))))
    with pytest.raises(TypeError, match="pair"):
        model(x, t, labels)


def test_wrong_conditioning_types_are_refused():
    model = DiT(tiny(num_classes=4))
    x, t, _ = inputs(model.config)
    with pytest.raises(TypeError, match="integer tensor"):
        model(x, t, torch.zeros(3))
    with pytest.raises(ValueError, match="built for"):
        model(torch.zeros(3, 4, 16, 16), t, torch.zeros(3, dtype=torch.long))


def test_timestep_matters_including_negative_edm_noise_levels():
    config = tiny()
    model = perturbed(config)
    x, _, y = inputs(config)
    a = model(x, torch.full((3,), 0.2), y)
    b = model(x, torch.full((3,), 0.8), y)
    c = model(x, torch.full((3,), -0.5), y)  # EDM c_noise = ln(sigma)/4 < 0 for sigma < 1
    assert torch.isfinite(c).all()
    assert not torch.allclose(a, b) and not torch.allclose(a, c)


def test_unpatchify_puts_each_token_back_on_its_own_patch():
    # With zero block gates the blocks are identities, so the output of a patch depends on that
    # input patch alone: changing one patch must change exactly that patch of the output.
    config = tiny(input_size=12, patch_size=4, in_channels=2, num_classes=0)
    torch.manual_seed(0)
    model = DiT(config)
    with torch.no_grad():
        for p in model.final_layer.parameters():
            p.add_(0.1 * torch.randn_like(p))
    x = torch.randn(1, 2, 12, 12)
    t = torch.rand(1)
    x2 = x.clone()
    x2[:, :, 4:8, 8:12] += 1.0  # patch row 1, column 2
    diff = (model(x2, t) - model(x, t)).abs().sum(dim=(0, 1))
    inside = torch.zeros(12, 12, dtype=torch.bool)
    inside[4:8, 8:12] = True
    assert (diff[inside] > 0).all() and (diff[~inside] == 0).all()


def test_positional_embedding_is_fixed_and_distinct_per_token():
    model = DiT(tiny(input_size=8, patch_size=2, hidden_size=32))
    assert "pos_embed" not in dict(model.named_parameters()) and "pos_embed" not in model.state_dict()
    pos = model.pos_embed[0]
    assert pos.shape == (16, 32)
    assert torch.cdist(pos, pos).add(torch.eye(16)).min() > 0.1  # no two tokens share a position


def test_token_stream_is_contiguous():
    # a strided token stream makes every LayerNorm copy its input (throughput, not correctness)
    model = DiT(tiny())
    seen = []
    model.blocks[0].register_forward_pre_hook(lambda module, args: seen.append(args[0].is_contiguous()))
    model(*inputs(model.config))
    assert seen == [True]


def test_forward_backward_reaches_every_parameter():
    config = tiny(num_classes=4, cond_dim=8)
    model = perturbed(config)
    x, t, y = inputs(config)
    model(x, t, y).square().mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name
    # at init (adaLN-Zero) only the output layer learns first, but it does learn
    fresh = DiT(config)
    fresh(x, t, y).sub(x).square().mean().backward()
    assert fresh.final_layer.linear.weight.grad.abs().sum() > 0


def paper_model(name: str) -> DiTConfig:
    """A paper size (DIT_PRESETS) at 256px ImageNet: 32x32x4 latents, 1000 classes."""
    return DiTConfig(input_size=32, in_channels=4, num_classes=1000, **DIT_PRESETS[name])


PAPER_GFLOPS = {"S/2": 6.06, "B/2": 23.01, "L/2": 80.71, "XL/2": 118.64, "XL/4": 29.05, "S/8": 0.36}


@pytest.mark.parametrize("name,paper", PAPER_GFLOPS.items())
def test_gflops_reproduce_dit_paper_table4(name, paper):
    # 256px ImageNet: 32x32x4 latents, 1000 classes. The paper's models also output a learned
    # sigma (2C channels); that final-linear difference is < 0.7% of any count here.
    config = paper_model(name)
    assert config.gflops_per_image() == pytest.approx(paper, rel=0.015)


def test_model_gflops_and_params_on_meta_device_match_the_dit_reference():
    with torch.device("meta"):
        model = DiT(paper_model("XL/2"))
    assert model.gflops_per_image() == pytest.approx(118.64, rel=0.015)
    # The DiT reference code reports 675,129,632 parameters for DiT-XL/2 at 256px; it counts the
    # fixed positional embedding (a buffer here) and 16 extra learned-sigma outputs per token.
    hidden, tokens, sigma_outputs = 1152, 256, 2 * 2 * 4
    assert model.num_params() == 675_129_632 - tokens * hidden - (hidden * sigma_outputs + sigma_outputs)


def test_gflops_agree_with_torch_flop_counter():
    # FlopCounterMode counts 2 FLOPs per multiply-add; on CPU the fused SDPA kernel may go
    # uncounted, in which case exactly the attention matmuls (Q K^T and A V) are missing.
    config = tiny(input_size=8, patch_size=2, hidden_size=64, depth=2, num_heads=4, num_classes=10, cond_dim=12)
    model = DiT(config)
    x, t, y = inputs(config, batch=3)
    flops = config.flops()
    expected_all = 2 * 3 * sum(flops.values())
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x, t, y)
    counted_ops = {str(op) for op in counter.get_flop_counts()["Global"]}
    sdpa_counted = any("attention" in op for op in counted_ops)
    missing = 0 if sdpa_counted else 2 * 3 * flops["attention_matmuls"]
    assert counter.get_total_flops() == expected_all - missing
    # the math backend spells attention out as bmm, which is counted: now everything must match
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        model(x, t, y)
    assert counter.get_total_flops() == expected_all
    assert model.gflops_per_image() == pytest.approx(sum(flops.values()) / 1e9)


def test_presets_and_config_errors():
    assert set(DIT_PRESETS) == {f"{s}/{p}" for s in ("S", "B", "L", "XL") for p in (2, 4, 8)}
    config = paper_model("B/4")
    assert (config.hidden_size, config.depth, config.num_heads, config.patch_size) == (768, 12, 12, 4)
    with pytest.raises(ConfigError, match="not divisible by 'patch_size'"):
        tiny(input_size=10, patch_size=4)
    with pytest.raises(ConfigError, match="num_heads"):
        tiny(hidden_size=36, num_heads=5)
    with pytest.raises(ConfigError, match="positive integer"):
        tiny(depth=0)
