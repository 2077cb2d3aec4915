"""Training steps of one small model, lone and stacked, on CUDA: img/s of each way of running it.

    python benchmarks/pack_steps.py [--k 8] [--steps 60] [--modes lone-compiled,stacked-compiled,...]

Each step is what a cell's step does (bf16 autocast, rf loss, backward, per-network gradient clipping,
fused AdamW, an EMA update): ``lone-*`` one network (eager, compiled, compiled with CUDA graphs via
``reduce-overhead``); ``flat-*`` and ``vmap-*`` K networks through :class:`ablate.engine.stack.StackedForward`
in that mode (eager or compiled) with one fused AdamW over all their parameters, as a pack runs them. It also checks the
stacked outputs against each network alone (relative error, bf16). Prints a table; ``--json`` writes it.
"""

from __future__ import annotations

import argparse
import json
import time
import traceback

import torch

from ablate.engine.ema import EMA
from ablate.engine.stack import StackedForward
from ablate.models.dit import DiT, DiTConfig

PROTOCOL = DiTConfig(input_size=32, in_channels=1, patch_size=4, hidden_size=256, depth=8, num_heads=4, num_classes=10)


def _nets(k: int, device: torch.device) -> list[DiT]:
    nets = []
    for i in range(k):
        torch.manual_seed(i)
        nets.append(DiT(PROTOCOL).to(device))
    return nets


def _batch(k: int, b: int, device: torch.device) -> list[tuple[torch.Tensor, ...]]:
    return [(torch.randn(b, 1, 32, 32, device=device), torch.rand(b, device=device),
             torch.randint(0, 10, (b,), device=device), torch.randn(b, 1, 32, 32, device=device)) for _ in range(k)]


def time_mode(mode: str, k: int, b: int, steps: int, device: torch.device) -> dict:
    """img/s and ms/step of ``mode`` (see module doc), after a warm-up that includes compiling."""
    stacked = not mode.startswith("lone")
    nets = _nets(k if stacked else 1, device)
    emas = [EMA(n, 0.99) for n in nets]
    params = [p for n in nets for p in n.parameters()]
    opt = torch.optim.AdamW(params, lr=1e-4, fused=True)
    if stacked:
        kind, how = mode.split("-")
        stack = StackedForward(nets, kind, compile=how == "compiled")  # type: ignore[arg-type]
    else:
        call = {"lone-eager": lambda n, *a: n(*a),
                "lone-compiled": torch.compile(lambda n, *a: n(*a), dynamic=False),
                "lone-graphs": torch.compile(lambda n, *a: n(*a), dynamic=False, mode="reduce-overhead")}[mode]
    data = _batch(len(nets), b, device)

    def step() -> None:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            inputs = [(x * (1 - t[:, None, None, None]) + e * t[:, None, None, None], t, y) for x, t, y, e in data]
            outs = stack(inputs) if stacked else [call(nets[0], *inputs[0])]
        losses = [((o.float() - (e - x)) ** 2).mean() for o, (x, _, _, e) in zip(outs, data)]
        torch.stack(losses).sum().backward()
        for n in nets:
            torch.nn.utils.clip_grad_norm_(n.parameters(), 1.0, foreach=True)
        opt.step()
        opt.zero_grad(set_to_none=True)
        for n, ema in zip(nets, emas):
            ema.update_parameters(n)

    start = time.perf_counter()
    for _ in range(8):
        step()
    torch.cuda.synchronize()
    warm = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(steps):
        step()
    torch.cuda.synchronize()
    seconds = (time.perf_counter() - start) / steps
    return {"mode": mode, "k": len(nets), "batch": b, "img_per_s": len(nets) * b / seconds, "ms_per_step": 1e3 * seconds,
            "warmup_s": warm}


def stacked_error(k: int, b: int, device: torch.device) -> dict[str, float]:
    """Largest relative error (bf16 autocast) of the stacked outputs against each network alone."""
    nets = _nets(k, device)
    for n in nets:
        with torch.no_grad():
            for p in n.parameters():
                p.normal_(0, 0.02)
    data = [(x, t, y) for x, t, y, _ in _batch(k, b, device)]
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        alone = [n(*a).float() for n, a in zip(nets, data)]
        errors = {}
        for mode in ("flat", "vmap"):
            stacked = [o.float() for o in StackedForward(nets, mode)(data)]
            errors[mode] = max(float((a - s).norm() / a.norm()) for a, s in zip(alone, stacked))
    return errors


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--k", type=int, default=8)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--modes", default="lone-eager,lone-compiled,lone-graphs,flat-eager,flat-compiled,vmap-compiled")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    device = torch.device("cuda")
    torch.set_float32_matmul_precision("high")
    rows = []
    print(f"stacked vs alone, largest relative error (bf16): {stacked_error(args.k, 64, device)}", flush=True)
    for mode in args.modes.split(","):
        try:
            row = time_mode(mode, args.k, args.batch, args.steps, device)
        except Exception as err:  # noqa: BLE001 -- a mode that fails is reported, the others still run
            traceback.print_exc()
            row = {"mode": mode, "error": f"{type(err).__name__}: {err}"[:300]}
        rows.append(row)
        print(json.dumps(row), flush=True)
    print(f"\n{'mode':<18}{'K':>3}{'img/s':>10}{'ms/step':>9}{'warm-up s':>11}")
    for r in rows:
        if "error" in r:
            print(f"{r['mode']:<18} error: {r['error']}")
        else:
            print(f"{r['mode']:<18}{r['k']:>3}{r['img_per_s']:>10,.0f}{r['ms_per_step']:>9.1f}{r['warmup_s']:>11.1f}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1)


if __name__ == "__main__":
    main()
