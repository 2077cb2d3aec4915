"""``python -m ablate prepare imagenet|cc12m``: image collection -> prepared latent shards (run once).

    python -m ablate prepare imagenet --root PATH/train --out data/imagenet256-sdvae
    python -m ablate prepare cc12m --shards 'PATH/{00000..01242}.tar' --out data/cc12m256-sdvae

Interrupted runs resume with the same command. See :mod:`ablate.data.prepare` and
:mod:`ablate.data.latents` for the format.
"""

from __future__ import annotations

import argparse
import shlex

from rich.console import Console

from ablate.data.prepare import DEFAULT_VAE, PrepareJob, parse_devices, prepare
from ablate.data.text import DEFAULT_TEXT_MODEL, DEFAULT_TEXT_PRETRAINED, TextEncoderSpec


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "prepare",
        help="encode ImageNet or CC12M into autoencoder latents (run once)",
        description="Encode an image collection into memory-mapped latent shards with a JSON manifest. "
        "Resumable: rerun the same command after an interruption.",
    )
    kinds = parser.add_subparsers(dest="dataset", metavar="DATASET", required=True)
    imagenet = kinds.add_parser("imagenet", help="an ImageFolder tree (one folder per synset), class captions")
    imagenet.add_argument("--root", required=True, help="folder with one sub-folder per class (e.g. ILSVRC .../train)")
    imagenet.add_argument("--shard-size", type=int, default=65536, help="images per shard (default 65536)")
    cc12m = kinds.add_parser("cc12m", help="img2dataset WebDataset tars (jpg + txt), per-sample captions")
    cc12m.add_argument("--shards", required=True, nargs="+", help="tar files or brace patterns, e.g. 'PATH/{00000..01242}.tar'")
    cc12m.add_argument("--tars-per-shard", type=int, default=8, help="input tars per output shard (default 8)")
    cc12m.add_argument("--text-sequence", action="store_true",
                       help="also store each caption's token sequence (L x W floats per sample: large for CC12M)")
    for sub in (imagenet, cc12m):
        sub.add_argument("--out", required=True, help="output directory (created; resumed if it holds this job)")
        sub.add_argument("--resolution", type=int, default=256, help="image side in pixels after center crop (default 256)")
        sub.add_argument("--vae", default=DEFAULT_VAE, help=f"diffusers AutoencoderKL: hub id or local folder (default {DEFAULT_VAE})")
        sub.add_argument("--vae-subfolder", default=None, help="subfolder of --vae holding the autoencoder (e.g. 'vae')")
        sub.add_argument("--dtype", choices=("float16", "float32"), default="float16", help="storage dtype (default float16)")
        sub.add_argument("--text-model", default=DEFAULT_TEXT_MODEL,
                         help="open_clip text encoder: architecture name, model-config .json, or 'none' (default ViT-L-14)")
        sub.add_argument("--text-pretrained", default=DEFAULT_TEXT_PRETRAINED, help="open_clip pretrained tag (default openai)")
        sub.add_argument("--text-weights", default=None, help="text encoder weights file (instead of cache/download)")
        sub.add_argument("--holdout", type=int, default=10000, help="test-split size, at most a tenth of the set (default 10000)")
        sub.add_argument("--seed", type=int, default=0, help="seed of the per-sample synonym draw (default 0)")
        sub.add_argument("--gpus", default=None, help="'all' (default; CPU if none), a count, indices like 0,2, or 'cpu'")
        sub.add_argument("--batch-size", type=int, default=64, help="images per autoencoder batch (default 64)")
        sub.add_argument("--workers", type=int, default=None, help="image-decoding processes per device (default: spare cores, max 8)")
        sub.set_defaults(func=run)


def job_from_args(args: argparse.Namespace, devices: int = 1) -> PrepareJob:
    """The :class:`PrepareJob` a command line describes."""
    from ablate.data.encode import default_workers

    text = None
    if args.text_model.lower() != "none":
        tokens = args.dataset == "imagenet" or args.text_sequence
        pretrained = None if str(args.text_pretrained).lower() == "none" else args.text_pretrained
        text = TextEncoderSpec(args.text_model, pretrained, args.text_weights, tokens)
    return PrepareJob(
        dataset=args.dataset,
        source=(args.root,) if args.dataset == "imagenet" else tuple(args.shards),
        out=args.out,
        resolution=args.resolution,
        vae=args.vae,
        vae_subfolder=args.vae_subfolder,
        dtype=args.dtype,
        text=text,
        shard_size=getattr(args, "shard_size", 65536),
        tars_per_shard=getattr(args, "tars_per_shard", 8),
        holdout=args.holdout,
        seed=args.seed,
        batch_size=args.batch_size,
        workers=default_workers(devices) if args.workers is None else args.workers,
    )


def command_line(args: argparse.Namespace) -> str:
    """The command with every option spelled out (defaults included): what the manifest records."""
    words = ["python", "-m", "ablate", "prepare", args.dataset]
    for key, value in vars(args).items():
        if key in ("command", "dataset", "func") or value is None or value is False:
            continue
        flag = "--" + key.replace("_", "-")
        values = [] if value is True else [str(v) for v in value] if isinstance(value, list) else [str(value)]
        words += [flag, *values]
    return " ".join(shlex.quote(w) for w in words)


def run(args: argparse.Namespace) -> int:
    devices = parse_devices(args.gpus)
    job = job_from_args(args, len(devices))
    command = command_line(args)
    console = Console(stderr=True)
    out = prepare(job, devices, command=command, console=console)
    from ablate.data.shards import read_manifest

    manifest = read_manifest(out)
    counts = manifest["counts"]
    Console().print(
        f"prepared {counts['images']} images into {out} ({counts['shards']} shards, latents "
        f"{manifest['latent_channels']}x{manifest['latent_resolution']}x{manifest['latent_resolution']}, "
        f"{counts['corrupt']} corrupt images skipped{' (listed in manifest.json)' if counts['corrupt'] else ''})",
        markup=False,
    )
    return 0
