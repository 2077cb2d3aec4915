"""Formulation layer (issue 2): known values, round trips, equivalences, names and errors."""

from __future__ import annotations

import math

import pytest
import torch

from ablate.errors import VariantError
from ablate.formulations import (
    canonical_variant,
    euler_sample,
    get_formulation,
    level_log_snrs,
    matched_times,
    parse_variant,
)
from ablate.formulations.paths import LinearPath
from ablate.formulations.names import parse_sampler as get_sampler
from ablate.formulations.timesteps import LogitNormal, ModeHeavyTails, Uniform

TRAJECTORIES = ["rf", "eps/linear", "v/linear", "eps/cos", "v/cos", "edm(-1.2, 1.2)", "edm/rf", "edm/cos",
                "x0/rf", "x0(velocity)/rf", "eps/rf", "eps(x0)/cos"]


# -- known values -----------------------------------------------------------------------------

def test_ldm_linear_known_values():
    path = LinearPath()
    assert float(path.alphas_cumprod[0]) == pytest.approx(0.99915, rel=1e-5)
    assert float(path.alphas_cumprod[999]) == pytest.approx(0.00466, abs=0.000005)
    ends = torch.tensor([0.0, 1.0], dtype=torch.float64)
    lam = path.log_snr(ends)
    assert float(lam[0]) == pytest.approx(7.07, abs=0.005) and float(lam[1]) == pytest.approx(-5.36, abs=0.005)
    a, b = path.coefficients(ends)
    assert float(a[1]) == pytest.approx(math.sqrt(0.00466), abs=1e-3)  # the 0.068 of the spec
    assert torch.allclose(a**2 + b**2, torch.ones(2, dtype=torch.float64))


def test_ldm_lambda_monotone_and_inverse():
    path = LinearPath()
    t = torch.linspace(0, 1, 5001, dtype=torch.float64)
    lam = path.log_snr(t)
    assert bool((lam[1:] < lam[:-1]).all())
    assert torch.allclose(path.t_of_log_snr(lam), t, atol=1e-9)


@pytest.mark.parametrize("name,rel", [("edm(-1.2, 1.2)", 1e-9), ("edm(0.6, 1.8)", 1e-9), ("edm/rf", 1e-9),
                                      ("edm/cos", 1e-9), ("edm(0, 0.6)", 1e-4), ("edm(1.2, 0.6)", 1e-9)])
def test_edm_sigma_at_t_range_ends(name, rel):
    """edm(0, 0.6) puts sigma = 80 at t = 1 - 1.4e-13 and 0.002 at t = 2e-25: float64 still resolves both."""
    f = get_formulation(name)
    lo, hi = f.t_range()
    assert 0 < lo < hi < 1
    sigma = f.path.sigma(torch.tensor([lo, hi], dtype=torch.float64))
    assert sigma.tolist() == pytest.approx([0.002, 80.0], rel=rel)


@pytest.mark.parametrize("name", ["edm(0, 0.6)", "edm(-1.2, 1.2)", "edm/rf", "eps/cos", "x0/rf", "eps/rf"])
def test_float32_sampling_stays_finite(name):
    """The path runs in float64 inside the sampler even for float32 noise (sigma = 80 needs it)."""
    f = get_formulation(name)
    x, _ = euler_sample(f, lambda net_in, net_t, c: 0.1 * net_in, torch.randn(8, 1, 4, 4), steps=5, time_grid="own")
    assert x.dtype == torch.float32 and bool(torch.isfinite(x).all())


def test_eps_cos_stops_at_log_snr_minus_ten():
    f = get_formulation("eps/cos")
    assert float(f.log_snr(torch.tensor(f.t_range()[1], dtype=torch.float64))) == pytest.approx(-10.0)
    assert get_formulation("v/cos").t_range() == (0.0, 1.0)


def test_rf_eps_weight_is_t_over_one_minus_t():
    t = torch.linspace(0.01, 0.99, 50, dtype=torch.float64)
    assert torch.allclose(get_formulation("rf").eps_weight(t), t / (1 - t))
    lam = get_formulation("eps/cos").log_snr(t)  # eps/cos: sech(lambda/2)/pi; v/cos: 2 exp(-lambda/2)/pi
    assert torch.allclose(get_formulation("eps/cos").eps_weight(t), 1 / torch.cosh(lam / 2) / math.pi)
    assert torch.allclose(get_formulation("v/cos").eps_weight(t), 2 * torch.exp(-lam / 2) / math.pi)


# -- round trips ------------------------------------------------------------------------------

def _batch(f, n=256, seed=0):
    g = torch.Generator().manual_seed(seed)
    lo, hi = f.t_range()
    t = lo + 0.01 + (hi - lo - 0.02) * torch.rand(n, generator=g, dtype=torch.float64)
    x0 = torch.randn(n, 3, 4, 4, generator=g, dtype=torch.float64)
    eps = torch.randn(n, 3, 4, 4, generator=g, dtype=torch.float64)
    return x0, eps, t


@pytest.mark.parametrize("name", TRAJECTORIES)
def test_round_trips_on_exact_inputs(name):
    f = get_formulation(name)
    x0, eps, t = _batch(f)
    t = (torch.floor(t * 999) + 0.5) / 999 if f.path.name == "linear" else t  # FD inside a segment
    z = f.add_noise(x0, eps, t)
    raw = f.target(x0, eps, t)
    assert torch.allclose(f.denoise(raw, z, t), x0, atol=1e-8)
    assert torch.allclose(f.estimates(raw, z, t)[1], eps, atol=1e-6)
    h = 1e-6  # velocity vs a finite-difference derivative of the path
    dz = (f.add_noise(x0, eps, t + h) - f.add_noise(x0, eps, t - h)) / (2 * h)
    assert torch.allclose(f.velocity(raw, z, t), dz, rtol=1e-5, atol=1e-5)
    assert torch.allclose(f.loss(raw, x0, eps, t), torch.zeros(len(t), dtype=torch.float64), atol=1e-12)
    assert f.loss(raw + 0.1, x0, eps, t).shape == (len(t),)


@pytest.mark.parametrize("name", TRAJECTORIES)
def test_loss_equals_unified_eps_form(name):
    """loss == -1/2 w_t lambda'_t ||eps_hat - eps||^2 (per-dim mean) for arbitrary raw outputs."""
    f = get_formulation(name)
    x0, eps, t = _batch(f, seed=1)
    t = (torch.floor(t * 999) + 0.5) / 999 if f.path.name == "linear" else t
    z = f.add_noise(x0, eps, t)
    raw = torch.randn_like(x0)
    eps_hat = f.estimates(raw, z, t)[1]
    unified = -0.5 * f.eps_weight(t) * f.path.log_snr_derivative(t) * ((eps_hat - eps) ** 2).mean((1, 2, 3))
    assert torch.allclose(f.loss(raw, x0, eps, t), unified, rtol=1e-8)


def test_model_input_edm_preconditioning():
    f = get_formulation("edm(-1.2, 1.2)")
    t = torch.tensor([0.3, 0.7], dtype=torch.float64)
    z = torch.ones(2, 1, 2, 2, dtype=torch.float64)
    net_in, net_t = f.model_input(z, t)
    sigma = f.path.sigma(t)
    assert torch.allclose(net_t, torch.log(sigma) / 4)
    assert torch.allclose(net_in[:, 0, 0, 0], 1 / torch.sqrt(sigma**2 + 0.25))
    net_in, net_t = get_formulation("rf").model_input(z, t)
    assert net_in is z and net_t is t


def test_matched_times_share_log_snr():
    for name in ["rf", "v/cos", "edm(-1.2, 1.2)", "edm/rf"]:
        f = get_formulation(name)
        assert torch.allclose(f.log_snr(matched_times(f)), level_log_snrs(), atol=1e-8)


# -- equivalence: sampling t ~ pi  ==  uniform t weighted by pi(t) -----------------------------

@pytest.mark.parametrize("sampler_name", ["lognorm(0, 1)", "mode(1.29)", "cosmap"])
def test_timestep_density_equals_loss_weighting(sampler_name):
    f, sampler = get_formulation("rf"), get_sampler(sampler_name)
    torch.manual_seed(0)
    weight = torch.nn.Parameter(torch.tensor([[0.7, -0.2], [0.1, 0.9]], dtype=torch.float64))
    bias = torch.nn.Parameter(torch.tensor([0.3, -0.4], dtype=torch.float64))

    def toy_loss(t, gen, density_weighted):
        x0 = torch.randn(len(t), 2, generator=gen, dtype=torch.float64) * 0.5 + 1.0
        eps = torch.randn(len(t), 2, generator=gen, dtype=torch.float64)
        z = f.add_noise(x0, eps, t)
        raw = z @ weight.T + bias * t[:, None]
        per_sample = f.loss(raw, x0, eps, t)
        if density_weighted:
            # the same weight in the spec's eps-form: w = t/(1-t) pi(t)
            eps_hat = f.estimates(raw, z, t)[1]
            unified = -0.5 * (t / (1 - t) * sampler.density(t)) * f.path.log_snr_derivative(t)
            per_sample_eps = unified * ((eps_hat - eps) ** 2).mean(1)
            assert torch.allclose(per_sample_eps, sampler.density(t) * per_sample, rtol=1e-8)
            per_sample = per_sample_eps
        return per_sample

    n = 400_000
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(2)
    sampled = toy_loss(sampler.sample(n, g1, dtype=torch.float64), g1, False)
    weighted = toy_loss(Uniform().sample(n, g2, dtype=torch.float64), g2, True)
    for a, b in ((sampled, weighted),):
        se = math.sqrt(float(a.var() + b.var()) / n)
        assert abs(float(a.mean() - b.mean())) < 4 * se
        ga = torch.autograd.grad(a.mean(), [weight, bias], retain_graph=True)
        gb = torch.autograd.grad(b.mean(), [weight, bias], retain_graph=True)
        for x, y in zip(ga, gb):  # gradients agree to Monte-Carlo precision
            assert torch.allclose(x, y, rtol=0.03, atol=0.01), (x, y)


# -- names ------------------------------------------------------------------------------------

@pytest.mark.parametrize("spelled,canonical", [
    ("rf", "rf"), ("rf/uniform", "rf"), ("rf/lognorm(0.5, 0.6)", "rf/lognorm(0.50, 0.60)"),
    ("rf/lognorm(0,1)", "rf/lognorm(0.00, 1.00)"), ("rf/mode(1.29)", "rf/mode(1.29)"),
    ("rf/cosmap", "rf/cosmap"), ("edm(-1.2,1.2)", "edm(-1.20, 1.20)"), ("edm/rf", "edm/rf"),
    ("edm/cos", "edm/cos"), ("eps/linear/lognorm(0, 1)", "eps/linear/lognorm(0.00, 1.00)"),
    ("v/cos/lognorm(0.00, 1.00)", "v/cos/lognorm(0.00, 1.00)"), (" eps/cos ", "eps/cos"),
    ("rf/lognorm(0, 1)/shift(3)", "rf/lognorm(0.00, 1.00)/shift(3.00)"), ("rf/shift(3)", "rf/shift(3.00)"),
    ("rf/lognorm(0, 1)/shift(1)", "rf/lognorm(0.00, 1.00)"), ("rf/mode(-0.0)", "rf/mode(0.00)"),
    ("rf/mode(1.2916666)", "rf/mode(1.2916666)"),
    ("x0/rf", "x0/rf"), ("x0(x0)/rf", "x0/rf"), (" x0 ( velocity ) / rf / lognorm(0,1)", "x0(velocity)/rf/lognorm(0.00, 1.00)"),
    ("eps(eps)/rf/mode(1.29)", "eps/rf/mode(1.29)"), ("eps(x0)/cos", "eps(x0)/cos"),
])
def test_names_print_canonically(spelled, canonical):
    assert canonical_variant(spelled) == canonical
    assert canonical_variant(canonical) == canonical


def test_parse_variant_returns_the_pair():
    formulation, sampler = parse_variant("rf/lognorm(0.00, 1.00)")
    assert formulation.name == "rf" and formulation.prediction.name == "velocity"
    assert isinstance(sampler, LogitNormal) and (sampler.m, sampler.s) == (0.0, 1.0)
    f, s = parse_variant("eps/linear/mode(1.29)")
    assert f.name == "eps/linear" and isinstance(s, ModeHeavyTails)
    assert isinstance(parse_variant("edm(-1.2, 1.2)").sampler, Uniform)


@pytest.mark.parametrize("bad,must_say", [
    ("rf/mode(2.0)", ["2/(pi-2)", "-1 <= s"]),
    ("rf/mode(-1.5)", ["-1 <= s"]),
    ("rf/lognorm(0, -1)", ["s = -1.0 must be > 0", "lognorm(m, s)"]),
    ("rf/lognorm(0)", ["lognorm(m, s)"]),
    ("edm(1)", ["edm(Pm, Ps)"]),
    ("edm", ["edm(Pm, Ps)"]),
    ("edm(0, 0)", ["Ps", "> 0"]),
    ("flow", ["Valid trajectories", "rf, eps/linear"]),
    ("rf/lognorm(a, 1)", ["not a number"]),
    ("rf/beta(1, 2)", ["Valid timestep densities", "cosmap"]),
    ("x0(vel)/rf", ["Unknown loss space 'vel'", "x0, eps, v, velocity", "x0(velocity)/rf"]),
    ("x0()/rf", ["Unknown loss space ''"]),
    ("edm(x0)/rf", ["'edm/rf'", "fixes its loss"]),
    ("x0/linear", ["Cannot read 'x0'", "x0/rf", "<prediction>(<space>)/<path>"]),
    ("rf/cosmap/lognorm(0, 1)", ["cosmap"]),
    ("rf/shift(0)", ["alpha > 0"]),
    ("", ["empty"]),
])
def test_bad_names_raise_with_the_valid_form(bad, must_say):
    with pytest.raises(VariantError) as info:
        parse_variant(bad)
    message = str(info.value)
    for fragment in must_say:
        assert fragment in message, message
    assert "\n" not in message


def test_get_formulation_rejects_a_sampler():
    with pytest.raises(VariantError):
        get_formulation("rf/lognorm(0, 1)")


def test_guidance_is_batched_and_counts_nfe():
    f = get_formulation("rf")
    calls = []

    def model_fn(x, t, cond):
        calls.append(len(x))
        return torch.where(cond[:, None, None, None] == 1, torch.ones_like(x), torch.zeros_like(x))

    noise = torch.zeros(3, 1, 2, 2)
    cond, uncond = torch.ones(3, dtype=torch.long), torch.zeros(3, dtype=torch.long)
    x, nfe = euler_sample(f, model_fn, noise, steps=4, cfg=2.5, cond=cond, uncond=uncond)
    assert nfe == 8 and calls == [6] * 4  # cond and uncond in one batched forward
    # v = v_u + w (v_c - v_u) = 2.5 everywhere; z starts at 0, x0_hat = z - t v at the last step
    assert torch.allclose(x, torch.full_like(x, -2.5 * 1.0 + 2.5 * 0.25 - 2.5 * 0.25))
    x1, nfe1 = euler_sample(f, model_fn, noise, steps=4, cfg=1.0, cond=cond)
    assert nfe1 == 4 and calls[-1] == 3


def test_diverged_samples_are_recorded_not_scored():
    """A sampler that produces inf gives NaN metrics (ranked last) and a count, not a crash."""
    from ablate.data.base import DatasetInfo
    from ablate.engine.evaluate import Prompts, evaluate_setting
    from ablate.config.setting import Setting
    from ablate.scorers.base import Metric

    class Boom:
        metrics = (Metric("m", "fidelity", False, ""),)

        def score(self, *args):
            raise AssertionError("scorers must not see non-finite samples")

    info = DatasetInfo(name="x", channels=1, resolution=4, num_classes=2, class_names=["a", "b"],
                       autoencoder="none", caption=lambda y, g: "")
    prompts = Prompts(cond=torch.zeros(3, dtype=torch.long), labels=torch.zeros(3, dtype=torch.long),
                      captions=[""] * 3, noise=torch.randn(3, 1, 4, 4))
    class Diverged(torch.nn.Module):
        def forward(self, x, t, y):
            return torch.full_like(x, float("inf"))

    net = Diverged()
    out = evaluate_setting(net, get_formulation("rf"), info, prompts, [Boom()], Setting(2, 1.0), 3, torch.device("cpu"))
    assert math.isnan(out["metrics"]["m"]) and out["eval"]["nonfinite_samples"] == 3


# -- predictions and loss spaces beyond the paper (issue 11): x0/rf, x0(velocity)/rf, eps/rf ----

def test_rf_predictions_losses_by_hand():
    """Each loss written out independently on rf (a = 1 - t, b = t, velocity eps - x0)."""
    x0, eps, _ = _batch(get_formulation("rf"), seed=3)
    t = torch.linspace(0.02, 0.98, len(x0), dtype=torch.float64)
    z = (1 - t)[:, None, None, None] * x0 + t[:, None, None, None] * eps
    raw = torch.randn_like(x0)
    tb = t[:, None, None, None]
    want = {
        "x0/rf": ((raw - x0) ** 2).mean((1, 2, 3)),
        "x0(velocity)/rf": (((z - raw) / tb - (eps - x0)) ** 2).mean((1, 2, 3)),
        "x0(eps)/rf": (((z - (1 - tb) * raw) / tb - eps) ** 2).mean((1, 2, 3)),
        "eps/rf": ((raw - eps) ** 2).mean((1, 2, 3)),
        "eps(velocity)/rf": (((raw - z) / (1 - tb) - (eps - x0)) ** 2).mean((1, 2, 3)),
        "rf": ((raw - (eps - x0)) ** 2).mean((1, 2, 3)),
    }
    for name, expected in want.items():
        f = get_formulation(name)
        assert torch.allclose(f.loss(raw, x0, eps, t), expected, rtol=1e-10), name
    # the velocity loss of x0-prediction is the x0 loss over t^2, and trains with rf's weight t/(1-t)
    assert torch.allclose(get_formulation("x0(velocity)/rf").loss(raw, x0, eps, t), want["x0/rf"] / t**2, rtol=1e-10)
    assert torch.allclose(get_formulation("x0(velocity)/rf").eps_weight(t), t / (1 - t))
    assert torch.allclose(get_formulation("x0/rf").eps_weight(t), t**3 / (1 - t))


def test_rf_predictions_estimates_by_hand():
    x0, eps, _ = _batch(get_formulation("rf"), n=16, seed=4)
    t = torch.linspace(0.05, 1.0, 16, dtype=torch.float64)
    tb = t[:, None, None, None]
    z = (1 - tb) * x0 + tb * eps
    raw = torch.randn_like(x0)
    x0_hat, eps_hat = get_formulation("x0/rf").estimates(raw, z, t)
    assert torch.equal(x0_hat, raw) and torch.allclose(eps_hat, (z - (1 - tb) * raw) / tb)
    assert torch.allclose(eps_hat[-1], z[-1])  # t = 1, pure noise: eps_hat = z, finite
    x0_hat, eps_hat = get_formulation("eps/rf").estimates(raw[:-1], z[:-1], t[:-1])
    assert torch.equal(eps_hat, raw[:-1]) and torch.allclose(x0_hat, (z[:-1] - tb[:-1] * raw[:-1]) / (1 - tb[:-1]))


def test_rf_predictions_ends_and_metadata():
    x0_rf, eps_rf = get_formulation("x0/rf"), get_formulation("eps/rf")
    assert x0_rf.t_range() == (0.0, 1.0)
    lo, hi = eps_rf.t_range()  # like eps/cos: an eps model cannot recover x0 at a = 0; stop at lambda = -10
    assert lo == 0.0 and hi == pytest.approx(1 / (1 + math.exp(-5)))
    assert "our_choice_t_hi" in eps_rf.metadata()
    meta = get_formulation("x0(velocity)/rf").metadata()
    assert meta["prediction"] == "x0" and meta["loss_space"] == "velocity" and meta["formulation"] == "x0(velocity)/rf"
    assert "loss_space" not in x0_rf.metadata() and "loss_space" not in get_formulation("rf").metadata()
    # the solver never evaluates the network at t_lo = 0, where x0-prediction's eps_hat divides by b = 0
    seen = []
    euler_sample(x0_rf, lambda z, t, c: seen.append(t.clone()) or 0 * z, torch.randn(2, 1, 2, 2), steps=4)
    assert float(torch.cat(seen).min()) > 0 and float(torch.cat(seen).max()) == 1.0
