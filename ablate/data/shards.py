"""The prepared-dataset format on disk: shard files, their checksums and the manifest.

A prepared directory (written by ``python -m ablate prepare``) holds

- ``moments-KKKKK.npy``  (n, 2, 2, C, h, w) float16/32: axis 1 = (image, its horizontal flip),
  axis 2 = (posterior mean, posterior std) of the autoencoder, *raw* (before any scaling/shift);
- ``labels-KKKKK.npy``   (n, 2) int64: class index (``num_classes`` = null class when there are
  none) and the sample's row in its text chunk;
- text chunks: ``captions-C.json`` (list of caption strings), ``pooled-C.npy`` (m, D) and
  ``tokens-C.npy`` (m, L, W), C = ``table`` (class captions, shared by all shards) or the shard
  number (per-sample captions);
- ``shard-KKKKK.json`` per finished shard (sample keys, corrupt images, statistics), ``prepare.json``
  (the job, written first) and ``manifest.json``, written LAST, with the SHA-256 of every file.

Arrays are written through :class:`NpyAppender` into ``.part`` files renamed when complete, and a
shard's JSON record is written after its arrays, so nothing incomplete ever looks finished.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ablate.errors import DatasetNotFoundError

FORMAT = "ablate-latents/1"
MANIFEST = "manifest.json"
JOB = "prepare.json"
NORMALISATION = "per channel: z = (x - latent_mean[c]) / latent_std[c], x the raw posterior mean or sample"
Verify = Literal["full", "size"]


def shard_name(kind: str, chunk: int | str, suffix: str = ".npy") -> str:
    """File name of one shard's array: ``moments-00003.npy``, ``pooled-table.npy``, ``shard-00003.json``."""
    return f"{kind}-{chunk:05d}{suffix}" if isinstance(chunk, int) else f"{kind}-{chunk}{suffix}"


def sha256_file(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def file_entry(path: Path) -> dict[str, Any]:
    """What the manifest records about one file: its size and SHA-256."""
    return {"bytes": Path(path).stat().st_size, "sha256": sha256_file(path)}


def _npy_header(shape: tuple[int, ...], dtype: np.dtype, length: int | None = None) -> bytes:
    """A .npy v1.0 header for a C-ordered array, padded with spaces to ``length`` (or to 64 bytes)."""
    text = "{'descr': %r, 'fortran_order': False, 'shape': %r, }" % (np.lib.format.dtype_to_descr(dtype), shape)
    length = length or -(-(11 + len(text)) // 64) * 64
    if 11 + len(text) > length:
        raise ValueError(f"npy header for shape {shape} does not fit in {length} bytes")
    body = text + " " * (length - 11 - len(text)) + "\n"
    return b"\x93NUMPY\x01\x00" + (length - 10).to_bytes(2, "little") + body.encode("latin1")


class NpyAppender:
    """Append rows to ``<path>.part`` as a .npy file; :meth:`finish` fixes the header and renames it.

    Until :meth:`finish` returns, nothing exists under the final name, so a killed writer leaves only a
    ``.part`` file that prepare ignores and overwrites.
    """

    def __init__(self, path: Path, row_shape: tuple[int, ...], dtype: np.dtype | str) -> None:
        self.path, self.part = Path(path), Path(path).with_name(Path(path).name + ".part")
        self.row_shape, self.dtype, self.count = tuple(row_shape), np.dtype(dtype), 0
        self.header_length = len(_npy_header((10**12, *self.row_shape), self.dtype))
        self.handle = open(self.part, "wb")
        self.handle.write(b"\0" * self.header_length)

    def append(self, rows: np.ndarray) -> None:
        rows = np.ascontiguousarray(rows, dtype=self.dtype)
        if rows.shape[1:] != self.row_shape:
            raise ValueError(f"{self.path.name}: rows of shape {rows.shape[1:]}, expected {self.row_shape}")
        self.handle.write(rows.tobytes())
        self.count += rows.shape[0]

    def finish(self) -> dict[str, Any]:
        self.handle.seek(0)
        self.handle.write(_npy_header((self.count, *self.row_shape), self.dtype, self.header_length))
        self.handle.flush()
        os.fsync(self.handle.fileno())
        self.handle.close()
        os.replace(self.part, self.path)
        return file_entry(self.path)

    def abort(self) -> None:
        self.handle.close()
        self.part.unlink(missing_ok=True)


def holdout_rows(count: int, holdout: int) -> np.ndarray:
    """The test split's rows: ``holdout`` indices evenly spaced over [0, count), deterministic."""
    holdout = min(holdout, count)
    return (np.arange(holdout, dtype=np.int64) * count) // max(holdout, 1)


def read_manifest(directory: Path) -> dict[str, Any]:
    """The manifest of a prepared directory ({} if absent or unreadable)."""
    try:
        return json.loads((Path(directory) / MANIFEST).read_text("utf-8"))
    except (OSError, ValueError):
        return {}


@functools.lru_cache(maxsize=4096)
def _verified_sha(path: str, size: int, mtime_ns: int) -> str:
    return sha256_file(Path(path))


def verify_files(directory: Path, manifest: dict[str, Any], verify: Verify = "full") -> None:
    """Check every file the manifest lists: size always, SHA-256 too with ``verify="full"`` (memoised)."""
    for name, entry in manifest["files"].items():
        path = Path(directory) / name
        problem = None
        if not path.is_file():
            problem = "is missing"
        elif path.stat().st_size != entry["bytes"]:
            problem = f"has {path.stat().st_size} bytes, the manifest says {entry['bytes']}"
        elif verify == "full":
            stat = path.stat()
            digest = _verified_sha(str(path.resolve()), stat.st_size, stat.st_mtime_ns)
            if digest != entry["sha256"]:
                problem = f"has SHA-256 {digest[:16]}..., the manifest says {entry['sha256'][:16]}..."
        if problem:
            raise DatasetNotFoundError(
                f"The prepared dataset in {str(directory)!r} is damaged: {name} {problem}. Re-run the prepare "
                f"command recorded in its manifest ({manifest.get('command', 'python -m ablate prepare ...')}): "
                "it re-checks every shard and re-encodes only the damaged ones."
            )
