"""The Euler solver with classifier-free guidance, one for every formulation (spec section 5).

Convention: t in [0, 1], t = 0 is data, t = 1 is noise; integration runs from t_hi down to t_lo.

Our choices (the paper only says "Euler on dz = v dt"), recorded by :func:`solver_metadata`:

- **Step form**: from t to t' with the model's estimates (x0_hat, eps_hat) at t, take
  ``z' = a(t') x0_hat + b(t') eps_hat``: the Euler step taken in the rf frame. For rf it is the
  plain ``z + (t' - t) v``; for the EDM family Karras' Euler step in sigma; for VP paths DDIM.
- **Grid**: N steps uniform in the formulation's own t over [t_lo, t_hi] (``own``, default), or
  uniform in the rf-equivalent noise level s = b/(a+b) (``rf``).
- **Ends**: :meth:`Formulation.t_range`; the start is ``b(t_hi) eps`` (the data term a(t_hi) x0 is
  unknown and dropped); the last step returns x0_hat estimated at the last grid time before t_lo, so
  the network is never evaluated at t_lo (where x0-prediction's eps_hat = (z - a F)/b is singular
  on rf); every prediction is finite at its t_hi (x0 on rf: eps_hat = z at t = 1).
- **Guidance**: ``v = v_u + w (v_c - v_u)`` on every channel, applied to the raw output (every
  estimate is affine in it, so this equals guiding v, x0_hat and eps_hat); conditional and
  unconditional in one batched forward; w = 1 skips the unconditional pass. NFE counts network
  evaluations per sample: steps, or 2 x steps with guidance.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any, Callable

import torch
from torch import Tensor

from ablate.formulations.formulation import Formulation

TIME_GRIDS = ("own", "rf")
ModelFn = Callable[[Tensor, Tensor, Any], Tensor]  # (net_in, net_t, cond) -> raw output


def sampling_times(formulation: Formulation, steps: int, time_grid: str = "own") -> Tensor:
    """The N + 1 times t_hi = t_0 > ... > t_N = t_lo, float64."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if time_grid not in TIME_GRIDS:
        raise ValueError(f"time_grid must be one of {TIME_GRIDS}, got {time_grid!r}")
    lo, hi = formulation.t_range()
    ends = torch.tensor([hi, lo], dtype=torch.float64)
    if time_grid == "own":
        times = torch.linspace(hi, lo, steps + 1, dtype=torch.float64)
    else:
        a, b = formulation.coefficients(ends)
        s = b / (a + b)  # rf-equivalent noise level, decreasing along the grid
        s_grid = torch.linspace(float(s[0]), float(s[1]), steps + 1, dtype=torch.float64)
        times = formulation.t_of_log_snr(2 * (torch.log1p(-s_grid) - torch.log(s_grid)))
    times[0], times[-1] = hi, lo
    return times


def euler_sample(
    formulation: Formulation,
    model_fn: ModelFn,
    noise: Tensor,
    steps: int,
    cfg: float = 1.0,
    cond: Any = None,
    uncond: Any = None,
    time_grid: str = "own",
) -> tuple[Tensor, int]:
    """Integrate the generative ODE from t_hi to t_lo in ``steps`` Euler steps; return (x0, NFE).

    ``model_fn(net_in, net_t, cond)`` is called on :meth:`Formulation.model_input`; ``noise`` is
    standard normal of the sample shape; ``cond``/``uncond`` are batched tensors (labels or
    embeddings) concatenated along dim 0 when ``cfg != 1``.
    """
    solver = euler_calls(formulation, noise, steps, cfg, cond, uncond, time_grid)
    call = next(solver)
    while True:
        try:
            call = solver.send(model_fn(*call))
        except StopIteration as done:
            return done.value


def euler_calls(
    formulation: Formulation,
    noise: Tensor,
    steps: int,
    cfg: float = 1.0,
    cond: Any = None,
    uncond: Any = None,
    time_grid: str = "own",
) -> Generator[tuple[Tensor, Tensor, Any], Tensor, tuple[Tensor, int]]:
    """:func:`euler_sample` with the caller making the network calls: yields each call's ``(net_in, net_t,
    cond)``, is sent that call's raw output, and returns (x0, NFE). Several samplers (the cells of a pack) can so
    share one network call per step; driven with ``model_fn`` it is :func:`euler_sample`, bit for bit."""
    if cfg != 1.0 and uncond is None:
        raise ValueError("classifier-free guidance (cfg != 1) needs an unconditional input `uncond`")
    # The path is evaluated in float64 (EDM's quantile time puts sigma = 80 at t = 1 - 1e-13, which
    # float32 rounds to 1, sigma = inf); the network gets its inputs in the noise's dtype.
    times = sampling_times(formulation, steps, time_grid).to(noise.device)
    dtype, batch = noise.dtype, noise.shape[0]
    _, b_hi = formulation.coefficients(times[:1])
    z = b_hi * noise.double()
    guided = cfg != 1.0
    both = torch.cat([cond, uncond]) if guided else cond

    def inputs(z_in: Tensor, t_in: Tensor, c: Any) -> tuple[Tensor, Tensor, Any]:
        net_in, net_t = formulation.model_input(z_in, t_in)
        return net_in.to(dtype), net_t.to(dtype), c

    for i in range(steps):
        t = times[i].expand(batch)
        if guided:
            raw_c, raw_u = (yield inputs(torch.cat([z, z]), torch.cat([t, t]), both)).double().chunk(2)
            raw = raw_u + cfg * (raw_c - raw_u)
        else:
            raw = (yield inputs(z, t, cond)).double()
        x0_hat, eps_hat = formulation.estimates(raw, z, t)
        if i == steps - 1:
            return x0_hat.to(dtype), steps * (2 if guided else 1)
        a_next, b_next = formulation.coefficients(times[i + 1])
        z = a_next * x0_hat + b_next * eps_hat
    raise AssertionError("unreachable")


def solver_metadata(formulation: Formulation, steps: int, cfg: float, time_grid: str) -> dict[str, Any]:
    """What a result row records about how its samples were drawn."""
    lo, hi = formulation.t_range()
    return {
        "solver": "euler (rf-frame step z' = a(t') x0_hat + b(t') eps_hat)",
        "steps": steps,
        "cfg": cfg,
        "guidance": "v_u + w (v_c - v_u) on all channels, one batched forward",
        "time_grid": time_grid,
        "t_range": [lo, hi],
        "start": "b(t_hi) * eps",
        "last_step": "returns x0_hat",
        "nfe": steps * (2 if cfg != 1.0 else 1),
    }


sampler_metadata = solver_metadata  # the old name, kept: ablate/engine/evaluate.py imports it
