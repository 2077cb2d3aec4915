"""Records tests/data/formulation_reference.pt: outputs of the formulation layer on fixed inputs.

Run at commit debeb3c (before the issue-11 redesign of ``ablate/formulations``);
``tests/test_formulation_reference.py`` then checks the redesigned layer reproduces every value bit
for bit. Re-running it after the redesign only re-records the current behaviour. Vectorised math
kernels round differently on another CPU kind (AVX-512 against AVX2), so there is one record per
machine kind, ``formulation_reference-<cpu>.pt`` (the first, an Intel Xeon's, is
``formulation_reference.pt``), each made at debeb3c: in a worktree of debeb3c holding this file,

    PYTHONPATH=. python tests/data/record_formulation_reference.py
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from ablate.formulations import euler_sample, get_formulation, parse_variant, sampling_times

VARIANTS = ["rf/lognorm(0.00, 1.00)", "eps/linear", "v/cos", "edm(-1.20, 1.20)", "edm/rf", "eps/cos", "v/linear"]
HERE = Path(__file__).parent


def environment() -> dict[str, str]:
    """What decides the bits: the torch version and the CPU model."""
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "unknown")
    return {"torch": torch.__version__, "cpu": cpu}


def out_path(env: dict[str, str]) -> Path:
    return HERE / f"formulation_reference-{re.sub(r'[^a-z0-9]+', '-', env['cpu'].lower()).strip('-')}.pt"


def inputs(dtype: torch.dtype) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(11)
    n = 8
    return {
        "t": (0.02 + 0.96 * torch.rand(n, generator=g, dtype=torch.float64)).to(dtype),
        "x0": torch.randn(n, 2, 3, 3, generator=g, dtype=torch.float64).to(dtype),
        "eps": torch.randn(n, 2, 3, 3, generator=g, dtype=torch.float64).to(dtype),
        "raw": torch.randn(n, 2, 3, 3, generator=g, dtype=torch.float64).to(dtype),
        "noise": torch.randn(n, 2, 3, 3, generator=g, dtype=torch.float64).to(dtype),
        "cond": torch.arange(n) % 2,
    }


def model_fn(net_in: torch.Tensor, net_t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
    """A fixed, non-trivial stand-in network: depends on input, time and condition."""
    shape = (-1,) + (1,) * (net_in.ndim - 1)
    return 0.7 * net_in - 0.3 * net_t.reshape(shape) + 0.1 * cond.to(net_in.dtype).reshape(shape)


def record(name: str, dtype: torch.dtype) -> dict[str, object]:
    f = parse_variant(name).formulation
    x = inputs(dtype)
    t, x0, eps, raw = x["t"], x["x0"], x["eps"], x["raw"]
    z = f.add_noise(x0, eps, t)
    net_in, net_t = f.model_input(z, t)
    x0_hat, eps_hat = f.estimates(raw, z, t)
    out: dict[str, object] = {
        "add_noise": z, "model_input_z": net_in, "model_input_t": net_t,
        "x0_hat": x0_hat, "eps_hat": eps_hat, "velocity": f.velocity(raw, z, t),
        "target": f.target(x0, eps, t), "loss": f.loss(raw, x0, eps, t), "eps_weight": f.eps_weight(t),
        "t_range": torch.tensor(f.t_range(), dtype=torch.float64),
    }
    if dtype == torch.float64:  # the sampler runs its path in float64 whatever the noise dtype
        out["metadata"] = f.metadata()
        for grid in ("own", "rf"):
            out[f"times_{grid}"] = sampling_times(f, 7, grid)
        uncond = torch.full_like(x["cond"], 2)
        out["euler_cfg1"] = euler_sample(f, model_fn, x["noise"].float(), 5, cond=x["cond"])[0]
        out["euler_cfg2.5"] = euler_sample(f, model_fn, x["noise"].float(), 5, 2.5, x["cond"], uncond, "rf")[0]
    return out


def main() -> None:
    table = {name: {str(d): record(name, d) for d in (torch.float32, torch.float64)} for name in VARIANTS}
    assert get_formulation("rf").name == "rf"
    import subprocess

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE, capture_output=True, text=True).stdout
    env = environment()
    torch.save({"commit": commit.strip(), "environment": env, "variants": table}, out_path(env))
    print(f"wrote {out_path(env)}")


if __name__ == "__main__":
    main()
