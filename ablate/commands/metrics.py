"""``python -m ablate metrics check``: the metric-validity bench (graded corruptions of real images).

Writes ``validity-<dataset>.json``, ``.md`` and ``.png`` to ``<results>/validity/`` (``--out DIR`` for the
published copy, e.g. ``--out leaderboard``); a scorer's earlier result in that JSON is kept unless it is
benched again. Every leaderboard reads these files (from ``<results>/validity/``, then its own output
folder) and cites each metric's verdict.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ablate.errors import AblateError, ConfigError

DEFAULT_SCORERS = ("probe", "effnet", "clip", "fid_clip", "fid_inception")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("metrics", help="check that metrics measure what they claim (validity bench)",
                              description="Metric tools. `metrics check`: score graded corruptions of held-out "
                                          "real images with every scorer and judge whether each metric gets "
                                          "worse with each corruption's strength.")
    sub = p.add_subparsers(dest="metrics_command", metavar="ACTION", required=True)
    c = sub.add_parser("check", help="run the validity bench; writes validity-<dataset>.json/.md/.png")
    c.add_argument("--dataset", default="fashion-mnist", help="dataset whose train split is corrupted (default fashion-mnist)")
    c.add_argument("--resolution", type=int, default=32, help="the dataset's latent side length (default 32)")
    c.add_argument("--scorer", action="append", default=None, metavar="NAME",
                   help=f"scorer to bench; repeatable (default: {', '.join(DEFAULT_SCORERS)}; those whose weights "
                        "are missing are skipped and the report says so)")
    c.add_argument("--num", type=int, default=500, metavar="N", help="images per corrupted set (default 500)")
    c.add_argument("--seeds", type=int, default=3, metavar="K", help="seeds (image draws) per level (default 3)")
    c.add_argument("--results", type=Path, default=Path("results"), help="results directory (default results)")
    c.add_argument("--out", type=Path, default=None, help="write here instead of <results>/validity")
    c.add_argument("--data-dir", type=Path, default=None, metavar="DIR")
    c.add_argument("--cache-dir", type=Path, default=Path("cache"), metavar="DIR")
    c.add_argument("--weights-dir", type=Path, default=None, metavar="DIR",
                   help="pretrained weights files (efficientnet-lite0-57934424.pth, CLIP, Inception)")
    c.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    c.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="scorer option as in `ablate score` (e.g. effnet={image_size: 64}); repeatable")
    c.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from ablate.commands.score import parse_options
    from ablate.data import load_dataset
    from ablate.devices import resolve_device
    from ablate.io import write_bytes_atomic, write_json_atomic, write_text_atomic
    from ablate.report import validity
    from ablate.results import provenance_stamp
    from ablate.scorers.base import ScoreContext, get_scorer
    from ablate.validity.bench import held_out_pool, result_document, run_bench

    if args.num < 32 or args.seeds < 1:
        raise ConfigError(f"metrics check: --num {args.num} (at least 32) or --seeds {args.seeds} (at least 1) "
                          "is too small.")
    device = resolve_device(args.device)
    info, splits = load_dataset(args.dataset, args.resolution, args.data_dir)
    if info.num_classes < 2 or info.autoencoder != "identity":
        raise ConfigError(f"metrics check needs a class-labelled pixel dataset (like fashion-mnist); "
                          f"{args.dataset!r} has {info.num_classes} classes and autoencoder {info.autoencoder!r}.")
    ctx = ScoreContext(dataset=info, data_dir=args.data_dir, cache_dir=args.cache_dir, weights_dir=args.weights_dir,
                       device=device, options=parse_options(args.option))
    names = args.scorer or list(DEFAULT_SCORERS)
    scorers, skipped = [], {}
    for name in names:
        scorer = get_scorer(name, ctx)
        try:
            scorer.check_available()
        except AblateError as err:
            if args.scorer:  # asked for by name: its absence is an error
                raise
            skipped[name] = f"not available here, so not benched ({' '.join(str(err).split())[:300]})"
            continue
        scorers.append(scorer)
    pool, pool_name = held_out_pool(info, splits)
    stamp = provenance_stamp(str(device))  # the code that ran: taken before the (long) bench
    torch.manual_seed(0)
    scored = run_bench(scorers, info, pool, args.num, list(range(args.seeds)),
                       progress=lambda line: print(line, flush=True))
    doc = result_document(info.name, pool_name, args.num, list(range(args.seeds)), scored, skipped, stamp)
    out = args.out if args.out is not None else args.results / "validity"
    found = validity.load(info.name, [out])
    doc = validity.merge(found[0] if found else None, doc)
    json_path, md_path, png_path = (out / validity.file_name(info.name, e) for e in ("json", "md", "png"))
    write_json_atomic(json_path, doc)
    write_bytes_atomic(png_path, validity.plot(doc))
    text = validity.render_markdown(doc, png_path.name)
    write_text_atomic(md_path, text)
    print(text)
    print(f"wrote {json_path}, {md_path}, {png_path}")
    return 0
