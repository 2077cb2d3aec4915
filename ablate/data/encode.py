"""Encoding shards on devices: images -> autoencoder posterior moments (+ caption rows or embeddings).

One :class:`Encoder` per device holds the frozen diffusers ``AutoencoderKL`` (and, for per-sample
captions, the text encoder). :func:`encode_shard` reads a shard's records, writes its arrays
through :class:`ablate.data.latents.NpyAppender` (``.part`` files, renamed when complete) and
writes ``shard-KKKKK.json`` last: a shard without that file is not finished and is redone.
Moments are raw posterior (mean, std) in the autoencoder's latent space, for the image and its
horizontal flip, computed in float32 and stored in the job's dtype. :func:`run_shards` runs one
process per device (in-process for a single device) and shows the progress.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import signal
import time
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeRemainingColumn
from rich.text import Text

from ablate.data.captions import draw_synonym
from ablate.data.shards import NpyAppender, file_entry, shard_name
from ablate.io import write_json_atomic
from ablate.data.sources import CroppedImages, Record, collate_images, scan_tar
from ablate.data.text import TextEncoder, TextEncoderSpec
from ablate.errors import AblateError, ConfigError

Report = Callable[[str, int], None]  # ("found" | "progress", images)


class AutoencoderUnavailableError(AblateError, FileNotFoundError):
    """The autoencoder named by --vae cannot be loaded (offline, missing folder, not an AutoencoderKL)."""


def load_autoencoder(name: str, subfolder: str | None = None, device: str = "cpu") -> torch.nn.Module:
    """A frozen diffusers AutoencoderKL from a local folder, the Hugging Face cache, or (online) the hub."""
    from diffusers import AutoencoderKL

    from ablate.weights import download_allowed, hub_offline

    kwargs: dict[str, Any] = {"low_cpu_mem_usage": False, **({"subfolder": subfolder} if subfolder else {})}
    local = Path(name).expanduser()
    try:
        with warnings.catch_warnings():  # diffusers passes a deprecated hub argument; not the user's concern
            warnings.filterwarnings("ignore", message=".*local_dir_use_symlinks.*")
            if local.is_dir():
                vae = AutoencoderKL.from_pretrained(str(local), **kwargs)
            else:
                try:
                    vae = AutoencoderKL.from_pretrained(name, local_files_only=True, **kwargs)
                except OSError:
                    if not download_allowed("huggingface.co"):
                        raise
                    vae = AutoencoderKL.from_pretrained(name, **kwargs)
    except (OSError, ValueError, TypeError) as err:
        where = "the local folder" if local.is_dir() else (
            "the Hugging Face cache (HF_HUB_OFFLINE is set)" if hub_offline() else "the Hugging Face cache or hub"
        )
        raise AutoencoderUnavailableError(
            f"The autoencoder --vae {name!r}{f' (subfolder {subfolder!r})' if subfolder else ''} cannot be loaded "
            f"from {where} ({type(err).__name__}: {str(err).splitlines()[0][:200]}). Give --vae a local diffusers "
            "folder holding config.json and diffusion_pytorch_model.safetensors (as save_pretrained writes; "
            f"e.g. from `huggingface-cli download {name} --local-dir DIR` on a machine with internet access), "
            "or fill the Hugging Face cache (~/.cache/huggingface/hub) with it there and copy it here."
        ) from err
    return vae.to(device).eval().requires_grad_(False)


def latent_geometry(vae: torch.nn.Module, resolution: int) -> tuple[int, int]:
    """(latent channels, latent side) of ``vae`` for images of side ``resolution``."""
    factor = 2 ** (len(vae.config.block_out_channels) - 1)
    if resolution % factor:
        raise AblateError(
            f"--resolution {resolution} is not a multiple of the autoencoder's downsampling factor {factor}; "
            f"use e.g. {resolution // factor * factor or factor}."
        )
    return int(vae.config.latent_channels), resolution // factor


@torch.no_grad()
def encode_moments(vae: torch.nn.Module, images: torch.Tensor, device: torch.device, dtype: np.dtype) -> np.ndarray:
    """uint8 images (B, 3, R, R) -> moments (B, 2 [image, flip], 2 [mean, std], C, h, w) as ``dtype``."""
    x = images.to(device, non_blocking=True).float().div_(127.5).sub_(1.0)
    dist = vae.encode(torch.cat([x, x.flip(-1)])).latent_dist
    b = images.shape[0]
    moments = torch.stack([dist.mean, dist.std], dim=1)            # (2B, 2, C, h, w)
    moments = moments.view(2, b, *moments.shape[1:]).transpose(0, 1)  # (B, 2, 2, C, h, w)
    return moments.float().cpu().numpy().astype(dtype)


@dataclass
class ShardTask:
    """One unit of resumable work: records (ImageFolder) or tar files (scanned by the worker)."""

    index: int
    records: list[Record] = field(default_factory=list)
    tars: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class EncodeSettings:
    """Everything a worker process needs to build its :class:`Encoder` (plain, picklable data)."""

    out: str
    resolution: int
    dtype: str
    vae: str
    vae_subfolder: str | None
    text: TextEncoderSpec | None             # per-sample captions only (class captions use the table)
    synonyms: list[tuple[str, ...]] | None   # class datasets: synonyms per class
    table_starts: list[int] | None           # class datasets: each class's first caption-table row
    seed: int = 0
    batch_size: int = 64
    workers: int = 0


@dataclass
class Encoder:
    """What a device needs to encode shards of one job."""

    out: Path
    resolution: int
    dtype: np.dtype
    device: torch.device
    vae: torch.nn.Module
    synonyms: list[tuple[str, ...]] | None   # class datasets: synonyms per class
    table_starts: list[int] | None           # class datasets: each class's first caption-table row
    seed: int
    text: TextEncoder | None = None          # per-sample captions: embed them here
    batch_size: int = 64
    workers: int = 0

    @classmethod
    def create(cls, s: EncodeSettings, device: str, vae: torch.nn.Module | None = None) -> "Encoder":
        if device.startswith("cuda"):
            torch.cuda.set_device(torch.device(device))
        vae = vae.to(device) if vae is not None else load_autoencoder(s.vae, s.vae_subfolder, device)
        text = TextEncoder(s.text, device) if s.synonyms is None and s.text is not None else None
        return cls(
            Path(s.out), s.resolution, np.dtype(s.dtype), torch.device(device), vae, s.synonyms,
            s.table_starts, s.seed, text, s.batch_size, s.workers,
        )


def encode_shard(task: ShardTask, enc: Encoder, report: Report) -> dict[str, Any]:
    """Encode one shard, write its arrays and, last, its ``shard-KKKKK.json``; return that record."""
    started = time.time()
    records, problems = list(task.records), []
    for tar in task.tars:
        found, trouble = scan_tar(Path(tar))
        records += found
        problems += trouble
    report("found", len(records))
    k, out = task.index, enc.out
    channels, side = latent_geometry(enc.vae, enc.resolution)
    writers = {"moments": NpyAppender(out / shard_name("moments", k), (2, 2, channels, side, side), enc.dtype),
               "labels": NpyAppender(out / shard_name("labels", k), (2,), np.int64)}
    if enc.text is not None:
        writers["pooled"] = NpyAppender(out / shard_name("pooled", k), (enc.text.pooled_dim,), enc.dtype)
        if enc.text.token_shape:
            writers["tokens"] = NpyAppender(out / shard_name("tokens", k), enc.text.token_shape, enc.dtype)
    sums = np.zeros((3, channels), dtype=np.float64)  # sum mu, sum mu^2, sum sigma^2 (unflipped)
    keys: list[str] = []
    captions: list[str] = []
    corrupt = list(problems)
    loader = torch.utils.data.DataLoader(
        CroppedImages(records, enc.resolution), batch_size=enc.batch_size, num_workers=enc.workers,
        collate_fn=collate_images, pin_memory=enc.device.type == "cuda",
    )
    try:
        for positions, images, bad in loader:
            corrupt += [{"key": records[i].key, "error": error} for i, error in bad]
            if positions:
                moments = encode_moments(enc.vae, images, enc.device, enc.dtype)
                writers["moments"].append(moments)
                unflipped = moments[:, 0].astype(np.float64)
                sums += [unflipped[:, 0].sum((0, 2, 3)), (unflipped[:, 0] ** 2).sum((0, 2, 3)),
                         (unflipped[:, 1] ** 2).sum((0, 2, 3))]
                batch = [records[i] for i in positions]
                keys += [r.key for r in batch]
                writers["labels"].append(_labels(batch, enc, len(captions)))
                if enc.synonyms is None:
                    texts = [r.caption or "" for r in batch]
                    captions += texts
                    if enc.text is not None:
                        pooled, tokens = enc.text.encode(texts)
                        writers["pooled"].append(pooled)
                        if "tokens" in writers:
                            writers["tokens"].append(tokens)
            report("progress", len(positions) + len(bad))
        files = {shard_name(kind, k): w.finish() for kind, w in writers.items()}
    except BaseException:
        for w in writers.values():
            w.abort()
        raise
    text_chunk: dict[str, Any] | str = "table"
    if enc.synonyms is None:
        caption_file = shard_name("captions", k, ".json")
        write_json_atomic(out / caption_file, captions)
        files[caption_file] = file_entry(out / caption_file)
        text_chunk = {"name": f"{k:05d}", "count": len(captions), "captions": caption_file,
                      "pooled": shard_name("pooled", k) if "pooled" in writers else None,
                      "tokens": shard_name("tokens", k) if "tokens" in writers else None}
    record = {
        "index": k, "count": len(keys), "moments": shard_name("moments", k), "labels": shard_name("labels", k),
        "text_chunk": text_chunk, "files": files, "tars": [Path(t).name for t in task.tars],
        "corrupt": corrupt, "stats": {"values_per_channel": len(keys) * side * side, "sums": sums.tolist()},
        "keys": keys, "device": str(enc.device), "seconds": round(time.time() - started, 2),
        "text_encoder": enc.text.description if enc.text is not None else None,
    }
    write_json_atomic(out / shard_name("shard", k, ".json"), record)
    return record


def _labels(batch: list[Record], enc: Encoder, first_caption: int) -> np.ndarray:
    """(B, 2) int64: class index (null class when none) and row in the shard's text chunk."""
    if enc.synonyms is None:
        return np.array([[0, first_caption + i] for i in range(len(batch))], dtype=np.int64)
    assert enc.table_starts is not None
    rows = [enc.table_starts[r.label] + draw_synonym(r.key, len(enc.synonyms[r.label]), enc.seed) for r in batch]
    return np.array([[r.label, row] for r, row in zip(batch, rows)], dtype=np.int64)


class RateColumn(ProgressColumn):
    """Images per second, from rich's moving speed estimate."""

    def render(self, task: Any) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:,.0f} img/s" if speed else "- img/s", style="progress.data.speed")


def parse_devices(gpus: str | None) -> list[str]:
    """``--gpus``: None -> every visible CUDA GPU (else the CPU); "cpu"; a count "4"; indices "0,2"."""
    available = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if gpus is None or gpus == "all":
        return [f"cuda:{i}" for i in range(available)] or ["cpu"]
    if gpus.strip().lower() == "cpu":
        return ["cpu"]
    try:
        wanted = list(range(int(gpus))) if "," not in gpus else [int(g) for g in gpus.split(",") if g.strip()]
    except ValueError:
        wanted = [-1]
    if not wanted or any(i < 0 or i >= available for i in wanted) or len(set(wanted)) != len(wanted):
        raise ConfigError(
            f"--gpus {gpus!r} does not name usable GPUs: this machine has {available} visible CUDA device(s). "
            "Give 'all', a count (e.g. 4), distinct indices (e.g. 0,2,3) or 'cpu'."
        )
    return [f"cuda:{i}" for i in wanted]


def run_shards(pending: list[ShardTask], settings: EncodeSettings, devices: list[str], vae: torch.nn.Module,
               console: Console) -> Iterator[dict[str, Any]]:
    """Encode pending shards on ``devices`` (one process each; in-process for one), yielding their records.

    Shows a rich progress bar with images/s and an ETA (for tar shards the total is estimated from
    the shards scanned so far). Close the generator to stop the workers.
    """
    known = None if any(t.tars for t in pending) else sum(len(t.records) for t in pending)
    unscanned = [len(pending)]
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), RateColumn(),
               TextColumn("ETA"), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        bar = progress.add_task(f"encoding {len(pending)} shards on {', '.join(devices)}", total=known)
        found: list[int] = []

        def report(kind: str, count: int) -> None:
            if kind == "progress":
                progress.advance(bar, count)
            elif known is None:  # tar shards: estimate the total from those scanned so far
                found.append(count)
                unscanned[0] -= 1
                progress.update(bar, total=sum(found) + unscanned[0] * (sum(found) / len(found)))

        if len(devices) == 1:
            encoder = Encoder.create(settings, devices[0], vae)
            for task in pending:
                yield encode_shard(task, encoder, report)
            return
        yield from _run_parallel(pending, settings, devices, report)


def _run_parallel(pending: list[ShardTask], settings: EncodeSettings, devices: list[str],
                  report: Callable[[str, int], None]) -> Any:
    ctx = mp.get_context("spawn")
    tasks, events = ctx.Queue(), ctx.Queue()
    tasks.cancel_join_thread()  # if workers are stopped early, unread tasks must not block this process's exit
    for task in pending:
        tasks.put(task)
    for _ in devices:
        tasks.put(None)
    workers = [ctx.Process(target=_worker, args=(settings, d, tasks, events)) for d in devices]  # not daemonic: they start DataLoader workers
    for w in workers:
        w.start()
    remaining = len(pending)
    try:
        while remaining:
            try:
                kind, payload = events.get(timeout=1.0)
            except queue.Empty:
                dead = [(d, w.exitcode) for d, w in zip(devices, workers) if w.exitcode not in (None, 0)]
                if dead or not any(w.is_alive() for w in workers):
                    raise RuntimeError(f"prepare worker(s) exited without finishing: {dead or 'all'}") from None
                continue
            if kind == "error":
                device, message, is_ours = payload
                if is_ours:
                    raise AblateError(message)
                raise RuntimeError(f"prepare worker on {device} failed:\n{message}")
            if kind == "done":
                remaining -= 1
                yield payload
            else:
                report(kind, payload)
    finally:
        _stop(workers)


def _stop(workers: list[Any]) -> None:
    """Let workers finish; interrupt the ones still encoding (so that their DataLoader workers shut
    down cleanly and release the terminal), and kill those that do not stop."""
    for w in workers:
        w.join(timeout=3)
    for w in workers:
        if w.is_alive():
            os.kill(w.pid, signal.SIGINT)
    for w in workers:
        w.join(timeout=20)
        if w.is_alive():
            w.kill()
            w.join()


def _worker(settings: EncodeSettings, device: str, tasks: Any, events: Any) -> None:
    """One device's process: encode shards from the queue until a ``None`` arrives."""
    try:
        encoder = Encoder.create(settings, device)
        while (task := tasks.get()) is not None:
            record = encode_shard(task, encoder, lambda kind, n: events.put((kind, n)))
            events.put(("done", {k: v for k, v in record.items() if k != "keys"}))
    except AblateError as err:
        events.put(("error", (device, str(err), True)))
    except BaseException:
        events.put(("error", (device, traceback.format_exc(), False)))


def default_workers(devices: int) -> int:
    """DataLoader workers per device: the CPU cores left, at most 8, none on a 1-2 core machine."""
    return max(0, min(8, (os.cpu_count() or 1) // max(devices, 1) - 1))
