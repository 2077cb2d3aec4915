"""Image collections ``ablate prepare`` reads: an ImageFolder tree or img2dataset WebDataset tars.

Conventions:

- ImageFolder: ``ROOT/<class folder>/**/<image>``; classes are the sorted folder names (for
  ImageNet's train set, the synsets in the standard 1000-class order); files sorted by path.
  Keys are paths relative to ROOT.
- WebDataset tar (img2dataset): members ``<key>.jpg`` (or png/webp) with ``<key>.txt`` captions,
  ``<key>`` being the member path up to the first dot of its file name. Plain (uncompressed) tars
  only, so that images are read by offset. Keys are ``<tar file name>/<key>``.
- ADM/DiT center crop to R x R: halve with a box filter while the short side is >= 2R, resize
  the short side to R with bicubic filtering, take the centred R x R window.
- A file that fails to decode is a *corrupt image*: skipped, reported with its reason, never raised.
"""

from __future__ import annotations

import io
import os
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ablate.errors import DatasetNotFoundError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".ppm", ".tif", ".tiff", ".gif")
TAR_IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp")
CENTER_CROP = (
    "ADM/DiT center crop: halve with a box filter while the short side >= 2R, resize the short "
    "side to R (bicubic), centred R x R window; converted to RGB"
)


@dataclass(frozen=True)
class Record:
    """One image to encode: where its bytes are, its class index (-1: none) and caption (or None)."""

    key: str
    path: str
    offset: int = 0      # byte offset of the image inside ``path`` (tar members)
    size: int = -1       # byte length; -1 reads the whole file
    label: int = -1
    caption: str | None = None


def scan_image_folder(root: Path) -> tuple[list[str], list[Record]]:
    """The sorted class folder names under ``root`` and every image below them, in sorted order."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DatasetNotFoundError(
            f"The image root {str(root)!r} is not a directory. Give --root the folder that holds one "
            "sub-folder per class (for ImageNet: ILSVRC/Data/CLS-LOC/train with its n01440764, ... folders)."
        )
    classes = sorted(entry.name for entry in os.scandir(root) if entry.is_dir() and not entry.name.startswith("."))
    records: list[Record] = []
    for label, name in enumerate(classes):
        found = []
        for folder, dirs, files in os.walk(root / name):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            found += [Path(folder) / f for f in files if f.lower().endswith(IMAGE_EXTENSIONS) and not f.startswith(".")]
        records += [Record(p.relative_to(root).as_posix(), str(p), label=label) for p in sorted(found)]
    if not records:
        loose = sum(1 for f in os.scandir(root) if f.is_file() and f.name.lower().endswith(IMAGE_EXTENSIONS))
        hint = (
            f" It holds {loose} image files directly; move them into one sub-folder per class."
            if loose
            else ""
        )
        raise DatasetNotFoundError(
            f"No images were found under {str(root)!r}: expected ImageFolder layout ROOT/<class>/<image> "
            f"with extensions {', '.join(IMAGE_EXTENSIONS)} ({len(classes)} class folders found).{hint}"
        )
    return classes, records


def expand_braces(pattern: str) -> list[str]:
    """Shell-style brace expansion: ``a/{00000..00002}.tar`` (zero padding kept) and ``{x,y}``."""
    match = re.search(r"\{([^{}]*)\}", pattern)
    if match is None:
        return [pattern]
    head, body, tail = pattern[: match.start()], match.group(1), pattern[match.end() :]
    numeric = re.fullmatch(r"(-?\d+)\.\.(-?\d+)", body)
    if numeric:
        lo, hi = numeric.group(1), numeric.group(2)
        width = len(lo) if lo.startswith("0") and len(lo) > 1 else 0
        step = 1 if int(hi) >= int(lo) else -1
        items = [str(i).zfill(width) for i in range(int(lo), int(hi) + step, step)]
    else:
        items = body.split(",")
    return [out for item in items for out in expand_braces(head + item + tail)]


def resolve_tar_shards(patterns: list[str]) -> list[Path]:
    """Expand brace patterns into existing tar files (in the order given); every file must exist."""
    paths = [Path(p).expanduser() for pattern in patterns for p in expand_braces(pattern)]
    missing = [str(p) for p in paths if not p.is_file()]
    if not paths or missing:
        shown = ", ".join(repr(m) for m in missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        raise DatasetNotFoundError(
            f"The --shards pattern(s) {', '.join(repr(p) for p in patterns)} name "
            f"{len(paths)} tar files, of which {len(missing)} do not exist ({shown or 'none given'}). "
            "Give existing img2dataset WebDataset tars, e.g. 'PATH/{00000..01242}.tar'."
        )
    return paths


def scan_tar(path: Path) -> tuple[list[Record], list[dict[str, str]]]:
    """Image records of one plain tar (with their captions), and problems found (truncated tar)."""
    images: dict[str, tarfile.TarInfo] = {}
    texts: dict[str, str] = {}
    problems: list[dict[str, str]] = []
    name = Path(path).name
    try:
        with tarfile.open(path, mode="r:") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                base = member.name.rsplit("/", 1)
                stem, _, ext = base[-1].partition(".")
                key = "/".join(base[:-1] + [stem])
                if ext.lower() in TAR_IMAGE_EXTENSIONS:
                    images[key] = member
                elif ext.lower() == "txt":
                    handle = tar.extractfile(member)
                    texts[key] = handle.read().decode("utf-8", errors="replace").strip() if handle else ""
    except (tarfile.TarError, OSError, EOFError) as err:
        problems.append({"key": name, "error": f"tar unreadable after {len(images)} images ({type(err).__name__}: {err})"})
    records = [
        Record(f"{name}/{key}", str(path), offset=m.offset_data, size=m.size, caption=" ".join(texts.get(key, "").split()))
        for key, m in images.items()
    ]
    return records, problems


def center_crop(image: Image.Image, size: int) -> Image.Image:
    """The ADM/DiT center crop of a PIL image to ``size`` x ``size`` (see :data:`CENTER_CROP`)."""
    while min(image.size) >= 2 * size:
        image = image.resize((image.width // 2, image.height // 2), resample=Image.Resampling.BOX)
    scale = size / min(image.size)
    image = image.resize((round(image.width * scale), round(image.height * scale)), resample=Image.Resampling.BICUBIC)
    left, top = (image.width - size) // 2, (image.height - size) // 2
    return image.crop((left, top, left + size, top + size))


def read_image(record: Record, size: int) -> np.ndarray:
    """Decode, convert to RGB and center-crop one record: uint8 (3, size, size). Raises on bad data."""
    with open(record.path, "rb") as handle:
        handle.seek(record.offset)
        payload = handle.read() if record.size < 0 else handle.read(record.size)
    with Image.open(io.BytesIO(payload)) as image:
        image.load()
        rgb = image.convert("RGB")
    return np.asarray(center_crop(rgb, size), dtype=np.uint8).transpose(2, 0, 1).copy()


class CroppedImages(torch.utils.data.Dataset):
    """Map-style dataset over records: (position, uint8 image or None, error message or None)."""

    def __init__(self, records: list[Record], size: int) -> None:
        self.records, self.size = records, size

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, position: int) -> tuple[int, np.ndarray | None, str | None]:
        try:
            return position, read_image(self.records[position], self.size), None
        except Exception as err:  # any decoding failure is a corrupt image: reported, never raised
            return position, None, f"{type(err).__name__}: {err}"


def collate_images(items: list[tuple[int, np.ndarray | None, str | None]]) -> tuple[list[int], torch.Tensor, list[tuple[int, str]]]:
    """Batch positions and stacked uint8 images of the readable items; (position, error) for the rest."""
    good = [(i, img) for i, img, _ in items if img is not None]
    bad = [(i, err) for i, img, err in items if img is None]
    images = torch.from_numpy(np.stack([img for _, img in good])) if good else torch.empty(0, dtype=torch.uint8)
    return [i for i, _ in good], images, [(i, str(e)) for i, e in bad]
