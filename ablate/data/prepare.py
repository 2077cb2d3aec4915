"""``python -m ablate prepare``: turn an image collection into prepared latent shards, once.

Order of work, so that an interruption at any point loses at most the shards in flight:

1. plan: scan the ImageFolder (or expand the tar patterns) and cut the work into shards;
2. ``prepare.json`` records what this directory holds; a directory holding a different job is refused;
3. finished shards (``shard-KKKKK.json`` present and every file's SHA-256 intact) are kept; the rest
   are encoded, one process per device, with a rich progress bar (images/s, ETA);
4. class datasets: the caption table is embedded once (``text-table.json`` marks it finished);
5. ``manifest.json`` is written last; :func:`ablate.data.latents.load_prepared` reads only that.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from rich.console import Console

from ablate import __version__
from ablate.data.captions import CAPTION_SOURCE, TEMPLATE, caption_table, class_synonyms
from ablate.data.encode import EncodeSettings, ShardTask, latent_geometry, load_autoencoder, parse_devices, run_shards
from ablate.io import write_json_atomic
from ablate.data.shards import (
    FORMAT, JOB, MANIFEST, NORMALISATION, NpyAppender, file_entry, holdout_rows, read_manifest, shard_name,
    verify_files,
)
from ablate.data.sources import CENTER_CROP, resolve_tar_shards, scan_image_folder
from ablate.data.text import TextEncoder, TextEncoderSpec
from ablate.errors import ConfigError, DatasetNotFoundError

DEFAULT_VAE = "stabilityai/sd-vae-ft-ema"
TABLE = "text-table.json"
FLIP = "moments of the image (axis 1 index 0) and of its horizontal flip (index 1)"


@dataclass(frozen=True)
class PrepareJob:
    """One prepare command. ``source``: (ImageFolder root,) for imagenet, tar patterns for cc12m."""

    dataset: str
    source: tuple[str, ...]
    out: str
    resolution: int = 256
    vae: str = DEFAULT_VAE
    vae_subfolder: str | None = None
    dtype: str = "float16"
    text: TextEncoderSpec | None = field(default_factory=TextEncoderSpec)
    shard_size: int = 65536      # images per shard (ImageFolder)
    tars_per_shard: int = 8      # tars per shard (WebDataset)
    holdout: int = 10000         # test-split size (at most a tenth of the set)
    seed: int = 0                # synonym draws
    batch_size: int = 64         # execution only: not part of the dataset's identity
    workers: int = 0


@dataclass
class Plan:
    tasks: list[ShardTask]
    source: dict[str, Any]
    folders: list[str] | None = None


def make_plan(job: PrepareJob) -> Plan:
    """Scan the source and cut it into shards (deterministic: same source, same plan)."""
    if job.dataset == "imagenet":
        root = Path(job.source[0]).expanduser().resolve()
        folders, records = scan_image_folder(root)
        digest = hashlib.sha256("\n".join(r.key for r in records).encode()).hexdigest()
        tasks = [ShardTask(i, records[s : s + job.shard_size]) for i, s in enumerate(range(0, len(records), job.shard_size))]
        source = {"kind": "imagefolder", "root": str(root), "classes": len(folders), "images": len(records), "fingerprint": digest}
        return Plan(tasks, source, folders)
    tars = resolve_tar_shards(list(job.source))
    digest = hashlib.sha256("\n".join(f"{p.name}:{p.stat().st_size}" for p in tars).encode()).hexdigest()
    step = job.tars_per_shard
    tasks = [ShardTask(i, tars=[str(p) for p in tars[s : s + step]]) for i, s in enumerate(range(0, len(tars), step))]
    source = {"kind": "webdataset", "patterns": list(job.source), "tars": len(tars), "fingerprint": digest}
    return Plan(tasks, source)


def identity(job: PrepareJob, plan: Plan) -> dict[str, Any]:
    """What makes a prepared dataset: compared with an existing ``prepare.json`` before resuming."""
    keep = ("dataset", "resolution", "vae", "vae_subfolder", "dtype", "shard_size", "tars_per_shard", "holdout", "seed")
    text = asdict(job.text) if job.text else None
    return {"format": FORMAT, **{k: getattr(job, k) for k in keep}, "text": text, "source": plan.source}


def check_job(job: PrepareJob) -> None:
    problems = []
    if job.dataset not in ("imagenet", "cc12m"):
        problems.append(f"dataset {job.dataset!r} (allowed: imagenet, cc12m)")
    if job.dtype not in ("float16", "float32"):
        problems.append(f"--dtype {job.dtype!r} (allowed: float16, float32)")
    for name in ("resolution", "shard_size", "tars_per_shard", "batch_size"):
        if getattr(job, name) < 1:
            problems.append(f"--{name.replace('_', '-')} {getattr(job, name)} (must be >= 1)")
    if job.holdout < 0 or job.workers < 0:
        problems.append("--holdout and --workers must be >= 0")
    if problems:
        raise ConfigError(f"ablate prepare cannot run with {'; '.join(problems)}.")


def claim_out_dir(out: Path, wanted: dict[str, Any]) -> None:
    """Create ``out`` with its ``prepare.json``, or check that it already holds this same job.

    A directory whose job differs is refused once anything in it is finished (a shard, the caption
    table, the manifest); before that (e.g. the first attempt named a VAE that could not be loaded)
    it is taken over by the new job.
    """
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {str(out)!r} is a file; give a directory for the prepared dataset.")
    record = out / JOB
    if record.is_file():
        have = _read(record)
        diff = sorted(k for k in set(have) | set(wanted) if have.get(k) != wanted.get(k))
        finished_work = any(out.glob("shard-*.json")) or (out / TABLE).exists() or (out / MANIFEST).exists()
        if diff and not finished_work:  # an earlier attempt stopped before finishing anything: start over
            write_json_atomic(record, wanted)
            return
        if diff:
            shown = "; ".join(f"{k}: {have.get(k)!r} there, {wanted.get(k)!r} now" for k in diff[:4])
            raise ConfigError(
                f"--out {str(out)!r} already holds a different prepared dataset ({JOB} differs in {shown}). "
                "Choose another --out, or delete that directory to start it over; to resume, repeat the "
                "original command (its arguments are in prepare.json)."
            )
        return
    if out.is_dir() and any(out.iterdir()):
        raise ConfigError(
            f"--out {str(out)!r} is not empty and holds no {JOB}, so it is not a prepared dataset: refusing to "
            "write into it. Give a new or empty directory."
        )
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(record, wanted)


def _read(path: Path) -> Any:
    return json.loads(path.read_text("utf-8"))


def _intact(out: Path, record: dict[str, Any]) -> bool:
    """Every file a finished shard lists exists with its recorded size and SHA-256."""
    for name, entry in record["files"].items():
        path = out / name
        if not path.is_file() or path.stat().st_size != entry["bytes"] or file_entry(path)["sha256"] != entry["sha256"]:
            return False
    return True


def finished_records(out: Path, kind: str, indices: list[int | str]) -> dict[Any, dict[str, Any]]:
    """Records of finished, intact shards; damaged ones lose their record (so they are redone)."""
    done = {}
    for k in indices:
        path = out / shard_name(kind, k, ".json") if kind == "shard" else out / TABLE
        if path.is_file():
            record = _read(path)
            if _intact(out, record):
                done[k] = record
            else:
                path.unlink()
    return done


def prepare(
    job: PrepareJob, devices: list[str] | None = None, command: str = "", console: Console | None = None,
    on_shard_done: Callable[[dict[str, Any]], None] | None = None,
) -> Path:
    """Run (or resume) a prepare job; return the directory. ``on_shard_done`` sees each finished record."""
    check_job(job)
    devices = devices or parse_devices(None)
    console = console or Console(stderr=True)
    out = Path(job.out).expanduser()
    plan = make_plan(job)
    claim_out_dir(out, identity(job, plan))
    if (out / MANIFEST).is_file():
        try:
            verify_files(out, read_manifest(out), "full")
            console.print(f"{out} is already prepared ({read_manifest(out)['counts']['images']} images); nothing to do.",
                          markup=False)
            return out
        except DatasetNotFoundError as err:
            console.print(f"re-checking shards: {err}", markup=False, style="yellow")
            (out / MANIFEST).unlink()
    vae = load_autoencoder(job.vae, job.vae_subfolder, devices[0] if len(devices) == 1 else "cpu")
    latent_geometry(vae, job.resolution)
    synonyms = class_synonyms(plan.folders) if plan.folders is not None else None
    table = caption_table(synonyms) if synonyms is not None else None
    settings = EncodeSettings(
        str(out), job.resolution, job.dtype, job.vae, job.vae_subfolder, job.text,
        synonyms, table[1] if table else None, job.seed, job.batch_size, job.workers,
    )
    table_record = _caption_table(out, job, table[0], devices[0], console) if table else None
    done = finished_records(out, "shard", [t.index for t in plan.tasks])
    pending = [t for t in plan.tasks if t.index not in done]
    if done:
        console.print(f"resuming: {len(done)} of {len(plan.tasks)} shards already finished and intact")
    with contextlib.closing(run_shards(pending, settings, devices, vae, console)) as finished:
        for record in finished:  # closing: an exception here stops the workers at once
            done[record["index"]] = record
            if on_shard_done is not None:
                on_shard_done(record)
    records = [done[t.index] for t in plan.tasks]
    write_manifest(out, job, plan, vae, records, table_record, synonyms, command)
    return out


def _caption_table(out: Path, job: PrepareJob, captions: list[str], device: str, console: Console) -> dict[str, Any]:
    """Write (or keep) the class caption table and, with a text encoder, its embeddings."""
    done = finished_records(out, "table", ["table"])
    if done:
        return done["table"]
    files = {}
    write_json_atomic(out / shard_name("captions", "table", ".json"), captions)
    files[shard_name("captions", "table", ".json")] = file_entry(out / shard_name("captions", "table", ".json"))
    record: dict[str, Any] = {"name": "table", "count": len(captions), "captions": shard_name("captions", "table", ".json"),
                              "pooled": None, "tokens": None, "text_encoder": None}
    if job.text is not None:
        console.print(f"embedding {len(captions)} class captions with {job.text.model}", markup=False)
        encoder = TextEncoder(job.text, device)
        pooled, tokens = encoder.encode(captions)
        for kind, rows in (("pooled", pooled), ("tokens", tokens)):
            if rows is not None:
                writer = NpyAppender(out / shard_name(kind, "table"), rows.shape[1:], job.dtype)
                writer.append(rows)
                files[shard_name(kind, "table")] = writer.finish()
                record[kind] = shard_name(kind, "table")
        record["text_encoder"] = encoder.description
    record["files"] = files
    write_json_atomic(out / TABLE, record)
    return record


def write_manifest(out: Path, job: PrepareJob, plan: Plan, vae: torch.nn.Module, records: list[dict[str, Any]],
                   table: dict[str, Any] | None, synonyms: list[tuple[str, ...]] | None, command: str) -> None:
    """Combine the shard records into ``manifest.json`` (written last, atomically)."""
    total = sum(r["count"] for r in records)
    if total == 0:
        raise DatasetNotFoundError(
            f"None of the {sum(len(r['corrupt']) for r in records)} images of {plan.source} could be read; "
            f"see the 'corrupt' lists in {out}/shard-*.json. Nothing to train on."
        )
    channels, side = latent_geometry(vae, job.resolution)
    sums = np.sum([np.array(r["stats"]["sums"]) for r in records], axis=0)
    values = sum(r["stats"]["values_per_channel"] for r in records)
    mean = sums[0] / values
    std = np.sqrt(np.maximum(sums[1] / values - mean**2 + sums[2] / values, 1e-12))
    chunks = [table] if table else [r["text_chunk"] for r in records]
    files: dict[str, Any] = {JOB: file_entry(out / JOB)}
    for r in [*records, *([table] if table else [])]:
        files.update(r["files"])
    for r in records:
        files[shard_name("shard", r["index"], ".json")] = file_entry(out / shard_name("shard", r["index"], ".json"))
    if table:
        files[TABLE] = file_entry(out / TABLE)
    corrupt = [c for r in records for c in r["corrupt"]]
    config = json.loads(json.dumps({k: v for k, v in dict(vae.config).items() if not k.startswith("_")}, default=str))
    text = table["text_encoder"] if table else next((r.get("text_encoder") for r in records if r.get("text_encoder")), None)
    manifest = {
        "format": FORMAT, "dataset": job.dataset, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": command, "ablate_version": __version__, "source": plan.source,
        "resolution": job.resolution, "latent_resolution": side, "latent_channels": channels, "crop": CENTER_CROP, "flip": FLIP,
        "storage": {"dtype": job.dtype, "moments": "(n, 2 [image, flip], 2 [posterior mean, std], C, h, w), raw latents",
                    "labels": "(n, 2) int64: class index (num_classes = null class), row in the shard's text chunk"},
        "autoencoder": {"id": job.vae, "subfolder": job.vae_subfolder, "class": "diffusers.AutoencoderKL",
                        "scaling_factor": config.get("scaling_factor"), "shift_factor": config.get("shift_factor"),
                        "config": config, "encode_precision": "float32"},
        "latent_mean": mean.tolist(), "latent_std": std.tolist(), "normalisation": NORMALISATION,
        "latent_stats": {"over": "every image (unflipped): mean E[mu], variance Var(mu) + E[sigma^2]", "values_per_channel": values},
        "classes": {"folders": plan.folders, "synonyms": [list(s) for s in synonyms], "caption_source": CAPTION_SOURCE,
                    "template": TEMPLATE, "draw": f"blake2b('{job.seed}:<key>') mod #synonyms", "seed": job.seed}
        if synonyms is not None else None,
        "text_encoder": text,
        "text_chunks": [{k: c[k] for k in ("name", "count", "captions", "pooled", "tokens")} for c in chunks],
        "counts": {"images": total, "corrupt": len(corrupt), "shards": len(records)},
        "corrupt": corrupt,
        "holdout": min(job.holdout, max(1, total // 10)) if total >= 2 else 0,
        "holdout_rule": "test = holdout rows evenly spaced over the set: floor(j * N / holdout); train = the rest",
        "shards": [{"index": r["index"], "count": r["count"], "moments": r["moments"], "labels": r["labels"],
                    "text_chunk": "table" if table else r["text_chunk"]["name"]} for r in records],
        "files": files,
    }
    write_json_atomic(out / MANIFEST, manifest)
    assert len(holdout_rows(total, manifest["holdout"])) == manifest["holdout"]
