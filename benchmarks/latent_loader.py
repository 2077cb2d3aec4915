"""How many latents per second a prepared dataset serves on ONE CPU core, by random-index batches.

    python benchmarks/latent_loader.py                      # synthetic ImageNet-256 shaped set (4x32x32, fp16)
    python benchmarks/latent_loader.py --data data/imagenet256-sdvae --latent-resolution 32

A synthetic set is written with the real shard writer (random moments, ``--images`` rows in
``--shards`` files) into a temporary directory; numbers are with the files in the page cache
(a first pass reads them once). Serving the mean reads a quarter of each stored row (one flip's
mean); resampling reads half (mean and std) and draws C*h*w normals per latent, which bounds it on
one core: a GPU trainer can instead take ``split.latents.moments(idx, flips)`` and draw on the GPU. Each row of the table: ``split.latents[idx]`` for uniformly random
``idx`` of the train split, as the trainer draws batches (plus labels and, if stored, text_emb).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import ablate  # noqa: F401
from ablate.data.latents import load_prepared
from ablate.data.shards import FORMAT, JOB, MANIFEST, NpyAppender, file_entry, shard_name, write_json


def synthesize(out: Path, images: int, shards: int, channels: int, side: int, dtype: str) -> None:
    """A prepared-format directory with random moments (no autoencoder involved)."""
    rng = np.random.default_rng(0)
    files, records = {}, []
    per = -(-images // shards)
    for k in range(shards):
        n = min(per, images - k * per)
        moments = NpyAppender(out / shard_name("moments", k), (2, 2, channels, side, side), dtype)
        block = rng.standard_normal((4096, 2, 2, channels, side, side), dtype=np.float32).astype(dtype)
        block[:, :, 1] = np.abs(block[:, :, 1]) * 0.1
        for start in range(0, n, 4096):
            moments.append(block[: min(4096, n - start)])
        labels = NpyAppender(out / shard_name("labels", k), (2,), np.int64)
        labels.append(np.stack([rng.integers(0, 1000, n), np.zeros(n, dtype=np.int64)], axis=1))
        files[shard_name("moments", k)] = moments.finish()
        files[shard_name("labels", k)] = labels.finish()
        records.append({"index": k, "count": n, "moments": shard_name("moments", k),
                        "labels": shard_name("labels", k), "text_chunk": "table"})
    write_json(out / "captions-table.json", ["a photo of a thing"])
    write_json(out / JOB, {"synthetic": True})
    files["captions-table.json"] = file_entry(out / "captions-table.json")
    files[JOB] = file_entry(out / JOB)
    write_json(out / MANIFEST, {
        "format": FORMAT, "dataset": "synthetic", "command": "benchmarks/latent_loader.py", "resolution": side * 8,
        "latent_resolution": side, "latent_channels": channels, "crop": "none", "counts": {"images": images},
        "autoencoder": {"id": "none"}, "latent_mean": [0.0] * channels, "latent_std": [1.0] * channels,
        "classes": None, "text_encoder": None, "holdout": min(10000, images // 10), "shards": records, "files": files,
        "text_chunks": [{"name": "table", "count": 1, "captions": "captions-table.json", "pooled": None, "tokens": None}],
    })


def measure(view, labels: torch.Tensor, batch: int, seconds: float) -> float:
    """Latents per second served by random-index batches for about ``seconds``."""
    generator = torch.Generator().manual_seed(0)
    served, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        idx = torch.randint(len(view), (batch,), generator=generator)
        x, y = view[idx], labels[idx]
        served += x.shape[0] + 0 * y.shape[0]
    return served / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="an existing prepared directory (default: synthesize one)")
    parser.add_argument("--latent-resolution", type=int, default=32)
    parser.add_argument("--channels", type=int, default=4)
    parser.add_argument("--images", type=int, default=50_000)
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--dtype", default="float16")
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="latent-bench-") as tmp:
        data = args.data
        if data is None:
            data = Path(tmp) / "synthetic"
            data.mkdir()
            t = time.perf_counter()
            synthesize(data, args.images, args.shards, args.channels, args.latent_resolution, args.dtype)
            print(f"synthesized {args.images} x (2, 2, {args.channels}, {args.latent_resolution}, "
                  f"{args.latent_resolution}) {args.dtype} in {time.perf_counter() - t:.1f}s")
        t = time.perf_counter()
        load_prepared(str(data), args.latent_resolution, verify="full")
        print(f"load_prepared with full SHA-256 verification: {time.perf_counter() - t:.2f}s (memoised afterwards)")
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"latents/s on 1 core, random-index batches ({data})")
        for column in ("serving", "batch", "latents/s", "MB/s read from the shards"):
            table.add_column(column, justify="right")
        for name, flip, resample in (("mean", False, False), ("flip", True, False), ("flip+resample", True, True)):
            _, splits = load_prepared(str(data), args.latent_resolution, resample=resample, flip=flip, verify="size")
            train = splits["train"]
            row_bytes = int(np.prod(train.latents.table.row_shape)) * train.latents.table.dtype.itemsize
            row_bytes //= 2 if resample else 4  # one flip's (mean, std), or its mean alone
            measure(train.latents, train.labels, 256, 0.5)  # warm the page cache a little
            for batch in (64, 256, 1024):
                rate = measure(train.latents, train.labels, batch, args.seconds)
                table.add_row(name, str(batch), f"{rate:,.0f}", f"{rate * row_bytes / 1e6:,.0f}")
        Console().print(table)


if __name__ == "__main__":
    main()
