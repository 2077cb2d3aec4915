"""``python -m ablate bench``: what users run (a cell's training, a variant's evaluation), timed on
this device against a plain compiled training step and the device's bf16 matmul peak.

A benchmark, not a test: it prints tables (and ``--json`` writes the numbers). Absolute numbers
depend on the machine; quote ratios from one run, absolute times only from the GPU. See
:mod:`ablate.engine.benchmark` for what each column measures.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from typing import TYPE_CHECKING, Any
from pathlib import Path

from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from ablate.config.grid import Grid


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="time a cell's training and a variant's evaluation on this device",
                       description="Times ablate's real training path (Lightning, EMA, clipping, schedule, "
                                   "validation, checkpoint) against a plain compiled bf16 step of the same DiT, "
                                   "and one variant's whole evaluation (every setting x weights, scoring "
                                   "included); MFU against a bf16 matmul measured in the same run.")
    p.add_argument("grid", nargs="?", default="fashion-mnist",
                   help="grid whose training and evaluation config to use (default fashion-mnist)")
    p.add_argument("--model", action="append", metavar="PRESET",
                   help="DiT preset(s) for the training table, e.g. S/2, B/2, or 'grid' for the grid's own model "
                        "(default: the grid's, S/2 and B/2 on the GPU, the grid's own model on the CPU)")
    p.add_argument("--channels", type=int, default=4, help="latent channels of the training table's synthetic "
                   "data (default 4: 32x32x4 SD-VAE latents)")
    p.add_argument("--batch-size", type=int, default=None, help="training batch (default: the grid's; 16 on the CPU)")
    p.add_argument("--steps", type=int, default=None, help="timed optimizer steps (default 60 GPU, 4 CPU)")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps first, compile included (default 10, 2)")
    p.add_argument("--pack", type=int, default=None, metavar="K", help="cells in the packing table's pack (default: "
                   "what run chooses for the grid's model on the GPU, ablate/runs/pack_size.py; 2 on the CPU)")
    p.add_argument("--no-eval", action="store_true", help="skip the evaluation table (it needs the grid's dataset)")
    p.add_argument("--num-samples", type=int, default=None, help="evaluation samples per setting (default: the "
                   "grid's; 2 on the CPU, where validation also uses at most 16 items)")
    p.add_argument("--data-dir", type=Path, default=None, help="where the grid's dataset is (evaluation)")
    p.add_argument("--cache-dir", default=None, help="probe weights and reference statistics "
                   "(default: $ABLATE_CACHE_DIR, else results/cache)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--profile", action="store_true", help="also break GPU kernel time down by kind (matmul, "
                   "attention, fused elementwise) for a training step and a sampling forward")
    p.add_argument("--json", type=Path, default=None, help="also write every number to this JSON file")
    p.add_argument("--verbose", action="store_true", help="also show third-party messages (Lightning's notices, "
                   "library warnings); by default they are dropped and only the tables are printed")
    p.set_defaults(func=main)


def cpu_num_samples(grid: Grid) -> int:
    """Samples per setting of a default CPU bench: the fewest the grid's scorers accept (at least 2), not the
    grid's thousand (effnet's precision/recall needs 4: a default CPU bench of a grid scored with it asked 2 and
    failed in its evaluation table)."""
    from ablate.scorers.base import min_samples

    return min(grid.eval.num_samples, max(2, min_samples(grid.eval.scorers)))


def main(args: argparse.Namespace) -> int:
    import torch

    from ablate.engine import benchmark as B
    from ablate.devices import resolve_device
    from ablate.errors import ConfigError
    from ablate.config.grid import GridOverrides, load_grid
    from ablate.models.dit import DIT_PRESETS
    from ablate.outputs import cache_dir
    from ablate.runs.logs import route_output

    route_output(None, args.verbose)  # no run log: third-party messages are dropped unless --verbose
    cache = cache_dir(None, args.cache_dir)  # a bad --cache-dir or ABLATE_CACHE_DIR stops it before any timing
    device = resolve_device(args.device)
    gpu = device.type == "cuda"
    for preset in args.model or ():
        if preset not in DIT_PRESETS and preset != "grid":
            raise ConfigError(f"--model {preset!r} is not a DiT preset; allowed: {', '.join(DIT_PRESETS)}.")
    for name in ("channels", "batch_size", "steps", "warmup", "num_samples", "pack"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise ConfigError(f"--{name.replace('_', '-')} is {value}; it must be a positive integer.")
    grid = load_grid(args.grid, GridOverrides(num_samples=args.num_samples,
                                              data_dir=str(args.data_dir) if args.data_dir else None))
    if not gpu:  # a CPU bench in minutes: a small batch, a short validation, as few samples as the scorers allow
        grid = dataclasses.replace(  # (the model is the grid's)
            grid, data=dataclasses.replace(grid.data, val_size=min(grid.data.val_size, 16)),
            eval=grid.eval if args.num_samples else dataclasses.replace(grid.eval, num_samples=cpu_num_samples(grid)))
    batch = args.batch_size or (None if gpu else 16)
    steps, warmup = args.steps or (60 if gpu else 4), args.warmup or (10 if gpu else 2)
    presets = [None if m == "grid" else m for m in args.model or (["grid", "S/2", "B/2"] if gpu else ["grid"])]
    console = Console(width=max(Console().width, 170))  # the tables stay readable in logs
    name = torch.cuda.get_device_name(device) if gpu else f"cpu, {torch.get_num_threads()} threads"
    peak = B.peak_tflops(device)
    out: dict = {"device": name, "torch": torch.__version__, "grid": grid.name, "peak_tflops": peak, "training": [],
                 "evaluation": None}
    console.print(f"[bold]ablate bench[/] on {name}, torch {torch.__version__}: bf16 matmul peak {peak:,.0f} "
                  f"TFLOP/s (8192^3, random data)" if gpu else f"[bold]ablate bench[/] on {name}: fp32 matmul "
                  f"{peak:,.2f} TFLOP/s", highlight=False)
    table = Table(title=f"training: grid {grid.name}'s train config, {steps} timed steps after {warmup}, "
                        f"synthetic data (the grid's channels for its model, {args.channels} for presets); 'incl. val': amortised at val_every "
                        f"{grid.train.val_every}")
    for col in ("model", "GMACs/img", "batch", "cell img/s", "ms/step", "MFU", "cell graphs", "plain img/s", "plain MFU",
                "plain+graphs img/s", "cell/plain", "1st step s (compile)", "val s", "ckpt s", "img/s incl. val", "peak GiB"):
        table.add_column(col, justify="right")
    for preset in presets:
        g = B.with_model(grid, preset, batch)
        info = B.synthetic_info(g, grid_channels(grid, args.channels) if preset is None else args.channels)
        row = B.training_row(g, info, device, steps, warmup, peak)
        row["model"] = preset or "grid"
        out["training"].append(row)
        c, p = row["cell"], row["plain"]
        table.add_row(row["model"], f"{row['gmacs']:.3g}", str(g.train.batch_size), f"{c['img_s']:,.0f}",
                      f"{c['ms_step']:.1f}", f"{row['mfu']:.0%}", "yes" if c["cuda_graphs"] else "no",
                      f"{p['img_s']:,.0f}", f"{row['plain_mfu']:.0%}",
                      f"{row['plain_graphs']['img_s']:,.0f}" if row["plain_graphs"] else "-",
                      f"{row['ratio']:.2f}x", f"{c['first_step_s']:.1f}", f"{c['val_s']:.1f}", f"{c['ckpt_s']:.1f}",
                      f"{c['img_s_with_val']:,.0f}", f"{c['peak_mem_gib']:.1f}")
    console.print(table)
    out["packing"] = packing_table(grid, device, batch, steps, warmup, args.pack, console)
    lone = next((r["cell"]["img_s"] for r in out["training"] if r["model"] == "grid"), None)
    if lone is not None and gpu:  # the same cell path, alone and packed, in this run
        out["pack_vs_lone"] = out["packing"]["run"]["img_s"] / lone
        console.print(pack_verdict(lone, out["packing"]["run"]["img_s"], out["packing"]["k"]), highlight=False)
    if gpu:
        from ablate.engine.graphs import fallbacks

        out["cuda_graph_fallbacks"] = fallbacks()
        console.print(f"CUDA graphs that fell back to the compiled call: {'; '.join(fallbacks()) or 'none'}", highlight=False)
    if not args.no_eval:
        e = B.evaluation_row(grid, device, cache)
        out["evaluation"] = e
        t = Table(title=f"evaluation of one variant: {e['settings']} settings x weights x {e['num_samples']} samples "
                        f"(grid {grid.name}, batch {e['batch_size']}, scorers {', '.join(grid.eval.scorers)})")
        for col in ("variant eval s", "sampling s", "scoring s", "NFE", "NFE/s", "warm-up s (compile)"):
            t.add_column(col, justify="right")
        t.add_row(f"{e['variant_eval_s']:.1f}", f"{e['sample_s']:.1f}", f"{e['score_s']:.1f}", f"{e['nfe']:,}",
                  f"{e['nfe_s']:,.0f}", f"{e['warmup_s']:.1f}")
        console.print(t)
    if args.profile:
        g = B.with_model(grid, presets[0], batch)
        info = B.synthetic_info(g, args.channels)
        runs = {"training step": B.kernel_profile(g, info, device, g.train.batch_size, train=True),
                "sampling forward": B.kernel_profile(g, info, device, 2 * grid.eval.batch_size, train=False)}
        out["profile"] = {label: dict(shares) for label, shares in runs.items()}
        kinds = list(dict.fromkeys(k for shares in runs.values() for k, _ in shares))
        t = Table(title=f"share of GPU kernel time by kind, model {presets[0] or 'of the grid'} (torch.profiler, "
                        f"compiled, bf16; training batch {g.train.batch_size}, sampling batch {2 * grid.eval.batch_size})")
        t.add_column("kernel kind")
        for label in runs:
            t.add_column(label, justify="right")
        for kind in kinds:
            t.add_row(kind, *(f"{out['profile'][label].get(kind, 0.0):.0%}" for label in runs))
        console.print(t)
    if args.json:
        from ablate.io import write_json_atomic

        write_json_atomic(args.json, json.loads(json.dumps(out, default=str)))
    return 0


def pack_verdict(lone_img_s: float, pack_img_s: float, k: int) -> str:
    """One line: does ``run``'s pack of ``k`` (all cells' images a second) beat one cell trained alone on this
    machine? Fast hosts replay a lone cell's CUDA graphs near the GPU's limit, slow ones do not (2026-12-07e/g)."""
    ratio = pack_img_s / lone_img_s
    if ratio >= 1:
        return (f"run's pack of {k} trains {ratio:.2f}x the images a second of one cell alone on this machine: "
                "packs are the faster here.")
    return (f"run's pack of {k} trains {ratio:.2f}x the images a second of one cell alone on this machine: one cell "
            f"alone is {1 / ratio:.2f}x faster here (a plain run measures this in its first rounds and goes on alone; "
            "--pack 1 goes alone from the start).")


def grid_channels(grid: Any, default: int = 4) -> int:
    """Latent channels of the grid's first dataset (its own model is timed on data of its shape); ``default``
    where the dataset is not on this machine."""
    from ablate.data import load_dataset

    try:
        return load_dataset(grid.datasets[0], grid.data.resolution,
                            Path(grid.data.data_dir) if grid.data.data_dir else None)[0].channels
    except Exception:  # noqa: BLE001 -- not here (ImageNet latents...): time the model on the default shape
        return default


def packing_table(grid: Any, device: Any, batch: int | None, steps: int, warmup: int, pack: int | None,
                  console: Console) -> dict:
    """The grid's own model as ``run`` trains it (a pack, :mod:`ablate.engine.pack_bench`) against the plain
    stacked step of as many networks (the ceiling) and the plain lone step, in this run."""
    from ablate.engine import benchmark as B
    from ablate.engine.pack_bench import packing_row
    from ablate.engine.train import network_config
    from ablate.runs.pack_size import size_for

    g = B.with_model(grid, None, batch)
    info = B.synthetic_info(g, grid_channels(grid))
    gflop = 3 * network_config(g.model, info).gflops_per_image() * g.train.batch_size
    k = pack or (size_for(device, gflop) if device.type == "cuda" else 2)
    row = packing_row(g, info, device, k, steps, warmup)
    t = Table(title=f"packing: grid {grid.name}'s model, batch {g.train.batch_size} per cell, {steps} timed steps after "
                    f"{warmup}; run packs {k} cells ({row['mode']} stack); the ceiling is the plain {row['ceiling_mode']} "
                    f"stacked step of as many networks ({'compiled' if row['compiled'] else 'eager'}, no CUDA graphs; one "
                    f"fused AdamW, per-network clipping, EMA every step); run {'uses' if row['graphs'] else 'does not use'} "
                    "CUDA graphs")
    for col in ("step", "CUDA graphs", "K", "img/s", "ms/step", "vs ceiling", "1st step s"):
        t.add_column(col, justify="right")
    ceiling = row["ceiling"]["img_s"]
    for label, key, graphs, n in (("run's pack", "run", row["graphs"], k), ("run's pack", "run_without_graphs", False, k),
                                  ("plain stacked (ceiling)", "ceiling", False, k),
                                  ("plain stacked", "ceiling_graphs", True, k), ("plain lone", "lone", False, 1),
                                  ("plain lone", "lone_graphs", True, 1)):
        if key in row:
            r = row[key]
            t.add_row(label, "yes" if graphs else "no", str(n), f"{r['img_s']:,.0f}", f"{r['ms_step']:.1f}",
                      f"{r['img_s'] / ceiling:.2f}", f"{r['first_step_s']:.1f}" if "first_step_s" in r else "")
    console.print(t)
    if "validation" not in row:  # on the GPU only (pack_bench.packing_row)
        return row
    v, s = row["validation"], row["sampling"]
    t = Table(title=f"a pack's validation and sampling: the {k} cells of the pack through one stacked call against each "
                    f"alone, same modules, this run (validation: {v['items']} items in {v['batches']} batches, raw and "
                    f"EMA; sampling: setting {s['setting']}, {s['num_samples']} samples a cell, batch {s['batch_size']}); "
                    "warm-up (compile, graphs) untimed; `run` takes the lone way (EVAL_MODE, stack.py), the stacked "
                    "call lost on an H100")
    for col in ("what", "K lone s", "pack s", "lone/pack", "K lone warm-up s", "pack warm-up s", "max difference"):
        t.add_column(col, justify="right")
    for label, r, diff in (("validation", v, f"{v['max_rel_diff']:.1e} rel"), ("sampling", s, f"{s['max_abs_diff']:.1e} abs")):
        t.add_row(label, f"{r['lone_s']:.2f}", f"{r['pack_s']:.2f}", f"{r['lone_s'] / r['pack_s']:.2f}x",
                  f"{r['lone_warmup_s']:.1f}", f"{r['pack_warmup_s']:.1f}", diff)
    console.print(t)
    return row
