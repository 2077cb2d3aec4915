"""``python -m ablate scale FILE``: an isoFLOP scaling study per formulation (see :mod:`ablate.scaling`).

Runs the study's cells as ordinary grids (isoFLOP cells, then quality-vs-GFLOPs cells), fits the
isoFLOP parabolas and power laws, trains the extrapolation cells the fits call for, and writes
``<out>/scaling-<name>.md`` with its figures. Finished cells are skipped, so rerunning continues.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape

from ablate.commands.run import _positive, add_device_arguments
from ablate.devices import resolve_device
from ablate.errors import ConfigError
from ablate.outputs import cache_dir, checked_option, report_dir

if TYPE_CHECKING:
    import torch

    from ablate.engine.runner import RunContext
    from ablate.runs.workers import WorkerOptions
    from ablate.scaling.family import DataShape
    from ablate.scaling.plan import Point
    from ablate.scaling.spec import Study


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("scale", help="run an isoFLOP scaling study and write its report",
                       description="Run a scaling study: every formulation at every model size and compute budget "
                                   "(ordinary grid cells), fits of the isoFLOP curves and power laws with intervals, "
                                   "the extrapolation check, and the report <results>/<name>/leaderboard/scaling-<name>.md (or --out DIR).")
    p.add_argument("file", help="a scaling file (grids/scaling-smoke.yaml) or the name of a shipped one")
    p.add_argument("--results", metavar="DIR", help="results root; the study's cells go to DIR/<name>.<cell>/")
    p.add_argument("--out", metavar="DIR", help="where the report goes (default: <results>/<name>/leaderboard; "
                   "`--out leaderboard` for the published copy)")
    add_device_arguments(p)
    p.add_argument("--shard", metavar="K/N", default=None,
                   help="train only the K-th of N shares of the study's isoFLOP and quality cells (balanced by FLOPs) "
                        "and stop, no report: N processes (one per GPU or CPU share, e.g. with CUDA_VISIBLE_DEVICES) "
                        "train the study together; then each shard fits the formulations whose isoFLOP cells are all "
                        "recorded and trains its share of their extrapolation cells (a second round of shards does "
                        "the rest); then run without "
                        "--shard to fit, train what is left and report (finished cells are skipped)")
    p.add_argument("--workers-per-gpu", type=_positive, default=1, metavar="K",
                   help="cells of one grid trained at once on each GPU (a model too small to fill a GPU alone); "
                        "one on the CPU")
    p.add_argument("--pack", type=_positive, metavar="K", help="cells a worker trains at once as one stacked model "
                   "(1: one at a time; default: chosen from the model's size, see ablate/runs/pack_size.py)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--plan", action="store_true", help="print the cells (steps, FLOPs) and train nothing")
    mode.add_argument("--report-only", action="store_true", help="fit and report the finished cells; train nothing")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from ablate.scaling.family import DataShape
    from ablate.scaling.plan import isoflop_points, quality_points
    from ablate.scaling.spec import load_study

    for flag, value in (("--results", args.results), ("--out", args.out)):
        if value is not None:
            checked_option(flag, value)
    study = load_study(args.file, Path(args.results) if args.results else None)
    device = resolve_device(args.device)
    console = Console(soft_wrap=True)  # one line per event, also in log files
    ctx = _context(device, args, console, study.base.results_root)
    info, _ = ctx.dataset(study.base, study.base.datasets[0])
    caption = study.base.data.conditioning == "caption"
    backbone = study.base.backbones[0]
    exact = backbone != "dit" or (caption and bool(info.caption_vocab))  # the network is more than a DiT
    data = DataShape(info.resolution, info.channels, 0 if caption else info.num_classes,
                     info.cond_dim if caption else 0, backbone, info if exact else None, study.base.data.conditioning)
    iso = isoflop_points(study, data)
    points = iso + quality_points(study, data)
    if args.shard is not None:
        points = shard(points, args.shard)
    cells = sum(len(p.grid.variants) * len(p.grid.seeds) for p in points)
    flops = sum(p.spend.flops * len(p.grid.variants) * len(p.grid.seeds) for p in points)
    console.print(f"[bold]ablate scale[/] {study.name}: {len(points)} grids, {cells} cells, {flops:.3g} training "
                  f"FLOPs (before the extrapolation) on {device}, results in "
                  f"{escape(str(study.base.results_root))}", highlight=False, soft_wrap=True)
    for p in points:
        console.print(f"  {p.grid.name}: N={p.num_params:,} steps={p.spend.steps} FLOPs={p.spend.flops:.3g} "
                      f"({p.spend.error:.2%} off)", highlight=False, soft_wrap=True)
    if args.plan:
        return 0
    if args.shard is not None:
        if args.report_only:
            raise ConfigError("--shard trains a share of the cells and --report-only trains none; use one of them.")
        options = _options(args)
        _run(points, ctx, options)
        extra = _extrapolation_share(study, data, iso, args.shard)
        for p in extra:
            console.print(f"shard {args.shard}: extrapolation {', '.join(p.grid.variants)} at {p.label} "
                          f"(N={p.num_params:,}, {p.spend.steps} steps)", highlight=False, soft_wrap=True)
        _run(extra, ctx, options)
        console.print(f"shard {args.shard}: {len(points) + len(extra)} grids done; run `python -m ablate scale "
                      f"{args.file}` without --shard once every shard is done, to fit, extrapolate and report",
                      highlight=False)
        return 0
    return _run_and_report(study, data, points, ctx, args, console)


def _options(args: argparse.Namespace) -> WorkerOptions:
    from ablate.runs.workers import WorkerOptions

    return WorkerOptions(workers_per_gpu=args.workers_per_gpu, pack=args.pack)


def _extrapolation_share(study: Study, data: DataShape, iso: list[Point], spec: str) -> list[Point]:
    """This shard's share of the extrapolation cells of the formulations whose isoFLOP cells all have their
    records (other shards' included; the sizes come from the fits' point estimates, so shards agree);
    dealt from the last shard, since the first shards hold the largest isoFLOP grids."""
    from ablate.scaling.analysis import fit_study
    from ablate.scaling.collect import collect, missing
    from ablate.scaling.extrapolate import extrapolation_points

    rows, _, _ = collect(iso)
    unfinished = {variant for _, variant, _ in missing(iso, rows)}
    ready = [v for v in study.base.variants if v not in unfinished]
    if not ready:
        return []
    k, n = _shard_spec(spec)
    fits = fit_study(rows[rows["variant"].isin(ready)], study.scaling)
    return shard(extrapolation_points(study, data, fits), f"{n + 1 - k}/{n}")


def shard(points: list[Point], spec: str) -> list[Point]:
    """The ``K/N``-th share of ``points``: sorted by training FLOPs (largest first) and dealt round robin, so
    the N shares cost about the same; every point is in exactly one share."""
    k, n = _shard_spec(spec)
    ranked = sorted(points, key=lambda p: (-p.spend.flops * len(p.grid.variants) * len(p.grid.seeds), p.grid.name))
    return ranked[k - 1::n]


def _shard_spec(spec: str) -> tuple[int, int]:
    try:
        k, n = (int(x) for x in spec.split("/"))
    except ValueError:
        k = n = 0
    if not 1 <= k <= n:
        raise ConfigError(f"Command-line option --shard {spec!r} is not allowed: K/N with 1 <= K <= N, e.g. 1/4 "
                          "(the first of four shares).")
    return k, n


def _context(device: torch.device, args: argparse.Namespace, console: Console, results_root: Path) -> RunContext:
    from ablate.engine.runner import RunContext

    return RunContext(device=device, cache_dir=cache_dir(results_root, args.cache_dir), weights_dir=args.weights_dir,
                      console=console, progress=sys.stdout.isatty())


def _run(points: list[Point], ctx: RunContext, options: WorkerOptions) -> None:
    """Every point's grid through the one grid-running path (queue, storage, resume, records)."""
    from ablate.runs.signals import stop_on_signals
    from ablate.runs.workers import run_grid

    with stop_on_signals():
        for p in points:
            run_grid(p.grid, ctx, options)


def _run_and_report(study: Study, data: DataShape, points: list[Point], ctx: RunContext, args: argparse.Namespace,
                    console: Console) -> int:
    from ablate.scaling.analysis import fit_study
    from ablate.scaling.collect import collect
    from ablate.scaling.extrapolate import extrapolation_points, predictions
    from ablate.scaling.report import write_report

    options = _options(args)
    if not args.report_only:
        _run(points, ctx, options)
    rows, _, _ = collect(points)
    fits = fit_study(rows, study.scaling)
    extra = extrapolation_points(study, data, fits)
    if extra and not args.report_only:
        for p in extra:
            console.print(f"extrapolation: {', '.join(p.grid.variants)} at {p.label} (N={p.num_params:,})",
                          highlight=False, soft_wrap=True)
        _run(extra, ctx, options)
    points = points + extra
    rows, fidelity, alignment = collect(points)
    written = write_report(report_dir(study.base.results_dir, args.out), study, points, rows, fits, predictions(study, data, fits, rows),
                           fidelity, alignment)
    console.print("report: " + ", ".join(escape(str(p)) for p in written), highlight=False, soft_wrap=True)
    return 0
