"""Loading prepared latent datasets: memory-mapped, verified, served as normalised tensor views.

The on-disk format is :mod:`ablate.data.shards`. :func:`load_prepared` verifies every file
against the manifest, memory-maps the arrays and serves *views*: indexing ``split.latents`` with an
int, slice or index tensor reads only those rows and returns float32 latents normalised per
channel, ``(x - latent_mean[c]) / latent_std[c]``, with x the posterior mean, or a fresh posterior
sample ``mean + std * eps`` (EDM2-style) with ``resample=True``; the train split picks the image or
its flip at random per access (``flip=True``). The statistics are over samples of the posterior on
the whole set: mean E[mu], variance Var(mu) + E[sigma^2]. The "test" split is a held-out slice:
``holdout`` samples evenly spaced over the set (:func:`ablate.data.shards.holdout_rows`); "train"
is the rest.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ablate.data.base import DatasetInfo, LatentSplit
from ablate.data.captions import caption_fn
from ablate.env import env_path
from ablate.data.shards import (
    FORMAT, JOB, MANIFEST, NORMALISATION, Verify, holdout_rows, read_manifest, sha256_file, verify_files,
)
from ablate.errors import ConfigError, DatasetNotFoundError


class ChunkedRows:
    """Row-wise concatenation of memory-mapped .npy files; :meth:`take` gathers rows into RAM.

    Pickles as its file paths (re-opened lazily), so DataLoader workers never copy the data.
    """

    def __init__(self, paths: list[Path]) -> None:
        self.paths = [Path(p) for p in paths]
        self._arrays: list[np.ndarray] | None = None
        counts = [len(a) for a in self.arrays]
        self.ends = np.cumsum(counts).astype(np.int64)
        self.starts = self.ends - np.asarray(counts, dtype=np.int64)
        self.row_shape, self.dtype = self.arrays[0].shape[1:], self.arrays[0].dtype

    @property
    def arrays(self) -> list[np.ndarray]:
        if self._arrays is None:
            self._arrays = [np.load(p, mmap_mode="r") for p in self.paths]
        return self._arrays

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_arrays": None}

    def __len__(self) -> int:
        return int(self.ends[-1]) if len(self.ends) else 0

    def take(self, rows: np.ndarray, *inner: np.ndarray | int | slice) -> np.ndarray:
        """``concatenated[rows, *inner]``: per-row index arrays in ``inner`` select within each row."""
        arrays = self.arrays
        if len(arrays) == 1:
            return np.asarray(arrays[0][(rows, *inner)])
        chunk = np.searchsorted(self.ends, rows, side="right")
        out = None
        for c in np.unique(chunk):
            mask = chunk == c
            picked = arrays[c][(rows[mask] - self.starts[c], *(i[mask] if isinstance(i, np.ndarray) else i for i in inner))]
            if out is None:
                out = np.empty((len(rows), *picked.shape[1:]), dtype=picked.dtype)
            out[mask] = picked
        return out if out is not None else np.asarray(arrays[0][(rows[:0], *inner)])  # no rows asked


def _rows(index: Any, count: int) -> tuple[np.ndarray, bool]:
    """Positions selected by an int, slice, sequence, numpy array or tensor; and whether it was scalar."""
    if isinstance(index, torch.Tensor):
        index = index.cpu().numpy()
    if isinstance(index, (int, np.integer)):
        position = int(index) + count if index < 0 else int(index)
        if not 0 <= position < count:
            raise IndexError(f"index {index} is out of range for {count} samples")
        return np.array([position], dtype=np.int64), True
    if isinstance(index, slice):
        return np.arange(count, dtype=np.int64)[index], False
    positions = np.asarray(index)
    if positions.dtype == bool:
        return np.flatnonzero(positions), False
    positions = positions.astype(np.int64, copy=False)
    if positions.size and (positions.min() < -count or positions.max() >= count):
        raise IndexError(f"an index is out of range for {count} samples")
    return np.where(positions < 0, positions + count, positions), False


class RowView:
    """Tensor-like (N, ...) float32 view of rows of a :class:`ChunkedRows` (text embeddings)."""

    dtype = torch.float32

    def __init__(self, table: ChunkedRows, rows: np.ndarray) -> None:
        self.table, self.rows = table, rows

    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self.rows), *self.table.row_shape))

    def __len__(self) -> int:
        return len(self.rows)

    def size(self, dim: int | None = None) -> torch.Size | int:
        return self.shape if dim is None else self.shape[dim]

    def __getitem__(self, index: Any) -> torch.Tensor:
        positions, scalar = _rows(index, len(self.rows))
        out = torch.from_numpy(self.table.take(self.rows[positions]).astype(np.float32, copy=False))
        return out[0] if scalar else out


class LatentView(RowView):
    """Tensor-like (N, C, h, w) float32 view of prepared latents, normalised on access.

    ``flip``: pick the image or its stored horizontal flip at random per access; ``resample``: draw
    ``mean + std * eps`` instead of the mean. Randomness comes from ``generator`` if set, else
    torch's global RNG (so DataLoader workers, seeded apart, draw apart).
    """

    def __init__(
        self, moments: ChunkedRows, rows: np.ndarray, mean: torch.Tensor, std: torch.Tensor,
        flip: bool = False, resample: bool = False, generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(moments, rows)
        self.mean, self.std = mean.view(1, -1, 1, 1).float(), std.view(1, -1, 1, 1).float()
        self.flip, self.resample, self.generator = flip, resample, generator

    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self.rows), *self.table.row_shape[2:]))

    def _flips(self, count: int, flipped: Any = None) -> np.ndarray:
        if flipped is not None:
            return np.asarray(flipped.cpu() if isinstance(flipped, torch.Tensor) else flipped, dtype=np.int64).reshape(-1)
        if not self.flip:
            return np.zeros(count, dtype=np.int64)
        return torch.randint(2, (count,), generator=self.generator).numpy()

    def moments(self, index: Any, flipped: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised posterior mean and std (B, C, h, w) of the selected samples (flipped where 1)."""
        positions, _ = _rows(index, len(self.rows))
        flips = np.zeros(len(positions), dtype=np.int64) if flipped is None else self._flips(len(positions), flipped)
        pair = torch.from_numpy(self.table.take(self.rows[positions], flips)).float()  # (B, 2, C, h, w)
        return (pair[:, 0] - self.mean) / self.std, pair[:, 1] / self.std

    def __getitem__(self, index: Any) -> torch.Tensor:
        positions, scalar = _rows(index, len(self.rows))
        flips = self._flips(len(positions))
        rows = self.rows[positions]
        if self.resample:
            pair = torch.from_numpy(self.table.take(rows, flips)).float()  # (B, 2, C, h, w)
            z = torch.randn(pair[:, 1].shape, generator=self.generator).mul_(pair[:, 1]).add_(pair[:, 0])
        else:
            z = torch.from_numpy(self.table.take(rows, flips, 0)).float()  # reads the means only
        z = z.sub_(self.mean).div_(self.std)
        return z[0] if scalar else z


class CaptionList(Sequence):
    """Each sample's caption text, read lazily from the text chunks' JSON files."""

    def __init__(self, files: list[Path], starts: np.ndarray, rows: np.ndarray) -> None:
        self.files, self.starts, self.rows = files, starts, rows
        self._chunks: dict[int, list[str]] = {}

    def _load(self, chunk: int) -> list[str]:
        if chunk not in self._chunks:
            if len(self._chunks) >= 4:
                self._chunks.clear()
            self._chunks[chunk] = json.loads(self.files[chunk].read_text("utf-8"))
        return self._chunks[chunk]

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return [self[i] for i in range(len(self))[index]]
        row = int(self.rows[index])
        chunk = int(np.searchsorted(self.starts, row, side="right") - 1)
        return self._load(chunk)[row - int(self.starts[chunk])]


def default_data_dir() -> Path:
    """``$ABLATE_DATA``, else ``./data``: where prepared datasets are looked for."""
    root = env_path("ABLATE_DATA", Path("data"), what="where prepared datasets are looked for")
    assert root is not None
    return root


def find_prepared(name: str, resolution: int, data_dir: Path | None = None) -> Path:
    """The prepared directory for ``name`` at latent side ``resolution``.

    ``name`` may be a prepared directory, a folder name under ``data_dir`` (``imagenet256-sdvae``) or the
    dataset name recorded in the manifests below ``data_dir`` (``imagenet``, ``cc12m``).
    """
    root = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
    as_path = Path(name).expanduser()
    if (os.sep in name or name.startswith((".", "~"))) and (as_path / MANIFEST).is_file():
        candidates = [as_path]
    elif (root / name / MANIFEST).is_file():
        candidates = [root / name]
    elif (root / MANIFEST).is_file() and read_manifest(root).get("dataset") == name:
        candidates = [root]
    else:
        found = sorted(root.glob(f"*/{MANIFEST}")) if root.is_dir() else []
        candidates = [m.parent for m in found if read_manifest(m.parent).get("dataset") == name]
    matching = [c for c in candidates if read_manifest(c).get("latent_resolution") == resolution]
    if len(matching) == 1:
        return matching[0]
    if len(matching) > 1:
        raise ConfigError(
            f"Several prepared datasets named {name!r} at latent resolution {resolution} are under {str(root)!r}: "
            f"{', '.join(str(m) for m in matching)}. Name the one to use by its folder (e.g. "
            f"{matching[0].name!r}) instead of {name!r}."
        )
    if candidates:
        found = ", ".join(f"{str(c)!r} (latent side {read_manifest(c).get('latent_resolution')})" for c in candidates)
        raise ConfigError(
            f"Prepared dataset {name!r} exists but not at latent resolution {resolution}: {found}. The "
            "resolution asked for is the latent side length (pixels / 8 for an f8 autoencoder)."
        )
    unfinished = [str(p.parent) for p in root.glob(f"*/{JOB}") if not (p.parent / MANIFEST).exists()] if root.is_dir() else []
    hint = f" Unfinished preparations (re-run their prepare command to finish): {', '.join(unfinished)}." if unfinished else ""
    raise DatasetNotFoundError(
        f"No prepared dataset {name!r} at latent resolution {resolution} was found in {str(root)!r} (set it "
        f"with --data-dir or ABLATE_DATA). Make one with `python -m ablate prepare imagenet --root PATH/train "
        f"--out {root / 'imagenet256-sdvae'}` (latent side 32) or `python -m ablate prepare cc12m --shards "
        f"'PATH/{{00000..01242}}.tar' --out {root / 'cc12m256-sdvae'}`.{hint}"
    )


def load_prepared(
    name: str, resolution: int, data_dir: Path | None = None, *,
    resample: bool = False, flip: bool = True, verify: Verify = "full",
) -> tuple[DatasetInfo, dict[str, LatentSplit]]:
    """A prepared dataset's info and its "train" / "test" splits (views; see the module docstring).

    ``resolution`` is the latent side length. ``resample`` draws latents from the stored posterior
    (train split); ``flip`` serves random horizontal flips (train split); the test split always
    serves the unflipped posterior mean. ``verify="size"`` skips the SHA-256 check.
    """
    directory = find_prepared(name, resolution, data_dir)
    manifest = read_manifest(directory)
    if manifest.get("format") != FORMAT:
        raise DatasetNotFoundError(
            f"{str(directory / MANIFEST)!r} is not an {FORMAT} manifest (format {manifest.get('format')!r}); "
            "re-run `python -m ablate prepare` with this version of ablate."
        )
    verify_files(directory, manifest, verify)
    moments = ChunkedRows([directory / s["moments"] for s in manifest["shards"]])
    labels = np.concatenate([np.load(directory / s["labels"]) for s in manifest["shards"]])
    chunks = manifest["text_chunks"]
    chunk_starts = np.cumsum([0] + [c["count"] for c in chunks])[:-1]
    chunk_of = {c["name"]: i for i, c in enumerate(chunks)}
    offsets = np.concatenate([np.full(s["count"], chunk_starts[chunk_of[s["text_chunk"]]]) for s in manifest["shards"]])
    text_rows = labels[:, 1] + offsets
    pooled = ChunkedRows([directory / c["pooled"] for c in chunks]) if chunks[0].get("pooled") else None
    tokens = ChunkedRows([directory / c["tokens"] for c in chunks]) if chunks[0].get("tokens") else None
    files = [directory / c["captions"] for c in chunks]
    mean = torch.tensor(manifest["latent_mean"], dtype=torch.float32)
    std = torch.tensor(manifest["latent_std"], dtype=torch.float32)

    test = holdout_rows(len(labels), manifest["holdout"])
    train = np.setdiff1d(np.arange(len(labels), dtype=np.int64), test, assume_unique=True)
    splits = {}
    for split, rows, is_train in (("train", train, True), ("test", test, False)):
        splits[split] = LatentSplit(
            latents=LatentView(moments, rows, mean, std, flip=flip and is_train, resample=resample and is_train),
            labels=torch.from_numpy(labels[rows, 0].copy()),
            text_emb=RowView(pooled, text_rows[rows]) if pooled is not None else None,
            text_tokens=RowView(tokens, text_rows[rows]) if tokens is not None else None,
            captions=CaptionList(files, chunk_starts, text_rows[rows]),
        )
    return _info(directory, manifest, resample, flip), splits


def _info(directory: Path, manifest: dict[str, Any], resample: bool, flip: bool) -> DatasetInfo:
    classes = manifest.get("classes") or {"folders": [], "synonyms": []}
    synonyms = [tuple(s) for s in classes["synonyms"]]
    vae = manifest["autoencoder"]
    text = manifest.get("text_encoder")

    def no_classes(class_index: int, generator: torch.Generator | None = None) -> str:
        raise ConfigError(
            f"Dataset {manifest['dataset']!r} has no classes: its captions are per sample (LatentSplit.captions); "
            "use the caption conditioning path for it."
        )

    return DatasetInfo(
        name=manifest["dataset"],
        channels=manifest["latent_channels"],
        resolution=manifest["latent_resolution"],
        num_classes=len(synonyms),
        class_names=[s[0] for s in synonyms],
        autoencoder=vae["id"],
        caption=caption_fn(synonyms) if synonyms else no_classes,
        provenance={
            "dataset": manifest["dataset"],
            "directory": str(directory.resolve()),
            "manifest_sha256": sha256_file(directory / MANIFEST),
            "command": manifest["command"],
            "pixel_resolution": manifest["resolution"],
            "crop": manifest["crop"],
            "autoencoder_subfolder": vae.get("subfolder"),
            "vae_scaling_factor": vae.get("scaling_factor"),
            "vae_shift_factor": vae.get("shift_factor"),
            "normalisation": NORMALISATION,
            "latent_mean": manifest["latent_mean"],
            "latent_std": manifest["latent_std"],
            "served": {"train": {"flip": flip, "resample": resample}, "test": {"flip": False, "resample": False}},
            "counts": manifest["counts"],
            "holdout": manifest["holdout"],
            "text_encoder": text,
        },
        cond_dim=int(text["pooled"]["dim"]) if text else 0,
        conditionings=("class", "caption") if text else ("class",),
        token_shape=tuple(text["tokens"]["shape"]) if text and text.get("tokens") else None,
        latent_mean=list(manifest["latent_mean"]),
        latent_std=list(manifest["latent_std"]),
    )


def denormalise(latents: torch.Tensor, info: DatasetInfo) -> torch.Tensor:
    """Normalised latents (B, C, h, w) back to the autoencoder's raw latent space (what it decodes)."""
    if info.latent_mean is None or info.latent_std is None:
        return latents
    mean = torch.tensor(info.latent_mean, dtype=latents.dtype, device=latents.device).view(1, -1, 1, 1)
    std = torch.tensor(info.latent_std, dtype=latents.dtype, device=latents.device).view(1, -1, 1, 1)
    return latents * std + mean
