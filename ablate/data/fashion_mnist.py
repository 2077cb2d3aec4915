"""Fashion-MNIST, the default dataset: 70k real labelled 28x28 grey images as 1-channel "latents".

Conventions: images are padded 28 -> 32 (2 px of background each side), resized to the
requested resolution R with antialiasing when R != 32, and scaled to [-1, 1]; float32,
shape (N, 1, R, R). They pass through the identity autoencoder. Captions follow the paper's
ImageNet protocol: "a photo of a <synonym>", the synonym drawn with a ``torch.Generator``.

Where the four IDX files come from (``origin`` in the provenance says which was used):

- ``data-dir``: a directory given explicitly (``--data-dir`` / ``data.data_dir``), holding the files
  directly or in a ``fashion-mnist/`` sub-folder. It is used or refused, never silently replaced.
- ``embedded``: the copy shipped inside the package (``ablate/data/fashion_mnist_files/``, MIT
  licence, Zalando SE): a fresh install needs no network and no system package.
- ``debian``: ``/usr/share/datasets/fashion-mnist`` (``apt-get install dataset-fashion-mnist``).
- ``cache``: an earlier download (``$ABLATE_CACHE/fashion-mnist`` or ~/.cache/ablate/fashion-mnist);
  ``download``: fetched now from the canonical source into that cache (MD5 checked).

Every file's decompressed content is checked against its known SHA-256; a file that does not
decompress or does not match is an error naming it.
"""

from __future__ import annotations

import gzip
import hashlib
import urllib.request
import zlib
from functools import lru_cache
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from ablate.data.base import DatasetInfo, LatentSplit
from ablate.data.captions import photo_caption
from ablate.env import env_path
from ablate.errors import ConfigError, DatasetNotFoundError
from ablate.io import write_bytes_atomic

NAME = "fashion-mnist"
CLASSES: tuple[str, ...] = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
SYNONYMS: dict[str, tuple[str, ...]] = {
    "T-shirt/top": ("t-shirt", "top", "tee"),
    "Trouser": ("pair of trousers", "pair of pants", "pair of slacks"),
    "Pullover": ("pullover", "sweater", "jumper"),
    "Dress": ("dress", "gown", "frock"),
    "Coat": ("coat", "jacket", "overcoat"),
    "Sandal": ("sandal", "open-toed shoe", "summer shoe"),
    "Shirt": ("shirt", "button-down shirt", "blouse"),
    "Sneaker": ("sneaker", "trainer", "running shoe"),
    "Bag": ("bag", "handbag", "purse"),
    "Ankle boot": ("ankle boot", "boot", "bootie"),
}

EMBEDDED_DIR = Path(__file__).resolve().parent / "fashion_mnist_files"  # package data (see pyproject.toml)
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
SOURCE_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
SPLIT_FILES: dict[str, tuple[str, str]] = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
FILES: tuple[str, ...] = tuple(f for pair in SPLIT_FILES.values() for f in pair)
# MD5 of the .gz files as published upstream (zalandoresearch/fashion-mnist README); the Debian
# package re-gzipped them (different .gz bytes, same content), so only downloads are checked this way.
SOURCE_GZ_MD5: dict[str, str] = {
    "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
}
# SHA-256 of the decompressed IDX bytes (computed from the Debian copy): checked on every load.
IDX_SHA256: dict[str, str] = {
    "train-images-idx3-ubyte.gz": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte.gz": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte.gz": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte.gz": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}
TRANSFORM = "pad 28->32, resize to R, scale to [-1,1]"
NATIVE, PADDED = 28, 32


def cache_dir() -> Path:
    """Where downloads go: ``$ABLATE_CACHE/fashion-mnist``, else ~/.cache/ablate/fashion-mnist."""
    root = env_path("ABLATE_CACHE", Path.home() / ".cache" / "ablate", what="where datasets are downloaded to")
    assert root is not None
    return root / NAME


class Source(NamedTuple):
    """Where the files were found: the directory and its origin (data-dir, embedded, debian, cache, download)."""

    directory: Path
    origin: str


def _present(directory: Path) -> list[str]:
    """The IDX files (``.gz`` or decompressed) present in ``directory``."""
    return [f for f in FILES if (directory / f).is_file() or (directory / f[:-3]).is_file()]


def _has_files(directory: Path) -> bool:
    return len(_present(directory)) == len(FILES)


def _explicit(data_dir: Path) -> Path:
    """The given data directory (or its ``fashion-mnist/`` sub-folder) if it holds all four files; else an error."""
    if _has_files(data_dir / NAME):
        return data_dir / NAME
    if _has_files(data_dir):
        return data_dir
    if not data_dir.exists():
        problem = "does not exist"
    elif not data_dir.is_dir():
        problem = "is a file, not a directory"
    else:
        missing = [f for f in FILES if f not in _present(data_dir)]
        problem = f"lacks {', '.join(missing)} (neither the .gz file nor its decompressed form is there)"
    raise DatasetNotFoundError(
        f"The Fashion-MNIST data directory {str(data_dir)!r} (--data-dir or data.data_dir) {problem}. Allowed: a "
        f"directory holding the four files {', '.join(FILES)} (each .gz or decompressed), directly or in a "
        f"{NAME}/ sub-folder; or no data directory at all, to use the copy shipped with ablate."
    )


def locate(data_dir: Path | None = None) -> Source:
    """The directory holding the four IDX files and where it came from, downloading only if nothing else has them.

    An explicit ``data_dir`` is used or refused (:class:`DatasetNotFoundError` naming what it lacks)."""
    if data_dir is not None:
        return Source(_explicit(Path(data_dir).expanduser()), "data-dir")
    candidates = (Source(EMBEDDED_DIR, "embedded"), Source(DEBIAN_DIR, "debian"), Source(cache_dir(), "cache"))
    for source in candidates:
        if _has_files(source.directory):
            return source
    try:
        return Source(_download(cache_dir()), "download")
    except OSError as err:
        looked = ", ".join(str(c.directory) for c in candidates)
        raise DatasetNotFoundError(
            f"Fashion-MNIST was not found: none of {looked} holds the four files {', '.join(FILES)}, "
            f"and downloading them from {SOURCE_URL} failed ({err}). The copy shipped with ablate is missing "
            "from this installation; reinstall ablate (`pip install -e .` from the repository), or do one of "
            "three things: pass --data-dir pointing to a directory with those files; or install the Debian "
            "package with `apt-get install dataset-fashion-mnist` (it puts them in "
            f"{DEBIAN_DIR}); or run once with internet access so they download into {cache_dir()} "
            "(set ABLATE_CACHE to put the cache elsewhere)."
        ) from err


def _download(target: Path) -> Path:
    """Fetch the four canonical .gz files into ``target``, checking their published MD5."""
    target.mkdir(parents=True, exist_ok=True)
    for name in FILES:
        if (target / name).is_file():
            continue
        with urllib.request.urlopen(SOURCE_URL + name, timeout=30) as response:
            payload = response.read()
        digest = hashlib.md5(payload).hexdigest()
        if digest != SOURCE_GZ_MD5[name]:
            raise OSError(f"{name} downloaded with MD5 {digest}, expected {SOURCE_GZ_MD5[name]}")
        write_bytes_atomic(target / name, payload)
    return target


def _read_idx(directory: Path, name: str) -> tuple[np.ndarray, dict[str, str]]:
    """One IDX file as a uint8 array, verified against :data:`IDX_SHA256`; plus its checksums."""
    path = directory / name
    raw_path = directory / name[:-3]
    try:
        if path.is_file():
            packed = path.read_bytes()
            data = gzip.decompress(packed)
            sums = {"file": str(path), "gz_md5": hashlib.md5(packed).hexdigest()}
        else:
            data = raw_path.read_bytes()
            sums = {"file": str(raw_path)}
    except (OSError, EOFError, zlib.error) as err:  # gzip.BadGzipFile is an OSError; truncation is an EOFError
        shown = path if path.is_file() else raw_path
        raise DatasetNotFoundError(
            f"The Fashion-MNIST file {str(shown)!r} cannot be read ({type(err).__name__}: {err}): it is truncated "
            f"or corrupt. Allowed: the original file from {SOURCE_URL}{name} (gzip) or its decompressed IDX form; "
            "replace it, or pass a different --data-dir (without one, ablate uses the copy shipped with it)."
        ) from None
    sums["idx_sha256"] = hashlib.sha256(data).hexdigest()
    if sums["idx_sha256"] != IDX_SHA256[name]:
        raise DatasetNotFoundError(
            f"{sums['file']} is not the canonical Fashion-MNIST file: its decompressed content has "
            f"SHA-256 {sums['idx_sha256']}, expected {IDX_SHA256[name]}. Replace it with the original "
            f"from {SOURCE_URL}{name} or `apt-get install dataset-fashion-mnist`, or pass a "
            "different --data-dir."
        )
    ndim = data[3]
    dims = np.frombuffer(data, dtype=">u4", count=ndim, offset=4)
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(tuple(int(d) for d in dims)), sums


@lru_cache(maxsize=2)
def _raw(directory: str) -> tuple[dict[str, tuple[torch.Tensor, torch.Tensor]], dict[str, Any]]:
    """uint8 images (N, 28, 28) and int64 labels per split, with per-file checksums."""
    splits, files = {}, {}
    for split, (images_name, labels_name) in SPLIT_FILES.items():
        images, files[images_name] = _read_idx(Path(directory), images_name)
        labels, files[labels_name] = _read_idx(Path(directory), labels_name)
        splits[split] = (torch.from_numpy(images.copy()), torch.from_numpy(labels.astype(np.int64)))
    return splits, files


def to_latents(images: torch.Tensor, resolution: int) -> torch.Tensor:
    """uint8 (N, 28, 28) -> float32 (N, 1, R, R) in [-1, 1]: pad to 32, resize (antialiased) to R."""
    x = images.unsqueeze(1).float()
    pad = (PADDED - NATIVE) // 2
    x = F.pad(x, (pad, pad, pad, pad), value=0.0)
    if resolution != PADDED:
        x = F.interpolate(x, size=(resolution, resolution), mode="bilinear", antialias=True, align_corners=False)
    return (x / 127.5 - 1.0).clamp_(-1.0, 1.0).contiguous()


def caption(class_index: int, generator: torch.Generator | None = None) -> str:
    """'a photo of a <synonym>' ('an' before a vowel), the synonym drawn with ``generator`` (first if None)."""
    synonyms = SYNONYMS[CLASSES[class_index]]
    pick = 0 if generator is None else int(torch.randint(len(synonyms), (1,), generator=generator))
    return photo_caption(synonyms[pick])


def check_resolution(resolution: int) -> int:
    if isinstance(resolution, bool) or not isinstance(resolution, int) or not 4 <= resolution <= 512:
        raise ConfigError(
            f"Fashion-MNIST resolution {resolution!r} is not allowed: give an integer side length "
            "between 4 and 512 (32 is the native padded size; 16 or 64 are resized from it)."
        )
    return resolution


@lru_cache(maxsize=2)
def _load(directory: str, resolution: int) -> tuple[dict[str, LatentSplit], dict[str, Any]]:
    """The splits at ``resolution`` and the per-file checksums (cached: treat as read-only)."""
    splits_raw, files = _raw(directory)
    splits = {name: LatentSplit(to_latents(images, resolution), labels) for name, (images, labels) in splits_raw.items()}
    return splits, files


def load(resolution: int = 32, data_dir: Path | None = None) -> tuple[DatasetInfo, dict[str, LatentSplit]]:
    """Splits "train" (60k) and "test" (10k) at ``resolution``; cached in memory (treat as read-only).

    The provenance names the directory used (``source``) and where it came from (``origin``)."""
    found = locate(data_dir)
    directory = str(found.directory.resolve())
    splits, files = _load(directory, check_resolution(resolution))
    info = DatasetInfo(
        name=NAME,
        channels=1,
        resolution=resolution,
        num_classes=len(CLASSES),
        class_names=list(CLASSES),
        autoencoder="identity",
        caption=caption,
        conditionings=("class", "caption"),  # caption: ablate.data.class_captions
        provenance={
            "dataset": NAME,
            "source": directory,
            "origin": found.origin,
            "files": {name: dict(sums) for name, sums in files.items()},
            "splits": {name: len(split) for name, split in splits.items()},
            "resolution": resolution,
            "transform": TRANSFORM,
            "autoencoder": "identity",
        },
    )
    return info, splits
