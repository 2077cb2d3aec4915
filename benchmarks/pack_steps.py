"""Training steps of the protocol's model on CUDA, lone and stacked: img/s of each way of running it.

    python benchmarks/pack_steps.py [--k 8] [--steps 60] [--modes flat-compiled,flat-graphs,flat-eager,vmap-compiled]

Each step is :func:`ablate.engine.pack_bench.stacked_step` (bf16 autocast, rf loss, backward, per-network
clipping, one fused AdamW, an EMA update): K networks through :class:`ablate.engine.stack.StackedForward` in
the mode named (``flat`` or ``vmap``; ``eager``, ``compiled``, or ``graphs``: compiled with CUDA graphs,
``mode="reduce-overhead"``, as ``run`` trains by default on CUDA), and the lone network (K = 1) compiled, with
and without graphs. It
also checks the stacked outputs against each network alone (relative error under bf16). ``ablate bench``
prints the same ceiling beside what ``run`` does; this script compares the stacking modes.
"""

from __future__ import annotations

import argparse
import json
import traceback

import torch

from ablate.config.grid import load_grid
from ablate.engine.benchmark import synthetic_info
from ablate.engine.pack_bench import stacked_step
from ablate.engine.stack import StackedForward
from ablate.engine.train import network_config
from ablate.models.network import build_network


def stacked_error(grid, info, k: int, b: int, device: torch.device) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """Largest relative error (bf16 autocast) of the stacked outputs against each network alone, per mode."""
    nets = [build_network(network_config(grid.model, info)).to(device) for _ in range(k)]
    for n in nets:
        with torch.no_grad():
            for p in n.parameters():
                p.normal_(0, 0.02)
    data = [(torch.randn(b, info.channels, info.resolution, info.resolution, device=device),
             torch.rand(b, device=device), torch.randint(0, 10, (b,), device=device)) for _ in nets]
    errors = {}
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        alone = [n(*a).float() for n, a in zip(nets, data)]
        for mode in ("flat", "vmap"):
            stacked = [o.float() for o in StackedForward(nets, mode)(data)]
            errors[mode] = max(float((a - s).norm() / a.norm()) for a, s in zip(alone, stacked))
    return errors


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--grid", default="fashion-mnist")
    ap.add_argument("--k", type=int, default=8)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--modes", default="flat-compiled,flat-graphs,flat-eager,vmap-compiled")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    device = torch.device("cuda")
    torch.set_float32_matmul_precision("high")
    grid = load_grid(args.grid)
    info = synthetic_info(grid, 1)
    print(f"stacked vs alone, largest relative error (bf16): {stacked_error(grid, info, args.k, 64, device)}", flush=True)
    rows = []
    lone = [("lone-compiled", 1, "flat-compiled"), ("lone-graphs", 1, "flat-graphs")]
    for label, k, mode in lone + [(m, args.k, m) for m in args.modes.split(",")]:
        kind, how = mode.split("-")
        try:
            if how not in ("eager", "compiled", "graphs"):
                raise ValueError(f"mode {mode!r}: the part after '-' is eager, compiled or graphs")
            row = {"mode": label, "k": k, **stacked_step(grid, info, device, k, args.steps, 8, kind, how != "eager",
                                                          how == "graphs")}
        except Exception as err:  # noqa: BLE001 -- a mode that fails is reported, the others still run
            traceback.print_exc()
            row = {"mode": label, "k": k, "error": f"{type(err).__name__}: {err}"[:300]}
        rows.append(row)
        print(json.dumps(row), flush=True)
    print(f"\n{'mode':<16}{'K':>3}{'img/s':>10}{'ms/step':>9}{'warm-up s':>11}")
    for r in rows:
        if "error" in r:
            print(f"{r['mode']:<16}{r['k']:>3} error: {r['error']}")
        else:
            print(f"{r['mode']:<16}{r['k']:>3}{r['img_s']:>10,.0f}{r['ms_step']:>9.1f}{r['warmup_s']:>11.1f}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1)


if __name__ == "__main__":
    main()
