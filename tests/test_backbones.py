"""MM-DiT, CrossDiT and UViT beside DiT: shapes, size rule, zero init, how text reaches the image,
long skips, the null caption, FLOPs against torch's counter, compile/bf16/functional stacking."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import ablate  # noqa: F401  (fixes torchvision before anything imports it)
from ablate.data.conditioning import null_conditioning
from ablate.errors import ConfigError
from ablate.models.mmdit import MMDiT, MMDiTConfig
from ablate.models.network import BACKBONES, CaptionConditioned, NetworkConfig, build_network
from ablate.models.text_encoder import TextEncoderConfig
from ablate.models.uvit import UViT, UViTConfig
from ablate.scaling.flops import _EXTRA

TEXT_BACKBONES = ("mmdit", "crossdit", "uvit")
CTX_LEN, CTX_DIM, POOLED = 5, 24, 16


def body(name: str, **overrides):
    keys = dict(input_size=8, in_channels=2, patch_size=2, hidden_size=32, depth=3, num_heads=4, cond_dim=POOLED)
    if name != "dit":
        keys.update(context_dim=CTX_DIM, context_length=CTX_LEN)
    keys.update(overrides)
    return BACKBONES[name][0](**keys)


def perturb(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Make the zero-initialised layers non-zero, as after some training."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model


def caption_inputs(batch: int = 3, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 2, 8, 8, generator=g)
    t = torch.rand(batch, generator=g)
    return x, t, (torch.randn(batch, CTX_LEN, CTX_DIM, generator=g), torch.randn(batch, POOLED, generator=g))


@pytest.mark.parametrize("name", TEXT_BACKBONES)
def test_output_shape_and_zero_prediction_at_init(name):
    torch.manual_seed(0)
    model = BACKBONES[name][1](body(name))
    x, t, y = caption_inputs()
    assert torch.equal(model(x, t, y), torch.zeros_like(x))  # zero-initialised output layers
    out = perturb(model)(x, t, y)
    assert out.shape == x.shape and out.dtype == x.dtype and torch.isfinite(out).all() and out.abs().sum() > 0
    with pytest.raises(TypeError, match="pair"):
        model(x, t, y[1])


def mmdit_params(d: int, pooled: int, ctx_dim: int, patch_dim: int, qk_norm: bool) -> int:
    """The SD3 size rule counted by hand: width 64 d, d heads of 64, depth d, MLP 4 x width."""
    w, m = 64 * d, 256 * d
    stem = (patch_dim * w + w) + (256 * w + w + w * w + w) + pooled * w + (ctx_dim * w + w)
    stream_in = (6 * w * w + 6 * w) + (3 * w * w + 3 * w) + (2 * 64 if qk_norm else 0)
    stream_out = (w * w + w) + (w * m + m + m * w + w)
    last_text_in = stream_in - (4 * w * w + 4 * w)  # shift and scale only
    blocks = d * (stream_in + stream_out) + (d - 1) * (stream_in + stream_out) + last_text_in
    final = (2 * w * w + 2 * w) + (w * patch_dim + patch_dim)
    return stem + blocks + final


@pytest.mark.parametrize("d, qk_norm", [(1, True), (2, True), (3, False)])
def test_mmdit_size_rule(d, qk_norm):
    config = MMDiTConfig.from_depth(d, input_size=8, in_channels=4, patch_size=2, cond_dim=POOLED,
                                    context_dim=CTX_DIM, context_length=CTX_LEN, qk_norm=qk_norm)
    assert (config.hidden_size, config.num_heads, config.depth) == (64 * d, d, d)
    assert MMDiT(config).num_params() == mmdit_params(d, POOLED, CTX_DIM, 2 * 2 * 4, qk_norm)


def test_mmdit_text_tokens_reach_the_image_only_through_joint_attention():
    model = perturb(MMDiT(body("mmdit")))
    x, t, (tokens, pooled) = caption_inputs()
    changed = tokens.clone()
    changed[:, 2] += 1.0  # one text token, pooled vector unchanged
    assert not torch.allclose(model(x, t, (tokens, pooled)), model(x, t, (changed, pooled)))
    model.image_attends_text = False
    assert torch.equal(model(x, t, (tokens, pooled)), model(x, t, (changed, pooled)))
    # the pooled vector still modulates the image stream
    assert not torch.allclose(model(x, t, (tokens, pooled)), model(x, t, (tokens, pooled + 1)))


def test_mmdit_qk_norm_is_on_by_default_and_normalises():
    on, off = MMDiT(body("mmdit")), MMDiT(body("mmdit", qk_norm=False))
    assert isinstance(on.blocks[0].image_in.q_norm, torch.nn.RMSNorm)
    assert isinstance(off.blocks[0].text_in.k_norm, torch.nn.Identity)


@pytest.mark.parametrize("name", ["crossdit", "uvit"])
def test_text_tokens_change_the_output(name):
    model = perturb(BACKBONES[name][1](body(name)))
    x, t, (tokens, pooled) = caption_inputs()
    assert not torch.allclose(model(x, t, (tokens, pooled)), model(x, t, (tokens + 1, pooled)))


def test_uvit_long_skips_are_used():
    model = perturb(UViT(body("uvit", depth=5)))
    assert len(model.in_blocks) == len(model.out_blocks) == 2 and len(model.mid_blocks) == 1
    x, t, y = caption_inputs()
    outs, skips = {}, {}
    for i, block in enumerate(model.in_blocks):
        block.register_forward_hook(lambda m, args, out, i=i: outs.__setitem__(i, out))
    for i, block in enumerate(model.out_blocks):
        block.register_forward_pre_hook(lambda m, args, i=i: skips.__setitem__(i, args[1]))
    before = model(x, t, y)
    # out-block i joins in-block (half - 1 - i): the long skip pairs the halves mirror-wise
    assert torch.equal(skips[0], outs[1]) and torch.equal(skips[1], outs[0])
    h = torch.randn_like(outs[1])  # and an out-block's output depends on its skip input
    assert not torch.allclose(model.out_blocks[0](h, outs[1]), model.out_blocks[0](h, torch.zeros_like(outs[1])))
    with torch.no_grad():
        for block in model.out_blocks:
            block.skip_linear.weight[:, 32:] = 0  # cut the skip half of the joining linear
    assert not torch.allclose(before, model(x, t, y), atol=1e-4)


def encoder_network(name: str) -> CaptionConditioned:
    text = TextEncoderConfig(vocab_size=20, context_length=CTX_LEN, width=CTX_DIM, depth=1, num_heads=2,
                             pooled_dim=POOLED)
    return perturb(build_network(NetworkConfig(name, body(name, **({"cond_dim": POOLED} if name == "dit" else {})),
                                               text)))


@pytest.mark.parametrize("name", ["dit", *TEXT_BACKBONES])
def test_null_caption_gives_one_output_whatever_the_caption(name):
    net = encoder_network(name)
    x, t, _ = caption_inputs(batch=2)
    a = torch.tensor([[5, 3, 7, 0, 0], [5, 9, 0, 0, 0]])
    b = torch.tensor([[4, 4, 2, 8, 1], [6, 2, 0, 0, 0]])
    assert not torch.allclose(net(x, t, a), net(x, t, b))
    null_a, null_b = null_conditioning(a, 10), null_conditioning(b, 10)
    assert torch.equal(null_a, torch.zeros_like(a))
    assert torch.equal(net(x, t, null_a), net(x, t, null_b))
    tokens, pooled = net.encoder(null_a)
    assert not tokens.any() and not pooled.any()


@pytest.mark.parametrize("name", ["dit", *TEXT_BACKBONES])
def test_flops_match_torch_flop_counter(name):
    net = encoder_network(name)
    x, t, _ = caption_inputs(batch=2)
    ids = torch.randint(1, 20, (2, CTX_LEN))
    with FlopCounterMode(display=False, custom_mapping=_EXTRA) as counter:
        net(x, t, ids)
    assert counter.get_total_flops() == 2 * 2 * sum(net.config.flops().values())  # 2 images, 1 MAC = 2 FLOPs


@pytest.mark.parametrize("name", TEXT_BACKBONES)
def test_compile_bf16_and_functional_stacking(name):
    nets = [encoder_network(name), encoder_network(name)]
    perturb(nets[1], seed=1)
    x, t, _ = caption_inputs(batch=2)
    ids = torch.tensor([[5, 3, 7, 0, 0], [0, 0, 0, 0, 0]])
    compiled = torch.compile(nets[0], backend="aot_eager", fullgraph=True)  # no graph breaks
    torch.testing.assert_close(compiled(x, t, ids), nets[0](x, t, ids))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = nets[0](x, t, ids)
    assert low.dtype == torch.bfloat16 and torch.isfinite(low.float()).all()
    params, buffers = torch.func.stack_module_state(nets)

    def one(p, b, xi):
        return torch.func.functional_call(nets[0], (p, b), (xi, t, ids))

    stacked = torch.vmap(one)(params, buffers, torch.stack([x, x]))
    for k in range(2):
        torch.testing.assert_close(stacked[k], nets[k](x, t, ids), rtol=1e-4, atol=1e-5)


def test_bad_text_backbone_configs_are_refused():
    with pytest.raises(ConfigError, match="captions only"):
        body("mmdit", num_classes=10)
    with pytest.raises(ConfigError, match="context_length"):
        body("uvit", context_length=0)
    with pytest.raises(ConfigError, match="num_heads"):
        UViTConfig(input_size=8, in_channels=1, patch_size=2, hidden_size=30, depth=2, num_heads=4, cond_dim=4,
                   context_dim=4, context_length=2)


@pytest.mark.parametrize("name", ["dit", *TEXT_BACKBONES])
def test_packs_stack_every_backbone_as_on_cuda(name):
    """A pack of caption-conditioned networks through StackedForward in the mode CUDA would choose for the backbone
    (flat where every parameter sits in a leaf module, else vmap): each network's output and gradients are its own."""
    from ablate.engine.stack import StackedForward, flat_supported

    nets = [perturb(encoder_network(name), seed=k) for k in range(3)]
    mode = "flat" if flat_supported(nets[0]) else "vmap"
    x, t, _ = caption_inputs(batch=2)
    ids = [torch.tensor([[5, 3, 7, 0, 0], [k + 1, 2, 0, 0, 0]]) for k in range(3)]
    alone = [net(x, t, i) for net, i in zip(nets, ids)]
    grads_alone = [torch.autograd.grad(out.square().sum(), list(net.parameters())) for out, net in zip(alone, nets)]
    stacked = StackedForward(nets, mode)([(x, t, i) for i in ids])
    for k, net in enumerate(nets):
        torch.testing.assert_close(stacked[k], alone[k], rtol=1e-4, atol=1e-5)
        grads = torch.autograd.grad(stacked[k].square().sum(), list(net.parameters()), retain_graph=True)
        for g, g_alone in zip(grads, grads_alone[k]):
            scale = float(g_alone.abs().max()) + 1e-6  # summation order differs: rounding relative to the tensor's size
            torch.testing.assert_close(g, g_alone, rtol=1e-3, atol=1e-3 * scale)


@pytest.mark.parametrize("name", ["dit", "uvit"])
def test_a_checkpoint_with_the_bare_positions_parameter_still_loads(name):
    """Learned positions became a module (``positions.weight``, ``extra_pos.weight``) so that packs stack flat; a
    checkpoint written before, with the bare parameter, loads into the same weights."""
    net, fresh = encoder_network(name), encoder_network(name)
    with torch.no_grad():
        for p in fresh.parameters():
            p.zero_()
    old = {k.removesuffix(".weight") if k.endswith(("positions.weight", "extra_pos.weight")) else k: v
           for k, v in net.state_dict().items()}
    assert sum(k.endswith(("positions", "extra_pos")) for k in old) == (2 if name == "uvit" else 1)
    fresh.load_state_dict(old)  # strict
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), fresh.state_dict().values()))
