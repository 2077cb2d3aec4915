"""``python -m ablate score PATH``: score a folder of images or a saved sample batch with any scorer.

PATH is a folder of PNG/JPEG images (read with PIL, sorted by relative path) or a ``.pt`` batch
as the evaluator saves it: a dict with ``samples`` (dataset latents, pixels in [-1, 1], or uint8
images), ``labels`` and ``captions``. Prints each metric and the provenance of each scorer, so
other models can be scored exactly as the suite scores its own and checked against published numbers.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table
from rich.text import Text

from ablate.devices import resolve_device
from ablate.config.schema import parse_yaml
from ablate.errors import ConfigError, shorten
from ablate.outputs import cache_dir


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "score",
        help="score a folder of images or a saved sample batch (.pt) with any scorer",
        description=(
            "Score generated images exactly as `ablate run` does: CLIP score and CLIP-feature FID as the "
            "SD3 paper measured them (clip, fid_clip), standard Inception FID (fid_inception), or any "
            "other registered scorer. PATH is a folder of PNG/JPEG images or a .pt dict with 'samples', "
            "'labels', 'captions'. Weights come from --weights-dir, the library caches, or a download."
        ),
    )
    p.add_argument("path", type=Path, metavar="PATH", help="folder of images, or a .pt sample batch")
    p.add_argument("--scorer", action="append", default=None, metavar="NAME",
                   help="scorer to run; repeat for several (default: clip and fid_clip, the paper's pair)")
    p.add_argument("--captions", type=Path, default=None, metavar="FILE",
                   help="one caption per line, in the order of the samples (a folder: sorted file names)")
    p.add_argument("--reference", type=Path, default=None, metavar="PATH",
                   help="FID reference: a folder of images, a .pt batch or a .npz of saved statistics "
                        "(default: the --dataset's test split)")
    p.add_argument("--dataset", default=None, metavar="NAME",
                   help="dataset the samples belong to: its autoencoder decodes latents, its test split "
                        "is the default FID reference")
    p.add_argument("--resolution", type=int, default=None,
                   help="the dataset's latent side length (default: the samples' side length)")
    p.add_argument("--weights-dir", type=Path, default=None, metavar="DIR",
                   help="folder holding pretrained weights files (the error of a missing one names the file)")
    p.add_argument("--autoencoder", default=None, metavar="PATH",
                   help="load the dataset's autoencoder from this local folder (or hub id) instead")
    p.add_argument("--data-dir", type=Path, default=None, metavar="DIR", help="where the dataset's files are")
    p.add_argument("--cache-dir", default=None, metavar="DIR",
                   help="reference statistics cache (default: $ABLATE_CACHE_DIR, else results/cache)")
    p.add_argument("--device", default=None, help="auto, cpu, cuda or cuda:N (default: auto: cuda if available, else cpu)")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="scorer option, e.g. model=ViT-B-32, pretrained=openai, clip_weights=FILE, "
                        "reference_count=10000, batch_size=32 (value parsed as YAML); repeatable")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ablate.scorers.base import ScoreContext, get_scorer, metric_info, option_problem
    from ablate.scorers.fid import FrechetScorer

    device = resolve_device(args.device)
    samples, labels, captions = load_samples(args.path)
    if args.captions is not None:
        captions = read_captions(args.captions, samples.shape[0])
    options = parse_options(args.option)
    for key, value in (("reference", args.reference), ("autoencoder", args.autoencoder)):
        if value is not None:
            options[key] = str(value)
    ctx = ScoreContext(
        dataset=dataset_info(args, samples), data_dir=args.data_dir, cache_dir=cache_dir(None, args.cache_dir),
        weights_dir=args.weights_dir, device=device, options=options,
    )
    names = args.scorer or ["clip", "fid_clip"]
    scorers = [get_scorer(name, ctx) for name in names]
    for key, value in options.items():  # an option no chosen scorer reads would be silently ignored
        problems = [option_problem(name, {key: value}) for name in names]
        if all(problems):
            raise ConfigError(f"--option {key}={shorten(value)}: {problems[0]}.")
    for scorer in scorers:
        if isinstance(scorer, FrechetScorer) and args.dataset is None and args.reference is None:
            raise ConfigError(
                f"Scorer {scorer.name!r} compares the samples with a reference set: pass --reference "
                "(a folder of images, a .pt batch or a .npz of statistics) or --dataset NAME (its test split)."
            )
        if any(m.role == "alignment" for m in scorer.metrics) and not scorer.uses_labels and captions is None:
            raise ConfigError(
                f"Scorer {scorer.name!r} compares images with their captions, but {str(args.path)!r} has none: "
                "pass --captions FILE (one caption per line, in the order of the samples; for a folder, "
                "the sorted file names)."
            )
        if scorer.uses_labels and labels is None:
            raise ConfigError(
                f"Scorer {scorer.name!r} needs each sample's prompted class index, but {str(args.path)!r} has "
                "none: score a .pt sample batch with 'labels' (as the evaluator saves it)."
            )
        scorer.check_available()  # every scorer's weights, before any of them runs

    console = Console()
    results: list[tuple[str, dict[str, float], dict[str, Any]]] = []
    for scorer in scorers:
        with console.status(f"scoring {samples.shape[0]} samples with {scorer.name} on {device}"):
            unlabelled = torch.full((samples.shape[0],), -1, dtype=torch.int64)  # only label-free scorers see this
            values = scorer.score(samples, labels if labels is not None else unlabelled,
                                  captions or [""] * samples.shape[0])
            for metric, parts in scorer.resamples().items():  # e.g. KID: its standard error over its sample blocks
                if len(parts) > 1:
                    values[f"{metric} SE ({len(parts)} parts)"] = float(torch.tensor(parts).std() / len(parts) ** 0.5)
            for metric, replicates in scorer.replicates().items():  # e.g. fd_effnet on random halves of the samples
                if len(replicates) > 1:
                    values[f"{metric} SD over samples ({len(replicates)} replicates)"] = float(torch.tensor(replicates).std())
        results.append((scorer.name, values, {**scorer.provenance(), "num_samples": int(samples.shape[0])}))

    table = Table(title=Text(f"Scores of {args.path} ({samples.shape[0]} samples)"))
    for column in ("scorer", "metric", "value", "better", "measures"):
        table.add_column(column, justify="right" if column == "value" else "left")
    for name, values, _ in results:
        for metric, value in values.items():
            info = metric_info(metric)
            better = "" if info is None else ("higher" if info.higher_is_better else "lower")
            table.add_row(*map(Text, (name, metric, f"{value:.4f}", better, info.role if info else "")))
    console.print(table)
    for name, _, provenance in results:
        prov = Table(title=Text(f"{name}: provenance"), show_header=False)
        prov.add_column("key", style="bold")
        prov.add_column("value", overflow="fold")
        for key, value in provenance.items():
            prov.add_row(Text(key), Text("-" if value is None else str(value)))  # paths, options: never markup
        console.print(prov)
    return 0


def load_samples(path: Path) -> tuple[torch.Tensor, torch.Tensor | None, list[str] | None]:
    """(samples, labels or None, captions or None) from an image folder (uint8 RGB) or a saved .pt batch."""
    from ablate.data.decode import image_files, read_images

    if path.is_dir():
        images = read_images(image_files(path))
        return images, None, None
    if path.suffix != ".pt" or not path.is_file():
        raise ConfigError(
            f"{str(path)!r} is neither a folder of images nor a .pt sample batch; give one of those."
        )
    try:
        batch = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a pickle that is not a plain tensor dict, or a broken file
        raise ConfigError(
            f"The sample batch {str(path)!r} cannot be read as a tensor dict ({type(err).__name__}): allowed is a "
            "file torch.save wrote holding only tensors, numbers, strings, lists and dicts, as the evaluator saves "
            "it ('samples', 'labels', 'captions')."
        ) from None
    if not isinstance(batch, dict) or not isinstance(batch.get("samples"), torch.Tensor) or batch["samples"].dim() != 4:
        raise ConfigError(
            f"The sample batch {str(path)!r} must be a dict with 'samples' (a tensor N x C x H x W), "
            "'labels' and 'captions', as the evaluator saves it."
        )
    samples = batch["samples"]
    labels = batch.get("labels")
    labels = labels if isinstance(labels, torch.Tensor) else None
    captions = batch.get("captions")
    if captions is not None and (len(captions) != samples.shape[0] or not all(isinstance(c, str) for c in captions)):
        raise ConfigError(
            f"The sample batch {str(path)!r} has {samples.shape[0]} samples but its 'captions' are not "
            f"{samples.shape[0]} strings."
        )
    return samples, labels, list(captions) if captions is not None else None


def read_captions(path: Path, count: int) -> list[str]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as err:
        raise ConfigError(f"The captions file {str(path)!r} cannot be read ({err}).") from err
    if len(lines) != count:
        raise ConfigError(
            f"The captions file {str(path)!r} has {len(lines)} lines but there are {count} samples; "
            "it needs exactly one caption per line, in the order of the samples."
        )
    return lines


def parse_options(pairs: list[str]) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--option {shorten(pair)} is not KEY=VALUE (for example --option model=ViT-B-32).")
        options[key.strip()] = parse_yaml(value, f"--option {shorten(pair)}", "value")[0] if value.strip() else None
    return options


def dataset_info(args: argparse.Namespace, samples: torch.Tensor) -> Any:
    """The named dataset's info (for decoding and the reference split), or plain images without one."""
    from ablate.data.base import DatasetInfo

    if args.dataset is not None:
        from ablate.data import load_dataset

        info, _ = load_dataset(args.dataset, args.resolution or int(samples.shape[-1]), args.data_dir)
        return info
    if samples.dtype != torch.uint8 and samples.shape[1] not in (1, 3):
        raise ConfigError(
            f"The samples have {samples.shape[1]} channels: they are latents, so name their dataset with "
            "--dataset (its autoencoder decodes them)."
        )
    return DatasetInfo(
        name=f"images:{args.path.name}", channels=int(samples.shape[1]), resolution=int(samples.shape[-1]),
        num_classes=0, class_names=[], autoencoder="identity", caption=lambda i, g=None: "",
        provenance={"source": str(args.path)},
    )
